# SPDX-License-Identifier: Apache-2.0
"""`kadapter status`'s table and attention list, from reports built by hand: what a person must not miss."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.node_status import GuestReport, NodeReport, PodReport, UnregisteredReport, attention, render

GENERATION = 1764000001904125113


def _guest(
    *,
    bpf_lsm_active: bool = True,
    unprotected_because: tuple[str, ...] = (),
    fail_closed: bool = False,
    unregistered: int = 0,
) -> GuestReport:
    """Describe a VM as its agent reports it, with a number of unregistered containers."""
    strays = [
        UnregisteredReport(pid_ns=10 + index, mnt_ns=20 + index, executable="/bin/sh", execs=1, refused=fail_closed)
        for index in range(unregistered)
    ]
    return GuestReport(
        bpf_lsm_active=bpf_lsm_active,
        unprotected_because=list(unprotected_because),
        fail_closed=fail_closed,
        kernel_release="6.1.0-kata",
        unregistered=strays,
    )


def _pod(name: str, state: str = "applied", **changes: Any) -> PodReport:
    """Describe a pod of namespace web in its own sandbox, its one container enforcing block-apt unless told."""
    report = PodReport(
        namespace="web",
        name=name,
        uid=f"uid-{name}",
        sandbox=f"sb-{name}",
        agent=f"vsock://{len(name)}:10240",
        state=state,
        desired_generation=GENERATION,
        applied_generation=GENERATION,
        policies=["block-apt"],
        applied_policies=["block-apt"],
        containers=["nginx"],
        stale_containers=[],
        guest=_guest(),
        last_error=None,
    )
    return PodReport(**{**report, **changes})


def _node(*pods: PodReport) -> NodeReport:
    """Describe a synced node holding these pods, its attention list derived as the daemon derives it."""
    listed = list(pods)
    return NodeReport(
        node="worker-1", synced=True, sandboxes_error=None, pods=listed, attention=attention(listed), refused=[]
    )


def _attention_lines(table: str) -> list[str]:
    """Return the lines under "needs attention:", or none when the table has no such section."""
    lines = table.splitlines()
    return lines[lines.index("needs attention:") + 1 :] if "needs attention:" in lines else []


def test_a_node_whose_pods_are_all_enforced_needs_no_attention() -> None:
    """Applied pods in an enforcing VM, fail-closed or not, give no attention section at all."""
    report = _node(_pod("nginx"), _pod("api", guest=_guest(fail_closed=True)))
    assert report["attention"] == []
    table = render(report)
    assert "needs attention" not in table
    assert [line.split()[3] for line in table.splitlines()[3:]] == ["applied", "applied"]


def test_an_unprotected_pod_cannot_be_missed() -> None:
    """Its state is in capitals in the table, and it heads the attention list above every other problem."""
    report = _node(
        _pod("api", "no-containers", containers=[]),
        _pod("db", "unprotected", guest=_guest(bpf_lsm_active=False)),
    )
    table = render(report)
    (db_row,) = [line for line in table.splitlines() if line.startswith("web/db ")]
    assert db_row.split()[3] == "UNPROTECTED"
    assert [line.split()[:2] for line in _attention_lines(table)] == [
        ["UNPROTECTED", "web/db"],
        ["no-containers", "web/api"],
    ]
    assert _attention_lines(table)[0].endswith(
        "nothing in the VM is enforced: the guest kernel has no bpf in its LSM list"
    )


def test_an_unprotected_pod_is_listed_with_the_agents_reasons() -> None:
    """A VM whose kernel lacks BTF runs the BPF LSM but loads no program: the agent's reason is what is shown."""
    no_btf = "the kernel has no BTF (/sys/kernel/btf/vmlinux): the CO-RE programs cannot load"
    report = _node(_pod("db", "unprotected", guest=_guest(unprotected_because=(no_btf,))))
    assert [(item["problem"], item["detail"]) for item in report["attention"]] == [
        ("unprotected", f"nothing in the VM is enforced: {no_btf}")
    ]


def test_a_vm_last_seen_without_bpf_stays_listed_while_its_agent_is_unreachable() -> None:
    """The state says what the session does now; the attention list keeps what the agent last said of its kernel."""
    report = _node(_pod("db", "unreachable", guest=_guest(bpf_lsm_active=False), last_error="UNAVAILABLE: gone"))
    assert [(item["problem"], item["pod"], item["sandbox"]) for item in report["attention"]] == [
        ("unprotected", "web/db", "sb-db")
    ]


@pytest.mark.parametrize(
    ("pod", "line"),
    [
        pytest.param(
            _pod("api", "no-containers", containers=[]),
            "no-containers  web/api  the agent knows no container of the pod: not started yet, or registered under "
            "another pod's name",
            id="no-containers",
        ),
        pytest.param(
            _pod("cache", "partial", containers=["nginx", "redis", "log"], stale_containers=["redis", "log"]),
            f"partial  web/cache  container(s) redis, log not on generation {GENERATION} yet",
            id="partial",
        ),
        pytest.param(
            _pod("nginx", guest=_guest(unregistered=2)),
            "unregistered  web/nginx  2 container(s) the agent never registered, running unprotected (fail-open)",
            id="unregistered-fail-open",
        ),
        pytest.param(
            _pod("nginx", guest=_guest(fail_closed=True, unregistered=1)),
            "unregistered  web/nginx  1 container(s) the agent never registered, their execs are refused (fail-closed)",
            id="unregistered-fail-closed",
        ),
    ],
)
def test_each_problem_is_explained_under_needs_attention(pod: PodReport, line: str) -> None:
    """One line per problem: what it is, which pod, and what it means; nothing listed for a pod without one."""
    assert _attention_lines(render(_node(_pod("fine"), pod))) == [f"  {line}"]


def test_one_pod_may_need_attention_for_several_reasons() -> None:
    """Partial in a VM that also runs unregistered containers: both listed, the pod's own problem first."""
    pod = _pod("web", "partial", stale_containers=["nginx"], guest=_guest(unregistered=3))
    assert [item["problem"] for item in attention([pod])] == ["partial", "unregistered"]
