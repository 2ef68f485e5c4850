# SPDX-License-Identifier: Apache-2.0
"""The API server double keeps the list/watch protocol as the real kubernetes client (unpatched) expects it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.kube_api import FakeKubeAPI

Body = dict[str, Any]
GROUP, VERSION = "security.kubearmor.com", "v1"


def pod(name: str, *, node: str = "node-1", namespace: str = "web") -> Body:
    """Build a Pod scheduled to a node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
    }


def ksp(name: str, namespace: str = "web") -> Body:
    """Build a KubeArmorPolicy."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KubeArmorPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"process": {"matchPaths": [{"path": "/usr/bin/apt"}]}},
    }


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    """Serve an empty API server double."""
    with FakeKubeAPI() as server:
        yield server


@pytest.fixture
def core(api: FakeKubeAPI) -> client.CoreV1Api:
    """Talk to the double through the client's core API."""
    return client.CoreV1Api(api.api_client())


def raw(response: Any) -> Body:
    """Read a response asked for with _preload_content=False."""
    return json.loads(response.data)


def stream(api: FakeKubeAPI, count: int, **query: Any) -> list[Body]:
    """Watch pods with the client's Watch and return the first ``count`` events (type and raw object)."""
    events = []
    watcher = watch.Watch(return_type=object)
    for event in watcher.stream(client.CoreV1Api(api.api_client()).list_pod_for_all_namespaces, **query):
        events.append({"type": event["type"], "object": event["raw_object"]})
        if len(events) == count:
            watcher.stop()
    return events


# Lists and objects


def test_a_list_is_an_xlist_at_the_current_version_whose_built_in_items_lack_type_meta(
    api: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    """Listed pods come in a PodList at the latest version, without apiVersion and kind; custom objects keep theirs."""
    api.create(pod("b"))
    api.create(pod("a", namespace="default"))
    api.create(ksp("block-apt"))
    listing = raw(core.list_pod_for_all_namespaces(_preload_content=False))
    assert (listing["kind"], listing["apiVersion"]) == ("PodList", "v1")
    assert listing["metadata"]["resourceVersion"] == str(api.resource_version)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listing["items"]] == [
        ("default", "a"),
        ("web", "b"),
    ]
    assert not {"apiVersion", "kind"} & listing["items"][0].keys()
    typed = core.list_pod_for_all_namespaces()  # the client's own models read it too
    assert [item.metadata.name for item in typed.items] == ["a", "b"]
    policies = client.CustomObjectsApi(api.api_client()).list_cluster_custom_object(GROUP, VERSION, "kubearmorpolicies")
    assert policies["kind"] == "KubeArmorPolicyList"
    assert policies["items"][0]["kind"] == "KubeArmorPolicy"


def test_one_resource_version_counts_every_change_of_every_kind(api: FakeKubeAPI) -> None:
    """Creating, replacing and deleting objects of any kind each take the next resourceVersion, as in etcd."""
    first = api.create(pod("a"))
    second = api.create(ksp("block-apt"))
    replaced = api.replace({**first, "spec": {**first["spec"], "containers": [{"name": "other"}]}})
    deleted = api.delete("KubeArmorPolicy", "block-apt", "web")
    versions = [int(obj["metadata"]["resourceVersion"]) for obj in (first, second, replaced, deleted)]
    assert versions == list(range(versions[0], versions[0] + 4))
    assert api.resource_version == versions[-1]
    assert replaced["metadata"]["uid"] == first["metadata"]["uid"] != second["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]


def test_objects_are_created_replaced_and_deleted_over_http(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    """POST, PUT and DELETE through the client work, and conflicts and missing objects get their Status codes."""
    custom = client.CustomObjectsApi(api.api_client())
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "web", "kubearmorpolicies", ksp("block-apt"))
    assert created["metadata"]["uid"]
    with pytest.raises(ApiException) as conflict:
        custom.create_namespaced_custom_object(GROUP, VERSION, "web", "kubearmorpolicies", ksp("block-apt"))
    assert (conflict.value.status, json.loads(conflict.value.body)["reason"]) == (409, "AlreadyExists")
    created["spec"]["action"] = "Audit"
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, "web", "kubearmorpolicies", "block-apt", created)
    assert api.get("KubeArmorPolicy", "block-apt", "web")["spec"]["action"] == "Audit" == replaced["spec"]["action"]
    with pytest.raises(ApiException) as stale:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "web", "kubearmorpolicies", "block-apt", created)
    assert stale.value.status == 409
    core.create_namespaced_pod("web", pod("a"))
    assert core.read_namespaced_pod("a", "web").spec.node_name == "node-1"
    core.delete_namespaced_pod("a", "web", _preload_content=False)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("a", "web")
    assert missing.value.status == 404


def test_selectors_narrow_lists_by_namespace_and_field(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    """A namespaced path and fieldSelector (spec.nodeName, metadata.name, = and !=) pick what a list holds."""
    for obj in (pod("a"), pod("b", node="node-2"), pod("c", namespace="other")):
        api.create(obj)

    def names(response: Any) -> list[str]:
        return [item["metadata"]["name"] for item in raw(response)["items"]]

    assert names(core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1", _preload_content=False)) == [
        "c",
        "a",
    ]
    assert names(core.list_namespaced_pod("web", _preload_content=False)) == ["a", "b"]
    assert names(core.list_pod_for_all_namespaces(field_selector="metadata.name==b", _preload_content=False)) == ["b"]
    selector = "spec.nodeName!=node-2,metadata.namespace=web"
    assert names(core.list_pod_for_all_namespaces(field_selector=selector, _preload_content=False)) == ["a"]
    with pytest.raises(ApiException) as refused:
        core.list_pod_for_all_namespaces(label_selector="app=nginx")
    assert refused.value.status == 400  # not implemented, so never silently ignored


def test_a_list_in_pages_reads_one_snapshot_until_compaction_expires_it(
    api: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    """limit gives a page and a continue token; later pages come from the first page's snapshot, not the store."""
    for name in ("a", "b", "c", "d", "e"):
        api.create(pod(name))
    first = raw(core.list_pod_for_all_namespaces(limit=2, _preload_content=False))
    version = first["metadata"]["resourceVersion"]
    api.create(pod("aa"))  # after the snapshot, and before its next page in key order: not listed
    api.delete("Pod", "d", "web")  # deleted since: still listed
    api.replace({**api.get("Pod", "e", "web"), "spec": {"nodeName": "node-2", "containers": [{"name": "new"}]}})
    pages = [first]
    while token := pages[-1]["metadata"].get("continue"):
        pages.append(raw(core.list_pod_for_all_namespaces(limit=2, _continue=token, _preload_content=False)))
    assert [[item["metadata"]["name"] for item in page["items"]] for page in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert {page["metadata"]["resourceVersion"] for page in pages} == {version}
    assert pages[-1]["items"][0]["spec"]["containers"] == [{"name": "app", "image": "nginx"}]  # e as it was
    listed = raw(core.list_pod_for_all_namespaces(limit=10, _preload_content=False))
    assert "continue" not in listed["metadata"]
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "aa", "b", "c", "e"]
    api.compact()
    with pytest.raises(ApiException) as gone:
        core.list_pod_for_all_namespaces(limit=2, _continue=first["metadata"]["continue"])
    assert (gone.value.status, json.loads(gone.value.body)["reason"]) == (410, "Expired")


# Watches


def test_a_watch_replays_the_changes_after_its_version_in_order(api: FakeKubeAPI) -> None:
    """Watching from a resourceVersion sends exactly the later changes to that resource, each with its version."""
    first = api.create(pod("a"))
    api.create(ksp("block-apt"))  # another resource: not in the pods' watch
    api.create(pod("b"))
    api.replace({**first, "metadata": {**first["metadata"], "labels": {"app": "nginx"}}})
    api.delete("Pod", "b", "web")
    events = stream(api, 3, resource_version=first["metadata"]["resourceVersion"], timeout_seconds=5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[-1] == api.resource_version


def test_a_watch_without_a_version_starts_with_the_current_objects(api: FakeKubeAPI) -> None:
    """resourceVersion unset means "the current state, then changes": existing objects come first, as ADDED."""
    api.create(pod("a"))
    threading.Timer(0.1, api.create, [pod("b")]).start()
    events = stream(api, 2, timeout_seconds=5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]


def test_objects_entering_and_leaving_a_watched_selection_are_added_and_deleted(api: FakeKubeAPI) -> None:
    """A change that moves an object into a fieldSelector reads as ADDED, out of it as DELETED."""
    start = str(api.resource_version)
    elsewhere = api.create(pod("a", node="node-2"))
    moved = api.replace({**elsewhere, "spec": {**elsewhere["spec"], "nodeName": "node-1"}})
    api.replace({**moved, "spec": {**moved["spec"], "nodeName": "node-3"}})
    events = stream(api, 2, resource_version=start, field_selector="spec.nodeName=node-1", timeout_seconds=5)
    assert [(e["type"], e["object"]["spec"]["nodeName"]) for e in events] == [
        ("ADDED", "node-1"),
        ("DELETED", "node-3"),
    ]


def test_a_watch_ends_cleanly_after_timeout_seconds(api: FakeKubeAPI) -> None:
    """timeoutSeconds ends the stream with a proper end of the response, not an error."""
    began = time.monotonic()
    assert stream(api, 1, resource_version=str(api.resource_version), timeout_seconds=1) == []
    assert 0.9 < time.monotonic() - began < 3


def test_a_compacted_version_is_gone(api: FakeKubeAPI) -> None:
    """A watch from a version older than the kept history gets an ERROR event: Status 410, reason Expired."""
    old = str(api.resource_version)
    api.create(pod("a"))
    api.compact()
    response = client.CoreV1Api(api.api_client()).list_pod_for_all_namespaces(
        watch=True, resource_version=old, timeout_seconds=5, _preload_content=False
    )
    (line,) = response.data.splitlines()
    error = json.loads(line)
    assert (error["type"], error["object"]["code"], error["object"]["reason"]) == ("ERROR", 410, "Expired")
    with pytest.raises(ApiException) as gone:  # and the client's Watch says so
        stream(api, 1, resource_version=old, timeout_seconds=5)
    assert gone.value.status == 410
    threading.Timer(0.1, api.create, [pod("b")]).start()
    (added,) = stream(api, 1, resource_version=str(api.resource_version), timeout_seconds=5)  # a kept version works
    assert added["object"]["metadata"]["name"] == "b"


def test_bookmarks_carry_the_current_version_to_watches_that_allow_them(api: FakeKubeAPI) -> None:
    """send_bookmarks() reaches every watch with allowWatchBookmarks, at the global version, and no other watch."""
    results: dict[bool, list[Body]] = {}

    def watch_pods(bookmarks: bool) -> None:
        query = {"allow_watch_bookmarks": True} if bookmarks else {}
        results[bookmarks] = stream(api, 1, resource_version=str(api.resource_version), timeout_seconds=1, **query)

    threads = [threading.Thread(target=watch_pods, args=(bookmarks,)) for bookmarks in (True, False)]
    for thread in threads:
        thread.start()
    while len(api.requests("pods", watch=True)) < 2:
        time.sleep(0.01)
    api.wait_watching("pods")
    api.create(ksp("elsewhere"))  # moves the global version; pods do not change
    version = api.send_bookmarks()
    for thread in threads:
        thread.join()
    assert results[True] == [
        {
            "type": "BOOKMARK",
            "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(version)}},
        }
    ]
    assert results[False] == []


# Faults and observation


def test_dropped_connections_break_open_watches(api: FakeKubeAPI) -> None:
    """drop_connections() cuts a watch mid-stream: the client sees the response end prematurely."""
    threading.Timer(0.2, api.drop_connections).start()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        stream(api, 1, resource_version=str(api.resource_version), timeout_seconds=5)


def test_an_outage_answers_503_until_it_ends(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    """Inside outage() every request gets 503 ServiceUnavailable; afterwards the server answers again."""
    with api.outage(), pytest.raises(ApiException) as down:
        core.list_namespace()
    assert down.value.status == 503
    assert core.list_namespace().items == []


def test_a_server_not_started_refuses_connections() -> None:
    """Before start() the port is bound but not listening, so a client is refused, as by a server that is down."""
    server = FakeKubeAPI()
    try:
        configuration = client.Configuration(host=server.url)
        configuration.retries = 0
        with pytest.raises(urllib3.exceptions.HTTPError):
            client.CoreV1Api(client.ApiClient(configuration)).list_namespace()
    finally:
        server.close()


def test_requests_are_recorded_as_lists_or_watches_with_their_query(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    """count() and requests() tell lists from watches per resource, with the query each was sent with."""
    core.list_namespace()
    core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1")
    api.create(pod("a"))
    stream(api, 1, timeout_seconds=5)
    assert (api.count("pods", watch=False), api.count("pods", watch=True), api.count("namespaces", watch=False)) == (
        1,
        1,
        1,
    )
    assert api.requests("pods", watch=False)[0].query == {"fieldSelector": "spec.nodeName=node-1"}
    assert api.requests("pods", watch=True)[0].query == {"timeoutSeconds": "5", "watch": "true"}
