# SPDX-License-Identifier: Apache-2.0
"""Learn which pod each Kata sandbox on this node runs, from the node's CRI runtime.

adapter/discovery.py finds each sandbox's agent by the sandbox id; the Manager
keys desired sets by pod uid; the Kubernetes API does not show the sandbox id
on the Pod. The container runtime that created the sandbox (containerd or
CRI-O) knows both, and kata-monitor asks it the same question: CRI's
ListPodSandbox over the runtime's Unix socket (kadapter_api/cri.proto). The
agent could name its pod too, but only once kata-agent has created a
container in the VM, while the pod's set should be there before the first
one starts; and the host should not take a VM's word for which pod it is.

Nothing here keeps state: the node daemon asks again when a sandbox appears.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc

from adapter.discovery import SandboxId
from adapter.manager import PodUid
from kadapter_api import cri_pb2, cri_pb2_grpc

# containerd, CRI-O, then containerd where /var/run is not a link to /run (or only it is mounted).
RUNTIME_SOCKETS: Final = (
    Path("/run/containerd/containerd.sock"),
    Path("/run/crio/crio.sock"),
    Path("/var/run/containerd/containerd.sock"),
)
CRI_TIMEOUT: Final = 5.0  # seconds; the runtime answers from memory, so longer means it is stuck
# The kubelet's own limit for CRI answers: a node's sandboxes with their annotations exceed gRPC's default 4 MiB.
_MAX_ANSWER: Final = 16 * 1024 * 1024


class CriError(Exception):
    """A runtime socket that gave no list of sandboxes: names the socket and the reason."""

    def __init__(self, socket: Path, reason: str) -> None:
        """Keep the parts apart for callers and join them for people."""
        self.socket = socket
        self.reason = reason
        super().__init__(f"{socket}: {reason}")


@dataclass(frozen=True)
class SandboxPod:
    """The pod a sandbox was created for, as the runtime recorded it."""

    namespace: str
    name: str
    uid: PodUid
    handler: str  # the RuntimeClass handler the sandbox runs under; "" if the runtime did not record it
    ready: bool  # False once the sandbox is stopped (its VM is gone) but not yet removed
    created_at: int  # nanoseconds since the epoch: of a pod's ready sandboxes, the newest is the one that runs it


def find_runtime_socket(candidates: Sequence[Path] = RUNTIME_SOCKETS) -> Path:
    """Return the first candidate that is a socket: the node's CRI runtime, when none is configured."""
    for candidate in candidates:
        if candidate.is_socket():
            return candidate
    tried = ", ".join(map(str, candidates[1:]))
    raise CriError(candidates[0], f"no CRI runtime socket here{f' nor at {tried}' if tried else ''}")


def list_kata_sandboxes(
    socket: Path,
    *,
    is_kata: Callable[[str], bool],
    kata_shims: Container[SandboxId],
    timeout: float = CRI_TIMEOUT,
) -> dict[SandboxId, SandboxPod]:
    """Map each Kata sandbox the runtime knows, ready or not, to its pod.

    A sandbox is Kata's when is_kata accepts its runtime handler. containerd may
    report an empty handler (older releases); then kata_shims decides: the
    sandboxes a Kata shim serves, as adapter.discovery.list_sandboxes() finds
    them, so that a runc pod is never taken for a Kata one.
    """
    answer = _list_pod_sandboxes(socket, timeout)
    return {
        SandboxId(item.id): _sandbox_pod(item)
        for item in answer.items
        if (is_kata(item.runtime_handler) if item.runtime_handler else SandboxId(item.id) in kata_shims)
    }


def _list_pod_sandboxes(socket: Path, timeout: float) -> cri_pb2.ListPodSandboxResponse:
    """Ask the runtime for every sandbox, or raise a CriError saying why it did not answer."""
    if not socket.is_socket():
        missing = "no such socket: is containerd or CRI-O running, and its socket mounted here?"
        raise CriError(socket, "not a socket" if socket.exists() else missing)
    options = [("grpc.max_receive_message_length", _MAX_ANSWER)]
    with grpc.insecure_channel(f"unix:{socket}", options=options) as channel:
        try:
            return cri_pb2_grpc.RuntimeServiceStub(channel).ListPodSandbox(
                cri_pb2.ListPodSandboxRequest(), timeout=timeout
            )
        except grpc.RpcError as error:
            raise CriError(socket, _reason(error, timeout)) from None


def _reason(error: grpc.RpcError, timeout: float) -> str:
    """Say why a ListPodSandbox call failed, in the runtime's terms where gRPC's are obscure."""
    code, details = error.code(), error.details()
    match code:
        case grpc.StatusCode.UNIMPLEMENTED:
            return (
                "no CRI v1 here (runtime.v1.RuntimeService/ListPodSandbox is unimplemented): "
                "a runtime too old for CRI v1, or containerd with its cri plugin disabled"
            )
        case grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer to ListPodSandbox within {timeout:g} s"
        case grpc.StatusCode.UNAVAILABLE:
            return f"cannot connect: {details}"
        case _:
            return f"ListPodSandbox failed: {code.name}: {details}"


def _sandbox_pod(item: cri_pb2.PodSandbox) -> SandboxPod:
    """Read the pod out of a listed sandbox."""
    return SandboxPod(
        namespace=item.metadata.namespace,
        name=item.metadata.name,
        uid=PodUid(item.metadata.uid),
        handler=item.runtime_handler,
        ready=item.state == cri_pb2.SANDBOX_READY,
        created_at=item.created_at,
    )
