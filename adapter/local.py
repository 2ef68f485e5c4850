# SPDX-License-Identifier: Apache-2.0
"""Local mode: policies and pods from files instead of a Kubernetes API server.

The embedded default when there is no cluster (and the demo): KubeArmor
policy YAML from one directory, Pod / RuntimeClass / Namespace manifests
from another. Loading is all or nothing, so one bad file leaves every
agent with the policy set it already had.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from adapter.errors import InputError
from adapter.exporter import RPC_TIMEOUT, AgentClient, apply_request
from adapter.manager import new_generation
from adapter.pods import Inventory, Pod, Posture, Postures, kata_pods, load_manifest_dir
from adapter.policy import load_policy_dir
from adapter.selection import PodPolicy, desired_state
from adapter.transport import AgentAddress, parse_agent_url
from kadapter_api import agent_pb2
from kadapter_api.channel_security import Identity

ANY_POD = "*"


@dataclass(frozen=True)
class PodPlan:
    """What one Kata pod should enforce, and where its agent is."""

    pod: Pod
    policies: tuple[PodPolicy, ...]
    postures: Postures
    agent: AgentAddress


def parse_agent_option(value: str) -> tuple[str, AgentAddress]:
    """Parse --agent [NAMESPACE/POD=]URL into (pod ref or "*", address)."""
    pod, sep, url = value.partition("=")
    if not sep:
        pod, url = ANY_POD, value
    return pod, parse_agent_url(url)


def _postures(pod: Pod, inventory: Inventory, default: Postures) -> Postures:
    """Return the pod's postures: the defaults, but where its namespace's annotations set one."""
    namespace = next((ns for ns in inventory.namespaces if ns.name == pod.namespace), None)
    return default if namespace is None else default.overridden(namespace.postures)


def plan(
    *, policies_dir: Path, manifests_dir: Path, agents: Mapping[str, AgentAddress], default_posture: Posture
) -> list[PodPlan]:
    """Decide every Kata pod's policy set and postures, or raise InputError and decide nothing.

    ``default_posture`` applies to every category a pod's namespace sets no posture for.
    """
    policies = load_policy_dir(policies_dir)
    inventory = load_manifest_dir(manifests_dir)
    pods = kata_pods(inventory)
    desired = desired_state(pods, policies)
    default = Postures.everywhere(default_posture)
    plans = []
    for pod in pods:
        agent = agents.get(pod.ref) or agents.get(ANY_POD)
        if agent is None:
            raise InputError(
                file=str(manifests_dir), field=pod.ref, reason="Kata pod has no agent (use --agent NS/POD=URL)"
            )
        postures = _postures(pod, inventory, default)
        plans.append(PodPlan(pod=pod, policies=desired[pod.ref], postures=postures, agent=agent))
    return plans


def export(
    plans: list[PodPlan], *, identity: Identity | None, rpc_timeout: float = RPC_TIMEOUT
) -> list[tuple[PodPlan, agent_pb2.ApplyPoliciesResponse]]:
    """Send each pod its policy set with the adapter's identity, each call given rpc_timeout seconds.

    The first agent error propagates.
    """
    generation = new_generation()
    results = []
    for pod_plan in plans:
        request = apply_request(pod_plan.pod, pod_plan.policies, generation=generation, postures=pod_plan.postures)
        with AgentClient(pod_plan.agent, identity=identity, rpc_timeout=rpc_timeout) as client:
            results.append((pod_plan, client.apply(request)))
    return results
