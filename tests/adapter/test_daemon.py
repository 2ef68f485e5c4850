# SPDX-License-Identifier: Apache-2.0
"""The node daemon end to end, without VMs: API server double → Watcher → Manager → sessions → agents over hvsock.

Every piece is the real one; only the outside world is a double (tests/adapter/fakes.py): the API server,
the CRI runtime, each sandbox's shim monitor and VMM socket, and the agents behind them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapter.daemon import Daemon, DaemonSettings
from adapter.metrics import Metrics
from adapter.node_status import LOCATING_AGENT, NO_SANDBOX, PodReport, render
from adapter.sandbox_index import IndexSettings
from adapter.sessions import SessionSettings
from adapter.watcher import WatchSettings
from kadapter_api import agent_pb2, agent_pb2_grpc
from tests.adapter.fakes import FakeAgent, KataNode, container_status
from tests.adapter.objects import NODE, csp, ksp, namespace, pod, runtime_class
from tests.credentials import adapter_identity, guest_identity

Body = dict[str, Any]
WAIT = 5.0  # seconds anything expected may take; propagation takes a fraction of that
QUIET = 1.0  # seconds in which something that should not happen would have happened
FAST_WATCH = WatchSettings(timeout_seconds=30, request_timeout=2.0, backoff_initial=0.05, backoff_max=0.2)
FAST_SESSIONS = SessionSettings(
    identity=adapter_identity(), check_interval=0.1, backoff=0.02, backoff_max=0.2, rpc_timeout=5.0
)


@pytest.fixture
def node() -> Iterator[KataNode]:
    """Yield a node with its API server up, holding the RuntimeClasses and namespaces the tests use."""
    with tempfile.TemporaryDirectory(prefix="kd-") as directory:
        kata = KataNode(Path(directory))
        kata.api.start()
        for obj in (runtime_class("kata", "kata-clh"), runtime_class("runc", "runc"), namespace("web")):
            kata.api.create(obj)
        try:
            yield kata
        finally:
            kata.close()


@pytest.fixture
def start(node: KataNode) -> Iterator[Callable[..., Daemon]]:
    """Start the real daemon on the node (stopped after the test), with fast pacing unless told otherwise."""
    with contextlib.ExitStack() as running:

        def start_daemon(**index: Any) -> Daemon:
            settings = DaemonSettings(
                node_name=NODE,
                index=IndexSettings(
                    cri_socket=node.cri_socket,
                    monitor_roots=node.monitor_roots,
                    **{"interval": 0.2, "lookup_timeout": 0.5, **index},
                ),
                watch=FAST_WATCH,
                sessions=FAST_SESSIONS,
            )
            daemon = Daemon(node.api.api_client(), settings, metrics=Metrics()).start()
            running.callback(lambda: pytest.fail("a daemon thread outlived stop()") if not daemon.stop() else None)
            return daemon

        yield start_daemon


def eventually(check: Callable[[], object], timeout: float = WAIT) -> float:
    """Wait until check() is true and return the seconds it took; fail the test after timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def holds(agent: FakeAgent, stored: Body, policies: list[str]) -> Callable[[], bool]:
    """Return a check that the agent holds exactly these policies for the pod."""
    return lambda: agent.policies(stored["metadata"]["uid"]) == policies


def pod_report(daemon: Daemon, name: str) -> PodReport:
    """Return the daemon's report of one pod."""
    (found,) = [item for item in daemon.report()["pods"] if item["name"] == name]
    return found


def state_of(daemon: Daemon, name: str) -> str | None:
    """Return the state the daemon reports for a pod, or None while it reports no such pod."""
    return next((item["state"] for item in daemon.report()["pods"] if item["name"] == name), None)


def test_a_policy_created_through_the_api_reaches_the_kata_pod_only(
    node: KataNode, start: Callable[..., Daemon]
) -> None:
    """A new KubeArmorPolicy reaches the Kata pod's agent within a second; a runc pod with its labels is never asked.

    The runc pod even has a shim and an agent answering (a trap): its runtime handler alone keeps it out.
    """
    kata = node.api.create(pod("nginx"))
    runc = node.api.create(pod("nginx-runc", runtime_class="runc"))
    agent = node.boot(kata, "sb-kata")
    trap = node.boot(runc, "sb-runc", handler="runc")
    daemon = start()
    eventually(holds(agent, kata, []))  # the pod's set, empty until a policy selects it
    node.api.create(ksp("block-apt"))
    took = eventually(holds(agent, kata, ["block-apt"]))
    assert took < 1.0
    time.sleep(QUIET)
    assert trap.calls() == 0
    assert node.vms["sb-runc"].shim.requests == []
    assert [item["name"] for item in daemon.report()["pods"]] == ["nginx"]
    assert node.vms["sb-kata"].handshakes[0] == b"CONNECT 10240\n"


def test_relabelling_the_pod_out_of_the_selector_sends_an_empty_set(
    node: KataNode, start: Callable[..., Daemon]
) -> None:
    """The pod no longer matches the policy's labels: its agent is told to hold nothing, under a newer generation."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    agent = node.boot(kata, "sb-kata")
    start()
    eventually(holds(agent, kata, ["block-apt"]))
    before = agent.applied[-1]
    node.api.replace({**kata, "metadata": {**kata["metadata"], "labels": {"app": "other"}}})
    eventually(holds(agent, kata, []))
    assert agent.applied[-1] > before


def test_deleting_the_policy_lifts_it(node: KataNode, start: Callable[..., Daemon]) -> None:
    """The policy is deleted: the agent gets the pod's set without it."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    node.api.create(ksp("block-curl", path="/usr/bin/curl"))
    agent = node.boot(kata, "sb-kata")
    start()
    eventually(holds(agent, kata, ["block-apt", "block-curl"]))
    node.api.delete("KubeArmorPolicy", "block-apt", "web")
    eventually(holds(agent, kata, ["block-curl"]))


def test_a_cluster_policy_selects_by_namespace(node: KataNode, start: Callable[..., Daemon]) -> None:
    """A KubeArmorClusterPolicy for namespace web reaches web's Kata pod and not shop's, whose set stays empty."""
    node.api.create(namespace("shop"))
    web = node.api.create(pod("nginx"))
    shop = node.api.create(pod("nginx", namespace="shop"))
    web_agent, shop_agent = node.boot(web, "sb-web"), node.boot(shop, "sb-shop")
    start()
    eventually(holds(shop_agent, shop, []))
    node.api.create(csp("shadow", "web"))
    eventually(holds(web_agent, web, ["shadow"]))
    time.sleep(QUIET)
    assert shop_agent.policies(shop["metadata"]["uid"]) == []


def _forget(node: KataNode, sandbox: str, agent: FakeAgent) -> FakeAgent:
    """Make the agent lose every pod, as one whose state was wiped would."""
    with agent.lock:
        agent.pods.clear()
    return agent


def _restart(node: KataNode, sandbox: str, agent: FakeAgent) -> FakeAgent:
    """Restart the agent: a new process, unreachable for a moment, holding nothing."""
    return node.restart_agent(sandbox)


@pytest.mark.parametrize("lose", [pytest.param(_forget, id="forgets"), pytest.param(_restart, id="restarts")])
def test_an_agent_that_loses_its_set_gets_it_again(
    node: KataNode, start: Callable[..., Daemon], lose: Callable[[KataNode, str, FakeAgent], FakeAgent]
) -> None:
    """Without any API event, an agent that no longer holds the pod's set gets it back at the next check."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    agent = node.boot(kata, "sb-kata")
    daemon = start()
    eventually(holds(agent, kata, ["block-apt"]))
    generation = agent.applied[-1]
    again = lose(node, "sb-kata", agent)
    eventually(holds(again, kata, ["block-apt"]))
    assert again.applied[-1] == generation  # the same set: the same generation
    eventually(lambda: state_of(daemon, "nginx") == "applied")


def test_a_deleted_pod_drops_its_session(node: KataNode, start: Callable[..., Daemon]) -> None:
    """Once the pod is deleted its agent hears no more from the daemon, and the report forgets the pod."""
    kata = node.api.create(pod("nginx"))
    agent = node.boot(kata, "sb-kata")
    daemon = start()
    eventually(lambda: agent.checks >= 2)
    node.api.delete("Pod", "nginx", "web")
    eventually(lambda: daemon.report()["pods"] == [])
    time.sleep(0.2)  # a call already on its way through the VMM socket may still land
    calls = agent.calls()
    time.sleep(QUIET)
    assert agent.calls() == calls
    assert daemon.metrics.registry.get_sample_value("kadapter_sessions", {"state": "applied"}) == 0


def test_a_replaced_sandbox_gets_the_set_and_the_old_session_ends(node: KataNode, start: Callable[..., Daemon]) -> None:
    """The pod's VM goes and a new sandbox comes up for it: the new agent gets the set; the report follows."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    old = node.boot(kata, "sb-old")
    daemon = start()
    eventually(holds(old, kata, ["block-apt"]))
    node.halt("sb-old")
    eventually(lambda: state_of(daemon, "nginx") == NO_SANDBOX)
    new = node.boot(kata, "sb-new", created_at=2_000_000_000_000_000_000)
    eventually(holds(new, kata, ["block-apt"]))
    eventually(lambda: state_of(daemon, "nginx") == "applied")
    assert pod_report(daemon, "nginx")["sandbox"] == "sb-new"


def test_a_sandbox_the_runtime_no_longer_lists_is_left_alone(node: KataNode, start: Callable[..., Daemon]) -> None:
    """Once the runtime stops listing a sandbox its session ends: no more calls to its agent, no more shim lookups.

    Its shim and agent still answer (a VM whose teardown lags), so a session left retrying would show here.
    """
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    agent = node.boot(kata, "sb-gone")
    daemon = start()
    eventually(holds(agent, kata, ["block-apt"]))
    node.runtime.items = [item for item in node.runtime.items if item.id != "sb-gone"]
    eventually(lambda: state_of(daemon, "nginx") == NO_SANDBOX)
    time.sleep(QUIET)  # a call already under way may land
    calls, lookups = agent.calls(), len(node.vms["sb-gone"].shim.requests)
    time.sleep(3 * QUIET)  # many check intervals and index rounds
    assert (agent.calls(), len(node.vms["sb-gone"].shim.requests)) == (calls, lookups)


def test_the_newest_ready_sandbox_of_a_pod_is_the_one_served(node: KataNode, start: Callable[..., Daemon]) -> None:
    """Two sandboxes of one pod listed ready at once (a recreation in progress): only the newer one is served."""
    kata = node.api.create(pod("nginx"))
    older = node.boot(kata, "sb-older", created_at=1_000)
    newer = node.boot(kata, "sb-newer", created_at=2_000)
    start()
    eventually(holds(newer, kata, []))
    time.sleep(QUIET)
    assert older.calls() == 0


def test_nothing_is_pushed_before_the_cluster_is_read(node: KataNode, start: Callable[..., Daemon]) -> None:
    """While the API server is down the daemon knows the sandbox but pushes nothing; once it lists, the set goes."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    agent = node.boot(kata, "sb-kata")
    with node.api.outage():
        daemon = start()
        time.sleep(QUIET)
        assert agent.calls() == 0
        assert not daemon.ready()
        assert daemon.report()["synced"] is False
    eventually(daemon.ready)
    eventually(holds(agent, kata, ["block-apt"]))


def test_a_kata_pod_without_a_sandbox_is_reported_then_served(node: KataNode, start: Callable[..., Daemon]) -> None:
    """A Kata pod the runtime has no sandbox for is shown as such; its sandbox coming up gets the set at once."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    daemon = start()
    eventually(daemon.ready)
    report = pod_report(daemon, "nginx")
    assert (report["state"], report["sandbox"], report["policies"]) == (NO_SANDBOX, None, ["block-apt"])
    agent = node.boot(kata, "sb-kata")
    eventually(holds(agent, kata, ["block-apt"]))


def test_a_stuck_shim_delays_no_other_sandbox(node: KataNode, start: Callable[..., Daemon]) -> None:
    """A shim that never answers /agent-url costs its own pod only; the report says why that pod waits."""
    stuck, fine = node.api.create(pod("stuck")), node.api.create(pod("fine"))
    node.boot(stuck, "sb-stuck")
    node.vms["sb-stuck"].shim.shutdown()  # still listening (the kernel accepts), never answering
    agent = node.boot(fine, "sb-fine")
    daemon = start(lookup_timeout=3.0)
    eventually(holds(agent, fine, []))
    waiting = pod_report(daemon, "stuck")  # served while the stuck shim is still being asked
    assert (waiting["state"], waiting["last_error"]) == (LOCATING_AGENT, None)
    eventually(lambda: pod_report(daemon, "stuck")["last_error"] is not None)
    assert "no answer to GET /agent-url within 3 s" in pod_report(daemon, "stuck")["last_error"]


def test_status_reports_each_kata_pod_and_refused_policies(node: KataNode, start: Callable[..., Daemon]) -> None:
    """report(): sandbox, agent, state, generations and policies per pod; a refused policy with the Manager's reason."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    agent = node.boot(kata, "sb-kata")
    daemon = start()
    eventually(lambda: state_of(daemon, "nginx") == "applied")
    bad = ksp("relative", path="usr/bin/curl")
    node.api.create(bad)
    eventually(lambda: daemon.report()["refused"])
    report = daemon.report()
    (only,) = report["pods"]
    generation = agent.applied[-1]
    assert only == PodReport(
        namespace="web",
        name="nginx",
        uid=kata["metadata"]["uid"],
        sandbox="sb-kata",
        agent=f"hvsock://{node.directory}/sb-kata.vmm:10240",
        state="applied",
        desired_generation=generation,
        applied_generation=generation,
        policies=["block-apt"],
        applied_policies=["block-apt"],
        containers=["app"],
        stale_containers=[],
        guest={
            "bpf_lsm_active": True,
            "unprotected_because": [],
            "fail_closed": False,
            "kernel_release": "",
            "unregistered": [],
        },
        last_error=None,
    )
    assert report["attention"] == []
    ((refused),) = report["refused"]
    assert refused["object"] == "KubeArmorPolicy web/relative"
    assert refused["error"].startswith("KubeArmorPolicy web/relative: spec.process.matchPaths[0].path: ")
    assert (report["node"], report["synced"], report["sandboxes_error"]) == (NODE, True, None)


def test_a_runtime_gone_keeps_the_sessions_and_is_reported(node: KataNode, start: Callable[..., Daemon]) -> None:
    """The CRI runtime stops answering: sessions stay (it is not every VM gone), and the report says why."""
    kata = node.api.create(pod("nginx"))
    agent = node.boot(kata, "sb-kata")
    daemon = start()
    eventually(holds(agent, kata, []))
    node.stop_runtime()
    eventually(lambda: daemon.report()["sandboxes_error"] is not None)
    assert "cri.sock" in daemon.report()["sandboxes_error"]
    assert pod_report(daemon, "nginx")["state"] == "applied"


def test_alerts_are_counted_and_published_with_the_pods_labels(node: KataNode, start: Callable[..., Daemon]) -> None:
    """An agent's alert reaches the daemon's fan-out and its counter; the pod's labels are at hand for KubeArmor."""
    kata = node.api.create(pod("nginx", labels={"app": "nginx", "tier": "front"}))
    agent = node.boot(kata, "sb-kata")
    daemon = start()
    subscription = daemon.alerts.subscribe()
    eventually(holds(agent, kata, []))
    alert = agent_pb2.Alert(
        namespace_name="web", pod_name="nginx", operation="Process", action=agent_pb2.ACTION_BLOCK, resource="/bin/x"
    )
    agent.outbox.put(alert)
    assert next(iter(subscription)) == alert
    samples = daemon.metrics.registry
    assert samples.get_sample_value("kadapter_alerts_total", {"operation": "Process", "action": "Block"}) == 1
    assert daemon.labels["web/nginx"] == "app=nginx,tier=front"


def test_a_sandboxs_session_and_alert_stream_share_one_connection(node: KataNode, start: Callable[..., Daemon]) -> None:
    """The VMM socket sees one connection for both, however many checks and pushes follow."""
    kata = node.api.create(pod("nginx", labels={"app": "nginx"}))
    agent = node.boot(kata, "sb-kata")
    daemon = start()
    subscription = daemon.alerts.subscribe()
    eventually(holds(agent, kata, []))
    node.api.create(ksp("block-apt"))
    eventually(holds(agent, kata, ["block-apt"]))
    checks = agent.checks
    eventually(lambda: agent.checks > checks + 1)  # the session went on checking while the stream was open
    agent.outbox.put(agent_pb2.Alert(operation="Process", resource="/bin/x"))
    assert next(iter(subscription)).resource == "/bin/x"
    assert node.vms["sb-kata"].handshakes == [b"CONNECT 10240\n"]


def test_stop_ends_every_thread_promptly(node: KataNode) -> None:
    """stop() returns within a few seconds with every thread ended, sessions and alert streams included."""
    kata = node.api.create(pod("nginx"))
    agent = node.boot(kata, "sb-kata")
    settings = DaemonSettings(
        node_name=NODE,
        index=IndexSettings(cri_socket=node.cri_socket, monitor_roots=node.monitor_roots, interval=0.2),
        watch=FAST_WATCH,
        sessions=dataclasses.replace(FAST_SESSIONS, check_interval=10.0),
    )
    daemon = Daemon(node.api.api_client(), settings).start()
    eventually(holds(agent, kata, []))
    assert daemon.healthy()
    started = time.monotonic()
    assert daemon.stop()
    assert time.monotonic() - started < 3.0
    assert not daemon.healthy()


def test_an_agent_on_a_tcp_port_is_reached_through_the_vmm_socket(node: KataNode, start: Callable[..., Daemon]) -> None:
    """A sandbox placed in front of an agent's TCP port (as the test guest's agent_target) gets its set over hvsock."""
    agent = FakeAgent()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    agent_pb2_grpc.add_GuestAgentServicer_to_server(agent, server)
    port = server.add_secure_port("127.0.0.1:0", guest_identity().server_credentials())
    server.start()
    try:
        kata = node.api.create(pod("nginx"))
        node.api.create(ksp("block-apt"))
        node.place(kata, "sb-tcp", ("127.0.0.1", port))
        start()
        eventually(holds(agent, kata, ["block-apt"]))
        assert node.vms["sb-tcp"].handshakes[0] == b"CONNECT 10240\n"
    finally:
        server.stop(None)


def test_a_restarted_daemon_pushes_everything_again_with_newer_generations(
    node: KataNode, start: Callable[..., Daemon]
) -> None:
    """A daemon started after another stopped lists the cluster again and re-sends each set, its generation higher."""
    kata = node.api.create(pod("nginx"))
    node.api.create(ksp("block-apt"))
    agent = node.boot(kata, "sb-kata")
    first = start()
    eventually(holds(agent, kata, ["block-apt"]))
    assert first.stop()
    before = list(agent.applied)
    start()
    eventually(lambda: len(agent.applied) > len(before))
    assert agent.applied[-1] > before[-1]
    assert agent.policies(kata["metadata"]["uid"]) == ["block-apt"]


def test_an_api_connection_dropped_mid_watch_misses_no_update(node: KataNode, start: Callable[..., Daemon]) -> None:
    """Every watch connection is cut; a policy created right after still reaches the agent."""
    kata = node.api.create(pod("nginx"))
    agent = node.boot(kata, "sb-kata")
    start()
    eventually(holds(agent, kata, []))
    node.api.drop_connections()
    node.api.create(ksp("block-apt"))
    eventually(holds(agent, kata, ["block-apt"]))


def test_status_shows_only_what_the_agents_confirm(node: KataNode, start: Callable[..., Daemon]) -> None:
    """Applied, partial, no containers, UNPROTECTED: each pod as its agent's status shows it, everywhere.

    /status, its attention list, the metrics and the table agree; a sandbox's unregistered containers and its
    fail-closed mode are shown beside its pod.
    """
    stored = {name: node.api.create(pod(name)) for name in ("api", "cache", "db", "nginx")}
    node.api.create(ksp("block-apt"))
    agents = {name: node.boot(body, f"sb-{name}") for name, body in stored.items()}
    agents["api"].containers = []  # e.g. registered under another pod's name
    agents["db"].bpf_lsm_active = False  # e.g. a pod annotation replaced the guest's lsm= list
    agents["nginx"].fail_closed = True
    stray = agent_pb2.UnregisteredContainer(pid_ns=11, mnt_ns=12, executable="/bin/sh", execs=3, refused=True)
    agents["nginx"].unregistered = [stray]
    daemon = start()
    cache, uid = agents["cache"], stored["cache"]["metadata"]["uid"]
    eventually(holds(cache, stored["cache"], ["block-apt"]))
    with cache.lock:
        held = cache.pods[uid]
        cache.containers = [
            container_status(held.pod, "nginx", held.generation),
            container_status(held.pod, "sidecar", held.generation - 1),
        ]
    expected = {"api": "no-containers", "cache": "partial", "db": "unprotected", "nginx": "applied"}
    eventually(lambda: {item["name"]: item["state"] for item in daemon.report()["pods"]} == expected)

    report = json.loads(json.dumps(daemon.report()))  # as GET /status serves it
    assert [(item["problem"], item["pod"], item["sandbox"]) for item in report["attention"]] == [
        ("unprotected", "web/db", "sb-db"),
        ("no-containers", "web/api", "sb-api"),
        ("partial", "web/cache", "sb-cache"),
        ("unregistered", "web/nginx", "sb-nginx"),
    ]
    pods = {item["name"]: item for item in report["pods"]}
    assert (pods["cache"]["containers"], pods["cache"]["stale_containers"]) == (["nginx", "sidecar"], ["sidecar"])
    assert pods["api"]["containers"] == []
    assert pods["db"]["guest"]["bpf_lsm_active"] is False
    assert pods["nginx"]["guest"] == {
        "bpf_lsm_active": True,
        "unprotected_because": [],
        "fail_closed": True,
        "kernel_release": "",
        "unregistered": [{"pid_ns": 11, "mnt_ns": 12, "executable": "/bin/sh", "execs": 3, "refused": True}],
    }

    samples = daemon.metrics.registry
    for state in ("applied", "no-containers", "partial", "unprotected"):
        assert samples.get_sample_value("kadapter_sessions", {"state": state}) == 1
    assert samples.get_sample_value("kadapter_unprotected_sandboxes") == 1
    assert samples.get_sample_value("kadapter_unregistered_containers") == 1

    table = render(report).splitlines()
    rows = {line.split()[0]: line.split() for line in table[3:7]}
    assert {pod: row[3] for pod, row in rows.items()} == {
        "web/api": "no-containers",
        "web/cache": "partial",
        "web/db": "UNPROTECTED",
        "web/nginx": "applied",
    }
    attention = table[table.index("needs attention:") + 1 :]
    assert [line.split()[:2] for line in attention] == [
        ["UNPROTECTED", "web/db"],
        ["no-containers", "web/api"],
        ["partial", "web/cache"],
        ["unregistered", "web/nginx"],
    ]
    assert "sidecar" in attention[2]
    assert attention[3].endswith("1 container(s) the agent never registered, their execs are refused (fail-closed)")
