# SPDX-License-Identifier: Apache-2.0
"""Pods, RuntimeClasses and Namespaces from ordinary manifests, and which of the pods run under Kata.

Local mode has no API server: the pods to protect are described by the YAML
one would hand to kubectl apply. Only the kinds that decide policy selection
are read. Any other kind is refused rather than skipped, so that a Deployment
in the directory is not taken to mean its pods are protected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from adapter.yaml_reader import Field, read_documents, read_text, yaml_files

DEFAULT_NAMESPACE = "default"
KATA_HANDLER = "kata"
API_VERSIONS = {"Pod": "v1", "Namespace": "v1", "RuntimeClass": "node.k8s.io/v1", "List": "v1"}
# What a category in allow-list mode does with an operation no Allow rule covers.
Posture = Literal["audit", "block"]
POSTURES: tuple[Posture, ...] = get_args(Posture)
# KubeArmor's posture categories, each with the namespace annotation that sets it.
POSTURE_ANNOTATIONS = {
    "file": "kubearmor-file-posture",
    "network": "kubearmor-network-posture",
    "capabilities": "kubearmor-capabilities-posture",
}


@dataclass(frozen=True)
class Postures:
    """A posture for each of KubeArmor's categories; process rules follow the file posture, as in KubeArmor."""

    file: Posture
    network: Posture
    capabilities: Posture

    @classmethod
    def everywhere(cls, posture: Posture) -> Postures:
        """Give every category the same posture, as a global default does."""
        return cls(file=posture, network=posture, capabilities=posture)

    def overridden(self, changes: tuple[tuple[str, Posture], ...]) -> Postures:
        """Replace the postures of the categories a namespace sets, as (category, posture) pairs."""
        return dataclasses.replace(self, **dict(changes))


@dataclass(frozen=True)
class Pod:
    """What policy selection needs to know about one pod."""

    namespace: str
    name: str
    uid: str
    labels: tuple[tuple[str, str], ...]
    runtime_class: str | None
    containers: tuple[str, ...]
    annotations: tuple[tuple[str, str], ...]

    @property
    def ref(self) -> str:
        """Name the pod as namespace/name."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RuntimeClass:
    """A RuntimeClass: the name pods use and the CRI handler it stands for."""

    name: str
    handler: str


@dataclass(frozen=True)
class Namespace:
    """A Namespace with its labels, annotations and the postures its annotations set (others: the default)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    postures: tuple[tuple[str, Posture], ...] = ()  # (category, posture), in POSTURE_ANNOTATIONS order


@dataclass(frozen=True)
class Inventory:
    """Every object read from a set of manifests, in file order."""

    pods: tuple[Pod, ...]
    runtime_classes: tuple[RuntimeClass, ...]
    namespaces: tuple[Namespace, ...]


class _Collector:
    """Gathers objects from one or more streams, refusing a second object of the same kind and name."""

    def __init__(self) -> None:
        """Start empty."""
        self.pods: list[Pod] = []
        self.runtime_classes: list[RuntimeClass] = []
        self.namespaces: list[Namespace] = []
        self._seen: dict[tuple[str, str], str] = {}

    def add_stream(self, text: str, *, source: str) -> None:
        """Read every document of one YAML stream."""
        for doc in read_documents(text, source=source):
            self._add(doc)

    def inventory(self) -> Inventory:
        """Freeze what was gathered."""
        return Inventory(tuple(self.pods), tuple(self.runtime_classes), tuple(self.namespaces))

    def _add(self, obj: Field) -> None:
        """Read one object, or each item of a List."""
        if not isinstance(obj.value, dict):
            raise obj.expected("a mapping (a Kubernetes object)")
        kind_field, api_field = obj.child("kind"), obj.child("apiVersion")
        kind = kind_field.string()
        if kind not in API_VERSIONS:
            raise kind_field.error(
                f"unsupported kind {kind!r} (local mode reads Pod, RuntimeClass and Namespace manifests)"
            )
        if api_field.string() != API_VERSIONS[kind]:
            raise api_field.error(f"expected {API_VERSIONS[kind]!r} for kind {kind}, got {api_field.value!r}")
        if kind == "List":
            for item in obj.child("items").items():
                self._add(item)
            return
        metadata = obj.child("metadata")
        metadata.mapping()
        if kind == "Pod":
            pod = _pod(obj, metadata)
            self._remember(kind, pod.ref, metadata)
            self.pods.append(pod)
        elif kind == "RuntimeClass":
            runtime_class = RuntimeClass(metadata.child("name").dns_subdomain(), obj.child("handler").dns_label())
            self._remember(kind, runtime_class.name, metadata)
            self.runtime_classes.append(runtime_class)
        else:
            annotations = metadata.child("annotations")
            namespace = Namespace(
                metadata.child("name").dns_label(),
                _pairs(metadata.child("labels")),
                _pairs(annotations),
                _postures(annotations),
            )
            self._remember(kind, namespace.name, metadata)
            self.namespaces.append(namespace)

    def _remember(self, kind: str, name: str, metadata: Field) -> None:
        """Record an object, refusing one already seen."""
        if (kind, name) in self._seen:
            raise metadata.child("name").error(
                f"{kind} {name!r} is defined twice; the other definition is in {self._seen[kind, name]}"
            )
        self._seen[kind, name] = metadata.doc.source


def _postures(annotations: Field) -> tuple[tuple[str, Posture], ...]:
    """Read the posture annotations a namespace has, each audit or block."""
    postures = []
    for category, annotation in POSTURE_ANNOTATIONS.items():
        field = annotations.child(annotation)
        if field.missing:
            continue
        posture = field.string()
        if posture not in POSTURES:
            raise field.error(f"expected one of {', '.join(POSTURES)}, got {posture!r}")
        postures.append((category, posture))
    return tuple(postures)


def parse_manifests(text: str, *, source: str) -> Inventory:
    """Read the Pods, RuntimeClasses and Namespaces of one YAML stream."""
    collector = _Collector()
    collector.add_stream(text, source=source)
    return collector.inventory()


def load_manifest_dir(directory: Path) -> Inventory:
    """Read every *.yaml and *.yml file of a directory into one inventory, failing on the first bad one."""
    collector = _Collector()
    for path in yaml_files(directory):
        collector.add_stream(read_text(path), source=str(path))
    return collector.inventory()


def is_kata_handler(handler: str) -> bool:
    """Tell whether a CRI runtime handler is one of Kata's (kata, kata-qemu, kata-clh, ...)."""
    return handler == KATA_HANDLER or handler.startswith(KATA_HANDLER + "-")


def kata_pods(inventory: Inventory) -> tuple[Pod, ...]:
    """Pick the pods whose RuntimeClass, or failing that its name, is a Kata handler."""
    handlers = {runtime_class.name: runtime_class.handler for runtime_class in inventory.runtime_classes}
    return tuple(
        pod
        for pod in inventory.pods
        if pod.runtime_class is not None and is_kata_handler(handlers.get(pod.runtime_class, pod.runtime_class))
    )


def _pod(obj: Field, metadata: Field) -> Pod:
    """Read a Pod manifest."""
    namespace, uid = metadata.child("namespace"), metadata.child("uid")
    spec = obj.child("spec")
    spec.mapping()
    runtime_class = spec.child("runtimeClassName")
    return Pod(
        namespace=DEFAULT_NAMESPACE if namespace.missing else namespace.dns_label(),
        name=metadata.child("name").dns_subdomain(),
        uid="" if uid.missing else uid.string(),
        labels=_pairs(metadata.child("labels")),
        runtime_class=None if runtime_class.missing else runtime_class.dns_subdomain(),
        containers=_container_names(spec),
        annotations=_pairs(metadata.child("annotations")),
    )


def _container_names(spec: Field) -> tuple[str, ...]:
    """Read the names of spec.containers, then spec.initContainers, refusing repeats."""
    names: list[str] = []
    containers, init_containers = spec.child("containers"), spec.child("initContainers")
    items = containers.items()
    if not items:
        raise containers.error("expected at least one container, got an empty list")
    if not init_containers.missing:
        items += init_containers.items()
    for item in items:
        item.mapping()
        name_field = item.child("name")
        name = name_field.dns_label()
        if name in names:
            raise name_field.error(f"container name {name!r} is used twice in this pod")
        names.append(name)
    return tuple(names)


def _pairs(field: Field) -> tuple[tuple[str, str], ...]:
    """Read optional labels or annotations as sorted pairs."""
    return () if field.missing else field.string_map()
