# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes resources the node daemon reads, declared once.

The Watcher lists and watches exactly these, and deploy/kadapter.yaml grants
get, list and watch on exactly these (tests/adapter/test_deploy.py holds the
two together), so a resource added here without its permission, or a
permission no code uses, fails a test instead of a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubeResource:
    """One API resource: its group ("" for the core group), version, plural, scope and kind."""

    group: str
    version: str
    plural: str
    namespaced: bool
    kind: str

    @property
    def api_version(self) -> str:
        """Write the apiVersion: group/version, or the version alone for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version


POD = KubeResource("", "v1", "pods", namespaced=True, kind="Pod")
NAMESPACE = KubeResource("", "v1", "namespaces", namespaced=False, kind="Namespace")
RUNTIME_CLASS = KubeResource("node.k8s.io", "v1", "runtimeclasses", namespaced=False, kind="RuntimeClass")
POLICY = KubeResource("security.kubearmor.com", "v1", "kubearmorpolicies", namespaced=True, kind="KubeArmorPolicy")
CLUSTER_POLICY = KubeResource(
    "security.kubearmor.com", "v1", "kubearmorclusterpolicies", namespaced=False, kind="KubeArmorClusterPolicy"
)

WATCHED = (POD, NAMESPACE, RUNTIME_CLASS, POLICY, CLUSTER_POLICY)
