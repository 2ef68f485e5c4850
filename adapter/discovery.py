# SPDX-License-Identifier: Apache-2.0
"""Find the Kata sandboxes on this node and where each one's guest agent listens.

Kata's own tools (kata-monitor, `kata-runtime exec`) do not guess VMM socket
paths: they ask the shim. Every Kata shim serves HTTP on a Unix socket in its
sandbox's directory, the Go runtime's under /run/vc/sbs/<sandbox-id>/ and
runtime-rs's under /run/kata/<sandbox-id>/, both named shim-monitor.sock, and
`GET /agent-url` there answers kata-agent's address: `vsock://<cid>:1024`
under QEMU, `hvsock://<VMM socket>:1024` under Cloud Hypervisor, Firecracker
and Dragonball. Kadapter's agent sits in the same VM on its own port, so the
address is kept and the port swapped; adapter/transport.py dials the result.

A sandbox id is the pod's CRI sandbox id: the id containerd gives the
PodSandbox (the pause container's id), which every container of the pod also
carries as the `io.kubernetes.cri.sandbox-id` annotation. The Kubernetes API
does not show it on the Pod, so, as kata-monitor does, Kadapter asks the
node's CRI runtime which pod each sandbox runs (CRI's ListPodSandbox over the
runtime's socket, adapter/cri.py) and needs that socket as well as the shims'.

Nothing here keeps state: the node daemon's sandbox index
(adapter/sandbox_index.py) calls it when a sandbox appears.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import NewType

from adapter.transport import AddressError, AgentAddress, parse_agent_url

SandboxId = NewType("SandboxId", str)

# Go runtime first, then runtime-rs; a sandbox belongs to one runtime, never both.
MONITOR_ROOTS = (Path("/run/vc/sbs"), Path("/run/kata"))
MONITOR_SOCKET = "shim-monitor.sock"
AGENT_URL_PATH = "/agent-url"
AGENT_PORT = 10240  # kadapter-agent's default vsock port (guest_agent/cli.py); kata-agent owns 1024-1027
MONITOR_TIMEOUT = 5.0  # seconds; the shim answers from memory, so longer means it is stuck
_MAX_ANSWER = 4096  # bytes of an agent URL worth reading


class DiscoveryError(Exception):
    """An agent address that could not be learnt from a shim: names the path and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        """Keep the parts apart for callers and join them for people."""
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class SandboxGoneError(DiscoveryError):
    """The monitor socket does not exist: its shim has exited and cleaned up, so retrying is pointless."""


def list_sandboxes(roots: Iterable[Path] = MONITOR_ROOTS) -> dict[SandboxId, Path]:
    """Map each sandbox whose shim serves a monitor socket under the roots to that socket.

    A missing root is a runtime this node does not use. A sandbox directory
    without its socket yet (shim starting) or any more (shim stopping) is left
    out; the next call sees it settled.
    """
    found: dict[SandboxId, Path] = {}
    for root in roots:
        try:
            entries = sorted(root.iterdir())
        except FileNotFoundError:
            continue
        except OSError as error:
            raise DiscoveryError(root, f"cannot list sandboxes: {error.strerror}") from error
        for entry in entries:
            monitor = entry / MONITOR_SOCKET
            if monitor.is_socket():
                found.setdefault(SandboxId(entry.name), monitor)
    return found


def agent_address(monitor_socket: Path, *, port: int = AGENT_PORT, timeout: float = MONITOR_TIMEOUT) -> AgentAddress:
    """Ask a shim's monitor socket where its VM's agent is, and return that address with Kadapter's port."""
    answer = _get_agent_url(monitor_socket, timeout)
    try:
        address = parse_agent_url(answer)
    except AddressError as error:
        raise DiscoveryError(monitor_socket, f"unusable agent URL: {error}") from None
    if address.scheme not in ("vsock", "hvsock"):
        raise DiscoveryError(monitor_socket, f"agent URL {answer!r} is neither vsock:// nor hvsock://")
    return dataclasses.replace(address, port=port)


def _get_agent_url(monitor_socket: Path, timeout: float) -> str:
    """Return the shim's answer to GET /agent-url, or raise a DiscoveryError saying why there is none."""
    connection = _UnixHTTPConnection(monitor_socket, timeout)
    try:
        connection.request("GET", AGENT_URL_PATH)
        response = connection.getresponse()
        body = response.read(_MAX_ANSWER).decode(errors="replace").strip()
    except FileNotFoundError:
        raise SandboxGoneError(monitor_socket, "no such socket: the sandbox is gone") from None
    except ConnectionRefusedError:
        raise DiscoveryError(monitor_socket, "connection refused: no shim listens on it") from None
    except TimeoutError:
        raise DiscoveryError(monitor_socket, f"no answer to GET {AGENT_URL_PATH} within {timeout:g} s") from None
    except PermissionError:
        raise DiscoveryError(monitor_socket, "permission denied: the shim's socket is root's") from None
    except (OSError, http.client.HTTPException) as error:
        raise DiscoveryError(monitor_socket, f"GET {AGENT_URL_PATH} failed: {error!r}") from None
    finally:
        connection.close()
    if response.status != http.client.OK:
        raise DiscoveryError(
            monitor_socket, f"GET {AGENT_URL_PATH} answered {response.status} {response.reason}: {body!r}"
        )
    return body


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 to a Unix socket: the shim monitor speaks plain HTTP there, with no host to name."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Dial the socket file instead of a TCP host; the timeout bounds the dial and every read."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))
