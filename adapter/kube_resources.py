# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes resources the node daemon reads, declared once, with the fields it reads of each.

The Watcher lists and watches exactly these, and deploy/kadapter.yaml grants
get, list and watch on exactly these (tests/adapter/test_deploy.py holds the
two together), so a resource added here without its permission, or a
permission no code uses, fails a test instead of a cluster.

Of each object, the Watcher hands the Manager only the fields its resource
names here (see project): what local mode's parsers read (adapter/pods.py,
adapter/policy.py), what the Manager reads itself (a pod's phase) and what the
Watcher needs to resume and to tell objects apart. Between events it remembers
only that identity (IDENTITY). A node's pods are most of what the daemon holds,
and a real pod is mostly what nothing here reads (managedFields, volumes, env,
probes, status): bench/propagation.py's 1,000 pods and 500 policies take 32 MB
parsed whole, 4 MB as handed on. tests/adapter/test_kube_resources.py checks
that the Manager decides the same on what is handed on as on whole objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Fields to keep, as nested names: None keeps a field's whole value, a mapping keeps only the fields
# it names inside the value (inside each item, for a list), the same notation as adapter/policy.ENFORCED.
Fields = Mapping[str, "Fields | None"]

# What the Watcher reads of every object: where to resume, and which object it is (a uid tells a
# re-created object from the one deleted under the same name).
_IDENTITY: Fields = dict.fromkeys(("name", "namespace", "uid", "resourceVersion"))
_TYPE: Fields = dict.fromkeys(("apiVersion", "kind"))
# What the Watcher remembers of each object between events: enough to tell, on a relist, what was deleted,
# re-created or changed meanwhile, and to report a deletion (which the Manager reads no more of).
IDENTITY: Fields = {**_TYPE, "metadata": _IDENTITY}


@dataclass(frozen=True)
class KubeResource:
    """One API resource: its group ("" for the core group), version, plural, scope, kind, and the fields read."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str
    fields: Fields = field(compare=False)  # a mapping, which cannot be hashed; the rest names the resource

    @property
    def api_version(self) -> str:
        """Write the apiVersion: group/version, or the version alone for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        """Write the URL path that lists the resource in every namespace (and watches it, with watch=true)."""
        group_version = f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"
        return f"/{group_version}/{self.plural}"

    def project(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Keep only the fields of an object (the API server's JSON) that the node daemon reads."""
        return project(body, self.fields)


def project(value: Any, fields: Fields) -> Any:
    """Keep the named fields of a mapping, or of each mapping in a list; keep any other value whole.

    A value not shaped as the fields expect (a list where a mapping is expected, say) is kept as it is, so
    the parsers refuse it exactly as they would refuse the whole object.
    """
    if isinstance(value, Mapping):
        return {
            key: value[key] if inner is None else project(value[key], inner)
            for key, inner in fields.items()
            if key in value
        }
    if isinstance(value, list):
        return [project(item, fields) for item in value]
    return value


POD = KubeResource(
    "", "v1", "pods", namespaced=True, kind="Pod",
    fields={
        **_TYPE,
        "metadata": {**_IDENTITY, "labels": None, "annotations": None},
        "spec": {"runtimeClassName": None, "containers": {"name": None}, "initContainers": {"name": None}},
        "status": {"phase": None},  # a finished pod runs no container again
    },
)  # fmt: skip
NAMESPACE = KubeResource(
    "", "v1", "namespaces", namespaced=False, kind="Namespace",
    fields={**_TYPE, "metadata": {**_IDENTITY, "labels": None, "annotations": None}},
)  # fmt: skip
RUNTIME_CLASS = KubeResource(
    "node.k8s.io", "v1", "runtimeclasses", namespaced=False, kind="RuntimeClass",
    fields={**_TYPE, "metadata": _IDENTITY, "handler": None},
)  # fmt: skip
# A policy is checked against its CRD's schema, which reads all of spec and status and only that metadata is an
# object; the parser reads the name and namespace of metadata. (A policy has no other field: the API server
# prunes from a custom object every field its CRD's schema does not name.)
_POLICY_FIELDS: Fields = {**_TYPE, "metadata": _IDENTITY, "spec": None, "status": None}
POLICY = KubeResource(
    "security.kubearmor.com", "v1", "kubearmorpolicies", namespaced=True, kind="KubeArmorPolicy",
    fields=_POLICY_FIELDS,
)  # fmt: skip
CLUSTER_POLICY = KubeResource(
    "security.kubearmor.com", "v1", "kubearmorclusterpolicies", namespaced=False, kind="KubeArmorClusterPolicy",
    fields=_POLICY_FIELDS,
)  # fmt: skip

WATCHED = (POD, NAMESPACE, RUNTIME_CLASS, POLICY, CLUSTER_POLICY)
