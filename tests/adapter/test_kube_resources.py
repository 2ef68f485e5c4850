# SPDX-License-Identifier: Apache-2.0
"""What the Watcher keeps of each object (adapter/kube_resources.py): all the daemon's decisions read, no more.

Each object here is as a real cluster serves it, with what controllers, the kubelet and `kubectl apply`
add. A Manager fed the kept fields must decide exactly as one fed the whole objects: the same Kata pods,
policies, postures and generations, and the same refusals, field paths included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from adapter import kube_resources
from adapter.events import EventType, Resource, WatchEvent
from adapter.kube_resources import IDENTITY, WATCHED, KubeResource, project
from adapter.manager import GenerationIssuer, Manager

Body = dict[str, Any]
MANAGED_FIELDS = [
    {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:00Z",
     "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}}, "f:spec": {}}},
]  # fmt: skip
TIME = "2025-01-01T00:00:00Z"


def _metadata(name: str, namespace: str | None = None, **fields: Any) -> Body:
    """Build metadata with everything the API server and its clients add."""
    found = {
        "name": name, "uid": f"uid-{name}", "resourceVersion": "42", "generation": 3, "creationTimestamp": TIME,
        "managedFields": MANAGED_FIELDS, "finalizers": ["example.com/keep"], **fields,
    }  # fmt: skip
    return found if namespace is None else {**found, "namespace": namespace}


def _container(name: str) -> Body:
    """Build a container with what a Deployment's pod template usually has."""
    return {
        "name": name, "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{index}", "value": f"value-{index}"} for index in range(5)],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
    }  # fmt: skip


def full_pod(
    name: str, *, runtime_class: str = "kata", labels: dict[str, str] | None = None, phase: str = "Running"
) -> Body:
    """Build a Pod as the API server serves a Deployment's pod, with an init container and a sidecar."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(
            name, "web", labels={"app": "nginx", "pod-template-hash": "7d4b9c8f6", **(labels or {})},
            annotations={"kubectl.kubernetes.io/restartedAt": TIME, "prometheus.io/scrape": "true"},
            generateName="nginx-7d4b9c8f6-",
            ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "nginx-7d4b9c8f6", "uid": "rs"}],
        ),
        "spec": {
            "nodeName": "node-1", "runtimeClassName": runtime_class, "serviceAccountName": "default",
            "initContainers": [_container("init")], "containers": [_container("app"), _container("sidecar")],
            "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
        },
        "status": {
            "phase": phase, "podIP": "10.244.1.17", "startTime": TIME, "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": TIME}],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0, "image": "nginx:1.27"}],
        },
    }  # fmt: skip


def full_namespace(name: str, **annotations: str) -> Body:
    """Build a Namespace with labels, annotations, finalizers and a status."""
    metadata = _metadata(name, labels={"kubernetes.io/metadata.name": name, "team": "web"}, annotations=annotations)
    return {
        "apiVersion": "v1", "kind": "Namespace", "metadata": metadata,
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
    }  # fmt: skip


def full_runtime_class(name: str, handler: str) -> Body:
    """Build a RuntimeClass with an overhead and a scheduling section, as Kata's installer writes it."""
    return {
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": _metadata(name), "handler": handler,
        "overhead": {"podFixed": {"cpu": "250m", "memory": "160Mi"}},
        "scheduling": {"nodeSelector": {"katacontainers.io/kata-runtime": "true"}},
    }  # fmt: skip


def _applied(policy: Body) -> Body:
    """Give a policy what `kubectl apply` and KubeArmor add: its text in an annotation, managedFields, a status."""
    text = json.dumps(policy, separators=(",", ":"))
    metadata = _metadata(
        policy["metadata"]["name"],
        policy["metadata"].get("namespace"),
        labels={"owner": "security"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": text},
    )
    return {**policy, "metadata": metadata, "status": {"status": "OK"}}


def full_policy(name: str, spec: Body) -> Body:
    """Build a KubeArmorPolicy of namespace web, as applied."""
    metadata = {"name": name, "namespace": "web"}
    return _applied({"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy", "metadata": metadata,
                     "spec": spec})  # fmt: skip


def full_cluster_policy(name: str, spec: Body) -> Body:
    """Build a KubeArmorClusterPolicy, as applied."""
    return _applied({"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorClusterPolicy",
                     "metadata": {"name": name}, "spec": spec})  # fmt: skip


BLOCK_APT = {"selector": {"matchLabels": {"app": "nginx"}}, "process": {"matchPaths": [{"path": "/usr/bin/apt"}]}}
SIDECAR_ONLY = {
    "selector": {"matchLabels": {"app": "nginx", "kubearmor.io/container.name": "[sidecar]"}},
    "file": {"matchDirectories": [{"dir": "/etc/", "recursive": True}]},
    "action": "Audit",
}
NAMESPACES_WEB = {
    "selector": {"matchExpressions": [{"key": "namespace", "operator": "In", "values": ["web"]}]},
    "network": {"matchProtocols": [{"protocol": "raw"}]},
}
CLUSTER: list[Body] = [
    full_runtime_class("kata", "kata-qemu"),
    full_runtime_class("runc", "runc"),
    full_namespace("web", **{"kubearmor-file-posture": "audit", "kubearmor-network-posture": "block"}),
    full_policy("block-apt", BLOCK_APT),
    full_policy("sidecar-only", SIDECAR_ONLY),
    full_cluster_policy("no-raw", NAMESPACES_WEB),
    full_pod("front"),
    full_pod("canary", labels={"app": "canary"}),
    full_pod("plain", runtime_class="runc"),
    full_pod("done", phase="Succeeded"),
]


def _resource(obj: Body) -> KubeResource:
    """Name the watched resource of an object."""
    (resource,) = (resource for resource in WATCHED if resource.kind == obj["kind"])
    return resource


def _events(change: EventType, objects: list[Body], keep: Callable[[Body], Body]) -> list[WatchEvent]:
    """Make one event of each object, as keep leaves it."""
    return [WatchEvent(Resource(obj["kind"]), change, keep(obj)) for obj in objects]


def _decisions(*events: WatchEvent) -> tuple[dict[Any, Any], dict[str, str]]:
    """Feed a fresh Manager the events; return its desired sets and its refusals."""
    manager = Manager(default_posture="block", generations=GenerationIssuer(clock=lambda: 0))
    for event in events:
        manager.apply(event)
    return dict(manager.pods()), {str(ref): str(error) for ref, error in manager.errors().items()}


def _kept(obj: Body) -> Body:
    """Project an object as the Watcher does."""
    return _resource(obj).project(obj)


def _whole(obj: Body) -> Body:
    """Leave an object whole."""
    return obj


def test_the_manager_decides_the_same_on_what_is_kept() -> None:
    """Kata pods, the policies selecting each (by label, container name and namespace), postures, generations."""
    kept, whole = _decisions(*_events("ADDED", CLUSTER, _kept)), _decisions(*_events("ADDED", CLUSTER, _whole))
    assert kept == whole
    desired, refused = kept
    assert refused == {}
    policies = {item.pod.name: sorted(entry.policy.name for entry in item.policies) for item in desired.values()}
    assert policies == {"front": ["block-apt", "no-raw", "sidecar-only"], "canary": ["no-raw"]}
    (front,) = (item for item in desired.values() if item.pod.name == "front")
    assert front.pod.containers == ("app", "sidecar", "init")
    assert dict(front.pod.annotations) == full_pod("front")["metadata"]["annotations"]
    assert (front.postures.file, front.postures.network) == ("audit", "block")


def test_a_deletion_with_only_the_identity_is_read_as_one_of_the_whole_object() -> None:
    """A relist reports deletions with what the Watcher remembers (IDENTITY); the Manager needs no more."""
    gone = [obj for obj in CLUSTER if obj["metadata"]["name"] in ("front", "block-apt", "web")]
    added = _events("ADDED", CLUSTER, _kept)
    identity = _decisions(*added, *_events("DELETED", gone, lambda obj: project(obj, IDENTITY)))
    whole = _decisions(*added, *_events("DELETED", gone, _whole))
    assert identity == whole
    (canary,) = identity[0].values()
    assert canary.pod.name == "canary"
    assert canary.postures.file == "block"  # its namespace's annotations are gone with it


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            full_pod("front"),
            {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": "front", "namespace": "web", "uid": "uid-front", "resourceVersion": "42",
                    "labels": full_pod("front")["metadata"]["labels"],
                    "annotations": full_pod("front")["metadata"]["annotations"],
                },
                "spec": {
                    "runtimeClassName": "kata",
                    "containers": [{"name": "app"}, {"name": "sidecar"}], "initContainers": [{"name": "init"}],
                },
                "status": {"phase": "Running"},
            },
            id="pod",
        ),
        pytest.param(
            full_namespace("web", **{"kubearmor-file-posture": "audit"}),
            {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {
                    "name": "web", "uid": "uid-web", "resourceVersion": "42",
                    "labels": {"kubernetes.io/metadata.name": "web", "team": "web"},
                    "annotations": {"kubearmor-file-posture": "audit"},
                },
            },
            id="namespace",
        ),
        pytest.param(
            full_runtime_class("kata", "kata-qemu"),
            {
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "kata", "uid": "uid-kata", "resourceVersion": "42"}, "handler": "kata-qemu",
            },
            id="runtime-class",
        ),
        pytest.param(
            full_policy("block-apt", BLOCK_APT),
            {
                "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy",
                "metadata": {"name": "block-apt", "namespace": "web", "uid": "uid-block-apt", "resourceVersion": "42"},
                "spec": BLOCK_APT, "status": {"status": "OK"},
            },
            id="policy",
        ),
        pytest.param(
            full_cluster_policy("no-raw", NAMESPACES_WEB),
            {
                "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorClusterPolicy",
                "metadata": {"name": "no-raw", "uid": "uid-no-raw", "resourceVersion": "42"},
                "spec": NAMESPACES_WEB, "status": {"status": "OK"},
            },
            id="cluster-policy",
        ),
    ],
)  # fmt: skip
def test_each_kind_keeps_only_the_fields_read(obj: Body, expected: Body) -> None:
    """managedFields, ownerReferences, env, volumes, probes, conditions, last-applied text and the like are dropped."""
    assert _kept(obj) == expected


def _broken(obj: Body, path: str, value: Any) -> Body:
    """Return a copy of an object with the field at a dotted path (list indexes as numbers) set to value."""
    broken = json.loads(json.dumps(obj))
    *parents, last = path.split(".")
    target = broken
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[int(last) if isinstance(target, list) else last] = value
    return broken


@pytest.mark.parametrize(
    ("obj", "path", "value"),
    [
        (full_pod("front"), "spec", ["not", "a", "mapping"]),
        (full_pod("front"), "spec.containers", {"name": "app"}),
        (full_pod("front"), "spec.containers", []),
        (full_pod("front"), "spec.containers.1", "sidecar"),
        (full_pod("front"), "spec.containers.1", {"image": "nginx:1.27"}),
        (full_pod("front"), "spec.containers.1.name", "app"),
        (full_pod("front"), "spec.initContainers.0.name", "Not_A_Label"),
        (full_pod("front"), "spec.runtimeClassName", 7),
        (full_pod("front"), "metadata.labels", ["app=nginx"]),
        (full_pod("front"), "metadata.annotations.note", 7),
        (full_namespace("web"), "metadata.annotations", {"kubearmor-file-posture": "allow"}),
        (full_runtime_class("kata", "kata-qemu"), "handler", "Kata_QEMU"),
        (full_policy("block-apt", BLOCK_APT), "spec.action", "Deny"),
        (full_policy("block-apt", BLOCK_APT), "spec.process.unknown", True),
        (full_policy("block-apt", BLOCK_APT), "status.status", 7),
        (full_cluster_policy("no-raw", NAMESPACES_WEB), "spec.selector.matchLabels", {"app": "nginx"}),
    ],
    ids=lambda value: value["kind"] if isinstance(value, dict) and "kind" in value else None,
)
def test_an_invalid_object_is_refused_as_when_whole(obj: Body, path: str, value: Any) -> None:
    """An object the parsers refuse is refused the same way, field path and reason, whatever shape it has."""
    objects = [*CLUSTER, _broken(obj, path, value)]
    kept, whole = _decisions(*_events("ADDED", objects, _kept)), _decisions(*_events("ADDED", objects, _whole))
    assert kept[1] == whole[1]
    assert len(kept[1]) == 1


def test_project_keeps_only_the_named_fields_and_any_other_shape_whole() -> None:
    """Named fields are kept (all of a None one), inside each mapping of a list; anything else stays as it is."""
    fields = {"keep": None, "inside": {"name": None}, "absent": None}
    value = {"keep": {"all": [1, 2]}, "inside": [{"name": "a", "drop": 1}, "text", [{"name": "b"}]], "drop": 3}
    assert project(value, fields) == {"keep": {"all": [1, 2]}, "inside": [{"name": "a"}, "text", [{"name": "b"}]]}
    assert project({"inside": "text"}, fields) == {"inside": "text"}
    assert project("text", fields) == "text"


def test_every_watched_resource_keeps_what_the_watcher_itself_reads() -> None:
    """Name, namespace, uid and resourceVersion: to key objects, tell re-created ones apart and resume."""
    for resource in kube_resources.WATCHED:
        metadata = resource.fields["metadata"]
        assert metadata is not None
        assert {"name", "namespace", "uid", "resourceVersion"} <= metadata.keys(), resource.kind
        assert {"apiVersion", "kind"} <= resource.fields.keys(), resource.kind
