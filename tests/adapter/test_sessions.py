# SPDX-License-Identifier: Apache-2.0
"""Exporter sessions against scripted agents served over real gRPC: delivery, retries, resync, isolation, metrics.

A session is applied only when the agent's status shows the pod's containers enforcing its set in a kernel
that enforces; the scripted agents here report the ways that can fail.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from adapter.discovery import SandboxId
from adapter.metrics import Metrics
from adapter.sessions import (
    Guest,
    SessionPool,
    SessionSettings,
    SessionState,
    SessionStatus,
    Unregistered,
    pod_containers,
    verdict,
)
from kadapter_api import agent_pb2
from tests.adapter.fakes import HANG_SECONDS, Agents, FakeAgent, container_status
from tests.credentials import adapter_identity

FAST = SessionSettings(identity=adapter_identity(), check_interval=0.05, backoff=0.02, backoff_max=0.2, rpc_timeout=5.0)
TIMEOUT = HANG_SECONDS  # seconds an expected outcome may take before the test fails; also how long a hung agent hangs
QUIET = 10 * FAST.check_interval  # long enough for a session to make calls it should not make
POD = agent_pb2.PodRef(namespace="default", name="nginx", uid="u-1")
SANDBOX = SandboxId("sandbox-a")


def _request(generation: int, *names: str, pod: agent_pb2.PodRef = POD) -> agent_pb2.ApplyPoliciesRequest:
    """Build a pod's desired set: policies known by name only, which is all a fake agent reads."""
    policies = [agent_pb2.Policy(name=name, namespace=pod.namespace) for name in names]
    return agent_pb2.ApplyPoliciesRequest(pod=pod, generation=generation, policies=policies)


@pytest.fixture
def agents() -> Iterator[Agents]:
    """Yield agents in a short private directory: a Unix socket path must fit in 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="kadapter-") as directory:
        started = Agents(Path(directory))
        yield started
        started.stop_all()


@pytest.fixture
def pool(agents: Agents) -> Iterator[SessionPool]:
    """Yield a pool with fast pacing and metrics of its own, closed before the agents stop."""
    with SessionPool(settings=FAST, metrics=Metrics()) as sessions:
        yield sessions


def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> float:
    """Wait until check() holds and return the seconds it took; fail the test after timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - started


def status(pool: SessionPool, sandbox: SandboxId = SANDBOX) -> SessionStatus:
    """Return one sandbox's session status from the pool's snapshot."""
    (found,) = [item for item in pool.snapshot() if item.sandbox == sandbox]
    return found


def in_state(pool: SessionPool, state: SessionState, sandbox: SandboxId = SANDBOX) -> Callable[[], bool]:
    """Return a check that the sandbox's session is in the state."""
    return lambda: status(pool, sandbox).state is state


def metric(pool: SessionPool, name: str, **labels: str) -> float:
    """Read one sample of the pool's metrics (0 when it was never touched)."""
    return pool.metrics.registry.get_sample_value(name, labels) or 0.0


def session_threads() -> list[str]:
    """Name the session workers still running."""
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("kadapter-session-")]


def test_desired_set_is_applied_and_reported(agents: Agents, pool: SessionPool) -> None:
    """The agent gets the pod's set once; the snapshot shows what it confirmed; later checks push nothing again."""
    agent = agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(1, "block-apt", "audit-shadow"))
    eventually(in_state(pool, SessionState.APPLIED))
    applied = status(pool)
    assert applied == SessionStatus(
        sandbox=SANDBOX,
        pod="default/nginx",
        pod_uid="u-1",
        agent=agents.address("a"),
        state=SessionState.APPLIED,
        desired_generation=1,
        applied_generation=1,
        policies=("block-apt", "audit-shadow"),
        containers=("app",),
        stale_containers=(),
        guest=Guest(bpf_lsm_active=True, fail_closed=False, kernel_release="", unregistered=()),
        last_error=None,
        last_push_latency=applied.last_push_latency,
        pushes=1,
        failures=0,
    )
    assert applied.last_push_latency is not None and 0 < applied.last_push_latency < 1
    eventually(lambda: agent.checks >= 3)  # checked at every interval...
    assert agent.applied == [1]  # ...and, holding its set, never sent it again
    assert status(pool).state is SessionState.APPLIED


def test_newer_desire_replaces_a_pending_one(agents: Agents, pool: SessionPool) -> None:
    """A new desire is shown pending at once; of those arriving while a push hangs, only the latest follows it."""
    agent = agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    eventually(in_state(pool, SessionState.APPLIED))
    agent.running.clear()
    pool.desire(SANDBOX, agents.address("a"), _request(2))
    pending = status(pool)
    assert (pending.state, pending.desired_generation, pending.applied_generation) == (SessionState.PENDING, 2, 1)
    eventually(lambda: agent.applied == [1, 2])
    pool.desire(SANDBOX, agents.address("a"), _request(3))
    pool.desire(SANDBOX, agents.address("a"), _request(4))
    agent.running.set()
    eventually(lambda: status(pool).applied_generation == 4)
    time.sleep(QUIET)
    assert agent.applied == [1, 2, 4]
    assert status(pool).state is SessionState.APPLIED


def test_older_desire_is_ignored(agents: Agents, pool: SessionPool) -> None:
    """A desire older than the session's, or of the same generation, changes nothing and is never pushed."""
    agent = agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(5, "new"))
    eventually(in_state(pool, SessionState.APPLIED))
    for stale in (_request(4, "old"), _request(5, "other")):
        pool.desire(SANDBOX, agents.address("a"), stale)
        time.sleep(QUIET / 2)
        assert agent.applied == [5]
        assert status(pool).desired_generation == 5


def test_agent_down_at_start_is_retried_with_backoff(agents: Agents, pool: SessionPool) -> None:
    """No agent yet: the session reports it unreachable, retries at a growing interval, and delivers once it is up."""
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    time.sleep(1.3)
    down = status(pool)
    assert down.state is SessionState.UNREACHABLE
    assert down.last_error is not None and down.last_error.startswith("UNAVAILABLE: ")
    # 0.02 s doubling to 0.2 s gives about nine tries in 1.3 s; retrying without back-off would make thousands.
    assert 4 <= down.failures <= 14
    # The counter is read a moment after the status: one more failure may have come in between.
    assert metric(pool, "kadapter_failures_total", operation="apply", code="UNAVAILABLE") - down.failures in (0, 1)
    agent = agents.start("a")
    took = eventually(in_state(pool, SessionState.APPLIED))
    # Within the capped back-off: a channel kept since the first failure would wait out gRPC's own reconnect
    # back-off instead (next dial about 2.6 s after the first failure).
    assert took < 0.5
    assert agent.applied == [1]
    assert status(pool).last_error is None


def _forget(pods: dict[str, agent_pb2.PodStatus]) -> None:
    """Lose every pod, as an agent restarted without its state does."""
    pods.clear()


def _roll_back(pods: dict[str, agent_pb2.PodStatus]) -> None:
    """Hold an older generation for the pod, as an agent restored from old state would."""
    pods[POD.uid] = agent_pb2.PodStatus(pod=POD, generation=1)


@pytest.mark.parametrize(
    "lose", [pytest.param(_forget, id="forgets-the-pod"), pytest.param(_roll_back, id="reports-another-generation")]
)
def test_agent_that_loses_the_set_gets_it_again(
    agents: Agents, pool: SessionPool, lose: Callable[[dict[str, agent_pb2.PodStatus]], None]
) -> None:
    """An agent that no longer holds the desired generation for the pod gets it pushed again at the next check."""
    agent = agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(2))
    eventually(in_state(pool, SessionState.APPLIED))
    with agent.lock:
        lose(agent.pods)
    eventually(lambda: agent.applied == [2, 2], timeout=10 * FAST.check_interval)
    eventually(in_state(pool, SessionState.APPLIED))
    assert metric(pool, "kadapter_resyncs_total") == 1


def test_restarted_agent_gets_the_set_again(agents: Agents, pool: SessionPool) -> None:
    """The VM's agent restarts with nothing applied: the set is back within a few intervals, with no new desire."""
    agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(1, "block-apt"))
    eventually(in_state(pool, SessionState.APPLIED))
    agents.stop("a")
    eventually(in_state(pool, SessionState.UNREACHABLE))
    restarted = agents.start("a")
    eventually(lambda: restarted.applied == [1], timeout=1.0)
    eventually(in_state(pool, SessionState.APPLIED))
    assert restarted.pods["u-1"].policies == ["block-apt"]


def test_one_hanging_agent_does_not_delay_another(agents: Agents, pool: SessionPool) -> None:
    """While one agent holds a push without answering, another sandbox's push is delivered at once."""
    hung, healthy = agents.start("hung"), agents.start("healthy")
    hung.running.clear()
    pool.desire(SandboxId("sandbox-hung"), agents.address("hung"), _request(1))
    eventually(lambda: hung.applied == [1])
    other = agent_pb2.PodRef(namespace="default", name="web", uid="u-2")
    pool.desire(SandboxId("sandbox-healthy"), agents.address("healthy"), _request(1, pod=other))
    took = eventually(in_state(pool, SessionState.APPLIED, SandboxId("sandbox-healthy")))
    assert took < 0.5  # the hung call would hold a shared worker for TIMEOUT (5 s)
    assert healthy.applied == [1]
    assert status(pool, SandboxId("sandbox-hung")).state is SessionState.CONNECTING


def test_drop_ends_a_session_with_a_call_in_flight(agents: Agents, pool: SessionPool) -> None:
    """Dropping a session whose agent hangs returns at once, its thread gone, and the agent hears no more from it."""
    agent = agents.start("a")
    agent.running.clear()
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    eventually(lambda: agent.applied == [1])
    started = time.monotonic()
    pool.drop(SANDBOX)
    assert time.monotonic() - started < 1.0
    assert session_threads() == []
    agent.running.set()
    time.sleep(QUIET)
    assert agent.calls() == 1
    assert pool.snapshot() == []


def test_drop_ends_the_periodic_checks(agents: Agents, pool: SessionPool) -> None:
    """A dropped session that was checking its agent stops calling it, and leaves the state gauge."""
    agent = agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    eventually(lambda: agent.checks >= 2)
    pool.drop(SANDBOX)
    calls = agent.calls()
    time.sleep(QUIET)
    assert agent.calls() == calls
    assert session_threads() == []
    assert all(metric(pool, "kadapter_sessions", state=state.value) == 0 for state in SessionState)


def test_invalid_set_is_reported_and_not_sent_again(agents: Agents, pool: SessionPool) -> None:
    """INVALID_ARGUMENT: the snapshot says refused and why, nothing is sent until the desire changes, then it is."""
    agent = agents.start("a")
    agent.fail_with = grpc.StatusCode.INVALID_ARGUMENT
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    eventually(in_state(pool, SessionState.REFUSED))
    time.sleep(QUIET)
    refused = status(pool)
    assert refused.last_error == "INVALID_ARGUMENT: scripted failure"
    assert (refused.pushes, refused.failures, refused.applied_generation) == (1, 1, None)
    assert agent.calls() == 1
    assert metric(pool, "kadapter_pushes_total", outcome="refused") == 1
    agent.fail_with = None
    pool.desire(SANDBOX, agents.address("a"), _request(2))
    eventually(in_state(pool, SessionState.APPLIED))
    assert agent.applied == [1, 2]
    assert status(pool).last_error is None


def test_other_agent_errors_are_retried(agents: Agents, pool: SessionPool) -> None:
    """An error the agent may recover from (kernel maps full) is reported as retrying, and retried until it passes."""
    agent = agents.start("a")
    agent.fail_with = grpc.StatusCode.RESOURCE_EXHAUSTED
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    eventually(lambda: len(agent.applied) >= 3)
    assert status(pool).state is SessionState.RETRYING
    assert status(pool).last_error == "RESOURCE_EXHAUSTED: scripted failure"
    agent.fail_with = None
    eventually(in_state(pool, SessionState.APPLIED))
    assert metric(pool, "kadapter_pushes_total", outcome="failed") >= 3


def test_metrics_follow_the_sessions(agents: Agents, pool: SessionPool) -> None:
    """Sessions by state, pushes by outcome and push latency move with what the sessions do."""
    assert metric(pool, "kadapter_sessions", state="applied") == 0  # every state is shown from the start
    agents.start("a")
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    pool.desire(SandboxId("sandbox-b"), agents.address("b"), _request(1, pod=agent_pb2.PodRef(uid="u-2")))
    eventually(in_state(pool, SessionState.APPLIED))
    eventually(in_state(pool, SessionState.UNREACHABLE, SandboxId("sandbox-b")))
    assert metric(pool, "kadapter_sessions", state="applied") == 1
    assert metric(pool, "kadapter_sessions", state="unreachable") == 1
    assert metric(pool, "kadapter_sessions", state="connecting") == 0
    assert metric(pool, "kadapter_pushes_total", outcome="applied") == 1
    assert metric(pool, "kadapter_pushes_total", outcome="failed") >= 1
    assert metric(pool, "kadapter_push_latency_seconds_count") == 1
    assert 0 < metric(pool, "kadapter_push_latency_seconds_sum") < 1


def test_moved_agent_gets_a_fresh_session(agents: Agents, pool: SessionPool) -> None:
    """A sandbox whose agent is now found elsewhere is served there; the old address hears no more."""
    old, new = agents.start("old"), agents.start("new")
    pool.desire(SANDBOX, agents.address("old"), _request(1))
    eventually(in_state(pool, SessionState.APPLIED))
    pool.desire(SANDBOX, agents.address("new"), _request(2))
    eventually(lambda: new.applied == [2])
    calls = old.calls()
    time.sleep(QUIET)
    assert old.calls() == calls
    assert status(pool).agent == agents.address("new")
    assert len(session_threads()) == 1


def test_close_ends_every_session(agents: Agents) -> None:
    """Closing the pool stops every worker, and a later desire is an error rather than a leaked thread."""
    agents.start("a")
    pool = SessionPool(settings=FAST)
    for name in ("s1", "s2"):
        pool.desire(SandboxId(name), agents.address("a"), _request(1, pod=agent_pb2.PodRef(uid=name)))
    eventually(lambda: len(session_threads()) == 2)
    pool.close()
    assert session_threads() == []
    with pytest.raises(RuntimeError, match="closed"):
        pool.desire(SANDBOX, agents.address("a"), _request(1))


# --- What the agent's status confirms ----------------------------------------------------------------------------

ENFORCING = Guest(bpf_lsm_active=True, fail_closed=False, kernel_release="6.1.0-kata", unregistered=())
NO_BPF = Guest(bpf_lsm_active=False, fail_closed=False, kernel_release="6.1.0-kata", unregistered=())
NO_BTF = Guest(
    bpf_lsm_active=True,
    fail_closed=False,
    kernel_release="6.1.0-kata",
    unregistered=(),
    unprotected_because=("the enforcer did not load: no BTF",),
)


@pytest.mark.parametrize(
    ("held", "guest", "containers", "stale", "state"),
    [
        pytest.param(3, ENFORCING, ["app", "sidecar"], [], SessionState.APPLIED, id="applied"),
        pytest.param(3, NO_BPF, ["app"], [], SessionState.UNPROTECTED, id="no-bpf-whatever-held"),
        pytest.param(None, NO_BPF, [], [], SessionState.UNPROTECTED, id="no-bpf-nothing-held"),
        pytest.param(None, NO_BTF, [], [], SessionState.UNPROTECTED, id="self-check-failed"),
        pytest.param(2, ENFORCING, ["app"], ["app"], SessionState.PENDING, id="older-set-held"),
        pytest.param(None, ENFORCING, [], [], SessionState.PENDING, id="nothing-held"),
        pytest.param(3, ENFORCING, [], [], SessionState.NO_CONTAINERS, id="no-containers"),
        pytest.param(3, ENFORCING, ["app", "sidecar"], ["sidecar"], SessionState.PARTIAL, id="one-stale"),
    ],
)
def test_verdict(held: int | None, guest: Guest, containers: list[str], stale: list[str], state: SessionState) -> None:
    """Applied needs the desired generation held, a kernel that enforces and every running container on it."""
    assert verdict(3, held, guest, containers=containers, stale=stale) is state


def test_pod_containers_are_matched_as_the_agent_binds_them() -> None:
    """By namespace and name, without the pause container: another pod's containers do not count.

    A container of another uid counts as the pod's (the agent binds sets by name) and the session names it stale.
    """
    status = agent_pb2.AgentStatus(
        containers=[
            container_status(POD, "pause", 0, sandbox=True),
            container_status(POD, "app", 3),
            container_status(agent_pb2.PodRef(namespace="default", name="nginx", uid="other"), "sidecar", 3),
            container_status(agent_pb2.PodRef(namespace="default", name="nginx-x", uid="u-1"), "renamed", 3),
            container_status(agent_pb2.PodRef(namespace="shop", name="nginx", uid="u-1"), "elsewhere", 3),
        ]
    )
    assert [container.name for container in pod_containers(status, POD)] == ["app", "sidecar"]


def _none(agent: FakeAgent) -> None:
    """Report no container at all, as before the pod's containers start."""
    agent.containers = []


def _renamed(agent: FakeAgent) -> None:
    """Report the pod's containers under another pod's name, as when their annotations do not match."""
    renamed = agent_pb2.PodRef(namespace=POD.namespace, name="nginx-7d4b9", uid=POD.uid)
    agent.containers = [container_status(POD, "pause", 0, sandbox=True), container_status(renamed, "app", 2)]


def _one_stale(agent: FakeAgent) -> None:
    """Report one container on the desired generation (2) and one still on the previous one."""
    agent.containers = [container_status(POD, "app", 2), container_status(POD, "sidecar", 1)]


def _other_uid(agent: FakeAgent) -> None:
    """Report a container of the pod's namespace and name whose CRI annotations gave another pod uid."""
    earlier = agent_pb2.PodRef(namespace=POD.namespace, name=POD.name, uid="u-0")
    agent.containers = [container_status(POD, "app", 2), container_status(earlier, "sidecar", 2)]


def _no_bpf(agent: FakeAgent) -> None:
    """Report a guest kernel without bpf in its LSM list, containers and generation otherwise fine."""
    agent.bpf_lsm_active = False


def _self_check_failed(agent: FakeAgent) -> None:
    """Report an agent whose enforcer did not load (a kernel without BTF), the BPF LSM itself active."""
    agent.unprotected_because = ["the enforcer did not load: no BTF"]


@pytest.mark.parametrize(
    ("script", "state", "stale"),
    [
        pytest.param(_none, SessionState.NO_CONTAINERS, (), id="no-containers"),
        pytest.param(_renamed, SessionState.NO_CONTAINERS, (), id="registered-under-another-name"),
        pytest.param(_one_stale, SessionState.PARTIAL, ("sidecar",), id="partial"),
        pytest.param(_other_uid, SessionState.PARTIAL, ("sidecar",), id="another-pod-uid"),
        pytest.param(_no_bpf, SessionState.UNPROTECTED, (), id="unprotected"),
        pytest.param(_self_check_failed, SessionState.UNPROTECTED, (), id="self-check-failed"),
    ],
)
def test_a_held_set_is_not_applied_until_the_containers_enforce_it(
    agents: Agents,
    pool: SessionPool,
    caplog: pytest.LogCaptureFixture,
    script: Callable[[FakeAgent], None],
    state: SessionState,
    stale: tuple[str, ...],
) -> None:
    """The agent accepts the set, yet the session never reports it applied; the set is not pushed again for it."""
    caplog.set_level(logging.INFO, logger="adapter.sessions")
    agent = agents.start("a")
    script(agent)
    pool.desire(SANDBOX, agents.address("a"), _request(2))
    eventually(in_state(pool, state))
    eventually(lambda: agent.checks >= 3)
    assert status(pool).state is state
    assert status(pool).stale_containers == stale
    assert agent.applied == [2]  # the agent holds the pod's generation: pushing again would change nothing
    states = [record.state for record in caplog.records if getattr(record, "event", None) == "state"]
    assert SessionState.APPLIED.value not in states
    assert metric(pool, "kadapter_sessions", state=state.value) == 1
    assert metric(pool, "kadapter_sessions", state="applied") == 0
    assert metric(pool, "kadapter_unprotected_sandboxes") == int(state is SessionState.UNPROTECTED)


def test_containers_catching_up_make_the_session_applied(
    agents: Agents, pool: SessionPool, caplog: pytest.LogCaptureFixture
) -> None:
    """Partial, its stale container named in a warning, until every container enforces the set: then applied."""
    caplog.set_level(logging.INFO, logger="adapter.sessions")
    agent = agents.start("a")
    _one_stale(agent)
    pool.desire(SANDBOX, agents.address("a"), _request(2))
    eventually(in_state(pool, SessionState.PARTIAL))
    with agent.lock:
        agent.containers = [container_status(POD, "app", 2), container_status(POD, "sidecar", 2)]
    eventually(in_state(pool, SessionState.APPLIED))
    assert (status(pool).containers, status(pool).stale_containers) == (("app", "sidecar"), ())
    changes = [record for record in caplog.records if getattr(record, "event", None) == "state"]
    partial, applied = [record for record in changes if record.state in ("partial", "applied")]
    assert (partial.levelno, partial.stale_containers, partial.containers) == (
        logging.WARNING,
        ["sidecar"],
        ["app", "sidecar"],
    )
    assert (applied.levelno, applied.previous, applied.stale_containers) == (logging.INFO, "partial", [])


def test_an_unprotected_sandbox_raises_one_alarm_and_counts_until_dropped(
    agents: Agents, pool: SessionPool, caplog: pytest.LogCaptureFixture
) -> None:
    """No bpf LSM in the guest: one error record (not one per check), the gauge at 1, back to 0 once dropped."""
    caplog.set_level(logging.INFO, logger="adapter.sessions")
    agent = agents.start("a")
    _no_bpf(agent)
    pool.desire(SANDBOX, agents.address("a"), _request(1))
    eventually(lambda: agent.checks >= 4)
    alarms = [record for record in caplog.records if getattr(record, "event", None) == "unprotected"]
    assert [(record.levelno, record.sandbox) for record in alarms] == [(logging.ERROR, SANDBOX)]
    assert "UNPROTECTED" in alarms[0].getMessage()
    assert status(pool).guest == Guest(bpf_lsm_active=False, fail_closed=False, kernel_release="", unregistered=())
    assert metric(pool, "kadapter_unprotected_sandboxes") == 1
    pool.drop(SANDBOX)
    assert metric(pool, "kadapter_unprotected_sandboxes") == 0
    assert metric(pool, "kadapter_sessions", state="unprotected") == 0


def _unregistered(pid_ns: int, executable: str) -> agent_pb2.UnregisteredContainer:
    """Build an unregistered container as an agent reports it."""
    return agent_pb2.UnregisteredContainer(pid_ns=pid_ns, mnt_ns=pid_ns + 1, executable=executable, execs=2)


def test_unregistered_containers_are_reported_per_sandbox_and_summed(
    agents: Agents, pool: SessionPool, caplog: pytest.LogCaptureFixture
) -> None:
    """Each sandbox's unregistered containers and mode are in its status, logged once each, summed in the gauge."""
    caplog.set_level(logging.INFO, logger="adapter.sessions")
    closed, open_ = agents.start("closed"), agents.start("open")
    closed.fail_closed = True
    closed.unregistered = [_unregistered(10, "/bin/sh"), _unregistered(20, "/app/server")]
    open_.unregistered = [_unregistered(30, "/bin/sh")]
    pool.desire(SandboxId("sb-closed"), agents.address("closed"), _request(1))
    pool.desire(SandboxId("sb-open"), agents.address("open"), _request(1, pod=agent_pb2.PodRef(name="web", uid="u-2")))
    eventually(lambda: closed.checks >= 3 and open_.checks >= 3)
    guest = status(pool, SandboxId("sb-closed")).guest
    assert guest is not None and guest.fail_closed
    assert guest.unregistered == (
        Unregistered(10, 11, "/bin/sh", 2, False),
        Unregistered(20, 21, "/app/server", 2, False),
    )
    assert status(pool, SandboxId("sb-closed")).state is SessionState.APPLIED  # the pod's own containers enforce it
    assert metric(pool, "kadapter_unregistered_containers") == 3
    logged = [record for record in caplog.records if getattr(record, "event", None) == "unregistered"]
    assert sorted((record.sandbox, record.fail_closed, len(record.unregistered)) for record in logged) == [
        ("sb-closed", True, 2),
        ("sb-open", False, 1),
    ]
    with open_.lock:
        open_.unregistered = [*open_.unregistered, _unregistered(40, "/usr/bin/curl")]
    eventually(lambda: metric(pool, "kadapter_unregistered_containers") == 4)
    newest = [record for record in caplog.records if getattr(record, "event", None) == "unregistered"][-1]
    assert [item["executable"] for item in newest.unregistered] == ["/usr/bin/curl"]  # only what is new
    pool.drop(SandboxId("sb-closed"))
    assert metric(pool, "kadapter_unregistered_containers") == 2
