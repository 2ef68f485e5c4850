# SPDX-License-Identifier: Apache-2.0
"""Which policies apply to which pod: the pure core of Kadapter's manager.

Selection follows KubeArmor's meaning of a selector, so a policy written for
KubeArmor picks the same pods here. Keeping it free of I/O lets the local
mode and the cluster mode share it and lets tests pin it down exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapter.pods import Pod
from adapter.policy import LabelExpression, Policy, PolicyKind

# The label KubeArmor gives every pod for its namespace, besides the pod's own labels.
NAMESPACE_LABEL = "namespaceName"


@dataclass(frozen=True)
class PodPolicy:
    """A policy as it applies to one pod: to the named containers, or to all when empty."""

    policy: Policy
    containers: tuple[str, ...]


def policies_for_pod(pod: Pod, policies: Iterable[Policy]) -> tuple[PodPolicy, ...]:
    """Pick the policies whose selectors match a pod, sorted by namespace and name."""
    identities = _identities(pod)
    chosen = [
        PodPolicy(policy=policy, containers=policy.selector.container_names)
        for policy in policies
        if _selects(policy, pod, identities)
    ]
    return tuple(
        sorted(
            chosen,
            key=lambda entry: (entry.policy.namespace or "", entry.policy.name, entry.policy.kind.value),
        )
    )


def desired_state(pods: Iterable[Pod], policies: Iterable[Policy]) -> dict[str, tuple[PodPolicy, ...]]:
    """Map every pod's namespace/name to its policies, with () for pods no policy selects."""
    candidates = tuple(policies)
    return {pod.ref: policies_for_pod(pod, candidates) for pod in pods}


def _selects(policy: Policy, pod: Pod, identities: frozenset[str]) -> bool:
    """Tell whether a policy's selector matches a pod."""
    selector = policy.selector
    if policy.kind is PolicyKind.POLICY:
        if policy.namespace != pod.namespace:
            return False
    elif not _namespace_selected(selector.match_expressions, pod.namespace):
        return False
    if selector.container_names and not set(selector.container_names) & set(pod.containers):
        return False
    return all(f"{key}={value}" in identities for key, value in selector.match_labels) and _labels_selected(
        selector.match_expressions, identities
    )


def _identities(pod: Pod) -> frozenset[str]:
    """List what label selectors compare against: the pod's labels as 'key=value', and its namespace.

    KubeArmor adds the namespace as the pseudo label NAMESPACE_LABEL, so a label
    expression can name it like any other label.
    """
    return frozenset((f"{NAMESPACE_LABEL}={pod.namespace}", *(f"{key}={value}" for key, value in pod.labels)))


def _namespace_selected(expressions: Iterable[LabelExpression], namespace: str) -> bool:
    """Apply a cluster policy's namespace expressions to a pod's namespace, as KubeArmor does.

    The In expressions together list the namespaces selected, and the NotIn ones
    are then ignored. Without any In, every namespace is selected except those a
    NotIn names; with no namespace expression at all, every namespace is.
    """
    listed = [expression for expression in expressions if expression.key == "namespace"]
    included = [expression.values for expression in listed if expression.operator == "In"]
    if included:
        return any(namespace in values for values in included)
    return not any(namespace in expression.values for expression in listed if expression.operator == "NotIn")


def _labels_selected(expressions: Iterable[LabelExpression], identities: frozenset[str]) -> bool:
    """Apply the label expressions to a pod's identities, as KubeArmor does (order matters).

    KubeArmor reads them in order. The pairs of every In expression form one list,
    of which the pod needs any one. A NotIn expression counts only when it comes
    before the first In; once one counts, the pod must carry none of the counted
    NotIn pairs, and the In pairs are not looked at.
    """
    required: list[str] = []
    excluded: list[str] = []
    for expression in expressions:
        if expression.key != "label":
            continue
        if expression.operator == "In":
            required.extend(expression.values)
        elif expression.operator == "NotIn" and not required:
            excluded.extend(expression.values)
    if excluded:
        return not any(pair in identities for pair in excluded)
    return not required or any(pair in identities for pair in required)
