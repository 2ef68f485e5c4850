# SPDX-License-Identifier: Apache-2.0
"""Reach a guest agent from the host: TCP, Unix, vsock or Kata's hybrid vsock.

Agent addresses are URLs in the style Kata's shim reports for kata-agent
(`vsock://<cid>:<port>`, `hvsock://<uds path>:<port>`), plus `tcp://` for
test guests and `unix://`. grpcio dials neither kind of vsock, so for those
a dialer listens on a private Unix socket and splices each gRPC connection
to a freshly dialled vsock stream.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kadapter_api.splice import splice

HANDSHAKE_TIMEOUT = 10.0  # seconds, as Kata's own hybrid-vsock client allows

Scheme = Literal["tcp", "unix", "vsock", "hvsock"]


class AddressError(ValueError):
    """An agent URL that cannot be used."""


@dataclass(frozen=True)
class AgentAddress:
    """Where an agent listens: host is a CID, a hostname or a socket path by scheme."""

    scheme: Scheme
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.scheme != "unix" else "")


def parse_agent_url(url: str) -> AgentAddress:
    """Parse tcp://HOST:PORT, unix:///PATH, vsock://CID:PORT or hvsock:///UDS:PORT."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("tcp", "unix", "vsock", "hvsock"):
        raise AddressError(f"{url!r}: expected tcp://, unix://, vsock:// or hvsock://")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise AddressError(f"{url!r}: a unix socket path must be absolute")
        return AgentAddress("unix", rest, 0)
    host, sep, port = rest.rpartition(":")
    port_limit = 65536 if scheme == "tcp" else 2**32  # vsock ports are 32-bit
    if not sep or not host or not port.isdigit() or not 0 < int(port) < port_limit:
        raise AddressError(f"{url!r}: expected {scheme}://<{'cid' if scheme == 'vsock' else 'host'}>:<port>")
    if scheme == "vsock" and not host.isdigit():
        raise AddressError(f"{url!r}: a vsock CID is a number")
    if scheme == "hvsock" and not host.startswith("/"):
        raise AddressError(f"{url!r}: a hybrid vsock socket path must be absolute")
    return AgentAddress(scheme, host, int(port))


def dial(address: AgentAddress) -> socket.socket:
    """Open a byte stream to a vsock or hybrid-vsock agent address."""
    if address.scheme == "vsock":
        conn = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        conn.settimeout(HANDSHAKE_TIMEOUT)
        conn.connect((int(address.host), address.port))
    else:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(HANDSHAKE_TIMEOUT)
        conn.connect(address.host)
        conn.sendall(f"CONNECT {address.port}\n".encode())
        reply = _read_line(conn)
        if not reply.startswith(b"OK"):
            conn.close()
            raise ConnectionRefusedError(f"{address}: hybrid vsock handshake answered {reply!r}")
    conn.settimeout(None)
    return conn


def _read_line(conn: socket.socket, limit: int = 128) -> bytes:
    """Read the VMM's one-line handshake reply byte by byte: nothing after it may be consumed."""
    line = b""
    while not line.endswith(b"\n") and len(line) < limit:
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line.strip()


class Dialer:
    """A private Unix socket whose every connection is spliced to the agent; a gRPC target."""

    def __init__(self, address: AgentAddress) -> None:
        self.address = address
        self._directory = tempfile.TemporaryDirectory(prefix="kadapter-dial-")
        self.path = Path(self._directory.name, "agent.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                local, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(local,), daemon=True).start()

    def _connect(self, local: socket.socket) -> None:
        try:
            remote = dial(self.address)
        except OSError:
            local.close()  # gRPC sees the connection drop and reports UNAVAILABLE
            return
        splice(local, remote)

    def close(self) -> None:
        """Stop accepting and remove the private socket."""
        self._listener.close()
        with contextlib.suppress(OSError):
            self._directory.cleanup()


def grpc_target(address: AgentAddress) -> tuple[str, Dialer | None]:
    """Return the gRPC target for an address, and the Dialer that serves it if one is needed."""
    if address.scheme == "tcp":
        return f"{address.host}:{address.port}", None
    if address.scheme == "unix":
        return f"unix:{address.host}", None
    dialer = Dialer(address)
    return f"unix:{dialer.path}", dialer
