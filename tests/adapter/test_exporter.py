# SPDX-License-Identifier: Apache-2.0
"""The wire message the Exporter builds: what the guest agent is told to enforce for one pod."""

from __future__ import annotations

import pytest

from adapter.exporter import apply_request
from adapter.pods import Pod, Postures
from adapter.policy import parse_policies
from adapter.selection import PodPolicy
from guest_agent.bpf_types import Kind
from guest_agent.rules import check_policies, compile_rules
from kadapter_api import agent_pb2

NGINX = Pod(
    namespace="default",
    name="nginx",
    uid="u-1",
    labels=(("app", "nginx"),),
    runtime_class="kata",
    containers=("nginx",),
    annotations=(),
)
BLOCK = Postures.everywhere("block")

POLICY = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: fileless
spec:
  selector:
    matchLabels:
      app: nginx
  severity: 8
  tags: [MITRE, T1620]
  message: fileless execution
  process:
    matchPaths:
    - path: /usr/bin/apt
      action: Audit
  presets:
  - name: filelessExec
"""


def test_apply_request_carries_process_rules_and_presets() -> None:
    """Each policy goes on the wire with its rules and its presets, severity, tags and message included."""
    (policy,) = parse_policies(POLICY, source="p.yaml")
    request = apply_request(NGINX, [PodPolicy(policy=policy, containers=("nginx",))], generation=7, postures=BLOCK)
    expected = agent_pb2.ApplyPoliciesRequest(
        pod=agent_pb2.PodRef(namespace="default", name="nginx", uid="u-1"),
        generation=7,
        file_posture=agent_pb2.POSTURE_BLOCK,
        network_posture=agent_pb2.POSTURE_BLOCK,
        capabilities_posture=agent_pb2.POSTURE_BLOCK,
        policies=[
            agent_pb2.Policy(
                name="fileless",
                namespace="default",
                containers=["nginx"],
                process_rules=[
                    agent_pb2.PathRule(
                        path="/usr/bin/apt",
                        action=agent_pb2.ACTION_AUDIT,
                        severity=8,
                        tags=["MITRE", "T1620"],
                        message="fileless execution",
                    )
                ],
                presets=[
                    agent_pb2.PresetRule(
                        preset=agent_pb2.PRESET_FILELESS_EXEC,
                        action=agent_pb2.ACTION_BLOCK,
                        severity=8,
                        tags=["MITRE", "T1620"],
                        message="fileless execution",
                    )
                ],
            )
        ],
    )
    assert request == expected


EVERY_RULE_KIND = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata:
  name: every-kind
spec:
  selector:
    matchExpressions:
    - {key: namespace, operator: In, values: [default]}
  severity: 3
  process:
    matchPaths:
    - execname: su
      ownerOnly: true
    - path: /bin/ls
      allowedArgs: [-l, /tmp]
    matchDirectories:
    - dir: /sbin/
      recursive: true
  file:
    tags: [files]
    matchPaths:
    - path: /etc/shadow
      readOnly: true
      ownerOnly: true
    matchDirectories:
    - dir: /etc/ssl/
      recursive: true
      readOnly: true
      action: Audit
  network:
    action: Allow
    matchProtocols:
    - protocol: TCP,udp
      message: web traffic only
    matchDNSQueries:
    - domain: API.Example.com.
      fromSource: [{path: /usr/bin/curl}]
    - domain: "evil.example, .tracker.example"
      action: Block
      severity: 9
  capabilities:
    matchCapabilities:
    - capability: cap_net_raw
"""


def test_apply_request_carries_file_network_and_capability_rules() -> None:
    """Process and file rules go out as PathRules with their flags and arguments, the others by their names."""
    (policy,) = parse_policies(EVERY_RULE_KIND, source="p.yaml")
    request = apply_request(NGINX, [PodPolicy(policy=policy, containers=())], generation=1, postures=BLOCK)
    block, audit, allow = agent_pb2.ACTION_BLOCK, agent_pb2.ACTION_AUDIT, agent_pb2.ACTION_ALLOW
    assert list(request.policies) == [
        agent_pb2.Policy(
            name="every-kind",
            process_rules=[
                agent_pb2.PathRule(execname="su", owner_only=True, action=block, severity=3),
                agent_pb2.PathRule(path="/bin/ls", allowed_args=["-l", "/tmp"], action=block, severity=3),
                agent_pb2.PathRule(path="/sbin/", recursive=True, action=block, severity=3),
            ],
            file_rules=[
                agent_pb2.PathRule(
                    path="/etc/shadow", read_only=True, owner_only=True, action=block, severity=3, tags=["files"]
                ),
                agent_pb2.PathRule(
                    path="/etc/ssl/", recursive=True, read_only=True, action=audit, severity=3, tags=["files"]
                ),
            ],
            network_rules=[
                agent_pb2.NetworkRule(protocol=name, action=allow, severity=3, message="web traffic only")
                for name in ("tcp", "udp")
            ],
            capability_rules=[agent_pb2.CapabilityRule(capability="net_raw", action=block, severity=3)],
            dns_rules=[
                agent_pb2.DnsRule(domain="api.example.com", action=allow, severity=3, from_source=["/usr/bin/curl"]),
                agent_pb2.DnsRule(domain="evil.example", action=block, severity=9),
                agent_pb2.DnsRule(domain="tracker.example", action=block, severity=9),
            ],
        )
    ]


FROM_SOURCES = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: from-sources
spec:
  selector:
    matchLabels:
      app: nginx
  process:
    matchPaths:
    - path: /usr/bin/apt
      fromSource: [{path: /bin/bash}, {path: /bin/sh}, {path: /bin/bash}]
    matchDirectories:
    - dir: /sbin/
      fromSource: [{path: /bin/bash}]
    - dir: /usr/sbin/
  file:
    matchPaths:
    - path: /etc/shadow
      fromSource: [{path: /usr/bin/passwd}]
    matchDirectories:
    - dir: /etc/ssl/
      fromSource: [{path: /usr/sbin/nginx}]
  network:
    matchProtocols:
    - protocol: tcp,udp
      fromSource: [{path: /usr/bin/curl}]
  capabilities:
    matchCapabilities:
    - capability: net_raw
      fromSource: [{path: /bin/ping}]
"""


def test_apply_request_carries_from_source_on_every_rule_kind() -> None:
    """Each process, file, network and capability rule goes out with its own sources, once each, in file order."""
    (policy,) = parse_policies(FROM_SOURCES, source="p.yaml")
    request = apply_request(NGINX, [PodPolicy(policy=policy, containers=())], generation=1, postures=BLOCK)
    block = {"action": agent_pb2.ACTION_BLOCK, "severity": 1}
    assert list(request.policies) == [
        agent_pb2.Policy(
            name="from-sources",
            namespace="default",
            process_rules=[
                agent_pb2.PathRule(path="/usr/bin/apt", from_source=["/bin/bash", "/bin/sh"], **block),
                agent_pb2.PathRule(path="/sbin/", from_source=["/bin/bash"], **block),
                agent_pb2.PathRule(path="/usr/sbin/", **block),
            ],
            file_rules=[
                agent_pb2.PathRule(path="/etc/shadow", from_source=["/usr/bin/passwd"], **block),
                agent_pb2.PathRule(path="/etc/ssl/", from_source=["/usr/sbin/nginx"], **block),
            ],
            network_rules=[
                agent_pb2.NetworkRule(protocol=name, from_source=["/usr/bin/curl"], **block) for name in ("tcp", "udp")
            ],
            capability_rules=[agent_pb2.CapabilityRule(capability="net_raw", from_source=["/bin/ping"], **block)],
        )
    ]


@pytest.mark.parametrize(
    ("postures", "expected"),
    [
        pytest.param(BLOCK, (agent_pb2.POSTURE_BLOCK,) * 3, id="block"),
        pytest.param(Postures.everywhere("audit"), (agent_pb2.POSTURE_AUDIT,) * 3, id="audit"),
        pytest.param(
            Postures(file="audit", network="block", capabilities="audit"),
            (agent_pb2.POSTURE_AUDIT, agent_pb2.POSTURE_BLOCK, agent_pb2.POSTURE_AUDIT),
            id="per-category",
        ),
    ],
)
def test_apply_request_carries_a_posture_per_category(postures: Postures, expected: tuple[int, int, int]) -> None:
    """Each category's posture goes in its own field, whatever the others are."""
    request = apply_request(NGINX, [], generation=1, postures=postures)
    assert (request.file_posture, request.network_posture, request.capabilities_posture) == expected


def test_every_enforced_preset_has_its_wire_value() -> None:
    """Each preset Kadapter enforces reaches the agent under its own enum value, Block or Audit as written."""
    names = ("filelessExec", "anonymousMapExec", "protectEnv", "protectProc")
    entries = "".join(f"  - name: {name}\n    action: Audit\n" for name in names)
    text = (
        POLICY.partition("  process:")[0]
        + f"  process:\n    matchPaths:\n    - path: /usr/bin/apt\n  presets:\n{entries}"
    )
    (policy,) = parse_policies(text, source="p.yaml")
    request = apply_request(NGINX, [PodPolicy(policy=policy, containers=())], generation=1, postures=BLOCK)
    sent = [(preset.preset, preset.action) for preset in request.policies[0].presets]
    assert sent == [
        (agent_pb2.PRESET_FILELESS_EXEC, agent_pb2.ACTION_AUDIT),
        (agent_pb2.PRESET_ANONYMOUS_MAP_EXEC, agent_pb2.ACTION_AUDIT),
        (agent_pb2.PRESET_PROTECT_ENV, agent_pb2.ACTION_AUDIT),
        (agent_pb2.PRESET_PROTECT_PROC, agent_pb2.ACTION_AUDIT),
    ]


PATTERNS = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: patterns
spec:
  selector:
    matchLabels:
      app: nginx
  process:
    matchPatterns:
    - pattern: /usr/bin/apt*
      ownerOnly: true
  file:
    action: Audit
    matchPatterns:
    - pattern: /etc/*hado?
      readOnly: true
      severity: 9
    - pattern: /**/*.conf
"""


def test_apply_request_carries_pattern_rules_as_written() -> None:
    """matchPatterns go out as PathRules with a pattern and no path, their qualifiers and verdicts kept."""
    (policy,) = parse_policies(PATTERNS, source="p.yaml")
    request = apply_request(NGINX, [PodPolicy(policy=policy, containers=())], generation=1, postures=BLOCK)
    block, audit = agent_pb2.ACTION_BLOCK, agent_pb2.ACTION_AUDIT
    assert list(request.policies) == [
        agent_pb2.Policy(
            name="patterns",
            namespace="default",
            process_rules=[agent_pb2.PathRule(pattern="/usr/bin/apt*", owner_only=True, action=block, severity=1)],
            file_rules=[
                agent_pb2.PathRule(pattern="/etc/*hado?", read_only=True, action=audit, severity=9),
                agent_pb2.PathRule(pattern="/**/*.conf", action=audit, severity=1),
            ],
        )
    ]


def test_the_agent_accepts_the_patterns_the_adapter_sends() -> None:
    """Host and guest check patterns alike: what validation let through compiles into the kernel's globs."""
    text = PATTERNS + "    - pattern: /home/*/.ssh/***\n"
    (policy,) = parse_policies(text, source="p.yaml")
    request = apply_request(NGINX, [PodPolicy(policy=policy, containers=())], generation=1, postures=BLOCK)
    check_policies(request.policies)
    compiled = compile_rules(request.policies, container_name="nginx", postures={}, view=None)
    assert list(compiled.kinds[Kind.PROCESS].patterns) == ["/usr/bin/apt*"]
    assert list(compiled.kinds[Kind.FILE].patterns) == ["/etc/*hado?", "/**/*.conf", "/home/*/.ssh/**"]
