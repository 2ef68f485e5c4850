# SPDX-License-Identifier: Apache-2.0
"""The Watcher against an API server double, through the real kubernetes client: list, watch, resume, relist."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.config import ConfigException

from adapter import kube_resources
from adapter.events import Resource, WatchEvent
from adapter.manager import Manager
from adapter.pods import parse_manifests
from adapter.policy import PolicyKind, parse_policies
from adapter.watcher import Watcher, WatchSettings, load_api_client
from tests.adapter.objects import NODE, csp, ksp, namespace, pod, runtime_class
from tests.kube_api import FakeKubeAPI, Request

Body = dict[str, Any]
# Short enough that a test never waits long, long enough that the server never ends a watch by itself.
FAST = WatchSettings(timeout_seconds=30, request_timeout=2.0, backoff_initial=0.05, backoff_max=0.2)
WAIT = 5.0  # seconds a test waits for what should come at once


class Recorder:
    """The sink: keeps every event, and lets a test wait for the ones it expects."""

    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[WatchEvent] = []
        self._changed = threading.Condition()
        self._fail_first = fail_first

    def __call__(self, event: WatchEvent) -> None:
        """Keep an event, failing as told."""
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
            if len(self.events) <= self._fail_first:
                raise RuntimeError("a sink that fails")

    def seen(self, start: int = 0) -> list[tuple[str, str, str]]:
        """Summarise the events from index ``start`` on as (type, kind, name)."""
        with self._changed:
            return [(e.type, e.kind.value, e.obj["metadata"]["name"]) for e in self.events[start:]]

    def wait_for(self, *expected: tuple[str, str, str], start: int = 0) -> list[WatchEvent]:
        """Wait until every (type, kind, name) expected has been seen since ``start``; return those events."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: set(expected) <= set(self.seen(start)), timeout=WAIT)
            assert arrived, f"expected {expected}, saw {self.seen(start)}"
            return [e for e in self.events[start:] if (e.type, e.kind.value, e.obj["metadata"]["name"]) in expected]


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    """Serve an empty API server double."""
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
def watch(api: FakeKubeAPI) -> Iterator[Callable[..., tuple[Watcher, Recorder]]]:
    """Start Watchers on the double (stopped after the test) and hand back each with its recorder."""
    started: list[Watcher] = []

    def start(settings: WatchSettings = FAST, recorder: Recorder | None = None) -> tuple[Watcher, Recorder]:
        recorder = recorder or Recorder()
        watcher = Watcher(api.api_client(), node_name=NODE, sink=recorder, settings=settings).start()
        started.append(watcher)
        return watcher, recorder

    yield start
    for watcher in started:
        assert watcher.stop(), "a Watcher thread did not end"


def synced(start: Callable[..., tuple[Watcher, Recorder]]) -> tuple[Watcher, Recorder]:
    """Start a Watcher and wait for its first lists."""
    watcher, recorder = start()
    assert watcher.wait_synced(WAIT)
    return watcher, recorder


# Listing and watching


def test_the_first_lists_deliver_every_object_as_added(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """Everything that exists before the Watcher starts arrives once, as ADDED, before wait_synced() returns."""
    for obj in (namespace("web"), runtime_class(), pod("a"), pod("b"), ksp("block-apt"), csp("shadow", "web")):
        api.create(obj)
    _watcher, recorder = synced(watch)
    assert sorted(recorder.seen()) == [
        ("ADDED", "KubeArmorClusterPolicy", "shadow"),
        ("ADDED", "KubeArmorPolicy", "block-apt"),
        ("ADDED", "Namespace", "web"),
        ("ADDED", "Pod", "a"),
        ("ADDED", "Pod", "b"),
        ("ADDED", "RuntimeClass", "kata"),
    ]


@pytest.mark.parametrize(
    ("obj", "section", "change"),
    [
        pytest.param(pod("a"), "metadata", {"labels": {"app": "other"}}, id="pod"),
        pytest.param(
            namespace("web"), "metadata", {"annotations": {"kubearmor-file-posture": "audit"}}, id="namespace"
        ),
        pytest.param(runtime_class(), None, {"handler": "kata-clh"}, id="runtime-class"),
        pytest.param(ksp("block-apt"), "spec", {"action": "Audit"}, id="policy"),
        pytest.param(csp("shadow", "web"), "spec", {"action": "Audit"}, id="cluster-policy"),
    ],
)
def test_a_watch_delivers_additions_changes_and_deletions(
    api: FakeKubeAPI, watch: Callable[..., Any], obj: Body, section: str | None, change: Body
) -> None:
    """After the first list, each change to an object of every watched kind arrives in order, with its new content."""
    _watcher, recorder = synced(watch)
    kind, name = obj["kind"], obj["metadata"]["name"]
    created = api.create(obj)
    recorder.wait_for(("ADDED", kind, name))
    api.replace({**created, **change} if section is None else {**created, section: {**created[section], **change}})
    (modified,) = recorder.wait_for(("MODIFIED", kind, name))
    api.delete(kind, name, created["metadata"].get("namespace"))
    recorder.wait_for(("DELETED", kind, name))
    assert recorder.seen() == [("ADDED", kind, name), ("MODIFIED", kind, name), ("DELETED", kind, name)]
    assert modified.kind is Resource(kind)
    changed = modified.obj if section is None else modified.obj[section]
    assert {key: changed[key] for key in change} == change


def test_only_the_pods_of_this_node_are_delivered(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """Pods of other nodes are filtered by the API server (spec.nodeName), in the list and in the watch."""
    api.create(pod("here-before"))
    api.create(pod("elsewhere-before", node="node-2"))
    _watcher, recorder = synced(watch)
    api.create(pod("elsewhere-after", node="node-2"))
    api.create(pod("here-after"))  # arrives after elsewhere-after would have, as one stream is in order
    recorder.wait_for(("ADDED", "Pod", "here-after"))
    assert [name for _, kind, name in recorder.seen() if kind == "Pod"] == ["here-before", "here-after"]
    selectors = {r.query.get("fieldSelector") for watch in (False, True) for r in api.requests("pods", watch=watch)}
    assert selectors == {f"spec.nodeName={NODE}"}


def test_each_object_arrives_as_json_that_local_modes_parsers_read(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """Listed objects get back the apiVersion and kind the server strips, so the parsers (and the Manager) read them."""
    for obj in (namespace("web", **{"kubearmor-file-posture": "audit"}), runtime_class(), pod("a"), ksp("block-apt")):
        api.create(obj)
    _watcher, recorder = synced(watch)
    api.create(csp("shadow", "web"))  # one through the watch as well
    recorder.wait_for(("ADDED", "KubeArmorClusterPolicy", "shadow"))
    events = {e.kind: e for e in recorder.events}
    inventory = parse_manifests(
        "\n---\n".join(
            json.dumps(events[kind].obj) for kind in (Resource.POD, Resource.NAMESPACE, Resource.RUNTIME_CLASS)
        ),
        source="watch",
    )
    (parsed_pod,) = inventory.pods
    assert (parsed_pod.ref, parsed_pod.runtime_class, parsed_pod.containers) == ("web/a", "kata", ("nginx",))
    assert parsed_pod.uid == events[Resource.POD].obj["metadata"]["uid"] != ""
    assert inventory.namespaces[0].postures == (("file", "audit"),)
    assert inventory.runtime_classes[0].handler == "kata-qemu"
    (policy,) = parse_policies(json.dumps(events[Resource.KUBEARMOR_POLICY].obj), source="watch")
    (cluster_policy,) = parse_policies(json.dumps(events[Resource.KUBEARMOR_CLUSTER_POLICY].obj), source="watch")
    assert (policy.kind, policy.namespace, policy.name) == (PolicyKind.POLICY, "web", "block-apt")
    assert (cluster_policy.kind, cluster_policy.name) == (PolicyKind.CLUSTER_POLICY, "shadow")
    manager = Manager(default_posture="block")
    for event in recorder.events:
        manager.apply(event)
    (desired,) = manager.pods().values()
    assert sorted(entry.policy.name for entry in desired.policies) == ["block-apt", "shadow"]


def with_extras(obj: Body) -> Body:
    """Add what a real cluster adds and the daemon never reads: managedFields, env, conditions, last-applied text."""
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
    if obj["kind"] == "Pod":
        obj["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "production"}]
        obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    else:
        obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": json.dumps(obj)}
    return obj


def test_objects_arrive_cut_to_what_the_daemon_reads(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """Listed and watched objects alike carry only the fields adapter/kube_resources.py keeps for their kind."""
    stored = [api.create(with_extras(pod("listed"))), api.create(with_extras(ksp("listed")))]
    _watcher, recorder = synced(watch)
    stored += [api.create(with_extras(pod("watched"))), api.create(with_extras(ksp("watched")))]
    events = recorder.wait_for(*(("ADDED", obj["kind"], obj["metadata"]["name"]) for obj in stored))
    assert len(events) == 4
    wholes = {(obj["kind"], obj["metadata"]["name"]): obj for obj in stored}
    for event in events:
        (resource,) = (resource for resource in kube_resources.WATCHED if resource.kind == event.kind.value)
        assert event.obj == resource.project(wholes[resource.kind, event.obj["metadata"]["name"]])
        assert event.obj["metadata"].keys() <= {"name", "namespace", "uid", "resourceVersion", "labels", "annotations"}
        assert "managedFields" not in event.obj["metadata"]
    pods = [event.obj for event in events if event.kind is Resource.POD]
    assert [pod_obj["spec"]["containers"] for pod_obj in pods] == [[{"name": "nginx"}]] * 2
    assert [pod_obj["status"] for pod_obj in pods] == [{"phase": "Running"}] * 2


def test_a_list_comes_in_pages_of_one_snapshot(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """Each list request asks for list_page objects and the next for the rest; the watch resumes from the list."""
    for name in ("a", "b", "c", "d", "e"):
        api.create(ksp(name))
    listed_at = str(api.resource_version)
    watcher, recorder = watch(dataclasses.replace(FAST, list_page=2))
    assert watcher.wait_synced(WAIT)
    assert sorted(recorder.seen()) == [("ADDED", "KubeArmorPolicy", name) for name in ("a", "b", "c", "d", "e")]
    pages = api.requests("kubearmorpolicies", watch=False)
    assert [(page.query["limit"], "continue" in page.query) for page in pages] == [
        ("2", False),
        ("2", True),
        ("2", True),
    ]
    api.wait_watching("kubearmorpolicies")
    assert api.requests("kubearmorpolicies", watch=True)[0].query["resourceVersion"] == listed_at


def test_a_list_whose_continue_token_expires_is_listed_again(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """410 Gone on a later page (compaction meanwhile) fails that list; the next starts over, and nothing repeats."""
    for name in ("a", "b", "c", "d", "e"):
        api.create(ksp(name))
    compacted: list[int] = []

    def change_and_compact_before_the_second_page(request: Request) -> None:
        if request.plural == "kubearmorpolicies" and "continue" in request.query and not compacted:
            api.create(ksp("f"))
            compacted.append(api.compact())

    api.before_answer(change_and_compact_before_the_second_page)
    watcher, recorder = watch(dataclasses.replace(FAST, list_page=2))
    assert watcher.wait_synced(WAIT)
    assert sorted(recorder.seen()) == [("ADDED", "KubeArmorPolicy", name) for name in ("a", "b", "c", "d", "e", "f")]
    pages = api.requests("kubearmorpolicies", watch=False)
    assert ["continue" in page.query for page in pages] == [False, True, False, True, True]
    assert compacted


# Surviving the network and the API server


def test_a_dropped_connection_is_resumed_without_listing_again(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """Changes made while the API server is unreachable arrive once, from a watch resumed at the last version seen."""
    api.create(pod("a"))
    api.create(ksp("before"))
    _watcher, recorder = synced(watch)
    mark, resume_at = len(recorder.events), str(api.resource_version)
    with api.outage():
        api.create(ksp("during"))
        api.delete("Pod", "a", "web")
        api.create(namespace("web"))
    recorder.wait_for(
        ("ADDED", "KubeArmorPolicy", "during"), ("DELETED", "Pod", "a"), ("ADDED", "Namespace", "web"), start=mark
    )
    time.sleep(FAST.backoff_max)  # room for a duplicate or a relist to show up
    assert sorted(recorder.seen(mark)) == [
        ("ADDED", "KubeArmorPolicy", "during"),
        ("ADDED", "Namespace", "web"),
        ("DELETED", "Pod", "a"),
    ]
    for plural in ("pods", "namespaces", "kubearmorpolicies"):
        assert api.count(plural, watch=False) == 1, f"{plural} listed again"
        assert api.requests(plural, watch=True)[-1].query["resourceVersion"] == resume_at


def test_a_watch_the_server_ends_is_resumed_without_listing_again(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """When timeoutSeconds ends a watch, the next starts where it stopped and nothing is listed again."""
    _watcher, recorder = watch(WatchSettings(timeout_seconds=1, request_timeout=2.0, backoff_initial=0.05))
    api.create(ksp("first"))
    recorder.wait_for(("ADDED", "KubeArmorPolicy", "first"))
    resume_at = str(api.resource_version)
    deadline = time.monotonic() + WAIT
    while api.count("kubearmorpolicies", watch=True) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    api.create(ksp("second"))
    recorder.wait_for(("ADDED", "KubeArmorPolicy", "second"))
    watches = api.requests("kubearmorpolicies", watch=True)
    assert len(watches) >= 2 and watches[1].query["resourceVersion"] == resume_at
    assert api.count("kubearmorpolicies", watch=False) == 1


def test_gone_lists_again_and_reports_what_changed_meanwhile(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """After 410 Gone the Watcher lists again and turns the difference into events, deletions included."""
    for name in ("deleted", "changed", "recreated", "kept"):
        api.create(ksp(name))
    _watcher, recorder = synced(watch)
    mark = len(recorder.events)
    old_uid = api.get("KubeArmorPolicy", "recreated", "web")["metadata"]["uid"]
    with api.outage():
        api.delete("KubeArmorPolicy", "deleted", "web")
        changed = api.get("KubeArmorPolicy", "changed", "web")
        api.replace({**changed, "spec": ksp("changed", path="/usr/bin/curl")["spec"]})
        api.delete("KubeArmorPolicy", "recreated", "web")
        api.create(ksp("recreated"))
        api.create(ksp("added"))
        api.compact()
    expected = [
        ("DELETED", "KubeArmorPolicy", "deleted"),
        ("DELETED", "KubeArmorPolicy", "recreated"),
        ("ADDED", "KubeArmorPolicy", "added"),
        ("MODIFIED", "KubeArmorPolicy", "changed"),
        ("ADDED", "KubeArmorPolicy", "recreated"),
    ]
    events = recorder.wait_for(*expected, start=mark)
    time.sleep(FAST.backoff_max)
    assert recorder.seen(mark) == expected  # deletions first, then the list in key order; "kept" unchanged
    assert events[1].obj["metadata"]["uid"] == old_uid != events[4].obj["metadata"]["uid"]
    assert events[0].obj.keys() == {"apiVersion", "kind", "metadata"}  # a deletion found so: the identity remembered
    assert events[0].obj["metadata"].keys() == {"name", "namespace", "uid", "resourceVersion"}
    assert events[3].obj["spec"]["process"]["matchPaths"] == [{"path": "/usr/bin/curl"}]
    assert api.count("kubearmorpolicies", watch=False) == 2
    assert api.count("pods", watch=False) == 2  # every resource's history was compacted


def test_bookmarks_move_the_resume_point(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """A bookmark lets a watch of an unchanged resource resume after compaction instead of listing again."""
    api.create(ksp("quiet"))
    _watcher, recorder = synced(watch)
    listed_at = str(api.resource_version)
    for name in ("a", "b", "c"):
        api.create(namespace(name))  # the policies' watch sees none of these
    recorder.wait_for(("ADDED", "Namespace", "c"))
    api.wait_watching("kubearmorpolicies")
    bookmarked_at = str(api.send_bookmarks())
    with api.outage():
        api.compact()  # listed_at is gone now; bookmarked_at is not
    mark = len(recorder.events)
    api.create(ksp("after"))
    recorder.wait_for(("ADDED", "KubeArmorPolicy", "after"), start=mark)
    resumed = api.requests("kubearmorpolicies", watch=True)
    assert listed_at != bookmarked_at
    assert resumed[0].query["resourceVersion"] == listed_at
    assert resumed[-1].query["resourceVersion"] == bookmarked_at
    assert api.count("kubearmorpolicies", watch=False) == 1


def test_an_api_server_down_at_start_is_retried_until_it_answers(caplog: pytest.LogCaptureFixture) -> None:
    """Refused connections are logged and retried with back-off; once the server listens, everything arrives."""
    caplog.set_level(logging.WARNING, logger="adapter.watcher")
    server = FakeKubeAPI()  # bound, not listening: connections are refused
    recorder = Recorder()
    watcher = Watcher(server.api_client(), node_name=NODE, sink=recorder, settings=FAST).start()
    try:
        deadline = time.monotonic() + WAIT
        while not any("list/watch failed" in r.message for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any("list/watch failed" in r.message for r in caplog.records)
        assert not watcher.wait_synced(0)
        server.create(ksp("block-apt"))
        server.start()
        assert watcher.wait_synced(WAIT)
        assert recorder.seen() == [("ADDED", "KubeArmorPolicy", "block-apt")]
    finally:
        assert watcher.stop()
        server.close()


def test_a_failing_sink_does_not_stop_the_watch(api: FakeKubeAPI, watch: Callable[..., Any]) -> None:
    """An exception from the sink is logged; the events after it still arrive."""
    _watcher, recorder = watch(recorder=Recorder(fail_first=1))
    api.create(ksp("first"))
    api.create(ksp("second"))
    recorder.wait_for(("ADDED", "KubeArmorPolicy", "second"))
    assert recorder.seen() == [("ADDED", "KubeArmorPolicy", "first"), ("ADDED", "KubeArmorPolicy", "second")]
    assert api.count("kubearmorpolicies", watch=False) == 1


# Stopping


@pytest.mark.parametrize(
    "serving",
    [pytest.param(True, id="while-watching"), pytest.param(False, id="while-backing-off")],
)
def test_stop_is_prompt(serving: bool) -> None:
    """stop() ends every thread at once, whether it is reading a long watch or waiting out a long back-off."""
    server = FakeKubeAPI()
    if serving:
        server.start()
    slow = WatchSettings(timeout_seconds=60, request_timeout=60.0, backoff_initial=30.0, backoff_max=60.0)
    watcher = Watcher(server.api_client(), node_name=NODE, sink=Recorder(), settings=slow).start()
    try:
        if serving:
            assert watcher.wait_synced(WAIT)
            server.wait_watching("pods")
        else:
            assert not watcher.wait_synced(0.2)  # into the first back-off
        began = time.monotonic()
        assert watcher.stop(timeout=WAIT)
        assert time.monotonic() - began < 1.0  # against a 60 s watch or a 30 s back-off
        assert not [t.name for t in threading.enumerate() if t.name.startswith("watch-")]
    finally:
        server.close()


# Connecting


def test_a_kubeconfig_given_is_used(api: FakeKubeAPI, tmp_path: Path) -> None:
    """load_api_client(path) talks to the server the kubeconfig names."""
    api.create(namespace("web"))
    client = load_api_client(api.write_kubeconfig(tmp_path / "config"))
    recorder = Recorder()
    watcher = Watcher(client, node_name=NODE, sink=recorder, settings=FAST).start()
    try:
        assert watcher.wait_synced(WAIT)
        assert recorder.seen() == [("ADDED", "Namespace", "web")]
    finally:
        assert watcher.stop()


def test_without_a_kubeconfig_in_a_pod_the_service_account_is_used(
    api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_api_client(None) in a pod takes the service account; a kubeconfig given still wins."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api.write_kubeconfig(tmp_path / "config")
    try:
        host = load_api_client(None).configuration.host
    except ConfigException as error:  # no service account token on this machine
        assert "token" in str(error)
    else:
        assert host == "https://10.96.0.1:443"
    assert load_api_client(tmp_path / "config").configuration.host == api.url
