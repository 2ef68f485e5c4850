# SPDX-License-Identifier: Apache-2.0
"""The Manager: each Kata pod's desired set from watch events, changed only where an event reaches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapter.events import ObjectRef, Resource, WatchEvent
from adapter.manager import GenerationIssuer, Manager, PodUid, kata_handlers
from adapter.pods import API_VERSIONS, Postures, is_kata_handler
from adapter.policy import API_VERSION

Obj = dict[str, Any]


def meta(name: str, namespace: str | None = None, **extra: Any) -> Obj:
    """Build metadata as the API server sends it, with the fields it adds."""
    found = {"name": name, "resourceVersion": "1", "creationTimestamp": "2024-05-01T10:00:00Z", **extra}
    return found if namespace is None else {**found, "namespace": namespace}


def pod(
    name: str,
    *,
    namespace: str = "web",
    labels: dict[str, str] | None = None,
    runtime_class: str | None = "kata",
    phase: str = "Running",
    annotations: dict[str, str] | None = None,
    version: str = "1",
) -> Obj:
    """Build a Pod as a list item from the API server: no kind or apiVersion, with status."""
    spec: Obj = {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx:1.27", "resources": {}}]}
    if runtime_class is not None:
        spec["runtimeClassName"] = runtime_class
    return {
        "metadata": meta(
            name,
            namespace,
            uid=f"uid-{name}",
            labels=labels or {},
            annotations=annotations or {},
            resourceVersion=version,
        ),
        "spec": spec,
        "status": {"phase": phase, "podIP": "10.0.0.7"},
    }


def ksp(
    name: str = "block-apt", *, namespace: str = "web", labels: dict[str, str] | None = None, path: str = "/usr/bin/apt"
) -> Obj:
    """Build a KubeArmorPolicy as the API server sends it."""
    selector = {"matchLabels": labels or {"app": "nginx"}}
    return {
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorPolicy",
        "metadata": meta(name, namespace, uid=f"uid-{name}", generation=1),
        "spec": {"selector": selector, "process": {"matchPaths": [{"path": path}]}, "action": "Block"},
        "status": {"status": "OK"},
    }


def csp(name: str, *expressions: tuple[str, list[str]]) -> Obj:
    """Build a KubeArmorClusterPolicy selecting namespaces with (operator, values) expressions."""
    match = [{"key": "namespace", "operator": operator, "values": values} for operator, values in expressions]
    return {
        "metadata": meta(name, uid=f"uid-{name}"),
        "spec": {"selector": {"matchExpressions": match}, "file": {"matchPaths": [{"path": "/etc/shadow"}]}},
    }


def namespace(name: str, annotations: dict[str, str] | None = None) -> Obj:
    """Build a Namespace as the API server sends it."""
    return {"metadata": meta(name, annotations=annotations or {}), "status": {"phase": "Active"}}


def runtime_class(name: str, handler: str) -> Obj:
    """Build a RuntimeClass as the API server sends it."""
    return {"metadata": meta(name), "handler": handler}


def added(kind: Resource, obj: Obj) -> WatchEvent:
    """Wrap an object in an ADDED event."""
    return WatchEvent(kind, "ADDED", obj)


def modified(kind: Resource, obj: Obj) -> WatchEvent:
    """Wrap an object in a MODIFIED event."""
    return WatchEvent(kind, "MODIFIED", obj)


def deleted(kind: Resource, obj: Obj) -> WatchEvent:
    """Wrap an object in a DELETED event."""
    return WatchEvent(kind, "DELETED", obj)


def uid(name: str) -> PodUid:
    """Name a test pod's uid."""
    return PodUid(f"uid-{name}")


def names(manager: Manager, pod_name: str) -> list[str]:
    """List the policies of a pod's desired set."""
    desired = manager.desired(uid(pod_name))
    assert desired is not None, f"{pod_name} has no desired set"
    return [entry.policy.name for entry in desired.policies]


def generation(manager: Manager, pod_name: str) -> int:
    """Return a pod's generation."""
    desired = manager.desired(uid(pod_name))
    assert desired is not None, f"{pod_name} has no desired set"
    return desired.generation


def feed(manager: Manager, *events: WatchEvent) -> set[PodUid]:
    """Apply events in order; return every pod reported changed."""
    changed: set[PodUid] = set()
    for event in events:
        changed |= manager.apply(event)
    return changed


@pytest.fixture
def manager() -> Manager:
    """Build a Manager with a Kata and a runc RuntimeClass and the block posture by default."""
    fresh = Manager(default_posture="block", generations=GenerationIssuer())
    feed(fresh, added(Resource.RUNTIME_CLASS, runtime_class("kata", "kata-qemu")))
    feed(fresh, added(Resource.RUNTIME_CLASS, runtime_class("runc", "runc")))
    return fresh


# --- Policies select Kata pods --------------------------------------------------------------------


def test_a_new_policy_reports_only_the_pods_it_selects(manager: Manager) -> None:
    """A policy added changes the pods it selects; pods of other labels or namespaces are not reported."""
    feed(
        manager,
        added(Resource.POD, pod("front", labels={"app": "nginx"})),
        added(Resource.POD, pod("db", labels={"app": "postgres"})),
        added(Resource.POD, pod("elsewhere", namespace="shop", labels={"app": "nginx"})),
    )
    assert manager.apply(added(Resource.KUBEARMOR_POLICY, ksp())) == {uid("front")}
    assert (names(manager, "front"), names(manager, "db"), names(manager, "elsewhere")) == (["block-apt"], [], [])


def test_a_relabelled_pod_leaves_the_policy(manager: Manager) -> None:
    """A pod whose labels no longer match loses the policy, with a new generation."""
    feed(manager, added(Resource.POD, pod("front", labels={"app": "nginx"})), added(Resource.KUBEARMOR_POLICY, ksp()))
    before = generation(manager, "front")
    assert manager.apply(modified(Resource.POD, pod("front", labels={"app": "apache"}, version="2"))) == {uid("front")}
    assert names(manager, "front") == []
    assert generation(manager, "front") > before


def test_a_deleted_policy_restores_the_pods_it_selected(manager: Manager) -> None:
    """Deleting a policy gives its pods back the set they had before it."""
    feed(manager, added(Resource.POD, pod("front", labels={"app": "nginx"})))
    feed(manager, added(Resource.KUBEARMOR_POLICY, ksp("keep")), added(Resource.KUBEARMOR_POLICY, ksp("block-apt")))
    assert manager.apply(deleted(Resource.KUBEARMOR_POLICY, ksp("block-apt"))) == {uid("front")}
    assert names(manager, "front") == ["keep"]


def test_a_runc_pod_never_appears(manager: Manager) -> None:
    """A pod under runc or without a RuntimeClass is never reported nor given a set, whatever selects it."""
    changed = feed(
        manager,
        added(Resource.POD, pod("runc-pod", labels={"app": "nginx"}, runtime_class="runc")),
        added(Resource.POD, pod("default-pod", labels={"app": "nginx"}, runtime_class=None)),
        added(Resource.KUBEARMOR_POLICY, ksp()),
        added(Resource.KUBEARMOR_CLUSTER_POLICY, csp("everywhere")),
        added(Resource.NAMESPACE, namespace("web", {"kubearmor-file-posture": "audit"})),
    )
    assert changed == set()
    assert dict(manager.pods()) == {}


@pytest.mark.parametrize(
    ("expressions", "selected"),
    [
        pytest.param([("In", ["web"])], {"front"}, id="in"),
        pytest.param([("In", ["web", "shop"])], {"front", "cart"}, id="in-several"),
        pytest.param([("NotIn", ["web"])], {"cart", "spare"}, id="not-in"),
        pytest.param([("NotIn", ["web"]), ("In", ["web"])], {"front"}, id="in-overrides-not-in"),
        pytest.param([], {"front", "cart", "spare"}, id="all-namespaces"),
    ],
)
def test_a_cluster_policy_selects_by_namespace(
    manager: Manager, expressions: list[tuple[str, list[str]]], selected: set[str]
) -> None:
    """A KubeArmorClusterPolicy's namespace In/NotIn expressions pick the pods, as KubeArmor's do."""
    feed(
        manager,
        added(Resource.POD, pod("front", namespace="web")),
        added(Resource.POD, pod("cart", namespace="shop")),
        added(Resource.POD, pod("spare", namespace="spare")),
    )
    assert manager.apply(added(Resource.KUBEARMOR_CLUSTER_POLICY, csp("shadow", *expressions))) == {
        uid(name) for name in selected
    }
    assert {name for name in ("front", "cart", "spare") if names(manager, name) == ["shadow"]} == selected


# --- Postures ---------------------------------------------------------------------------------------


def test_a_namespace_posture_annotation_changes_only_its_pods(manager: Manager) -> None:
    """A posture annotation overrides the default for its category, in its namespace's pods only."""
    feed(manager, added(Resource.POD, pod("front")), added(Resource.POD, pod("cart", namespace="shop")))
    shop = manager.desired(uid("cart"))
    annotated = namespace("web", {"kubearmor-file-posture": "audit", "owner": "team-a"})
    assert manager.apply(added(Resource.NAMESPACE, annotated)) == {uid("front")}
    front = manager.desired(uid("front"))
    assert front is not None
    assert front.postures == Postures(file="audit", network="block", capabilities="block")
    assert manager.desired(uid("cart")) == shop
    assert manager.apply(deleted(Resource.NAMESPACE, annotated)) == {uid("front")}
    assert front != manager.desired(uid("front"))


# --- Generations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(modified(Resource.POD, pod("front", labels={"app": "nginx"}, version="9")), id="pod-resync"),
        pytest.param(
            modified(Resource.POD, pod("front", labels={"app": "nginx", "tier": "web"})), id="pod-unrelated-label"
        ),
        pytest.param(modified(Resource.KUBEARMOR_POLICY, ksp()), id="policy-resync"),
        pytest.param(modified(Resource.NAMESPACE, namespace("web", {"owner": "team-b"})), id="namespace-no-posture"),
        pytest.param(added(Resource.RUNTIME_CLASS, runtime_class("kata", "kata-qemu")), id="runtime-class-resync"),
    ],
)
def test_the_same_content_keeps_its_generation(manager: Manager, event: WatchEvent) -> None:
    """An event that leaves a pod's set as it was reports nothing and keeps the generation."""
    feed(manager, added(Resource.POD, pod("front", labels={"app": "nginx"})), added(Resource.KUBEARMOR_POLICY, ksp()))
    before = manager.desired(uid("front"))
    assert manager.apply(event) == set()
    after = manager.desired(uid("front"))
    assert after is not None and before is not None
    assert (after.generation, after.digest) == (before.generation, before.digest)


def changes() -> Iterator[WatchEvent]:
    """Yield events that each change pod front's set."""
    yield added(Resource.POD, pod("front", labels={"app": "nginx"}))
    yield added(Resource.KUBEARMOR_POLICY, ksp())
    yield modified(Resource.KUBEARMOR_POLICY, ksp(path="/usr/bin/curl"))
    yield added(Resource.NAMESPACE, namespace("web", {"kubearmor-network-posture": "audit"}))
    yield modified(Resource.POD, pod("front", labels={"app": "other"}))


def test_generations_increase_with_each_change_and_across_restarts() -> None:
    """Every change gives a larger generation, and so does a new Manager replaying the same events."""
    seen = []
    for _ in range(2):  # the second Manager stands for a restarted adapter, with a fresh issuer
        restarted = Manager(default_posture="block", generations=GenerationIssuer())
        restarted.apply(added(Resource.RUNTIME_CLASS, runtime_class("kata", "kata-qemu")))
        for event in changes():
            assert restarted.apply(event) == {uid("front")}
            seen.append(generation(restarted, "front"))
    assert seen == sorted(set(seen))


@pytest.mark.parametrize(
    ("clock", "issued"),
    [
        pytest.param([100, 200, 300], [100, 200, 300], id="clock-moves"),
        pytest.param([100, 100, 100], [100, 101, 102], id="clock-stands-still"),
        pytest.param([100, 50, 400], [100, 101, 400], id="clock-steps-back"),
    ],
)
def test_the_issuer_never_repeats_or_goes_back(clock: list[int], issued: list[int]) -> None:
    """The issuer follows the clock but always returns more than it did last time."""
    ticks = iter(clock)
    issuer = GenerationIssuer(clock=lambda: next(ticks))
    assert [issuer() for _ in clock] == issued


# --- Invalid objects --------------------------------------------------------------------------------


def test_an_invalid_policy_keeps_the_previous_version_and_says_why(manager: Manager) -> None:
    """A policy that fails validation changes nothing; the error names the object until a valid version comes."""
    feed(manager, added(Resource.POD, pod("front", labels={"app": "nginx"})), added(Resource.KUBEARMOR_POLICY, ksp()))
    before = manager.desired(uid("front"))
    assert manager.apply(modified(Resource.KUBEARMOR_POLICY, ksp(path="usr/bin/apt"))) == set()
    assert manager.desired(uid("front")) == before
    ref = ObjectRef(Resource.KUBEARMOR_POLICY, "web", "block-apt")
    assert str(manager.errors()[ref]).startswith("KubeArmorPolicy web/block-apt: spec.process.matchPaths[0].path: ")
    assert manager.apply(modified(Resource.KUBEARMOR_POLICY, ksp(path="/usr/bin/curl"))) == {uid("front")}
    assert dict(manager.errors()) == {}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        pytest.param(
            added(Resource.KUBEARMOR_POLICY, ksp("never-valid", path="apt")),
            "KubeArmorPolicy web/never-valid: spec.process.matchPaths[0].path: ",
            id="policy",
        ),
        pytest.param(
            added(Resource.NAMESPACE, namespace("web", {"kubearmor-file-posture": "allow"})),
            "Namespace web: metadata.annotations.kubearmor-file-posture: expected one of audit, block, got 'allow'",
            id="namespace",
        ),
    ],
)
def test_an_invalid_first_version_adds_nothing_until_deleted(manager: Manager, event: WatchEvent, message: str) -> None:
    """An object never valid changes no pod; its error reads without a line number and goes with its deletion."""
    feed(manager, added(Resource.POD, pod("front", labels={"app": "nginx"})))
    before = manager.desired(uid("front"))
    assert manager.apply(event) == set()
    assert manager.desired(uid("front")) == before
    (error,) = manager.errors().values()
    assert str(error).startswith(message)
    assert "line" not in str(error)
    manager.apply(deleted(event.kind, dict(event.obj)))
    assert dict(manager.errors()) == {}


# --- Pods coming and going --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(deleted(Resource.POD, pod("front")), id="deleted"),
        pytest.param(modified(Resource.POD, pod("front", phase="Succeeded")), id="succeeded"),
        pytest.param(modified(Resource.POD, pod("front", phase="Failed")), id="failed"),
    ],
)
def test_a_pod_gone_is_reported_removed(manager: Manager, event: WatchEvent) -> None:
    """A deleted or finished pod is reported once, then has no desired set, so its session can go."""
    feed(manager, added(Resource.POD, pod("front")), added(Resource.POD, pod("back")))
    assert manager.apply(event) == {uid("front")}
    assert manager.desired(uid("front")) is None
    assert set(manager.pods()) == {uid("back")}
    assert manager.apply(added(Resource.KUBEARMOR_CLUSTER_POLICY, csp("shadow"))) == {uid("back")}


def test_a_pending_pod_already_has_its_set(manager: Manager) -> None:
    """A pod still Pending gets its set, so it is ready before its sandbox starts."""
    assert manager.apply(added(Resource.POD, pod("front", phase="Pending"))) == {uid("front")}


def test_a_runtime_class_created_after_the_pod_makes_it_a_kata_pod(manager: Manager) -> None:
    """The pod joins when its RuntimeClass arrives, only pods of that class are reported, and deletion keeps it."""
    assert manager.apply(added(Resource.POD, pod("secure", runtime_class="secure"))) == set()
    feed(manager, added(Resource.POD, pod("front")))
    assert manager.apply(added(Resource.RUNTIME_CLASS, runtime_class("secure", "kata-clh"))) == {uid("secure")}
    assert manager.apply(deleted(Resource.RUNTIME_CLASS, runtime_class("secure", "kata-clh"))) == set()
    assert set(manager.pods()) == {uid("secure"), uid("front")}


@pytest.mark.parametrize(
    ("handler", "kata"),
    [
        pytest.param("kata", True, id="kata"),
        pytest.param("kata-qemu", True, id="kata-qemu"),
        pytest.param("kata-clh", True, id="kata-clh"),
        pytest.param("katana", False, id="prefix-only"),
        pytest.param("runc", False, id="runc"),
        pytest.param("gvisor", False, id="gvisor"),
    ],
)
def test_the_default_handler_globs_agree_with_local_mode(handler: str, kata: bool) -> None:
    """kata_handlers('kata', 'kata-*') is local mode's is_kata_handler."""
    assert kata_handlers(("kata", "kata-*"))(handler) is is_kata_handler(handler) is kata


def test_configured_handlers_decide_which_pods_are_kata() -> None:
    """With handlers configured, only pods under those handlers are Kata pods."""
    manager = Manager(default_posture="audit", is_kata=kata_handlers(["kata-qemu"]))
    feed(
        manager,
        added(Resource.RUNTIME_CLASS, runtime_class("kata", "kata-qemu")),
        added(Resource.RUNTIME_CLASS, runtime_class("kata-clh", "kata-clh")),
        added(Resource.POD, pod("front", runtime_class="kata")),
        added(Resource.POD, pod("back", runtime_class="kata-clh")),
    )
    assert set(manager.pods()) == {uid("front")}


# --- Objects as the API server sends them -----------------------------------------------------------


def test_objects_are_read_as_the_api_server_sends_them(manager: Manager) -> None:
    """Full objects (kind, apiVersion, status) and bare list items both read; any annotation text survives."""
    text = "launch 🚀 next\x85line"
    full = {"apiVersion": "v1", "kind": "Pod", **pod("front", labels={"app": "nginx"}, annotations={"note": text})}
    feed(manager, added(Resource.POD, full), added(Resource.KUBEARMOR_POLICY, ksp()))
    desired = manager.desired(uid("front"))
    assert desired is not None
    assert dict(desired.pod.annotations) == {"note": text}
    assert names(manager, "front") == ["block-apt"]
    assert dict(manager.errors()) == {}


@pytest.mark.parametrize("resource", list(Resource), ids=lambda resource: resource.value)
def test_each_kind_is_watched_as_the_api_version_its_parser_expects(resource: Resource) -> None:
    """The apiVersion an event's kind is watched as (adapter/kube_resources.py) is the one local mode's parsers read."""
    expected = API_VERSIONS.get(resource.value, API_VERSION)
    assert resource.api_version == expected
