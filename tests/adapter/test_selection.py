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
    parse_policies,
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


def expr(key: str, operator: str, *values: str) -> LabelExpression:
    """Build one matchExpressions entry."""
    return LabelExpression(key, operator, values)


LABELLED = {"app": "nginx", "tier": "front"}


@pytest.mark.parametrize("kind", list(PolicyKind))
@pytest.mark.parametrize(
    ("expressions", "applies"),
    [
        pytest.param((), True, id="none"),
        pytest.param((expr("label", "In", "app=nginx"),), True, id="in-present"),
        pytest.param((expr("label", "In", "app=apache", "tier=front"),), True, id="in-any-of"),
        pytest.param((expr("label", "In", "app=apache"),), False, id="in-absent"),
        pytest.param((expr("label", "In", "app=apache"), expr("label", "In", "tier=front")), True, id="ins-pooled"),
        pytest.param((expr("label", "NotIn", "app=apache"),), True, id="notin-absent"),
        pytest.param((expr("label", "NotIn", "app=apache", "tier=front"),), False, id="notin-one-present"),
        pytest.param(
            (expr("label", "NotIn", "app=apache"), expr("label", "NotIn", "tier=front")), False, id="notins-pooled"
        ),
        pytest.param(
            (expr("label", "In", "app=nginx"), expr("label", "NotIn", "tier=front")), True, id="notin-after-in-ignored"
        ),
        pytest.param(
            (expr("label", "In", "app=apache"), expr("label", "NotIn", "app=redis")), False, id="in-decides-alone"
        ),
        pytest.param(
            (expr("label", "NotIn", "app=apache"), expr("label", "In", "app=redis")),
            True,
            id="notin-first-in-ignored",
        ),
        pytest.param(
            (expr("label", "NotIn", "tier=front"), expr("label", "In", "app=nginx")),
            False,
            id="notin-first-excludes",
        ),
        pytest.param((expr("label", "In", "namespaceName=web"),), True, id="namespace-pseudo-label"),
        pytest.param((expr("label", "NotIn", "namespaceName=web"),), False, id="namespace-pseudo-label-notin"),
    ],
)
def test_label_expressions_follow_kubearmor(
    kind: PolicyKind, expressions: tuple[LabelExpression, ...], applies: bool
) -> None:
    """In expressions pool their pairs (any one will do); a NotIn counts only before the first In, and then alone."""
    policy = ksp(namespace="web", expressions=expressions) if kind is PolicyKind.POLICY else csp("csp", *expressions)
    chosen = policies_for_pod(pod(namespace="web", labels=LABELLED), [policy])
    assert bool(chosen) is applies


def test_match_labels_and_expressions_must_both_hold() -> None:
    """matchLabels and the label expressions are combined with AND."""
    policy = ksp(labels={"app": "nginx"}, expressions=(LabelExpression("label", "NotIn", ("env=prod",)),))
    assert policies_for_pod(pod(labels={"app": "nginx", "env": "dev"}), [policy])
    assert not policies_for_pod(pod(labels={"app": "nginx", "env": "prod"}), [policy])


def test_namespaced_policy_without_selector_selects_its_whole_namespace() -> None:
    """A KubeArmorPolicy with an empty selector selects every pod of its namespace, and none elsewhere."""
    pods = [pod("a", namespace="web"), pod("b", namespace="web", labels={"app": "x"}), pod("c")]
    state = desired_state(pods, [ksp(namespace="web")])
    assert {ref: names(chosen) for ref, chosen in state.items()} == {
        "web/a": ["ksp"],
        "web/b": ["ksp"],
        "default/c": [],
    }


# --- KubeArmorClusterPolicy -----------------------------------------------------------------------

CLUSTER_PODS = (
    pod("a", namespace="default", labels={"app": "nginx"}),
    pod("b", namespace="web", labels={"app": "nginx"}),
    pod("c", namespace="web", labels={"app": "redis"}),
    pod("d", namespace="api", labels={"app": "nginx-dev"}),
    pod("e", namespace="kube-system", labels={"app": "nginx"}),
)


@pytest.mark.parametrize(
    ("expressions", "selected"),
    [
        pytest.param((), "default/a web/b web/c api/d kube-system/e", id="no-expressions-every-namespace"),
        pytest.param((expr("namespace", "In", "web"),), "web/b web/c", id="ns-in"),
        pytest.param((expr("namespace", "In", "web", "api"),), "web/b web/c api/d", id="ns-in-two"),
        pytest.param(
            (expr("namespace", "In", "web"), expr("namespace", "In", "api")), "web/b web/c api/d", id="ns-ins-pooled"
        ),
        pytest.param((expr("namespace", "In", "absent"),), "", id="ns-in-unknown-namespace"),
        pytest.param(
            (expr("namespace", "NotIn", "kube-system"),), "default/a web/b web/c api/d", id="ns-notin-all-but"
        ),
        pytest.param(
            (expr("namespace", "NotIn", "kube-system"), expr("namespace", "NotIn", "default")),
            "web/b web/c api/d",
            id="ns-notins-pooled",
        ),
        pytest.param(
            (expr("namespace", "NotIn", "web"), expr("namespace", "In", "web", "api")),
            "web/b web/c api/d",
            id="ns-notin-ignored-with-in-before",
        ),
        pytest.param(
            (expr("namespace", "In", "web", "api"), expr("namespace", "NotIn", "web")),
            "web/b web/c api/d",
            id="ns-notin-ignored-with-in-after",
        ),
        pytest.param(
            (expr("namespace", "In", "web"), expr("label", "In", "app=nginx", "app=nginx-dev")),
            "web/b",
            id="ns-in-label-in",
        ),
        pytest.param(
            (expr("namespace", "NotIn", "web"), expr("label", "NotIn", "app=nginx")),
            "api/d",
            id="ns-notin-label-notin",
        ),
        pytest.param(
            (expr("namespace", "NotIn", "kube-system"), expr("label", "In", "app=nginx")),
            "default/a web/b",
            id="ns-notin-label-in",
        ),
        pytest.param(
            (expr("label", "In", "app=nginx"), expr("namespace", "NotIn", "kube-system")),
            "default/a web/b",
            id="label-in-ns-notin-any-order",
        ),
        pytest.param((expr("label", "NotIn", "app=nginx"),), "web/c api/d", id="label-notin-every-namespace"),
    ],
)
def test_cluster_policy_selects_pods_as_kubearmor_does(expressions: tuple[LabelExpression, ...], selected: str) -> None:
    """Which pods of which namespaces a cluster policy selects, for each kind of selector."""
    state = desired_state(CLUSTER_PODS, [csp("csp", *expressions)])
    assert [ref for ref, chosen in state.items() if chosen] == selected.split()


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


def test_cluster_policies_from_yaml_without_selector_or_with_notin_only() -> None:
    """End to end: KubeArmor's selector-less and NotIn-only cluster policies reach the Kata pods it would pick."""
    policies = parse_policies(
        """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata: {name: everywhere}
spec:
  process: {matchPaths: [{path: /usr/bin/apt}]}
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata: {name: not-in-web}
spec:
  selector:
    matchExpressions:
    - {key: namespace, operator: NotIn, values: [web]}
  process: {matchPaths: [{path: /usr/bin/apt}]}
""",
        source="p.yaml",
    )
    pods = [pod("a"), pod("b", namespace="web"), pod("c", namespace="api")]
    assert {ref: names(chosen) for ref, chosen in desired_state(pods, policies).items()} == {
        "default/a": ["everywhere", "not-in-web"],
        "web/b": ["everywhere"],
        "api/c": ["everywhere", "not-in-web"],
    }
