# SPDX-License-Identifier: Apache-2.0
"""The message kadapter-hook sends the agent, and how it travels (one JSON line each way).

Kept to the standard library: kata-agent runs the hook on every container
start with a 10 s limit, and importing gRPC alone costs seconds in a small VM.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
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
