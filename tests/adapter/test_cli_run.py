# SPDX-License-Identifier: Apache-2.0
"""`kadapter run` as a process on a node in miniature, and `kadapter status` asking it.

The daemon runs as the DaemonSet runs it (its own process, NODE_NAME from the environment, JSON logs on
stderr, SIGTERM to stop), against the doubles of tests/adapter/fakes.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from adapter.cli import main
from kadapter_api import agent_pb2, kubearmor_pb2, kubearmor_pb2_grpc
from tests.adapter.daemon_process import WAIT, Running, http_get, kadapter_run
from tests.adapter.fakes import FakeAgent, KataNode
from tests.adapter.objects import NODE, ksp, namespace, pod, runtime_class

STOP_WITHIN = 5.0  # seconds SIGTERM may take


@pytest.fixture
def node() -> Iterator[KataNode]:
    """Yield a node with a Kata pod selected by a policy, its sandbox up."""
    with tempfile.TemporaryDirectory(prefix="kr-") as directory:
        kata = KataNode(Path(directory))
        kata.api.start()
        for obj in (runtime_class("kata", "kata-qemu"), namespace("web"), ksp("block-apt")):
            kata.api.create(obj)
        try:
            yield kata
        finally:
            kata.close()


@pytest.fixture
def agent(node: KataNode) -> FakeAgent:
    """Start the nginx pod and its sandbox."""
    return node.boot(node.api.create(pod("nginx", labels={"app": "nginx", "tier": "front"})), "sb-nginx")


@pytest.fixture
def daemon(node: KataNode, tmp_path: Path) -> Iterator[Running]:
    """Run `kadapter run` on the node with every option it has a use for here."""
    options = ("--print-alerts", "--serve-kubearmor-logs", "127.0.0.1:0", "--cluster-name", "test-cluster")
    with kadapter_run(node, tmp_path, *options) as running:
        yield running


def _states(base: str) -> list[str]:
    """Return the state of each pod the daemon's /status lists."""
    return [pod["state"] for pod in json.loads(http_get(f"{base}/status")[1])["pods"]]


def _eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.05)


def test_run_serves_probes_metrics_and_status(node: KataNode, agent: FakeAgent, daemon: Running) -> None:
    """/readyz turns 200 after the first sync, /healthz is 200, /metrics counts the push, /status lists the pod."""
    base = f"http://{daemon.url('listening')}"
    _eventually(lambda: http_get(f"{base}/readyz") == (200, "ready\n"))
    assert http_get(f"{base}/healthz") == (200, "ok\n")
    _eventually(lambda: agent.policies(node.api.get("Pod", "nginx", "web")["metadata"]["uid"]) == ["block-apt"])
    _eventually(lambda: _states(base) == ["applied"])
    status = json.loads(http_get(f"{base}/status")[1])
    assert (status["node"], status["synced"], status["refused"]) == (NODE, True, [])
    (only,) = status["pods"]
    assert (only["namespace"], only["name"], only["sandbox"]) == ("web", "nginx", "sb-nginx")
    assert only["agent"] == f"hvsock://{node.directory}/sb-nginx.vmm:10240"
    assert only["policies"] == only["applied_policies"] == ["block-apt"]
    assert only["desired_generation"] == only["applied_generation"] == agent.applied[-1]
    metrics = http_get(f"{base}/metrics")[1]
    assert 'kadapter_sessions{state="applied"} 1.0' in metrics
    assert 'kadapter_pushes_total{outcome="applied"} 1.0' in metrics
    assert "kadapter_push_latency_seconds_count 1.0" in metrics


def test_status_prints_a_table_and_json(
    node: KataNode, agent: FakeAgent, daemon: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kadapter status` prints the daemon's pods as a table (refused policies below it), and as JSON with --json."""
    base = f"http://{daemon.url('listening')}"
    node.api.create(ksp("relative", path="usr/bin/curl"))
    daemon.record(lambda record: record.get("event") == "refused")
    _eventually(lambda: _states(base) == ["applied"])
    assert main(["status", "--daemon", base]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"node {NODE}: 1 Kata pod(s), synced"
    assert table[2].split() == ["POD", "SANDBOX", "AGENT", "STATE", "DESIRED", "APPLIED", "POLICIES", "ERROR"]
    generation = str(agent.applied[-1])
    agent_url = f"hvsock://{node.directory}/sb-nginx.vmm:10240"
    assert table[3].split() == ["web/nginx", "sb-nginx", agent_url, "applied", generation, generation, "block-apt", "-"]
    assert table[5] == "refused objects (their last valid version, if any, still applies):"
    assert table[6].startswith("  KubeArmorPolicy web/relative: spec.process.matchPaths[0].path: ")
    assert main(["status", "--daemon", base, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pods"][0]["applied_generation"] == agent.applied[-1]
    assert report["refused"][0]["object"] == "KubeArmorPolicy web/relative"


def test_logs_are_json_lines_naming_each_event(node: KataNode, agent: FakeAgent, daemon: Running) -> None:
    """Every stderr line is a JSON object; the push, the session start and a refused policy each have a record."""
    node.api.create(ksp("relative", path="usr/bin/curl"))
    push = daemon.record(lambda record: record.get("event") == "push")
    assert (push["sandbox"], push["pod"], push["policies"]) == ("sb-nginx", "web/nginx", ["block-apt"])
    assert daemon.record(lambda record: record.get("event") == "session-start")["sandbox"] == "sb-nginx"
    refused = daemon.record(lambda record: record.get("event") == "refused")
    assert refused["object"] == "KubeArmorPolicy web/relative"
    assert "spec.process.matchPaths[0].path" in refused["error"]
    assert {"time", "level", "logger", "message"} <= push.keys()


def test_alerts_are_printed_and_served_to_kubearmor_clients(agent: FakeAgent, daemon: Running) -> None:
    """--print-alerts writes each agent alert as a JSON line; KubeArmor's LogService serves it with the pod's labels."""
    daemon.record(lambda record: record.get("event") == "push")
    with grpc.insecure_channel(daemon.url("listening-kubearmor")) as channel:
        stream = kubearmor_pb2_grpc.LogServiceStub(channel).WatchAlerts(
            kubearmor_pb2.RequestMessage(Filter="policy"), timeout=WAIT
        )
        alert = agent_pb2.Alert(
            namespace_name="web", pod_name="nginx", operation="File", action=agent_pb2.ACTION_BLOCK, resource="/a"
        )
        time.sleep(0.5)  # the watch is subscribed once the call is served; an alert before it would not be sent
        agent.outbox.put(alert)
        served = next(stream)
        stream.cancel()
    printed = json.loads(daemon.printed.get(timeout=WAIT))
    assert (printed["pod_name"], printed["operation"], printed["resource"]) == ("nginx", "File", "/a")
    assert (served.ClusterName, served.HostName, served.PodName) == ("test-cluster", NODE, "nginx")
    assert served.Labels == "app=nginx,tier=front"


def test_sigterm_stops_the_daemon_within_seconds(agent: FakeAgent, daemon: Running) -> None:
    """SIGTERM: the process stops its threads, sessions and servers and exits 0 within a few seconds."""
    daemon.record(lambda record: record.get("event") == "push")
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        returned = daemon.process.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        daemon.process.send_signal(signal.SIGABRT)  # faulthandler prints where each thread is stuck
        daemon.process.wait()
        time.sleep(0.5)
        dump = [daemon.records.get().get("text") for _ in range(daemon.records.qsize())]
        pytest.fail(f"still running {STOP_WITHIN} s after SIGTERM; its threads then:\n" + "\n".join(filter(None, dump)))
    assert returned == 0
    assert time.monotonic() - started < STOP_WITHIN
    daemon.record(lambda record: record.get("event") == "stop")
    time.sleep(0.2)  # a call already on its way through the VMM socket may still land
    calls = agent.calls()
    time.sleep(0.5)
    assert agent.calls() == calls


def test_status_without_a_daemon_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """No daemon at the address: exit 1 and a message naming it."""
    assert main(["status", "--daemon", "http://127.0.0.1:9"]) == 1
    assert "no status from the node daemon at http://127.0.0.1:9" in capsys.readouterr().err


def test_run_needs_a_node_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --node-name or $NODE_NAME, `kadapter run` is a usage error: it cannot tell which pods are its own."""
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    assert "--node-name" in capsys.readouterr().err
