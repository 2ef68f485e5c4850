"""The agent's self-check, and what an agent whose VM enforces nothing serves: its reasons, never a success."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from guest_agent.alerts import AlertHub
from guest_agent.listener import HookListener
from guest_agent.registration import Registration, send
from guest_agent.self_check import UnprotectedAgent, kernel_problems
from guest_agent.service import GuestAgentService
from kadapter_api import agent_pb2, agent_pb2_grpc
from tests.guest_agent.test_service import served

NO_BTF = "the kernel has no BTF (/sys/kernel/btf/vmlinux): the CO-RE programs cannot load"


def fake_sys(root: Path, *, btf: bool, lsm: str | None) -> Path:
    """Lay out the two files the self-check reads under root, as a guest kernel's sysfs would show them."""
    if btf:
        (root / "kernel/btf").mkdir(parents=True)
        (root / "kernel/btf/vmlinux").write_bytes(b"\x9f\xeb")
    if lsm is not None:
        (root / "kernel/security").mkdir(parents=True)
        (root / "kernel/security/lsm").write_text(lsm)
    return root


@pytest.mark.parametrize(
    ("btf", "lsm", "expected"),
    [
        pytest.param(True, "lockdown,capability,landlock,yama,bpf", [], id="protected"),
        pytest.param(
            True,
            "lockdown,capability,landlock,yama",
            ['no "bpf" in the active LSM list (lockdown,capability,landlock,yama): the kernel never runs the programs'],
            id="no-bpf-in-lsm",
        ),
        pytest.param(
            True,
            "lockdown,bpfilter",  # a name that merely contains "bpf" is not the BPF LSM
            ['no "bpf" in the active LSM list (lockdown,bpfilter): the kernel never runs the programs'],
            id="lookalike",
        ),
        pytest.param(
            False,
            None,
            [NO_BTF, 'no "bpf" in the active LSM list (unreadable): the kernel never runs the programs'],
            id="no-btf-no-securityfs",
        ),
    ],
)
def test_kernel_problems_name_what_is_missing(tmp_path: Path, btf: bool, lsm: str | None, expected: list[str]) -> None:
    """Each missing piece is named with where it was looked for."""
    assert kernel_problems(fake_sys(tmp_path, btf=btf, lsm=lsm)) == expected


@pytest.fixture
def unprotected_channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    """Serve an agent whose enforcer did not load, over a real gRPC server."""
    agent = UnprotectedAgent([NO_BTF, "the enforcer did not load: load kadapter.bpf.o"])
    with served(GuestAgentService(agent, AlertHub()), tmp_path) as channel:
        yield channel


def test_an_unprotected_agent_reports_its_reasons(unprotected_channel: grpc.Channel) -> None:
    """GetStatus answers, with no pods or containers and every reason."""
    status = agent_pb2_grpc.GuestAgentStub(unprotected_channel).GetStatus(agent_pb2.GetStatusRequest(), timeout=10)
    assert list(status.unprotected_because) == [NO_BTF, "the enforcer did not load: load kadapter.bpf.o"]
    assert (list(status.pods), list(status.containers)) == ([], [])


def test_an_unprotected_agent_refuses_policies_saying_why(unprotected_channel: grpc.Channel) -> None:
    """Holding a set it cannot enforce would read as success on the host: the call fails instead."""
    request = agent_pb2.ApplyPoliciesRequest(pod=agent_pb2.PodRef(namespace="default", name="nginx-1"), generation=1)
    with pytest.raises(grpc.RpcError) as refused:
        agent_pb2_grpc.GuestAgentStub(unprotected_channel).ApplyPolicies(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        refused.value.details()
        == f"this VM cannot enforce policies: {NO_BTF}; the enforcer did not load: load kadapter.bpf.o"
    )


def test_every_alert_stream_opens_with_one_alert_per_reason(unprotected_channel: grpc.Channel) -> None:
    """Whoever reads alerts only (kadapter alerts, KubeArmor's tools) learns it too, on each new stream."""
    stub = agent_pb2_grpc.GuestAgentStub(unprotected_channel)
    for _ in range(2):
        stream = stub.StreamAlerts(agent_pb2.StreamAlertsRequest(), timeout=10)
        opening = [next(stream), next(stream)]
        stream.cancel()
        assert [(a.policy_name, a.operation, a.result, a.severity) for a in opening] == [
            ("Unprotected", "Agent", "Unprotected", 10)
        ] * 2
        assert [alert.message for alert in opening] == [
            f"this VM cannot enforce its policies: {NO_BTF}",
            "this VM cannot enforce its policies: the enforcer did not load: load kadapter.bpf.o",
        ]


def test_a_hook_is_told_why_its_container_runs_unprotected(tmp_path: Path) -> None:
    """Registration fails with the reason, which the hook logs; the agent keeps serving."""
    listener = HookListener(tmp_path / "hook.sock", UnprotectedAgent([NO_BTF]))
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    registration = Registration(
        operation="register", container_id="c1", container_name="app", pod_namespace="default", pod_name="nginx-1",
        pid=os.getpid(),
    )  # fmt: skip
    try:
        with pytest.raises(
            RuntimeError, match=re.escape(f"agent refused register: this VM cannot enforce policies: {NO_BTF}")
        ):
            send(registration, str(tmp_path / "hook.sock"))
        send(Registration(operation="unregister", container_id="c1"), str(tmp_path / "hook.sock"))
    finally:
        listener.shutdown()
