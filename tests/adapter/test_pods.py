# SPDX-License-Identifier: Apache-2.0
"""Reading pod manifests in local mode, and telling Kata pods from the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.errors import InputError
from adapter.pods import (
    POSTURE_ANNOTATIONS,
    Inventory,
    Namespace,
    Pod,
    Postures,
    RuntimeClass,
    is_kata_handler,
    kata_pods,
    load_manifest_dir,
    parse_manifests,
)

NGINX_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: nginx
  namespace: web
  uid: 0b6c1c5e-1111-2222-3333-444455556666
  labels:
    tier: front
    app: nginx
  annotations:
    kubearmor-policy: enabled
spec:
  runtimeClassName: kata-qemu
  initContainers:
  - name: setup
    image: busybox
  containers:
  - name: nginx
    image: nginx:1.27
  - name: sidecar
    image: busybox
"""


def pod_manifest(name: str, *, runtime_class: str | None = None, namespace: str | None = None) -> str:
    """Build a minimal Pod manifest."""
    lines = ["apiVersion: v1", "kind: Pod", "metadata:", f"  name: {name}"]
    if namespace:
        lines.append(f"  namespace: {namespace}")
    lines += ["spec:", "  containers:", "  - name: main", "    image: busybox"]
    if runtime_class:
        lines.append(f"  runtimeClassName: {runtime_class}")
    return "\n".join(lines) + "\n"


def runtime_class_manifest(name: str, handler: str) -> str:
    """Build a RuntimeClass manifest."""
    return f"apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: {name}\nhandler: {handler}\n"


def rejection(text: str) -> InputError:
    """Parse manifests that must be refused, and return the error."""
    with pytest.raises(InputError) as caught:
        parse_manifests(text, source="m.yaml")
    return caught.value


# --- parsing --------------------------------------------------------------------------------------


def test_pod_manifest_parses_every_field_selection_needs() -> None:
    """A Pod keeps namespace, name, uid, sorted labels and annotations, runtime class and container names."""
    inventory = parse_manifests(NGINX_POD, source="m.yaml")
    assert inventory.pods == (
        Pod(
            namespace="web",
            name="nginx",
            uid="0b6c1c5e-1111-2222-3333-444455556666",
            labels=(("app", "nginx"), ("tier", "front")),
            runtime_class="kata-qemu",
            containers=("nginx", "sidecar", "setup"),
            annotations=(("kubearmor-policy", "enabled"),),
        ),
    )
    assert inventory.pods[0].ref == "web/nginx"


def test_pod_defaults_for_local_manifests() -> None:
    """A bare Pod lands in 'default' with no uid, labels, annotations or runtime class."""
    (pod,) = parse_manifests(pod_manifest("bare"), source="m.yaml").pods
    assert (pod.ref, pod.uid, pod.labels, pod.annotations, pod.runtime_class) == ("default/bare", "", (), (), None)


def test_runtime_class_and_namespace_parse() -> None:
    """RuntimeClass keeps name and handler; Namespace keeps name, labels and annotations."""
    text = runtime_class_manifest("kata", "kata-qemu") + (
        "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  labels: {team: a}\n  annotations: {note: x}\n"
    )
    inventory = parse_manifests(text, source="m.yaml")
    assert inventory == Inventory(
        pods=(),
        runtime_classes=(RuntimeClass(name="kata", handler="kata-qemu"),),
        namespaces=(Namespace(name="web", labels=(("team", "a"),), annotations=(("note", "x"),)),),
    )


def namespace_manifest(annotations: str) -> str:
    """Build a Namespace manifest named web with the given flow-mapping annotations."""
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  annotations: {annotations}\n"


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param("{}", (), id="none"),
        pytest.param("{kubearmor-file-posture: audit}", (("file", "audit"),), id="file"),
        pytest.param("{kubearmor-network-posture: block}", (("network", "block"),), id="network"),
        pytest.param("{kubearmor-capabilities-posture: audit}", (("capabilities", "audit"),), id="capabilities"),
        pytest.param(
            "{kubearmor-capabilities-posture: block, kubearmor-network-posture: audit, kubearmor-file-posture: block}",
            (("file", "block"), ("network", "audit"), ("capabilities", "block")),
            id="all-three",
        ),
    ],
)
def test_namespace_posture_annotations_are_read(annotations: str, expected: tuple[tuple[str, str], ...]) -> None:
    """Each kubearmor-CATEGORY-posture annotation on a Namespace sets that category's posture, and only it."""
    (namespace,) = parse_manifests(namespace_manifest(annotations), source="m.yaml").namespaces
    assert namespace.postures == expected


def test_postures_override_only_the_categories_given() -> None:
    """A namespace's postures replace the default for their categories and leave the others alone."""
    default = Postures.everywhere("block")
    assert default == Postures(file="block", network="block", capabilities="block")
    assert default.overridden((("network", "audit"),)) == Postures(file="block", network="audit", capabilities="block")
    assert default.overridden(()) == default


def test_list_items_are_read_like_documents() -> None:
    """A kind: List, as kubectl get -o yaml prints it, contributes each of its items."""
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
  spec: {containers: [{name: c}]}
- apiVersion: node.k8s.io/v1
  kind: RuntimeClass
  metadata: {name: kata-clh}
  handler: kata-clh
metadata:
  resourceVersion: ""
"""
    inventory = parse_manifests(text, source="m.yaml")
    assert [pod.ref for pod in inventory.pods] == ["default/a"]
    assert inventory.runtime_classes == (RuntimeClass("kata-clh", "kata-clh"),)


def test_directory_merges_files_in_sorted_order(tmp_path: Path) -> None:
    """load_manifest_dir merges every YAML file, in name order."""
    (tmp_path / "2-pods.yaml").write_text(pod_manifest("b") + "---\n" + pod_manifest("a"))
    (tmp_path / "1-classes.yml").write_text(runtime_class_manifest("kata", "kata"))
    (tmp_path / "README.md").write_text("# not a manifest\n")
    inventory = load_manifest_dir(tmp_path)
    assert [pod.name for pod in inventory.pods] == ["b", "a"]
    assert [runtime_class.name for runtime_class in inventory.runtime_classes] == ["kata"]


# --- Kata detection -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        pytest.param("kata", True, id="kata"),
        pytest.param("kata-qemu", True, id="kata-qemu"),
        pytest.param("kata-clh", True, id="kata-clh"),
        pytest.param("kata-fc", True, id="kata-fc"),
        pytest.param("kata-dragonball", True, id="kata-dragonball"),
        pytest.param("kata-qemu-coco-dev", True, id="kata-qemu-coco-dev"),
        pytest.param("runc", False, id="runc"),
        pytest.param("katana", False, id="kata-prefix-without-dash"),
        pytest.param("gvisor-kata", False, id="kata-not-at-start"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_kata_handler(handler: str, expected: bool) -> None:
    """Only 'kata' and 'kata-…' handlers are Kata's."""
    assert is_kata_handler(handler) is expected


def test_kata_pods_follow_runtime_class_handlers() -> None:
    """A pod is Kata when its RuntimeClass's handler is, whatever the class is called."""
    text = "---\n".join(
        [
            runtime_class_manifest("secure", "kata-clh"),
            runtime_class_manifest("kata", "runc"),
            runtime_class_manifest("plain", "runc"),
            pod_manifest("secure-pod", runtime_class="secure"),
            pod_manifest("misnamed-pod", runtime_class="kata"),
            pod_manifest("plain-pod", runtime_class="plain"),
            pod_manifest("default-pod"),
        ]
    )
    assert [pod.name for pod in kata_pods(parse_manifests(text, source="m.yaml"))] == ["secure-pod"]


def test_kata_pods_fall_back_to_class_name_without_runtime_class_objects() -> None:
    """Without a RuntimeClass object, the runtimeClassName itself is taken as the handler."""
    text = "---\n".join(
        [
            pod_manifest("fc", runtime_class="kata-fc"),
            pod_manifest("qemu", runtime_class="kata"),
            pod_manifest("runc", runtime_class="runc"),
            pod_manifest("none"),
        ]
    )
    assert [pod.name for pod in kata_pods(parse_manifests(text, source="m.yaml"))] == ["fc", "qemu"]


# --- rejections -----------------------------------------------------------------------------------

REJECTIONS = [
    pytest.param(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        "kind",
        "unsupported kind 'Deployment' (local mode reads Pod, RuntimeClass and Namespace manifests)",
        id="deployment",
    ),
    pytest.param(
        NGINX_POD.replace("apiVersion: v1", "apiVersion: v2"),
        "apiVersion",
        "expected 'v1' for kind Pod, got 'v2'",
        id="pod-api-version",
    ),
    pytest.param(
        runtime_class_manifest("kata", "kata").replace("node.k8s.io/v1", "node.k8s.io/v1beta1"),
        "apiVersion",
        "expected 'node.k8s.io/v1' for kind RuntimeClass",
        id="runtime-class-api-version",
    ),
    pytest.param("kind: Pod\n", "apiVersion", "required: expected a string", id="missing-api-version"),
    pytest.param("- 1\n", "", "expected a mapping (a Kubernetes object), got a list", id="not-a-mapping"),
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c}]}\n",
        "metadata.name",
        "required",
        id="pod-without-name",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
        "spec",
        "required: expected a mapping",
        id="pod-without-spec",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n",
        "spec.containers",
        "required: expected a list",
        id="pod-without-containers",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
        "spec.containers",
        "expected at least one container",
        id="pod-with-empty-containers",
    ),
    pytest.param(
        NGINX_POD.replace("name: setup", "name: nginx"),
        "spec.initContainers[0].name",
        "container name 'nginx' is used twice",
        id="duplicate-container-name",
    ),
    pytest.param(
        NGINX_POD.replace("tier: front", "tier: 1"),
        "metadata.labels.tier",
        "expected a string (quote the value in YAML), got an integer",
        id="label-not-string",
    ),
    pytest.param(
        NGINX_POD.replace("runtimeClassName: kata-qemu", "runtimeClassName: [kata]"),
        "spec.runtimeClassName",
        "expected a string, got a list",
        id="runtime-class-name-not-string",
    ),
    pytest.param(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: kata}\n",
        "handler",
        "required",
        id="runtime-class-without-handler",
    ),
    pytest.param(
        pod_manifest("a") + "---\n" + pod_manifest("a"),
        "document[1].metadata.name",
        "Pod 'default/a' is defined twice; the other definition is in m.yaml",
        id="duplicate-pod",
    ),
    pytest.param(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}, "
        "spec: {containers: [{name: c}]}}\n- {apiVersion: apps/v1, kind: ReplicaSet}\n",
        "items[1].kind",
        "unsupported kind 'ReplicaSet'",
        id="list-item",
    ),
    pytest.param("kind: Pod\n  bad: [\n", "", "invalid YAML at column", id="bad-yaml"),
    *(
        pytest.param(
            namespace_manifest(f"{{{annotation}: {value!r}}}"),
            f"metadata.annotations.{annotation}",
            f"expected one of audit, block, got {value!r}",
            id=f"{annotation}-{value or 'empty'}",
        )
        for annotation in POSTURE_ANNOTATIONS.values()
        for value in ("Block", "strict", "")
    ),
]


@pytest.mark.parametrize(("text", "field", "fragment"), REJECTIONS)
def test_bad_manifest_is_rejected_with_file_field_and_reason(text: str, field: str, fragment: str) -> None:
    """Each bad manifest raises InputError naming the file, the exact field and what was expected."""
    error = rejection(text)
    assert (error.file, error.field) == ("m.yaml", field)
    assert fragment in error.reason


def test_manifest_directory_is_all_or_nothing(tmp_path: Path) -> None:
    """One bad file fails the whole directory, naming that file."""
    (tmp_path / "a.yaml").write_text(pod_manifest("good"))
    (tmp_path / "b.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
    with pytest.raises(InputError) as caught:
        load_manifest_dir(tmp_path)
    assert caught.value.file == str(tmp_path / "b.yaml")


def test_duplicate_pod_across_files_is_rejected(tmp_path: Path) -> None:
    """The same namespace/name in two files is refused at the second, naming the first."""
    (tmp_path / "a.yaml").write_text(pod_manifest("p", namespace="web"))
    (tmp_path / "b.yaml").write_text(pod_manifest("p", namespace="web", runtime_class="kata"))
    with pytest.raises(InputError) as caught:
        load_manifest_dir(tmp_path)
    assert caught.value.file == str(tmp_path / "b.yaml")
    assert caught.value.field == "metadata.name"
    assert str(tmp_path / "a.yaml") in caught.value.reason


def test_same_pod_name_in_other_namespace_is_not_a_duplicate() -> None:
    """Pod names only clash within a namespace."""
    text = pod_manifest("p", namespace="a") + "---\n" + pod_manifest("p", namespace="b")
    assert [pod.ref for pod in parse_manifests(text, source="m.yaml").pods] == ["a/p", "b/p"]
