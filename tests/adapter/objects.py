# SPDX-License-Identifier: Apache-2.0
"""Kubernetes objects as a test creates them in the API server double (tests/kube_api.py)."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]
NODE = "node-1"


def pod(
    name: str,
    *,
    node: str = NODE,
    namespace: str = "web",
    labels: dict[str, str] | None = None,
    runtime_class: str = "kata",
) -> Body:
    """Build a Pod scheduled to a node, of a RuntimeClass (a Kata one unless told), labelled app=nginx unless told."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": "nginx"}},
        "spec": {
            "nodeName": node,
            "runtimeClassName": runtime_class,
            "containers": [{"name": "nginx", "image": "nginx"}],
        },
        "status": {"phase": "Running"},
    }


def namespace(name: str, **annotations: str) -> Body:
    """Build a Namespace."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations}}


def runtime_class(name: str = "kata", handler: str = "kata-qemu") -> Body:
    """Build a RuntimeClass."""
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler}


def ksp(name: str, *, path: str = "/usr/bin/apt", namespace: str = "web") -> Body:
    """Build a KubeArmorPolicy blocking one executable in nginx pods."""
    return {
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": "nginx"}}, "process": {"matchPaths": [{"path": path}]}},
    }


def csp(name: str, *namespaces: str) -> Body:
    """Build a KubeArmorClusterPolicy blocking /etc/shadow in some namespaces."""
    expression = {"key": "namespace", "operator": "In", "values": list(namespaces)}
    return {
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorClusterPolicy",
        "metadata": {"name": name},
        "spec": {"selector": {"matchExpressions": [expression]}, "file": {"matchPaths": [{"path": "/etc/shadow"}]}},
    }
