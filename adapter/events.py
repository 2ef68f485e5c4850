# SPDX-License-Identifier: Apache-2.0
"""What the Watcher hands the Manager: one change to one object, as plain data.

Both sides of the node daemon's first seam import this module and nothing of
each other: the Watcher (adapter/watcher.py) only produces these events, the
Manager (adapter/manager.py) only consumes them, so each is tested without
the other. The kinds are those adapter/kube_resources.py declares.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from adapter import kube_resources

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class Resource(enum.Enum):
    """The kinds of object the Manager reads, by their Kubernetes kind."""

    KUBEARMOR_POLICY = "KubeArmorPolicy"
    KUBEARMOR_CLUSTER_POLICY = "KubeArmorClusterPolicy"
    POD = "Pod"
    NAMESPACE = "Namespace"
    RUNTIME_CLASS = "RuntimeClass"

    @property
    def api_version(self) -> str:
        """Name the apiVersion objects of this kind are watched as, which is the one the parsers expect."""
        (resource,) = (resource for resource in kube_resources.WATCHED if resource.kind == self.value)
        return resource.api_version


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: what happened to an object, as the API server's JSON (camelCase).

    From the Watcher, only the fields adapter/kube_resources.py keeps for the kind; the Manager reads
    a whole object just the same (its tests hand it some).
    """

    kind: Resource
    type: EventType
    obj: Mapping[str, Any]


@dataclass(frozen=True)
class ObjectRef:
    """An object's identity, written as logs and errors show it: 'KubeArmorPolicy default/block-apt'."""

    resource: Resource
    namespace: str | None  # None for cluster-scoped objects
    name: str

    @classmethod
    def of(cls, event: WatchEvent) -> ObjectRef:
        """Name the object of an event from its metadata."""
        metadata = event.obj["metadata"]
        return cls(event.kind, metadata.get("namespace"), metadata["name"])

    def __str__(self) -> str:
        scope = "" if self.namespace is None else f"{self.namespace}/"
        return f"{self.resource.value} {scope}{self.name}"
