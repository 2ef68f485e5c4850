# SPDX-License-Identifier: Apache-2.0
"""What the agent checks of its VM before claiming to protect it, and what it serves when it cannot.

A Kata guest kernel built without BTF cannot load CO-RE programs; one booted
with an `lsm=` list lacking `bpf` (a pod annotation can replace Kata's
kernel_params) loads and attaches them, but the kernel never runs them. In
both cases the VM enforces nothing, and the host must hear exactly that
rather than find no agent or a content one: so the agent keeps serving,
its status lists why (`unprotected_because`), and every alert stream opens
with one alert per reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kadapter_api import agent_pb2

if TYPE_CHECKING:
    from guest_agent.agent import Container

UNPROTECTED_POLICY: Final = "Unprotected"  # the alerts' PolicyName for a VM that enforces nothing
UNPROTECTED_OPERATION: Final = "Agent"  # their Operation: about the agent's own VM, no process asked anything


class UnprotectedError(Exception):
    """A request the agent cannot honour because this VM enforces nothing."""


def bpf_lsm_active(sys_root: Path = Path("/sys")) -> bool:
    """Tell whether the guest kernel runs the BPF LSM."""
    return "bpf" in _active_lsms(sys_root).split(",")


def kernel_problems(sys_root: Path = Path("/sys")) -> list[str]:
    """Say what in the running kernel keeps BPF-LSM programs from enforcing; empty when nothing does."""
    problems = []
    if not (sys_root / "kernel/btf/vmlinux").is_file():
        problems.append("the kernel has no BTF (/sys/kernel/btf/vmlinux): the CO-RE programs cannot load")
    lsms = _active_lsms(sys_root)
    if "bpf" not in lsms.split(","):
        problems.append(f'no "bpf" in the active LSM list ({lsms or "unreadable"}): the kernel never runs the programs')
    return problems


def _active_lsms(sys_root: Path) -> str:
    try:
        return (sys_root / "kernel/security/lsm").read_text().strip()
    except OSError:
        return ""


def unprotected_alerts(problems: list[str]) -> list[agent_pb2.Alert]:
    """Return the alerts that open every stream of an agent whose VM enforces nothing, one per reason."""
    return [
        agent_pb2.Alert(
            operation=UNPROTECTED_OPERATION,
            policy_name=UNPROTECTED_POLICY,
            severity=10,
            message=f"this VM cannot enforce its policies: {problem}",
            resource=os.uname().release,
            action=agent_pb2.ACTION_AUDIT,
            result="Unprotected",
            enforcer="BPFLSM",
        )
        for problem in problems
    ]


class UnprotectedAgent:
    """The agent of a VM whose enforcer did not load: it answers status and refuses policies, saying why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def apply(self, request: agent_pb2.ApplyPoliciesRequest) -> agent_pb2.ApplyPoliciesResponse:
        """Refuse: the policies could be held but never enforced, and holding them would look like success."""
        raise self._refusal()

    def register(self, container: Container) -> int:
        """Refuse, so that the hook logs why its container runs unprotected."""
        raise self._refusal()

    def unregister(self, container_id: str) -> None:
        """Nothing was registered: nothing to forget."""

    def _refusal(self) -> UnprotectedError:
        return UnprotectedError("this VM cannot enforce policies: " + "; ".join(self.problems))

    def status(self) -> agent_pb2.AgentStatus:
        """Report the VM as unprotected, with its reasons, and no pods or containers."""
        return agent_pb2.AgentStatus(
            bpf_lsm_active=bpf_lsm_active(),
            kernel_release=os.uname().release,
            unprotected_because=self.problems,
        )
