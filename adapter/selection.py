# SPDX-License-Identifier: Apache-2.0
"""Which policies apply to which pod: the pure core of Kadapter's manager.

Selection follows KubeArmor's meaning of a selector, so a policy written for
KubeArmor picks the same pods here. Keeping it free of I/O lets the local
mode and the cluster mode share it and lets tests pin it down exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from adapter.pods import Pod
from adapter.policy import LabelExpression, Policy, PolicyKind


@dataclass(frozen=True)
class PodPolicy:
    """A policy as it applies to one pod: to the named containers, or to all when empty."""

    policy: Policy
    containers: tuple[str, ...]


def policies_for_pod(pod: Pod, policies: Iterable[Policy]) -> tuple[PodPolicy, ...]:
    """Pick the policies whose selectors match a pod, sorted by namespace and name."""
    labels = dict(pod.labels)
    chosen = [
        PodPolicy(policy=policy, containers=policy.selector.container_names)
        for policy in policies
        if _selects(policy, pod, labels)
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


def _selects(policy: Policy, pod: Pod, labels: Mapping[str, str]) -> bool:
    """Tell whether a policy's selector matches a pod."""
    selector = policy.selector
    if policy.kind is PolicyKind.POLICY and policy.namespace != pod.namespace:
        return False
    if selector.container_names and not set(selector.container_names) & set(pod.containers):
        return False
    return all(labels.get(key) == value for key, value in selector.match_labels) and all(
        _holds(expression, pod, labels) for expression in selector.match_expressions
    )


def _holds(expression: LabelExpression, pod: Pod, labels: Mapping[str, str]) -> bool:
    """Evaluate one In or NotIn expression on a pod's namespace or labels."""
    if expression.key == "namespace":
        found = pod.namespace in expression.values
    else:
        found = any(_has_label(labels, value) for value in expression.values)
    return found if expression.operator == "In" else not found


def _has_label(labels: Mapping[str, str], text: str) -> bool:
    """Tell whether labels hold the pair written as 'key=value'."""
    key, _, value = text.partition("=")
    return labels.get(key) == value
