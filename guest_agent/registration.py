# SPDX-License-Identifier: Apache-2.0
"""The message kadapter-hook sends the agent, and how it travels (one JSON line each way).

Kept to the standard library: kata-agent runs the hook on every container
start with a 10 s limit, and importing gRPC alone costs seconds in a small VM.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

DEFAULT_SOCKET = "/run/kadapter/hook.sock"
TIMEOUT_SECONDS = 8.0  # below kata-agent's 10 s hook timeout

Operation = Literal["register", "unregister"]


@dataclass(frozen=True)
class Registration:
    """A container being created or removed, named as the CRI annotations name it."""

    operation: Operation
    container_id: str
    container_name: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    pid: int = 0
    rootfs: str = ""
    sandbox: bool = False  # the pod's pause container

    def encode(self) -> bytes:
        """Serialise as one JSON line."""
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Registration:
        """Parse one JSON line, refusing unknown or mistyped fields."""
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise ValueError("registration must be a JSON object")
        registration = cls(**fields)
        if registration.operation not in ("register", "unregister") or not registration.container_id:
            raise ValueError("registration needs an operation and a container_id")
        for name, value in asdict(registration).items():
            expected = {"pid": int, "sandbox": bool}.get(name, str)
            if type(value) is not expected:
                raise ValueError(f"registration field {name} must be {expected.__name__}")
        return registration


def send(registration: Registration, socket_path: str = DEFAULT_SOCKET) -> None:
    """Deliver a registration and wait until the agent has acted on it."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT_SECONDS)
            conn.connect(socket_path)
            conn.sendall(registration.encode())
            reply = json.loads(conn.makefile("rb").readline() or b"{}")
    except OSError as error:  # a bare "No such file or directory" or "timed out" would not say what failed
        raise OSError(f"agent at {socket_path}: {error.strerror or error}") from error
    if not reply.get("ok"):
        raise RuntimeError(f"agent refused {registration.operation}: {reply.get('error', 'no reply')}")


def namespace_ids(pid: int, proc: Path = Path("/proc")) -> tuple[int, int]:
    """Return the (pid ns, mnt ns) ids of a process: the inode numbers of its namespace links."""
    return os.stat(proc / str(pid) / "ns" / "pid").st_ino, os.stat(proc / str(pid) / "ns" / "mnt").st_ino


def pending_directory(socket_path: str) -> Path:
    """Return where registrations no agent took wait: beside the agent's socket, as private as it."""
    return Path(socket_path).parent / "pending"


def leave_pending(registration: Registration, directory: Path, proc: Path = Path("/proc")) -> Path:
    """Leave a registration no agent took for the next agent, with the namespaces its init has now.

    The next agent registers the container if its init still runs in those namespaces (a recycled
    pid has others), so a container started while the agent was down is enforced once it is back.
    """
    if "/" in registration.container_id or registration.container_id.startswith("."):
        raise ValueError(f"container id {registration.container_id!r} cannot name a file")
    pid_ns, mnt_ns = namespace_ids(registration.pid, proc)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{registration.container_id}.json"
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"registration": asdict(registration), "pid_ns": pid_ns, "mnt_ns": mnt_ns}, file)
    os.replace(partial, path)
    return path


def take_pending(directory: Path, proc: Path = Path("/proc")) -> Iterator[Registration]:
    """Yield each registration left pending whose init still runs in the same namespaces, deleting every entry."""
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        try:
            left = json.loads(path.read_bytes())
            registration = Registration.decode(json.dumps(left["registration"]).encode())
            still_there = namespace_ids(registration.pid, proc) == (left["pid_ns"], left["mnt_ns"])
        except (OSError, ValueError, KeyError, TypeError):
            still_there = False  # unreadable, or its init is gone
        finally:
            path.unlink(missing_ok=True)
        if still_there:
            yield registration
