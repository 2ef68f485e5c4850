"""Bad policy input is refused with file, field and reason, and the policy in force stays enforced."""

from __future__ import annotations

import pytest

from adapter.exporter import AgentClient
from adapter.transport import parse_agent_url
from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.credentials import adapter_identity
from tests.guest.support import PolicyApplier, paths, process_policy

pytestmark = pytest.mark.guest

BLOCK_APT = process_policy(name="block-apt", rules=paths("/usr/bin/apt"))


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        pytest.param("kind: [unclosed\n", "", "invalid YAML", id="bad-yaml"),
        pytest.param(
            BLOCK_APT.replace("kind: KubeArmorPolicy", "kind: KubeArmorPolicyy"), "kind", "unknown kind", id="kind"
        ),
        pytest.param(
            BLOCK_APT.replace(
                "  process:", "  capabilities:\n    matchCapabilities:\n    - capability: all_net_raw\n  process:"
            ),
            "spec.capabilities.matchCapabilities[0].capability",
            "unknown capability",
            id="unknown-capability",
        ),
        pytest.param(
            process_policy(name="relative", rules=paths("usr/bin/apt")),
            "spec.process.matchPaths[0].path",
            "absolute",
            id="relative-path",
        ),
    ],
)
def test_bad_policy_is_refused_and_changes_nothing(
    policies: PolicyApplier,
    guest: TestGuest,
    containers: GuestContainers,
    pods: dict[str, str],
    document: str,
    field: str,
    reason: str,
) -> None:
    """A directory holding one bad file next to a good one applies nothing; the previous policy still blocks apt."""
    policies.apply(BLOCK_APT)
    with AgentClient(parse_agent_url(f"tcp://{guest.agent_target}"), identity=adapter_identity()) as client:
        before = {pod.pod.name: pod.generation for pod in client.status().pods}
        allow_cat = process_policy(name="allow-everything-else", rules=paths("/bin/sh"), action="Allow")
        refused = policies.apply(allow_cat, document, expect_success=False)
        assert refused.returncode == 2, refused
        message = refused.stderr
        assert "policy-1.yaml" in message and field in message and reason in message, message
        after = {pod.pod.name: pod.generation for pod in client.status().pods}
    assert after == before
    denied = containers.exec(pods["nginx-1"], ["/usr/bin/apt", "--version"])
    assert denied.returncode != 0 and "permission denied" in denied.stderr.lower(), denied
    cat = containers.exec(pods["nginx-1"], ["/bin/cat", "/etc/debian_version"])
    assert cat.returncode == 0, cat
