# SPDX-License-Identifier: Apache-2.0
"""Which policies apply to which pod: KubeArmor's selector semantics, reproduced."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.pods import Pod, kata_pods, parse_manifests
from adapter.policy import (
    Action,
    LabelExpression,
    PathRule,
    Policy,
    PolicyKind,
    Selector,
    load_policy_file,
)
from adapter.selection import PodPolicy, desired_state, policies_for_pod

RULES = (PathRule(path="/usr/bin/apt", action=Action.BLOCK, severity=1, tags=(), message=""),)
USE_CASE_FILE = Path(__file__).resolve().parents[2] / "policies" / "ksp-nginx-block-apt.yaml"


def pod(
    name: str = "nginx",
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    containers: tuple[str, ...] = ("nginx",),
) -> Pod:
    """Build a Kata pod for selection tests."""
    return Pod(
        namespace=namespace,
        name=name,
        uid="",
        labels=tuple(sorted((labels or {}).items())),
        runtime_class="kata",
        containers=containers,
        annotations=(),
    )


def ksp(
    name: str = "ksp",
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    containers: tuple[str, ...] = (),
    expressions: tuple[LabelExpression, ...] = (),
) -> Policy:
    """Build a KubeArmorPolicy with the given selector."""
    selector = Selector(tuple(sorted((labels or {}).items())), containers, expressions)
    return Policy(PolicyKind.POLICY, name, namespace, selector, RULES, source="test")


def csp(name: str = "csp", *expressions: LabelExpression) -> Policy:
    """Build a KubeArmorClusterPolicy with the given expressions."""
    return Policy(PolicyKind.CLUSTER_POLICY, name, None, Selector((), (), expressions), RULES, source="test")


def names(chosen: tuple[PodPolicy, ...]) -> list[str]:
    """List the names of chosen policies, in order."""
    return [entry.policy.name for entry in chosen]


# --- KubeArmorPolicy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector_labels", "pod_labels", "applies"),
    [
        pytest.param({"app": "nginx"}, {"app": "nginx"}, True, id="exact"),
        pytest.param({"app": "nginx"}, {"app": "nginx", "tier": "front"}, True, id="subset"),
        pytest.param({"app": "nginx", "tier": "front"}, {"app": "nginx"}, False, id="label-missing"),
        pytest.param({"app": "nginx"}, {"app": "apache"}, False, id="value-differs"),
        pytest.param({}, {}, True, id="empty-selects-all"),
        pytest.param({}, {"app": "x"}, True, id="empty-selects-labelled"),
    ],
)
def test_match_labels_must_all_be_on_the_pod(
    selector_labels: dict[str, str], pod_labels: dict[str, str], applies: bool
) -> None:
    """A namespaced policy applies when every matchLabels pair is among the pod's labels."""
    chosen = policies_for_pod(pod(labels=pod_labels), [ksp(labels=selector_labels)])
    assert bool(chosen) is applies


def test_namespaced_policy_ignores_pods_of_other_namespaces() -> None:
    """A KubeArmorPolicy only ever selects pods of its own namespace."""
    policy = ksp(namespace="web", labels={"app": "nginx"})
    assert policies_for_pod(pod(namespace="default", labels={"app": "nginx"}), [policy]) == ()
    assert names(policies_for_pod(pod(namespace="web", labels={"app": "nginx"}), [policy])) == ["ksp"]


@pytest.mark.parametrize(
    ("policy_containers", "pod_containers", "expected"),
    [
        pytest.param((), ("nginx", "sidecar"), ((),), id="no-container-key-means-all"),
        pytest.param(("nginx",), ("nginx", "sidecar"), (("nginx",),), id="one-named"),
        pytest.param(("nginx", "gone"), ("nginx",), (("nginx", "gone"),), id="kept-as-given"),
        pytest.param(("gone",), ("nginx",), (), id="none-present-does-not-apply"),
    ],
)
def test_container_name_key_limits_policy_to_containers(
    policy_containers: tuple[str, ...], pod_containers: tuple[str, ...], expected: tuple[tuple[str, ...], ...]
) -> None:
    """Container names narrow a policy to those containers, and a pod with none of them is not selected."""
    chosen = policies_for_pod(pod(containers=pod_containers), [ksp(containers=policy_containers)])
    assert tuple(entry.containers for entry in chosen) == expected


@pytest.mark.parametrize(
    ("operator", "values", "applies"),
    [
        pytest.param("In", ("app=nginx",), True, id="in-present"),
        pytest.param("In", ("app=apache", "tier=front"), True, id="in-any-of"),
        pytest.param("In", ("app=apache",), False, id="in-absent"),
        pytest.param("In", ("app",), False, id="in-key-only-is-not-a-pair"),
        pytest.param("NotIn", ("app=apache",), True, id="notin-absent"),
        pytest.param("NotIn", ("app=apache", "tier=front"), False, id="notin-one-present"),
    ],
)
def test_label_expressions_in_and_not_in(operator: str, values: tuple[str, ...], applies: bool) -> None:
    """In needs one of the 'k=v' pairs on the pod; NotIn needs none of them."""
    policy = ksp(expressions=(LabelExpression("label", operator, values),))
    chosen = policies_for_pod(pod(labels={"app": "nginx", "tier": "front"}), [policy])
    assert bool(chosen) is applies


def test_match_labels_and_expressions_must_both_hold() -> None:
    """matchLabels and every matchExpression are combined with AND."""
    policy = ksp(labels={"app": "nginx"}, expressions=(LabelExpression("label", "NotIn", ("env=prod",)),))
    assert policies_for_pod(pod(labels={"app": "nginx", "env": "dev"}), [policy])
    assert not policies_for_pod(pod(labels={"app": "nginx", "env": "prod"}), [policy])


# --- KubeArmorClusterPolicy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "namespace", "applies"),
    [
        pytest.param("In", "web", True, id="in-listed"),
        pytest.param("In", "default", False, id="in-unlisted"),
        pytest.param("NotIn", "kube-system", False, id="notin-listed"),
        pytest.param("NotIn", "web", True, id="notin-unlisted"),
    ],
)
def test_cluster_policy_selects_by_namespace(operator: str, namespace: str, applies: bool) -> None:
    """A cluster policy's namespace expression matches the pod's namespace name."""
    values = ("web", "api") if operator == "In" else ("kube-system",)
    policy = csp("csp", LabelExpression("namespace", operator, values))
    assert bool(policies_for_pod(pod(namespace=namespace), [policy])) is applies


def test_cluster_policy_combines_namespace_and_label_expressions() -> None:
    """A cluster policy applies across namespaces, only where all its expressions hold."""
    policy = csp(
        "csp",
        LabelExpression("namespace", "NotIn", ("kube-system",)),
        LabelExpression("label", "In", ("app=nginx",)),
    )
    assert policies_for_pod(pod(namespace="web", labels={"app": "nginx"}), [policy])
    assert policies_for_pod(pod(namespace="api", labels={"app": "nginx"}), [policy])
    assert not policies_for_pod(pod(namespace="kube-system", labels={"app": "nginx"}), [policy])
    assert not policies_for_pod(pod(namespace="web", labels={"app": "apache"}), [policy])


def test_cluster_policy_without_expressions_selects_every_pod() -> None:
    """An empty matchExpressions list selects every pod in every namespace."""
    assert names(policies_for_pod(pod(namespace="anything"), [csp("all")])) == ["all"]


# --- ordering and desired state -------------------------------------------------------------------


def test_policies_for_pod_are_sorted_by_namespace_then_name() -> None:
    """Results are deterministic: cluster policies (no namespace) first, then by name."""
    policies = [ksp("zeta"), csp("omega"), ksp("alpha"), csp("beta")]
    assert names(policies_for_pod(pod(), policies)) == ["beta", "omega", "alpha", "zeta"]


def test_desired_state_lists_every_pod_even_without_policies() -> None:
    """Every pod gets an entry, () when nothing selects it, so its agent is told to enforce nothing."""
    pods = [pod("a", labels={"app": "nginx"}), pod("b", labels={"app": "apache"}), pod("c", namespace="web")]
    state = desired_state(pods, (policy for policy in [ksp(labels={"app": "nginx"})]))
    assert {ref: names(chosen) for ref, chosen in state.items()} == {
        "default/a": ["ksp"],
        "default/b": [],
        "web/c": [],
    }


def test_use_case_policy_selects_the_kata_nginx_pod_only() -> None:
    """End to end: the nginx/apt policy reaches the Kata nginx pod and nothing else."""
    manifests = """\
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kata}
handler: kata-qemu
---
apiVersion: v1
kind: Pod
metadata: {name: nginx, labels: {app: nginx}}
spec: {runtimeClassName: kata, containers: [{name: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: redis, labels: {app: redis}}
spec: {runtimeClassName: kata, containers: [{name: redis}]}
---
apiVersion: v1
kind: Pod
metadata: {name: nginx-runc, labels: {app: nginx}}
spec: {containers: [{name: nginx}]}
"""
    policies = load_policy_file(USE_CASE_FILE)
    state = desired_state(kata_pods(parse_manifests(manifests, source="m.yaml")), policies)
    assert state == {
        "default/nginx": (PodPolicy(policy=policies[0], containers=()),),
        "default/redis": (),
    }
