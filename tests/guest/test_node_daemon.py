"""The node daemon end to end: policies created through the Kubernetes API, enforced in the guest's containers.

The real daemon (`kadapter run` as a process, or adapter/daemon.py in the test's own process where the test
reads its report and metrics directly) runs against a node in miniature
(tests/adapter/fakes.py): an API server speaking list/watch to the real
kubernetes client, a CRI runtime listing the sandboxes, a shim monitor per
sandbox answering /agent-url with hybrid vsock, and a VMM socket that does
the CONNECT handshake and forwards to the test guest's real agent. What is
checked is what runs in the guest's containers.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.daemon import Daemon, DaemonSettings
from adapter.exporter import AgentClient
from adapter.metrics import Metrics
from adapter.sandbox_index import IndexSettings
from adapter.sessions import SessionSettings
from adapter.transport import parse_agent_url
from adapter.watcher import WatchSettings
from images.testguest.containers import GuestContainers, PodContainer
from images.testguest.vm import GuestResult, TestGuest
from tests.adapter.daemon_process import Running, kadapter_run
from tests.adapter.fakes import KataNode
from tests.adapter.objects import NODE, Body, namespace, pod, runtime_class
from tests.credentials import adapter_identity
from tests.guest.support import DENIED, NGINX, Boot, kadapter

pytestmark = pytest.mark.guest

ENFORCED_WITHIN = 60.0  # seconds, in the emulated guest


def blocking_id(kind: str, name: str, selector: Body, *, namespace_name: str | None = "default") -> Body:
    """Build a KubeArmorPolicy or KubeArmorClusterPolicy blocking /usr/bin/id for the pods it selects."""
    metadata = {"name": name} if namespace_name is None else {"name": name, "namespace": namespace_name}
    return {
        "apiVersion": "security.kubearmor.com/v1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"selector": selector, "process": {"matchPaths": [{"path": "/usr/bin/id"}]}, "action": "Block"},
    }


@pytest.fixture
def node(guest: TestGuest) -> Iterator[KataNode]:
    """Yield a Kata node whose two sandboxes (nginx-1, busybox-1) lead to the test guest's agent."""
    with tempfile.TemporaryDirectory(prefix="kd-") as directory:
        kata = KataNode(Path(directory))
        kata.api.start()
        for obj in (runtime_class("kata", "kata-qemu"), runtime_class("runc", "runc"), namespace("default")):
            kata.api.create(obj)
        host, port = guest.agent_target.rsplit(":", 1)
        for name, app in (("nginx-1", "nginx"), ("busybox-1", "busybox")):
            stored = kata.api.create(
                pod(name, namespace="default", labels={"app": app}), uid=PodContainer("default", name, app).uid
            )
            kata.place(stored, f"sb-{name}", (host, int(port)))
        try:
            yield kata
        finally:
            kata.close()


@pytest.fixture
def daemon(node: KataNode) -> Iterator[Daemon]:
    """Run the real node daemon on the node until the test ends."""
    settings = DaemonSettings(
        node_name=NODE,
        index=IndexSettings(cri_socket=node.cri_socket, monitor_roots=node.monitor_roots, interval=0.5),
        watch=WatchSettings(timeout_seconds=30, request_timeout=5.0, backoff_initial=0.1, backoff_max=1.0),
        sessions=SessionSettings(
            identity=adapter_identity(), check_interval=1.0, backoff=0.1, backoff_max=2.0, rpc_timeout=60.0
        ),
    )
    running = Daemon(node.api.api_client(), settings, metrics=Metrics()).start()
    try:
        yield running
    finally:
        assert running.stop(), "a daemon thread outlived stop()"


def _pod(report: dict[str, Any], name: str) -> dict[str, Any]:
    """Return one pod of the daemon's status report."""
    return next(item for item in report["pods"] if item["name"] == name)


def refused(result: GuestResult) -> bool:
    """Tell whether the kernel refused the program (runc reports EACCES on exec)."""
    return result.returncode != 0 and DENIED.lower() in (result.stdout + result.stderr).lower()


def until(check: Callable[[], bool], what: str) -> None:
    """Wait until check() holds in the guest, or fail naming what was awaited."""
    deadline = time.monotonic() + ENFORCED_WITHIN
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {ENFORCED_WITHIN} s: {what}")
        time.sleep(1)


def test_policies_from_the_api_are_enforced_and_lifted_in_the_kata_pod(
    node: KataNode, guest: TestGuest, containers: GuestContainers, pods: dict[str, str], tmp_path: Path
) -> None:
    """`kadapter run` as the DaemonSet runs it: create → denied in nginx only; relabel out → runs; back → denied.

    Then delete → runs; `kadapter status` shows both Kata pods and nginx's set applied; the runc pod is never asked.
    """
    with kadapter_run(node, tmp_path) as daemon:
        _enforce_relabel_and_lift(node, daemon, containers, pods)


def _enforce_relabel_and_lift(
    node: KataNode, daemon: Running, containers: GuestContainers, pods: dict[str, str]
) -> None:
    nginx, busybox = pods["nginx-1"], pods["busybox-1"]

    def id_denied(container_id: str) -> Callable[[], bool]:
        return lambda: refused(containers.exec(container_id, ["/usr/bin/id", "-u"]))

    def id_runs(container_id: str) -> Callable[[], bool]:
        return lambda: containers.exec(container_id, ["/usr/bin/id", "-u"]).stdout.strip() == "0"

    runc = node.api.create(pod("nginx-runc", namespace="default", labels={"app": "nginx"}, runtime_class="runc"))
    trap = node.boot(runc, "sb-runc", handler="runc")
    node.api.create(blocking_id("KubeArmorPolicy", "no-id", {"matchLabels": {"app": "nginx"}}))
    until(id_denied(nginx), "the new policy enforced in nginx")
    assert id_runs(busybox)()
    until(lambda: _pod(daemon.status(), "nginx-1")["applied_policies"] == ["no-id"], "the pod shown applied")
    printed = kadapter("status", "--daemon", daemon.base, "--json")
    assert printed.returncode == 0, printed.stderr
    report = json.loads(printed.stdout)
    assert sorted(item["name"] for item in report["pods"]) == ["busybox-1", "nginx-1"]  # Kata pods only
    shown = _pod(report, "nginx-1")
    assert (shown["state"], shown["policies"]) == ("applied", ["no-id"])
    assert shown["applied_generation"] == shown["desired_generation"]
    assert _pod(report, "busybox-1")["policies"] == []

    stored = node.api.get("Pod", "nginx-1", "default")
    node.api.replace({**stored, "metadata": {**stored["metadata"], "labels": {"app": "other"}}})
    until(id_runs(nginx), "the policy lifted once the pod no longer matches")
    stored = node.api.get("Pod", "nginx-1", "default")
    node.api.replace({**stored, "metadata": {**stored["metadata"], "labels": {"app": "nginx"}}})
    until(id_denied(nginx), "the policy back with the label")
    node.api.delete("KubeArmorPolicy", "no-id", "default")
    until(id_runs(nginx), "the policy gone with its object")
    assert trap.calls() == 0


def test_a_cluster_policy_selects_pods_by_namespace(
    node: KataNode, daemon: Daemon, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """A KubeArmorClusterPolicy for namespace default reaches both pods; one for another namespace, neither."""
    elsewhere = {"matchExpressions": [{"key": "namespace", "operator": "In", "values": ["web"]}]}
    here = {"matchExpressions": [{"key": "namespace", "operator": "In", "values": ["default"]}]}
    node.api.create(blocking_id("KubeArmorClusterPolicy", "no-id-in-web", elsewhere, namespace_name=None))
    node.api.create(blocking_id("KubeArmorClusterPolicy", "no-id-here", here, namespace_name=None))
    for name in ("nginx-1", "busybox-1"):
        until(lambda name=name: refused(containers.exec(pods[name], ["/usr/bin/id"])), f"denied in {name}")
    node.api.delete("KubeArmorClusterPolicy", "no-id-here")
    for name in ("nginx-1", "busybox-1"):
        until(lambda name=name: containers.exec(pods[name], ["/usr/bin/id"]).returncode == 0, f"runs in {name}")


def test_a_container_the_agent_never_registered_is_shown_on_the_host(
    node: KataNode, containers: GuestContainers, pods: dict[str, str], tmp_path: Path
) -> None:
    """A container whose hook never ran (fail-open: it runs) is in `kadapter status` on the host."""
    stray = PodContainer("default", "nginx-1", "sidecar")  # started in nginx-1's VM, past its hook

    def flagged(report: dict[str, Any]) -> list[dict[str, Any]]:
        attention = report["attention"]
        return [item for item in attention if (item["pod"], item["problem"]) == ("default/nginx-1", "unregistered")]

    with kadapter_run(node, tmp_path) as daemon:
        shown = ("nginx-1", "applied")
        until(lambda: shown in {(p["name"], p["state"]) for p in daemon.status()["pods"]}, "the pod shown applied")
        assert flagged(daemon.status()) == []
        containers.start("stray-sidecar", stray, registered=False)
        try:
            assert containers.exec("stray-sidecar", ["/usr/bin/id", "-u"]).stdout.strip() == "0"
            until(lambda: bool(flagged(daemon.status())), "the unregistered container shown on the host")
            (item,) = flagged(daemon.status())
            assert item["detail"] == "1 container(s) the agent never registered, running unprotected (fail-open)"
            printed = kadapter("status", "--daemon", daemon.base)
            assert printed.returncode == 0, printed.stderr
            assert "needs attention:" in printed.stdout and item["detail"] in printed.stdout, printed.stdout
        finally:
            containers.delete("stray-sidecar")


NO_BPF_LSM = Boot(kernel_args="lsm=landlock,lockdown,yama,integrity")  # as a pod annotation could set it


@pytest.mark.parametrize("guest", [NO_BPF_LSM], indirect=True, ids=["no-bpf-lsm"])
def test_a_guest_kernel_without_the_bpf_lsm_is_reported_unprotected(
    guest: TestGuest, node: KataNode, daemon: Daemon
) -> None:
    """The agent serves and says so; the daemon shows the pod unprotected (and counts it); the program runs."""
    containers = GuestContainers(guest)
    containers.start("nginx-unprotected", NGINX)
    node.api.create(blocking_id("KubeArmorPolicy", "no-id", {"matchLabels": {"app": "nginx"}}))

    def state() -> str:
        return next(item["state"] for item in daemon.report()["pods"] if item["name"] == "nginx-1")

    until(lambda: state() == "unprotected", "the pod shown unprotected")
    assert daemon.metrics.unprotected_sandboxes.collect()[0].samples[0].value >= 1
    assert containers.exec("nginx-unprotected", ["/usr/bin/id", "-u"]).stdout.strip() == "0"  # nothing pretended
    (attention,) = [
        item
        for item in daemon.report()["attention"]
        if item["pod"] == "default/nginx-1" and item["problem"] == "unprotected"
    ]
    # The LSMs left active depend on which the kernel has built in (Debian's: lockdown,capability,landlock,yama).
    assert re.search(r'no "bpf" in the active LSM list \((?![^)]*bpf)[^)]+\)', attention["detail"]), attention
    with AgentClient(parse_agent_url(f"tcp://{guest.agent_target}"), identity=adapter_identity()) as agent:
        first = next(agent.alerts())  # every alert stream opens with the reason
    assert (first.policy_name, first.operation, first.result) == ("Unprotected", "Agent", "Unprotected")
    assert 'no "bpf" in the active LSM list' in first.message
    assert 'UNPROTECTED: no "bpf"' in guest.run(["cat", "/run/kadapter/agent.log"]).stdout
