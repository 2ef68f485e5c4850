"""deploy/: the manifests parse, grant exactly what the daemon reads, mount only what it dials, ship our CRDs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import models

from adapter import schema
from adapter.cri import RUNTIME_SOCKETS
from adapter.discovery import MONITOR_ROOTS
from adapter.kube_resources import WATCHED, KubeResource
from kadapter_api.channel_security import DEFAULT_DIRECTORY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAMESPACE = "kadapter"
# The shims' monitor roots and the Go runtime's hybrid-vsock VMM directories (runtime-rs keeps its in /run/kata).
KATA_DIRS = {str(root) for root in MONITOR_ROOTS} | {"/run/vc/vm", "/run/vc/firecracker"}
# The directories of the CRI runtimes' sockets; /var/run is /run on nodes and in the image.
CRI_DIRS = {str(socket.parent).removeprefix("/var") for socket in RUNTIME_SOCKETS}
READ_VERBS = {"get", "list", "watch"}
MANIFESTS = sorted(DEPLOY.glob("*.yaml")) + sorted((DEPLOY / "crds").glob("*.yaml"))  # crds is a link: no "**"


def _load(path: Path) -> list[dict[str, Any]]:
    """Parse a file's YAML documents, skipping empty ones."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _only(kind: str) -> dict[str, Any]:
    """Return the one object of a kind in deploy/*.yaml."""
    (found,) = (doc for path in DEPLOY.glob("*.yaml") for doc in _load(path) if doc["kind"] == kind)
    return found


def _container() -> dict[str, Any]:
    """Return the DaemonSet's one container."""
    (container,) = _only("DaemonSet")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.relative_to(DEPLOY).as_posix())
def test_every_manifest_parses(path: Path) -> None:
    """Each YAML file under deploy/, the CRDs included, is a stream of Kubernetes objects."""
    docs = _load(path)
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        assert doc["metadata"]["name"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.relative_to(DEPLOY).as_posix())
def test_manifests_use_only_fields_the_api_knows(path: Path) -> None:
    """Every field is one the Kubernetes API defines there (the client's models), so no typo is silently dropped."""
    for doc in _load(path):
        assert hasattr(models, f"V1{doc['kind']}")
        assert _unknown_fields(doc, f"V1{doc['kind']}", doc["kind"]) == []


def _unknown_fields(value: object, type_name: str, where: str) -> list[str]:
    """List the fields of a value that its API type (as the kubernetes client's models name it) does not have."""
    # list[T] or List[T], dict(str, T) or Dict[str, T], as the client's versions spell them
    element = re.fullmatch(r"(?:list\[|dict[(\[]str, )(.+)[\])]", type_name, flags=re.IGNORECASE)
    if element:
        items = enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else ()
        return [error for key, item in items for error in _unknown_fields(item, element[1], f"{where}[{key}]")]
    model = getattr(models, type_name, None)
    if model is None or not isinstance(value, dict):
        return []  # a scalar, or a free-form object such as an IntOrString or a JSON schema default
    attributes = {field: attribute for attribute, field in model.attribute_map.items()}
    return [
        error
        for key, item in value.items()
        for error in (
            _unknown_fields(item, model.openapi_types[attributes[key]], f"{where}.{key}")
            if key in attributes
            else [f"{where}.{key}"]
        )
    ]


def test_the_daemon_has_its_namespace_account_and_binding() -> None:
    """The DaemonSet runs as a ServiceAccount of the kadapter namespace that is bound to the ClusterRole."""
    assert _only("Namespace")["metadata"]["name"] == NAMESPACE
    account = _only("ServiceAccount")["metadata"]
    assert account["namespace"] == NAMESPACE
    binding = _only("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": _only("ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}]
    daemonset = _only("DaemonSet")
    assert daemonset["metadata"]["namespace"] == NAMESPACE
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]


def test_cluster_role_grants_exactly_reading_the_watched_resources() -> None:
    """get, list and watch on each resource adapter/kube_resources.py names, and nothing else at all."""
    granted = set()
    for rule in _only("ClusterRole")["rules"]:
        assert rule.keys() == {"apiGroups", "resources", "verbs"}, "no resourceNames, nonResourceURLs"
        granted |= {
            (group, resource, verb)
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    assert granted == {(resource.group, resource.plural, verb) for resource in WATCHED for verb in READ_VERBS}


def test_daemonset_mounts_only_kata_and_cri_directories_read_only_at_their_host_paths() -> None:
    """hostPath volumes are Kata's runtime directories and the CRI runtimes' socket directories, read-only.

    Each is mounted where the shims' answers and adapter/cri.py's defaults name it, created when missing (a node
    runs one runtime), and follows the host's mounts so that new sandboxes are seen and old mounts can go.
    """
    pod = _only("DaemonSet")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume["hostPath"] for volume in pod["volumes"] if "hostPath" in volume}
    assert {volume["path"] for volume in volumes.values()} == KATA_DIRS | CRI_DIRS
    mounts = {mount["name"]: mount for mount in _container()["volumeMounts"]}
    for name, volume in volumes.items():
        assert volume["type"] == "DirectoryOrCreate"
        assert mounts[name]["mountPath"] == volume["path"]
        assert mounts[name]["readOnly"] is True
        assert mounts[name]["mountPropagation"] == "HostToContainer"
    assert not any(key in pod for key in ("hostNetwork", "hostPID", "hostIPC"))


def test_daemonset_runs_the_node_daemon_with_its_node_metrics_and_probes() -> None:
    """`kadapter run`, NODE_NAME from the downward API, port 9464 named metrics probed over HTTP, bounded resources."""
    container = _container()
    assert container["command"] == ["kadapter", "run"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in container["env"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    assert container["resources"]["requests"].keys() == container["resources"]["limits"].keys() == {"cpu", "memory"}
    assert {"operator": "Exists"} in _only("DaemonSet")["spec"]["template"]["spec"]["tolerations"]


def test_daemonset_dials_agents_with_the_adapter_credentials_from_a_secret() -> None:
    """The Secret `kadapter credentials` fills is mounted where `kadapter run` reads it, its key owner-only."""
    pod = _only("DaemonSet")["spec"]["template"]["spec"]
    (volume,) = [volume for volume in pod["volumes"] if "secret" in volume]
    assert volume["secret"] == {"secretName": "kadapter-tls", "defaultMode": 0o400}
    mounts = {mount["name"]: mount for mount in _container()["volumeMounts"]}
    assert mounts[volume["name"]] == {"name": volume["name"], "mountPath": str(DEFAULT_DIRECTORY), "readOnly": True}


def test_daemonset_is_root_without_privilege_or_capabilities() -> None:
    """Root only to own the Kata sockets: not privileged, no capabilities, no escalation, read-only root."""
    context = _container()["securityContext"]
    assert context["runAsUser"] == 0
    assert context["privileged"] is False
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_deployed_crds_are_the_ones_validation_loads() -> None:
    """deploy/crds holds exactly the CRDs adapter/schema.py validates policies against."""
    deployed = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted((DEPLOY / "crds").glob("*.yaml"))]
    assert {crd["spec"]["names"]["kind"]: crd for crd in deployed} == schema.crds()


@pytest.mark.parametrize(
    "resource", [resource for resource in WATCHED if resource.group == "security.kubearmor.com"], ids=lambda r: r.kind
)
def test_watched_policy_resources_are_the_crds(resource: KubeResource) -> None:
    """The policy kinds the daemon watches are served as the CRDs define them: group, version, plural, scope."""
    spec = schema.crds()[resource.kind]["spec"]
    assert (spec["group"], spec["names"]["plural"], spec["scope"] == "Namespaced") == (
        resource.group,
        resource.plural,
        resource.namespaced,
    )
    assert [version["name"] for version in spec["versions"] if version["served"]] == [resource.version]


def test_image_generates_every_proto() -> None:
    """The image builds the gRPC modules of every .proto, since git keeps only the .proto files."""
    protos = sorted(path.relative_to(DEPLOY.parent).as_posix() for path in DEPLOY.parent.glob("kadapter_api/*.proto"))
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert protos
    assert all(proto in dockerfile for proto in protos)
