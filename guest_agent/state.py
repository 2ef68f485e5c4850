# SPDX-License-Identifier: Apache-2.0
"""What a restarted agent needs that the kernel does not keep, saved where the next agent finds it.

The pinned maps keep every container's kernel id, tag and rules in force
when the agent dies. What they cannot say is which runtime container a
kernel id is (its id, name, pod, init process) and which desired policy
set each pod was last given. Both are saved here after every change, in
the guest's /run (root only, gone with the VM, as the pinned maps are),
and written atomically so a kill at any moment leaves the old or the new
file, never half of one.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from kadapter_api import agent_pb2

STATE_FILE = "agent-state.json"


@dataclass(frozen=True)
class SavedContainer:
    """A registered container as the next agent must know it to take it over."""

    id: str
    name: str
    namespace: str
    pod: str
    pod_uid: str
    pid_ns: int
    mnt_ns: int
    rootfs: str | None
    pid: int
    kernel_id: int
    sandbox: bool = False


@dataclass(frozen=True)
class SavedState:
    """Everything saved: the containers, and the last desired set of each pod."""

    containers: tuple[SavedContainer, ...] = ()
    pods: tuple[agent_pb2.ApplyPoliciesRequest, ...] = ()


class StateStore:
    """Read and write the saved state in one directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATE_FILE
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def save(self, containers: Iterable[SavedContainer], pods: Iterable[agent_pb2.ApplyPoliciesRequest]) -> None:
        """Replace the saved state, atomically."""
        document = {
            "containers": [asdict(container) for container in containers],
            "pods": [base64.b64encode(request.SerializeToString()).decode() for request in pods],
        }
        temporary = self.path.with_suffix(".tmp")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump(document, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def load(self) -> SavedState:
        """Return what the last agent saved; nothing when it saved nothing."""
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return SavedState()
        return SavedState(
            containers=tuple(SavedContainer(**fields) for fields in document["containers"]),
            pods=tuple(agent_pb2.ApplyPoliciesRequest.FromString(base64.b64decode(text)) for text in document["pods"]),
        )
