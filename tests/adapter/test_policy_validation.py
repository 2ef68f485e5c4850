# SPDX-License-Identifier: Apache-2.0
"""Reading KubeArmor policies: the model they become, and every way a file is refused."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from adapter.errors import InputError
from adapter.policy import (
    CAPABILITIES,
    MAX_PATH_BYTES,
    PROTOCOLS,
    Action,
    CapabilityRule,
    LabelExpression,
    NetworkRule,
    PathRule,
    Policy,
    PolicyKind,
    Preset,
    PresetRule,
    Selector,
    load_policy_dir,
    load_policy_file,
    parse_policies,
)
from adapter.schema import policy_schema
from guest_agent.bpf_types import PATH_MAX

# KubeArmor's schema limits a path to 200 characters (maxLength in deploy/crds); Kadapter adds MAX_PATH_BYTES.
MAX_PATH_CHARACTERS = 200
USE_CASE_FILE = Path(__file__).resolve().parents[2] / "policies" / "ksp-nginx-block-apt.yaml"

USE_CASE = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-nginx-block-apt
  namespace: default
spec:
  severity: 5
  message: "a package manager was run in an nginx pod"
  tags: ["MITRE", "T1072"]
  selector:
    matchLabels:
      app: nginx
  process:
    matchPaths:
    - path: /usr/bin/apt
  action: Block
"""


def ksp(spec: str, *, kind: str = "KubeArmorPolicy", metadata: str = "name: test") -> str:
    """Build a policy document from a one-line metadata body and an unindented spec body."""
    header = f"apiVersion: security.kubearmor.com/v1\nkind: {kind}\nmetadata:\n  {metadata}\nspec:\n"
    return header + textwrap.indent(textwrap.dedent(spec), "  ")


SELECT_NGINX = """\
selector:
  matchLabels:
    app: nginx
"""
BLOCK_APT = """\
process:
  matchPaths:
  - path: /usr/bin/apt
"""
# Sections of one rule each; lines indented by four spaces and appended add fields to that rule.
FILE_SHADOW = "file:\n  matchPaths:\n  - path: /etc/shadow\n"
FILE_DIRECTORY = "file:\n  matchDirectories:\n  - dir: /etc/ssl/\n"
NETWORK_RAW = "network:\n  matchProtocols:\n  - protocol: raw\n"
CAPABILITY_NET_RAW = "capabilities:\n  matchCapabilities:\n  - capability: net_raw\n"


def presets(*entries: str) -> str:
    """Build a spec body with the nginx selector and one spec.presets item per (flow mapping) entry."""
    return SELECT_NGINX + "presets:\n" + "".join(f"- {entry}\n" for entry in entries)


def parse_one(text: str) -> Policy:
    """Parse a stream that must hold exactly one policy."""
    (policy,) = parse_policies(text, source="p.yaml")
    return policy


def rejection(text: str, *, source: str = "p.yaml") -> InputError:
    """Parse a stream that must be refused, and return the error."""
    with pytest.raises(InputError) as caught:
        parse_policies(text, source=source)
    return caught.value


# --- the use case ---------------------------------------------------------------------------------


def test_use_case_policy_parses_to_expected_model() -> None:
    """The nginx/apt policy becomes one Block rule with the spec's severity, tags and message."""
    assert parse_one(USE_CASE) == Policy(
        kind=PolicyKind.POLICY,
        name="ksp-nginx-block-apt",
        namespace="default",
        selector=Selector(match_labels=(("app", "nginx"),), container_names=(), match_expressions=()),
        process_rules=(
            PathRule(
                path="/usr/bin/apt",
                action=Action.BLOCK,
                severity=5,
                tags=("MITRE", "T1072"),
                message="a package manager was run in an nginx pod",
            ),
        ),
        source="p.yaml",
    )


def test_use_case_file_in_repository_matches_the_documented_policy() -> None:
    """policies/ksp-nginx-block-apt.yaml holds the use-case policy byte for byte."""
    assert USE_CASE_FILE.read_text(encoding="utf-8") == USE_CASE
    (policy,) = load_policy_file(USE_CASE_FILE)
    assert policy.source == str(USE_CASE_FILE)
    assert policy.process_rules == parse_one(USE_CASE).process_rules


# --- inheritance ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "rule_list", "model_field"),
    [
        pytest.param("process", "  matchPaths:\n  - path: /bin/sh\n", "process_rules", id="process"),
        pytest.param("file", "  matchDirectories:\n  - dir: /etc/\n", "file_rules", id="file"),
        pytest.param("network", "  matchProtocols:\n  - protocol: tcp\n", "network_rules", id="network"),
        pytest.param(
            "capabilities", "  matchCapabilities:\n  - capability: net_raw\n", "capability_rules", id="capabilities"
        ),
    ],
)
@pytest.mark.parametrize(
    ("spec_extra", "section_extra", "rule_extra", "expected"),
    [
        pytest.param("", "", "", (Action.BLOCK, 1, (), ""), id="defaults"),
        pytest.param(
            "action: Audit\nseverity: 3\ntags: [a]\nmessage: spec\n",
            "",
            "",
            (Action.AUDIT, 3, ("a",), "spec"),
            id="from-spec",
        ),
        pytest.param(
            "action: Audit\nseverity: 3\ntags: [a]\nmessage: spec\n",
            "  action: Allow\n  severity: 4\n  tags: [b]\n  message: section\n",
            "",
            (Action.ALLOW, 4, ("b",), "section"),
            id="section-over-spec",
        ),
        pytest.param(
            "action: Audit\nseverity: 3\ntags: [a]\nmessage: spec\n",
            "  action: Allow\n  severity: 4\n  tags: [b]\n  message: section\n",
            "    action: Block\n    severity: 9\n    tags: [c, d]\n    message: rule\n",
            (Action.BLOCK, 9, ("c", "d"), "rule"),
            id="rule-over-section",
        ),
        pytest.param(
            "action: Audit\nseverity: 3\ntags: [a]\nmessage: spec\n",
            "",
            "    action:\n    tags: []\n    message: ''\n",
            (Action.AUDIT, 3, ("a",), "spec"),
            id="empty-values-inherit",
        ),
        pytest.param("severity: 10\n", "", "", (Action.BLOCK, 10, (), ""), id="severity-upper-bound"),
    ],
)
def test_rule_inherits_action_severity_tags_message(
    section: str,
    rule_list: str,
    model_field: str,
    spec_extra: str,
    section_extra: str,
    rule_extra: str,
    expected: tuple[Action, int, tuple[str, ...], str],
) -> None:
    """In every section, a rule takes action, severity, tags and message from the nearest level that sets them."""
    spec = SELECT_NGINX + spec_extra + f"{section}:\n" + section_extra + rule_list
    (rule,) = getattr(parse_one(ksp(spec + rule_extra)), model_field)
    assert (rule.action, rule.severity, rule.tags, rule.message) == expected


def test_rules_of_one_policy_inherit_independently() -> None:
    """Each matchPaths entry overrides only for itself; its siblings keep the inherited values."""
    spec = SELECT_NGINX + "action: Audit\nprocess:\n  matchPaths:\n  - path: /a\n    action: Block\n  - path: /b\n"
    rules = parse_one(ksp(spec)).process_rules
    assert [(rule.path, rule.action) for rule in rules] == [("/a", Action.BLOCK), ("/b", Action.AUDIT)]


# --- presets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param("{name: filelessExec, action: Block}", Action.BLOCK, id="block"),
        pytest.param("{name: filelessExec, action: Audit}", Action.AUDIT, id="audit"),
        pytest.param("{name: filelessExec, action: null}", Action.BLOCK, id="null-action-blocks"),
        pytest.param("{name: filelessExec}", Action.BLOCK, id="missing-action-blocks"),
    ],
)
def test_fileless_exec_preset_alone_is_a_policy(entry: str, expected: Action) -> None:
    """A policy may hold only presets; filelessExec takes Block or Audit, and a missing action blocks."""
    policy = parse_one(ksp(presets(entry)))
    assert policy.process_rules == ()
    assert policy.presets == (
        PresetRule(preset=Preset.FILELESS_EXEC, action=expected, severity=1, tags=(), message=""),
    )


def test_preset_takes_spec_severity_tags_message_but_not_its_action() -> None:
    """Like KubeArmor, a preset gets the spec's severity, tags and message, and blocks unless it says Audit."""
    spec = presets("{name: filelessExec}") + "action: Audit\nseverity: 7\ntags: [MITRE, T1620]\nmessage: fileless\n"
    policy = parse_one(ksp(spec + BLOCK_APT))
    assert policy.presets == (
        PresetRule(
            preset=Preset.FILELESS_EXEC, action=Action.BLOCK, severity=7, tags=("MITRE", "T1620"), message="fileless"
        ),
    )
    assert [(rule.path, rule.action, rule.severity) for rule in policy.process_rules] == [
        ("/usr/bin/apt", Action.AUDIT, 7)
    ]


# --- ownerOnly, readOnly, file, network and capabilities rules --------------------------------------


def test_process_rules_read_owner_only() -> None:
    """ownerOnly on a process path, execname or directory rule is carried; leaving it out means false."""
    spec = SELECT_NGINX + (
        "process:\n  matchPaths:\n  - path: /bin/su\n    ownerOnly: true\n  - execname: sudo\n    ownerOnly: true\n"
        "  - path: /bin/sh\n  matchDirectories:\n  - dir: /sbin/\n    ownerOnly: true\n"
    )
    rules = parse_one(ksp(spec)).process_rules
    assert [(rule.path or rule.execname, rule.owner_only, rule.read_only) for rule in rules] == [
        ("/bin/su", True, False),
        ("sudo", True, False),
        ("/bin/sh", False, False),
        ("/sbin/", True, False),
    ]


def test_process_paths_and_execnames_read_allowed_args() -> None:
    """allowedArgs on a process matchPaths entry (path or execname) is carried in order, once each argument."""
    spec = SELECT_NGINX + (
        "process:\n  matchPaths:\n  - path: /bin/ls\n    allowedArgs: [-l, /tmp, -l]\n    action: Block\n"
        "  - execname: python3\n    allowedArgs: ['--version']\n    action: Allow\n  - path: /bin/sh\n"
    )
    rules = parse_one(ksp(spec)).process_rules
    assert [(rule.path or rule.execname, rule.allowed_args) for rule in rules] == [
        ("/bin/ls", ("-l", "/tmp")),
        ("python3", ("--version",)),
        ("/bin/sh", ()),
    ]


def test_file_rules_parse_to_path_rules() -> None:
    """file.matchPaths and matchDirectories become path rules with readOnly, ownerOnly and recursive."""
    spec = SELECT_NGINX + (
        "file:\n  action: Audit\n  matchPaths:\n  - path: /etc/shadow\n    readOnly: true\n    ownerOnly: true\n"
        "  - path: /etc/passwd\n    readOnly: false\n  matchDirectories:\n  - dir: /etc/ssl/\n    recursive: true\n"
        "    readOnly: true\n    action: Block\n"
    )
    policy = parse_one(ksp(spec))
    verdict = {"severity": 1, "tags": (), "message": ""}
    assert policy.process_rules == ()
    assert policy.file_rules == (
        PathRule(path="/etc/shadow", read_only=True, owner_only=True, action=Action.AUDIT, **verdict),
        PathRule(path="/etc/passwd", action=Action.AUDIT, **verdict),
        PathRule(path="/etc/ssl/", recursive=True, read_only=True, action=Action.BLOCK, **verdict),
    )


def test_pattern_rules_parse_to_path_rules_with_their_qualifiers_and_verdicts() -> None:
    """process and file matchPatterns become pattern rules with ownerOnly, readOnly and the inherited verdict."""
    spec = SELECT_NGINX + (
        "severity: 6\nprocess:\n  action: Audit\n  matchPatterns:\n  - pattern: /usr/bin/apt*\n    ownerOnly: true\n"
        "file:\n  tags: [secrets]\n  matchPatterns:\n  - pattern: /etc/*hado?\n    readOnly: true\n"
        "    action: Allow\n    message: read only\n  - pattern: /**/*.conf\n  matchPaths:\n  - path: /etc/passwd\n"
    )
    policy = parse_one(ksp(spec))
    assert policy.process_rules == (
        PathRule(
            path="", pattern="/usr/bin/apt*", owner_only=True, action=Action.AUDIT, severity=6, tags=(), message=""
        ),
    )
    secrets = {"severity": 6, "tags": ("secrets",)}
    assert policy.file_rules == (
        PathRule(path="/etc/passwd", action=Action.BLOCK, message="", **secrets),
        PathRule(path="", pattern="/etc/*hado?", read_only=True, action=Action.ALLOW, message="read only", **secrets),
        PathRule(path="", pattern="/**/*.conf", action=Action.BLOCK, message="", **secrets),
    )


def test_pattern_at_the_byte_limit_and_with_runs_of_stars_is_accepted_as_written() -> None:
    """A 255-byte glob fits the guest's maps; '***' is kept as written (the agent reads it as '**')."""
    pattern = "/" + "é" * 125 + "x***"
    assert len(pattern.encode()) == MAX_PATH_BYTES
    rule = parse_one(ksp(SELECT_NGINX + f"file:\n  matchPatterns:\n  - pattern: '{pattern}'\n")).file_rules[0]
    assert rule.pattern == pattern


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *(pytest.param(name, (name,), id=name) for name in PROTOCOLS),
        *(pytest.param(name.upper(), (name,), id=name.upper()) for name in PROTOCOLS),
        pytest.param("tcp,udp", ("tcp", "udp"), id="comma-separated"),
        pytest.param("'Tcp, icmp,UDP'", ("tcp", "icmp", "udp"), id="spaces-and-any-case-before-the-last"),
        pytest.param("udp,tcp,udp", ("udp", "tcp"), id="repeats-once"),
    ],
)
def test_protocols_become_one_network_rule_each(value: str, expected: tuple[str, ...]) -> None:
    """A protocol in either case, or a comma-separated list of them, gives a lower-case rule per protocol."""
    spec = SELECT_NGINX + f"network:\n  action: Allow\n  matchProtocols:\n  - protocol: {value}\n"
    rules = parse_one(ksp(spec)).network_rules
    assert rules == tuple(
        NetworkRule(protocol=name, action=Action.ALLOW, severity=1, tags=(), message="") for name in expected
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *(pytest.param(name, (name,), id=name) for name in CAPABILITIES),
        pytest.param("cap_net_raw", ("net_raw",), id="cap-prefix"),
        pytest.param("CAP_net_raw", ("net_raw",), id="upper-case-prefix"),
        pytest.param("NET_ADMIN,sys_admin", ("net_admin", "sys_admin"), id="comma-separated-any-case-before-the-last"),
        pytest.param("'cap_sys_ptrace, cap_sys_module'", ("sys_ptrace", "sys_module"), id="spaces"),
    ],
)
def test_capabilities_become_one_rule_each(value: str, expected: tuple[str, ...]) -> None:
    """A capability with or without cap_, or a comma-separated list of them, gives a rule per capability."""
    spec = SELECT_NGINX + f"capabilities:\n  matchCapabilities:\n  - capability: {value}\n    severity: 4\n"
    rules = parse_one(ksp(spec)).capability_rules
    assert rules == tuple(
        CapabilityRule(capability=name, action=Action.BLOCK, severity=4, tags=(), message="") for name in expected
    )


@pytest.mark.parametrize(
    ("names", "field"),
    [
        pytest.param(PROTOCOLS, "network.matchProtocols.protocol", id="protocols"),
        pytest.param(CAPABILITIES, "capabilities.matchCapabilities.capability", id="capabilities"),
    ],
)
def test_known_names_are_the_crd_pattern_names(names: tuple[str, ...], field: str) -> None:
    """Kadapter knows exactly the protocols and capabilities the CRD pattern lets through, in lower case."""
    schema = policy_schema("KubeArmorPolicy")["properties"]["spec"]
    section, rule_list, key = field.split(".")
    pattern = schema["properties"][section]["properties"][rule_list]["items"]["properties"][key]["pattern"]
    alternatives = re.fullmatch(r"\((.*)\)\$", pattern)
    assert alternatives is not None
    assert sorted(names) == sorted({name.lower() for name in alternatives.group(1).split("|")})


def test_every_section_together() -> None:
    """One policy may hold process, file, network and capabilities rules and presets at once."""
    spec = presets("{name: filelessExec}") + BLOCK_APT + FILE_SHADOW + NETWORK_RAW + CAPABILITY_NET_RAW
    policy = parse_one(ksp(spec))
    assert [len(rules) for rules in (policy.process_rules, policy.file_rules, policy.network_rules)] == [1, 1, 1]
    assert (len(policy.capability_rules), len(policy.presets)) == (1, 1)


# --- fromSource -----------------------------------------------------------------------------------

FROM_BASH_AND_PYTHON = "    fromSource:\n    - path: /bin/bash\n    - path: /usr/bin/python3\n"
# Every rule list that takes fromSource, as a section of one rule, and where its rules land in the model.
SOURCED_RULES = [
    pytest.param(BLOCK_APT, "process_rules", id="process.matchPaths.path"),
    pytest.param("process:\n  matchPaths:\n  - execname: apt\n", "process_rules", id="process.matchPaths.execname"),
    pytest.param("process:\n  matchDirectories:\n  - dir: /sbin/\n", "process_rules", id="process.matchDirectories"),
    pytest.param(FILE_SHADOW, "file_rules", id="file.matchPaths"),
    pytest.param(FILE_DIRECTORY, "file_rules", id="file.matchDirectories"),
    pytest.param(NETWORK_RAW, "network_rules", id="network.matchProtocols"),
    pytest.param(CAPABILITY_NET_RAW, "capability_rules", id="capabilities.matchCapabilities"),
]


@pytest.mark.parametrize(("section", "model_field"), SOURCED_RULES)
def test_from_source_narrows_every_kind_of_rule(section: str, model_field: str) -> None:
    """fromSource on any rule list that has it becomes the rule's from_source, paths in file order."""
    (rule,) = getattr(parse_one(ksp(SELECT_NGINX + section + FROM_BASH_AND_PYTHON)), model_field)
    assert rule.from_source == ("/bin/bash", "/usr/bin/python3")


@pytest.mark.parametrize(("section", "model_field"), SOURCED_RULES)
def test_rule_without_from_source_covers_every_process(section: str, model_field: str) -> None:
    """A rule with no fromSource has no sources: it applies to every process, as before fromSource was read."""
    (rule,) = getattr(parse_one(ksp(SELECT_NGINX + section)), model_field)
    assert rule.from_source == ()


def test_from_source_is_kept_for_its_own_rule_only() -> None:
    """Sources belong to the entry that lists them: the next entry of the list, and other lists, have none."""
    spec = SELECT_NGINX + (
        "file:\n  matchPaths:\n  - path: /etc/shadow\n" + FROM_BASH_AND_PYTHON + "  - path: /etc/passwd\n"
        "  matchDirectories:\n  - dir: /etc/ssl/\n    fromSource:\n    - path: /usr/bin/curl\n"
    )
    rules = parse_one(ksp(spec)).file_rules
    assert [(rule.path, rule.from_source) for rule in rules] == [
        ("/etc/shadow", ("/bin/bash", "/usr/bin/python3")),
        ("/etc/passwd", ()),
        ("/etc/ssl/", ("/usr/bin/curl",)),
    ]


def test_from_source_applies_to_each_name_of_a_comma_separated_entry() -> None:
    """An entry naming several protocols or capabilities gives each of its rules the entry's sources."""
    spec = SELECT_NGINX + (
        "network:\n  matchProtocols:\n  - protocol: tcp,udp\n" + FROM_BASH_AND_PYTHON + "capabilities:\n"
        "  matchCapabilities:\n  - capability: net_raw,net_admin\n    fromSource:\n    - path: /bin/ping\n"
    )
    policy = parse_one(ksp(spec))
    assert [(rule.protocol, rule.from_source) for rule in policy.network_rules] == [
        ("tcp", ("/bin/bash", "/usr/bin/python3")),
        ("udp", ("/bin/bash", "/usr/bin/python3")),
    ]
    assert [(rule.capability, rule.from_source) for rule in policy.capability_rules] == [
        ("net_raw", ("/bin/ping",)),
        ("net_admin", ("/bin/ping",)),
    ]


def test_from_source_lists_each_executable_once_in_file_order() -> None:
    """A source listed twice is kept once, where it first appears."""
    sources = "    fromSource:\n    - path: /usr/bin/python3\n    - path: /bin/bash\n    - path: /usr/bin/python3\n"
    (rule,) = parse_one(ksp(_rule(sources))).process_rules
    assert rule.from_source == ("/usr/bin/python3", "/bin/bash")


def test_from_source_keeps_the_rule_model_otherwise_unchanged() -> None:
    """A rule with sources is the same rule, with its inherited verdict, plus from_source."""
    spec = (
        SELECT_NGINX + "action: Audit\nseverity: 6\nfile:\n  matchPaths:\n  - path: /etc/shadow\n    readOnly: true\n"
    )
    policy = parse_one(ksp(spec + "    fromSource:\n    - path: /bin/cat\n"))
    assert policy.file_rules == (
        PathRule(
            path="/etc/shadow",
            read_only=True,
            from_source=("/bin/cat",),
            action=Action.AUDIT,
            severity=6,
            tags=(),
            message="",
        ),
    )


def test_from_source_path_at_the_byte_limit_is_accepted() -> None:
    """A source of 255 bytes, the guest's limit for any path, is accepted."""
    path = "/" + "é" * ((MAX_PATH_BYTES - 1) // 2)
    (rule,) = parse_one(ksp(_rule(f"    fromSource:\n    - path: {path}\n"))).process_rules
    assert rule.from_source == (path,)


# --- accepted shapes ------------------------------------------------------------------------------


def test_namespace_defaults_to_default_for_namespaced_policy() -> None:
    """A KubeArmorPolicy without metadata.namespace lives in 'default'."""
    assert parse_one(ksp(SELECT_NGINX + BLOCK_APT)).namespace == "default"


def test_cluster_policy_ignores_namespace_and_reads_expressions() -> None:
    """A KubeArmorClusterPolicy has no namespace and selects by namespace/label expressions."""
    spec = """\
    selector:
      matchExpressions:
      - key: namespace
        operator: NotIn
        values: [kube-system]
      - key: label
        operator: In
        values: ["app=nginx", "tier=web"]
    """
    policy = parse_one(
        ksp(textwrap.dedent(spec) + BLOCK_APT, kind="KubeArmorClusterPolicy", metadata="{name: c, namespace: x}")
    )
    assert policy.kind is PolicyKind.CLUSTER_POLICY
    assert policy.namespace is None
    assert policy.selector.match_expressions == (
        LabelExpression(key="namespace", operator="NotIn", values=("kube-system",)),
        LabelExpression(key="label", operator="In", values=("app=nginx", "tier=web")),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"[nginx, sidecar]"', ("nginx", "sidecar"), id="bracketed-list"),
        pytest.param("nginx", ("nginx",), id="single-name"),
        pytest.param('"[ nginx ,, nginx, b ]"', ("nginx", "b"), id="spaces-empties-repeats"),
    ],
)
def test_container_name_label_becomes_container_names(value: str, expected: tuple[str, ...]) -> None:
    """The kubearmor.io/container.name pseudo label lists containers and is not a pod label."""
    spec = f"selector:\n  matchLabels:\n    app: nginx\n    kubearmor.io/container.name: {value}\n"
    selector = parse_one(ksp(spec + BLOCK_APT)).selector
    assert selector.container_names == expected
    assert selector.match_labels == (("app", "nginx"),)


def test_match_labels_are_sorted_pairs() -> None:
    """matchLabels become sorted (key, value) pairs whatever the file order."""
    spec = "selector:\n  matchLabels:\n    z: '1'\n    a: '2'\n"
    assert parse_one(ksp(spec + BLOCK_APT)).selector.match_labels == (("a", "2"), ("z", "1"))


EVERYTHING = Selector(match_labels=(), container_names=(), match_expressions=())


@pytest.mark.parametrize("kind", ["KubeArmorPolicy", "KubeArmorClusterPolicy"])
@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("", id="no-selector"),
        pytest.param("selector:\n", id="null-selector"),
        pytest.param("selector: {}\n", id="empty-selector"),
        pytest.param("selector: {matchExpressions: null}\n", id="null-expressions"),
        pytest.param("selector: {matchExpressions: []}\n", id="empty-expressions"),
    ],
)
def test_empty_selector_selects_everything_in_reach(kind: str, selector: str) -> None:
    """As in KubeArmor, a missing or empty selector is accepted: all pods of the namespace, or of the cluster."""
    policy = parse_one(ksp(selector + BLOCK_APT, kind=kind, metadata="{name: p, namespace: web}"))
    assert policy.selector == EVERYTHING
    assert policy.namespace == ("web" if kind == "KubeArmorPolicy" else None)


@pytest.mark.parametrize(
    ("expressions", "expected"),
    [
        pytest.param(
            "- {key: namespace, operator: NotIn, values: [kube-system, kubearmor]}\n",
            (LabelExpression("namespace", "NotIn", ("kube-system", "kubearmor")),),
            id="only-namespace-notin",
        ),
        pytest.param(
            "- {key: label, operator: NotIn, values: [app=nginx]}\n",
            (LabelExpression("label", "NotIn", ("app=nginx",)),),
            id="only-label-notin",
        ),
        pytest.param(
            "- {key: namespace, operator: NotIn, values: [a]}\n- {key: namespace, operator: In, values: [a, b]}\n",
            (LabelExpression("namespace", "NotIn", ("a",)), LabelExpression("namespace", "In", ("a", "b"))),
            id="notin-then-in-in-file-order",
        ),
        pytest.param(
            "- {key: label, operator: In, values: [app=x]}\n- {key: label, operator: NotIn, values: [tier=y]}\n",
            (LabelExpression("label", "In", ("app=x",)), LabelExpression("label", "NotIn", ("tier=y",))),
            id="in-then-notin-in-file-order",
        ),
    ],
)
def test_cluster_policy_expressions_are_kept_in_file_order(
    expressions: str, expected: tuple[LabelExpression, ...]
) -> None:
    """A cluster policy may select by NotIn alone; its expressions keep their order, which KubeArmor's reading needs."""
    spec = "selector:\n  matchExpressions:\n" + textwrap.indent(expressions, "  ")
    policy = parse_one(ksp(spec + BLOCK_APT, kind="KubeArmorClusterPolicy"))
    assert policy.selector == Selector(match_labels=(), container_names=(), match_expressions=expected)


def test_empty_match_labels_selects_whole_namespace() -> None:
    """An explicit 'matchLabels: {}' is accepted as selecting every pod of the namespace."""
    selector = parse_one(ksp("selector:\n  matchLabels: {}\n" + BLOCK_APT)).selector
    assert selector == Selector(match_labels=(), container_names=(), match_expressions=())


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("presets: []\napparmor: ''\n", id="empty-presets-apparmor"),
    ],
)
def test_empty_unenforced_sections_are_accepted(extra: str) -> None:
    """Sections Kadapter does not enforce are fine while they are empty."""
    spec = SELECT_NGINX + extra
    spec += (
        "  matchPaths:\n  - path: /bin/sh\n" if "process:" in extra else "process:\n  matchPaths:\n  - path: /bin/sh\n"
    )
    assert len(parse_one(ksp(spec)).process_rules) == 1


def test_rule_with_owner_only_false_and_empty_from_source_is_accepted() -> None:
    """ownerOnly: false and fromSource: [] change nothing, so they are allowed: the rule covers every process."""
    spec = SELECT_NGINX + "process:\n  matchPaths:\n  - path: /bin/sh\n    ownerOnly: false\n    fromSource: []\n"
    rule = parse_one(ksp(spec)).process_rules[0]
    assert (rule.path, rule.owner_only, rule.from_source) == ("/bin/sh", False, ())


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/" + "a" * (MAX_PATH_CHARACTERS - 1), id="schema-limit-in-characters"),
        pytest.param("/" + "é" * ((MAX_PATH_BYTES - 1) // 2), id="kadapter-limit-in-bytes"),
    ],
)
def test_path_at_the_limits_is_accepted(path: str) -> None:
    """A path of 200 characters (KubeArmor's schema) or 255 bytes (the guest's maps) is accepted."""
    assert len(path) <= MAX_PATH_CHARACTERS and len(path.encode()) <= MAX_PATH_BYTES
    spec = SELECT_NGINX + f"process:\n  matchPaths:\n  - path: {path}\n"
    assert parse_one(ksp(spec)).process_rules[0].path == path


def test_path_limit_matches_guest_bpf_maps() -> None:
    """The host's path limit leaves room for the NUL in the guest's PATH_MAX-byte map keys."""
    assert MAX_PATH_BYTES == PATH_MAX - 1


def test_multi_document_stream_skips_empty_documents_and_keeps_order() -> None:
    """Empty documents are skipped; the rest come back in file order."""
    second = ksp(SELECT_NGINX + BLOCK_APT, metadata="name: second")
    text = "---\n# nothing here\n---\n" + ksp(SELECT_NGINX + BLOCK_APT, metadata="name: first") + "---\n" + second
    assert [policy.name for policy in parse_policies(text, source="p.yaml")] == ["first", "second"]


def test_empty_stream_has_no_policies() -> None:
    """A file of comments only holds no policies and is not an error."""
    assert parse_policies("# nothing\n", source="p.yaml") == []


def test_status_from_kubectl_output_is_ignored() -> None:
    """A policy exported by kubectl, with the status KubeArmor's controller wrote, still loads."""
    assert parse_one(USE_CASE + "status:\n  status: OK\n").name == "ksp-nginx-block-apt"


# --- rejections -----------------------------------------------------------------------------------

NOT_ENFORCED = "not enforced by Kadapter yet"


def _rule(extra: str) -> str:
    """Build a spec whose single rule carries extra lines (already indented under the rule)."""
    return SELECT_NGINX + "process:\n  matchPaths:\n  - path: /bin/sh\n" + extra


def _path(path: str) -> str:
    """Build a spec whose single rule has the given YAML path scalar."""
    return SELECT_NGINX + f"process:\n  matchPaths:\n  - path: {path}\n"


SOURCE_PATH = "spec.process.matchPaths[0].fromSource[0].path"


REJECTIONS = [
    # document and header
    pytest.param("- a\n- b\n", "", "expected a mapping (a KubeArmor policy object), got a list", id="not-a-mapping"),
    pytest.param(
        USE_CASE.replace("security.kubearmor.com/v1", "security.kubearmor.com/v2"),
        "apiVersion",
        "expected 'security.kubearmor.com/v1', got 'security.kubearmor.com/v2'",
        id="wrong-api-version",
    ),
    pytest.param(
        USE_CASE.replace("apiVersion: security.kubearmor.com/v1\n", ""),
        "apiVersion",
        "required: expected a string",
        id="missing-api-version",
    ),
    pytest.param(
        USE_CASE.replace("KubeArmorPolicy", "KubeArmorHostPolicy"),
        "kind",
        "host policies are not for Kata pods",
        id="host-policy",
    ),
    pytest.param(USE_CASE.replace("KubeArmorPolicy", "Pod"), "kind", "unknown kind 'Pod'", id="unknown-kind"),
    pytest.param(USE_CASE.replace("kind: KubeArmorPolicy\n", ""), "kind", "required", id="missing-kind"),
    pytest.param(USE_CASE + "extra: 1\n", "extra", "unknown field", id="unknown-top-level-field"),
    pytest.param(ksp(SELECT_NGINX + BLOCK_APT, metadata="{}"), "metadata.name", "required", id="missing-name"),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT, metadata="name: Bad_Name"),
        "metadata.name",
        "expected a DNS-1123 subdomain",
        id="name-not-dns",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT, metadata="name: " + "a" * 254),
        "metadata.name",
        "at most 253",
        id="name-too-long",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT, metadata="{name: ok, namespace: Prod.x}"),
        "metadata.namespace",
        "expected a DNS-1123 label",
        id="namespace-not-dns",
    ),
    pytest.param(USE_CASE.split("spec:", maxsplit=1)[0], "spec", "no rules", id="missing-spec"),
    pytest.param(
        USE_CASE + "status:\n  PolicyStatus: OK\n",
        "status.PolicyStatus",
        "unknown field; expected one of: status",
        id="unknown-status-field",
    ),
    pytest.param(ksp(SELECT_NGINX + BLOCK_APT + "proces: {}\n"), "spec.proces", "unknown field", id="unknown-spec"),
    # selector
    pytest.param(ksp("selector: [app]\n" + BLOCK_APT), "spec.selector", "expected a mapping", id="selector-list"),
    pytest.param(
        ksp("selector:\n  matchLabel: {app: x}\n" + BLOCK_APT),
        "spec.selector.matchLabel",
        "unknown field",
        id="selector-unknown-key",
    ),
    pytest.param(
        ksp("selector:\n  matchLabels: [app]\n" + BLOCK_APT),
        "spec.selector.matchLabels",
        "expected a mapping, got a list",
        id="match-labels-not-mapping",
    ),
    pytest.param(
        ksp("selector:\n  matchLabels:\n    version: 2\n" + BLOCK_APT),
        "spec.selector.matchLabels.version",
        "expected a string (quote the value in YAML), got an integer",
        id="label-value-not-string",
    ),
    pytest.param(
        ksp("selector:\n  matchExpressions:\n  - {key: namespace, operator: In, values: [a]}\n" + BLOCK_APT),
        "spec.selector.matchExpressions[0].key",
        "expected one of label, got 'namespace'",
        id="namespaced-policy-namespace-key",
    ),
    pytest.param(
        ksp("selector:\n  matchExpressions:\n  - {key: label, operator: Exists, values: [a=b]}\n" + BLOCK_APT),
        "spec.selector.matchExpressions[0].operator",
        "expected one of In, NotIn, got 'Exists'",
        id="bad-operator",
    ),
    pytest.param(
        ksp("selector:\n  matchExpressions:\n  - {key: label, operator: In, values: []}\n" + BLOCK_APT),
        "spec.selector.matchExpressions[0].values",
        "expected at least one value",
        id="no-values",
    ),
    pytest.param(
        ksp("selector:\n  matchExpressions:\n  - {key: label, operator: In, values: [a=b, nginx]}\n" + BLOCK_APT),
        "spec.selector.matchExpressions[0].values[1]",
        "expected a label as 'key=value', got 'nginx'",
        id="label-value-without-equals",
    ),
    pytest.param(
        ksp("selector:\n  matchExpressions:\n  - {key: label, operator: In, values: [a=b], x: 1}\n" + BLOCK_APT),
        "spec.selector.matchExpressions[0].x",
        "unknown field",
        id="expression-unknown-key",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT, kind="KubeArmorClusterPolicy"),
        "spec.selector.matchLabels",
        "unknown field; expected one of: matchExpressions",
        id="cluster-policy-match-labels",
    ),
    pytest.param(
        ksp("selector: {matchLabels: {}}\n" + BLOCK_APT, kind="KubeArmorClusterPolicy"),
        "spec.selector.matchLabels",
        "unknown field; expected one of: matchExpressions",
        id="cluster-policy-empty-match-labels",
    ),
    pytest.param(
        ksp("selector: {matchExpressions: {key: namespace}}\n" + BLOCK_APT, kind="KubeArmorClusterPolicy"),
        "spec.selector.matchExpressions",
        "expected a list, got a mapping",
        id="cluster-policy-expressions-not-list",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {operator: NotIn, values: [kube-system]}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].key",
        "required: expected a string",
        id="cluster-policy-expression-without-key",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {key: namespace, values: [kube-system]}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].operator",
        "required: expected a string",
        id="cluster-policy-expression-without-operator",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {key: namespace, operator: NotIn}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].values",
        "required: expected a list",
        id="cluster-policy-expression-without-values",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {key: namespace, operator: In, values: []}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].values",
        "expected at least one value, got an empty list",
        id="cluster-policy-namespace-in-no-values",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {key: namespace, operator: NotIn, values: [7]}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].values[0]",
        "expected a string",
        id="cluster-policy-namespace-not-string",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {key: label, operator: NotIn, values: [nginx]}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].values[0]",
        "expected a label as 'key=value', got 'nginx'",
        id="cluster-policy-label-without-equals",
    ),
    pytest.param(
        ksp(
            "selector:\n  matchExpressions:\n  - {key: pod, operator: In, values: [a]}\n" + BLOCK_APT,
            kind="KubeArmorClusterPolicy",
        ),
        "spec.selector.matchExpressions[0].key",
        "expected one of namespace, label, got 'pod'",
        id="cluster-policy-bad-key",
    ),
    # process section
    pytest.param(
        ksp(SELECT_NGINX),
        "spec",
        "no rules: Kadapter enforces spec.process (matchPaths, matchDirectories, matchPatterns), spec.file "
        "(matchPaths, matchDirectories, matchPatterns), spec.network (matchProtocols, matchDNSQueries), "
        "spec.capabilities (matchCapabilities), spec.syscalls (matchSyscalls, matchPaths) and spec.presets, "
        "and this policy has none",
        id="no-rules",
    ),
    pytest.param(ksp(SELECT_NGINX + "presets: []\n"), "spec", "this policy has none", id="empty-presets-only"),
    pytest.param(
        ksp(SELECT_NGINX + "process: {}\n"),
        "spec.process",
        "no rules: this section has no matchPaths or matchDirectories or matchPatterns, where Kadapter reads its rules",
        id="empty-process",
    ),
    pytest.param(
        ksp(presets("{name: filelessExec}") + "process: {}\n"),
        "spec.process",
        "this section has no matchPaths or matchDirectories",
        id="empty-process-beside-presets",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process: [a]\n"), "spec.process", "expected a mapping, got a list", id="process-not-mapping"
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPaths: []\n"),
        "spec.process.matchPaths",
        "expected a non-empty list",
        id="empty-match-paths",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPaths: /bin/sh\n"),
        "spec.process.matchPaths",
        "expected a list, got a string",
        id="match-paths-not-list",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPath: []\n"),
        "spec.process.matchPath",
        "unknown field",
        id="process-unknown-key",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPaths:\n  - /bin/sh\n"),
        "spec.process.matchPaths[0]",
        "expected a mapping, got a string",
        id="rule-not-mapping",
    ),
    pytest.param(
        ksp(_rule("    readOnly: true\n")), "spec.process.matchPaths[0].readOnly", "unknown field", id="rule-unknown"
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPaths:\n  - action: Block\n"),
        "spec.process.matchPaths[0]",
        "expected either path or execname",
        id="missing-path",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPaths:\n  - path: /usr/bin/apt\n    execname: apt\n"),
        "spec.process.matchPaths[0]",
        "expected either path or execname",
        id="path-and-execname",
    ),
    # paths
    pytest.param(
        ksp(_path("usr/bin/apt")),
        "spec.process.matchPaths[0].path",
        "expected an absolute path (starting with '/', not ending in '/'), got 'usr/bin/apt'",
        id="relative",
    ),
    pytest.param(ksp(_path("42")), "spec.process.matchPaths[0].path", "expected a string", id="path-not-string"),
    pytest.param(
        ksp(_path("/usr/bin/")),
        "spec.process.matchPaths[0].path",
        "not ending in '/'), got '/usr/bin/'",
        id="trailing-slash",
    ),
    pytest.param(
        ksp(_path("/usr/lib/../bin/apt")),
        "spec.process.matchPaths[0].path",
        "not normalised: the kernel reports files without '//', '.' or '..' segments, so this rule would "
        "never match; write '/usr/bin/apt'",
        id="dot-dot-segment",
    ),
    pytest.param(
        ksp(_path("/usr/./bin/apt")), "spec.process.matchPaths[0].path", "write '/usr/bin/apt'", id="dot-segment"
    ),
    pytest.param(
        ksp(_path("//usr/bin/apt")), "spec.process.matchPaths[0].path", "write '/usr/bin/apt'", id="double-lead"
    ),
    pytest.param(
        ksp(_path("/usr//bin/apt")), "spec.process.matchPaths[0].path", "write '/usr/bin/apt'", id="double-mid"
    ),
    pytest.param(ksp(_path("/usr/bin/.")), "spec.process.matchPaths[0].path", "write '/usr/bin'", id="trailing-dot"),
    pytest.param(ksp(_path("/usr/bin/..")), "spec.process.matchPaths[0].path", "write '/usr'", id="trailing-dot-dot"),
    pytest.param(ksp(_path('"/bin/s\\0h"')), "spec.process.matchPaths[0].path", "NUL byte", id="nul"),
    pytest.param(
        ksp(_path("/" + "a" * MAX_PATH_CHARACTERS)),
        "spec.process.matchPaths[0].path",
        "expected at most 200 characters, got 201",
        id="too-long-for-the-schema",
    ),
    pytest.param(
        ksp(_path("/" + "é" * 127 + "a")),
        "spec.process.matchPaths[0].path",
        "path is 256 bytes of UTF-8; Kadapter's limit is 255 bytes",
        id="too-long",
    ),
    pytest.param(
        ksp(_path("/" + "é" * 128)),
        "spec.process.matchPaths[0].path",
        "path is 257 bytes of UTF-8",
        id="too-long-in-bytes-not-characters",
    ),
    # action, severity, tags, message
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "action: Deny\n"),
        "spec.action",
        "expected one of Allow, Audit, Block, got 'Deny'",
        id="unknown-action",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "action: block\n"),
        "spec.action",
        "expected one of Allow, Audit, Block, got 'block'",
        id="lowercase-action",
    ),
    pytest.param(
        ksp(_rule("    action: ''\n")),
        "spec.process.matchPaths[0].action",
        "expected one of Allow, Audit, Block, got ''",
        id="empty-action",
    ),
    pytest.param(ksp(SELECT_NGINX + BLOCK_APT + "action: BLOCK\n"), "spec.action", "got 'BLOCK'", id="upper-action"),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "action: [Block]\n"),
        "spec.action",
        "expected a string, got a list",
        id="action-not-string",
    ),
    pytest.param(
        ksp(_rule("    action: Permit\n")), "spec.process.matchPaths[0].action", "got 'Permit'", id="rule-action"
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "severity: 0\n"), "spec.severity", "from 1 to 10, got 0", id="severity-zero"
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "severity: 11\n"), "spec.severity", "from 1 to 10, got 11", id="severity-11"
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "severity: true\n"),
        "spec.severity",
        "expected an integer, got a boolean",
        id="severity-bool",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "severity: '5'\n"),
        "spec.severity",
        "expected an integer, got a string",
        id="severity-string",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  severity: 2.5\n  matchPaths:\n  - path: /bin/sh\n"),
        "spec.process.severity",
        "expected an integer, got a number",
        id="section-severity-float",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "tags: MITRE\n"), "spec.tags", "expected a list, got a string", id="tags-str"
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "tags: [MITRE, 1072]\n"),
        "spec.tags[1]",
        "expected a string (quote the value in YAML), got an integer",
        id="tag-not-string",
    ),
    pytest.param(
        ksp(_rule("    message: [a]\n")),
        "spec.process.matchPaths[0].message",
        "expected a string, got a list",
        id="message-not-string",
    ),
    # presets
    pytest.param(
        ksp(presets("{name: fileless}")),
        "spec.presets[0].name",
        "unknown preset 'fileless'; KubeArmor's presets are filelessExec, anonymousMapExec, protectEnv, "
        "protectProc, exec",
        id="preset-unknown",
    ),
    pytest.param(
        ksp(presets("{name: filelessExec, action: Allow}")),
        "spec.presets[0].action",
        "expected one of Audit, Block, got 'Allow'",
        id="preset-allow",
    ),
    pytest.param(
        ksp(presets("{name: filelessExec, action: audit}")),
        "spec.presets[0].action",
        "expected one of Allow, Audit, Block, got 'audit'",
        id="preset-lowercase-action",
    ),
    pytest.param(
        ksp(presets("{name: filelessExec, action: ''}")),
        "spec.presets[0].action",
        "expected one of Allow, Audit, Block, got ''",
        id="preset-empty-action",
    ),
    pytest.param(
        ksp(presets("{name: filelessExec, action: Deny}")),
        "spec.presets[0].action",
        "got 'Deny'",
        id="preset-unknown-action",
    ),
    pytest.param(
        ksp(presets("{name: filelessExec, severity: 3}")),
        "spec.presets[0].severity",
        "unknown field; expected one of: action, name",
        id="preset-extra-key",
    ),
    pytest.param(
        ksp(presets("{action: Block}")), "spec.presets[0].name", "required: expected a string", id="preset-no-name"
    ),
    pytest.param(
        ksp(presets("{name: filelessExec}", "{name: filelessExec, action: Audit}")),
        "spec.presets[1].name",
        "preset 'filelessExec' is listed twice",
        id="preset-duplicate",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "presets: [filelessExec]\n"),
        "spec.presets[0]",
        "expected a mapping, got a string",
        id="preset-name-only",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "presets: {name: filelessExec}\n"),
        "spec.presets",
        "expected a list, got a mapping",
        id="presets-not-list",
    ),
    # sections Kadapter does not enforce
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "apparmor: 'deny /x r,'\n"),
        "spec.apparmor",
        "BPF-LSM programs in the Kata guest kernel",
        id="apparmor",
    ),
    pytest.param(
        ksp(_rule("    allowedArgs: ['']\n")),
        "spec.process.matchPaths[0].allowedArgs[0]",
        "expected an argument of 1 to 254 bytes without NUL, got ''",
        id="allowed-args-empty",
    ),
    pytest.param(
        ksp(_rule(f"    allowedArgs: [-x, '{'a' * 255}']\n")),
        "spec.process.matchPaths[0].allowedArgs[1]",
        "expected an argument of 1 to 254 bytes",
        id="allowed-args-too-long",
    ),
    pytest.param(
        ksp(_rule('    allowedArgs: ["a\\0b"]\n')),
        "spec.process.matchPaths[0].allowedArgs[0]",
        "without NUL",
        id="allowed-args-nul",
    ),
    pytest.param(
        ksp(_rule("    allowedArgs: [-l, 3]\n")),
        "spec.process.matchPaths[0].allowedArgs[1]",
        "expected a string",
        id="allowed-args-not-string",
    ),
    pytest.param(
        ksp(_rule(f"    allowedArgs: [{', '.join(f'-{n}' for n in range(21))}]\n")),
        "spec.process.matchPaths[0].allowedArgs",
        "at most 20",
        id="allowed-args-over-20",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchDirectories:\n  - dir: /sbin/\n    allowedArgs: [-l]\n"),
        "spec.process.matchDirectories[0].allowedArgs",
        "unknown field",
        id="allowed-args-on-a-directory",
    ),
    pytest.param(
        ksp(SELECT_NGINX + FILE_SHADOW + "    allowedArgs: [-l]\n"),
        "spec.file.matchPaths[0].allowedArgs",
        "unknown field",
        id="allowed-args-on-a-file-rule",
    ),
    *(
        pytest.param(
            ksp(SELECT_NGINX + f"network:\n  matchDNSQueries:\n  - domain: '{domain}'\n"),
            "spec.network.matchDNSQueries[0].domain",
            f"expected a domain name (labels of 1 to 63 letters, digits, '-' or '_', separated by dots, 253 "
            f"characters at most; no wildcards: a domain covers every name below it), got {shown!r}",
            id=id_,
        )
        for domain, shown, id_ in (
            ("*.example.com", "*.example.com", "dns-wildcard"),
            ("", "", "dns-empty"),
            ("example..com", "example..com", "dns-empty-label"),
            ("exa mple.com", "exa mple.com", "dns-space"),
            ("x" * 64 + ".io", "x" * 64 + ".io", "dns-long-label"),
            ("a." * 127 + "io", "a." * 127 + "io", "dns-long-name"),
            ("ok.io, b@d.io", "b@d.io", "dns-second-of-a-list"),
        )
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchDNSQueries:\n  - domain: x.io\n    pts: false\n"),
        "spec.network.matchDNSQueries[0].pts",
        "unknown field",
        id="dns-with-pts",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPatterns: []\n  matchPaths:\n  - path: /bin/sh\n"),
        "spec.process.matchPatterns",
        "expected a non-empty list of rules, got an empty list",
        id="empty-process-patterns",
    ),
    # matchPatterns
    *(
        pytest.param(
            ksp(SELECT_NGINX + f"file:\n  matchPatterns:\n  - pattern: {value}\n"),
            "spec.file.matchPatterns[0].pattern",
            fragment,
            id=f"pattern-{id_}",
        )
        for value, fragment, id_ in (
            ("tmp/*", "expected an absolute pattern (starting with '/'), got 'tmp/*'", "relative"),
            ("'*.conf'", "expected an absolute pattern", "no-directory"),
            ("'/etc/[a-z]*'", "uses '[...]' character classes, which Kadapter does not match", "class"),
            ("'/etc/*]'", "uses '[...]' character classes", "closing-bracket"),
            ("'/etc/{passwd,shadow}'", "uses '{a,b}' alternations", "alternation"),
            ("'@{HOME}/x'", "expected an absolute pattern", "variable-first"),
            ("'/home/@{USER}/x'", "AppArmor variables such as '@{HOME}'", "variable"),
            ("'/etc/\\*'", "uses '\\' escapes", "escape"),
            ("/tmp/*/", "ends with '/': the kernel names files and directories without a final '/'", "directory"),
            ("/tmp/*/", "write '/tmp/*/**' for everything below", "directory-fix"),
            ("/tmp//*", "pattern '/tmp//*' is not normalised", "double-slash"),
            ("/tmp/../*", "is not normalised", "dot-dot"),
            ("/tmp/./*", "is not normalised", "dot"),
            ('"/tmp/a\\0*"', "NUL byte", "nul"),
            ("/" + "é" * 128, "pattern is 257 bytes of UTF-8; Kadapter's limit is 255 bytes", "too-long"),
            ("42", "expected a string", "not-string"),
        )
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  matchPatterns:\n  - ownerOnly: true\n"),
        "spec.file.matchPatterns[0].pattern",
        "required",
        id="pattern-missing",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPatterns:\n  - pattern: /tmp/*\n    readOnly: true\n"),
        "spec.process.matchPatterns[0].readOnly",
        "unknown field; expected one of: action, message, ownerOnly, pattern, severity, tags",
        id="process-pattern-read-only",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  matchPatterns:\n  - pattern: /tmp/*\n    path: /tmp/x\n"),
        "spec.file.matchPatterns[0].path",
        "unknown field",
        id="pattern-with-path",
    ),
    pytest.param(
        ksp(SELECT_NGINX + BLOCK_APT + "file: []\n"), "spec.file", "expected a mapping, got a list", id="file-shape"
    ),
    pytest.param(
        ksp(_rule("    ownerOnly: 'no'\n")),
        "spec.process.matchPaths[0].ownerOnly",
        "expected a boolean, got a string",
        id="owner-only-shape",
    ),
    # fromSource
    *(
        pytest.param(ksp(_rule(f"    fromSource:\n    - path: {value}\n")), SOURCE_PATH, fragment, id=f"source-{id_}")
        for value, fragment, id_ in (
            ("bin/bash", "expected an executable's absolute path (starting with '/', not ending in '/')", "relative"),
            ("/usr/bin/", "expected an executable's absolute path (starting with '/', not ending in '/')", "directory"),
            ("/", "expected an executable's absolute path", "root"),
            ("/usr/lib/../bin/bash", "not normalised: the kernel reports files without '//', '.' or '..'", "dot-dot"),
            ("/usr/lib/../bin/bash", "write '/usr/bin/bash'", "dot-dot-fix"),
            ("//bin/bash", "write '/bin/bash'", "double-lead"),
            ("/bin/./bash", "write '/bin/bash'", "dot"),
            ("/" + "a" * MAX_PATH_CHARACTERS, "expected at most 200 characters, got 201", "too-long-for-the-schema"),
            ("/" + "é" * 128, "path is 257 bytes of UTF-8; Kadapter's limit is 255 bytes", "too-long"),
            ('"/bin/ba\\0sh"', "NUL byte", "nul"),
            ("42", "expected a string", "not-string"),
        )
    ),
    *(
        pytest.param(ksp(_rule(f"    fromSource:\n    - {entry}\n")), SOURCE_PATH, fragment, id=f"source-{id_}")
        for entry, fragment, id_ in (
            ("{}", "required: expected the absolute path of an executable", "no-path"),
            ("{path: null}", "required: expected the absolute path of an executable", "null-path"),
        )
    ),
    pytest.param(
        ksp(_rule("    fromSource:\n    - dir: /bin/\n")),
        "spec.process.matchPaths[0].fromSource[0].dir",
        "unknown field; expected one of: path",
        id="source-dir",
    ),
    pytest.param(
        ksp(_rule("    fromSource:\n    - path: /bin/bash\n    - path: bash\n")),
        "spec.process.matchPaths[0].fromSource[1].path",
        "expected an executable's absolute path",
        id="source-second-entry",
    ),
    pytest.param(
        ksp(_rule("    fromSource: /bin/bash\n")),
        "spec.process.matchPaths[0].fromSource",
        "expected a list, got a string",
        id="source-not-a-list",
    ),
    pytest.param(
        ksp(_rule("    fromSource:\n    - /bin/bash\n")),
        "spec.process.matchPaths[0].fromSource[0]",
        "expected a mapping, got a string",
        id="source-entry-not-a-mapping",
    ),
    *(
        pytest.param(
            ksp(SELECT_NGINX + section + "    fromSource:\n    - {}\n"),
            f"{field}.fromSource[0].path",
            "required: expected the absolute path of an executable",
            id=f"source-no-path-{field}",
        )
        for section, field in (
            ("process:\n  matchDirectories:\n  - dir: /sbin/\n", "spec.process.matchDirectories[0]"),
            (FILE_SHADOW, "spec.file.matchPaths[0]"),
            (FILE_DIRECTORY, "spec.file.matchDirectories[0]"),
            (NETWORK_RAW, "spec.network.matchProtocols[0]"),
            (CAPABILITY_NET_RAW, "spec.capabilities.matchCapabilities[0]"),
        )
    ),
    *(
        pytest.param(
            ksp(SELECT_NGINX + section + "    fromSource:\n    - path: /usr/bin/../bin/ping\n"),
            f"{field}.fromSource[0].path",
            "write '/usr/bin/ping'",
            id=f"source-dot-dot-{field}",
        )
        for section, field in (
            (FILE_SHADOW, "spec.file.matchPaths[0]"),
            (NETWORK_RAW, "spec.network.matchProtocols[0]"),
            (CAPABILITY_NET_RAW, "spec.capabilities.matchCapabilities[0]"),
        )
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchPatterns:\n  - pattern: /tmp/*\n    fromSource:\n    - path: /bin/sh\n"),
        "spec.process.matchPatterns[0].fromSource",
        "unknown field",
        id="source-on-patterns",
    ),
    # file, network and capabilities sections
    *(
        pytest.param(
            ksp(SELECT_NGINX + f"{section}: {{}}\n"), f"spec.{section}", f"this section has no {lists}", id=id_
        )
        for section, lists, id_ in (
            ("file", "matchPaths or matchDirectories", "empty-file"),
            ("network", "matchProtocols or matchDNSQueries,", "empty-network"),
            ("capabilities", "matchCapabilities,", "empty-capabilities"),
        )
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  action: Block\n  severity: 3\n"),
        "spec.file",
        "no rules: this section has no matchPaths or matchDirectories",
        id="file-verdict-without-rules",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols: []\n"),
        "spec.network.matchProtocols",
        "expected a non-empty list of rules",
        id="empty-protocols",
    ),
    pytest.param(
        ksp(SELECT_NGINX + FILE_SHADOW + "    execname: shadow\n"),
        "spec.file.matchPaths[0].execname",
        "unknown field; expected one of: action, fromSource, message, ownerOnly, path, pts, readOnly, severity, tags",
        id="file-execname",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  matchPaths:\n  - readOnly: true\n"),
        "spec.file.matchPaths[0].path",
        "required: expected a string",
        id="file-without-path",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "process:\n  matchDirectories:\n  - dir: /bin/\n    readOnly: true\n"),
        "spec.process.matchDirectories[0].readOnly",
        "unknown field",
        id="process-directory-read-only",
    ),
    pytest.param(
        ksp(SELECT_NGINX + FILE_SHADOW + "    readOnly: 'yes'\n"),
        "spec.file.matchPaths[0].readOnly",
        "expected a boolean, got a string",
        id="read-only-shape",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  matchPaths:\n  - path: /etc/./shadow\n"),
        "spec.file.matchPaths[0].path",
        "not normalised: the kernel reports files without '//', '.' or '..' segments, so this rule would never "
        "match; write '/etc/shadow'",
        id="file-path-not-normalised",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  matchDirectories:\n  - dir: /etc//ssl/\n"),
        "spec.file.matchDirectories[0].dir",
        "write '/etc/ssl/'",
        id="file-dir-not-normalised",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "file:\n  matchPaths:\n  - path: /" + "é" * 128 + "\n"),
        "spec.file.matchPaths[0].path",
        "path is 257 bytes of UTF-8; Kadapter's limit is 255 bytes",
        id="file-path-too-long",
    ),
    pytest.param(
        ksp(SELECT_NGINX + FILE_SHADOW + "    action: Deny\n"),
        "spec.file.matchPaths[0].action",
        "expected one of Allow, Audit, Block, got 'Deny'",
        id="file-rule-action",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - protocol: Tcp\n"),
        "spec.network.matchProtocols[0].protocol",
        "expected a protocol: tcp, udp, raw, icmp, icmpv6, sctp, stream, dgram, rdm, seqpacket, dccp, packet or all "
        "(lowercase or uppercase), got 'Tcp'",
        id="protocol-mixed-case",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - protocol: http\n"),
        "spec.network.matchProtocols[0].protocol",
        "expected a protocol",
        id="protocol-unknown",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - protocol: xtcp\n"),
        "spec.network.matchProtocols[0].protocol",
        "unknown protocol 'xtcp'; expected one of tcp, udp, icmp, icmpv6, sctp, dccp, raw, packet, stream, dgram, "
        "seqpacket, rdm, all",
        id="protocol-suffix-only",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - protocol: http,tcp\n"),
        "spec.network.matchProtocols[0].protocol",
        "unknown protocol 'http' in 'http,tcp'; expected one of",
        id="protocol-unknown-in-list",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - protocol: ',tcp'\n"),
        "spec.network.matchProtocols[0].protocol",
        "unknown protocol '' in ',tcp'",
        id="protocol-empty-in-list",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - protocol: 6\n"),
        "spec.network.matchProtocols[0].protocol",
        "expected a string",
        id="protocol-number",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "network:\n  matchProtocols:\n  - action: Block\n"),
        "spec.network.matchProtocols[0].protocol",
        "required: expected a string",
        id="protocol-missing",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "capabilities:\n  matchCapabilities:\n  - capability: CAP_NET_RAW\n"),
        "spec.capabilities.matchCapabilities[0].capability",
        "expected a Linux capability in lowercase without CAP_, such as net_raw or sys_admin, got 'CAP_NET_RAW'",
        id="capability-upper-case",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "capabilities:\n  matchCapabilities:\n  - capability: syslog\n"),
        "spec.capabilities.matchCapabilities[0].capability",
        "expected a Linux capability",
        id="capability-unknown",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "capabilities:\n  matchCapabilities:\n  - capability: all_net_raw\n"),
        "spec.capabilities.matchCapabilities[0].capability",
        "unknown capability 'all_net_raw'; expected one of chown, dac_override, ",
        id="capability-suffix-only",
    ),
    pytest.param(
        ksp(SELECT_NGINX + "capabilities:\n  matchCapabilities:\n  - capability: bpf,net_raw\n"),
        "spec.capabilities.matchCapabilities[0].capability",
        "unknown capability 'bpf' in 'bpf,net_raw'; expected one of chown, dac_override, dac_read_search, fowner, "
        "fsetid, kill, setgid, setuid, setpcap, linux_immutable, net_bind_service, net_broadcast, net_admin, "
        "net_raw, ipc_lock, ipc_owner, sys_module, sys_rawio, sys_chroot, sys_ptrace, sys_pacct, sys_admin, "
        "sys_boot, sys_nice, sys_resource, sys_time, sys_tty_config, mknod, lease, audit_write, audit_control, "
        "setfcap, mac_override, mac_admin, with or without 'cap_'",
        id="capability-unknown-in-list",
    ),
    pytest.param(
        ksp(SELECT_NGINX + CAPABILITY_NET_RAW + "    severity: 11\n"),
        "spec.capabilities.matchCapabilities[0].severity",
        "from 1 to 10, got 11",
        id="capability-severity",
    ),
    # YAML structure
    pytest.param(
        ksp("selector:\n  matchLabels:\n    app: a\n    app: b\n" + BLOCK_APT),
        "spec.selector.matchLabels.app",
        "duplicate key; YAML would keep only the last one",
        id="duplicate-key",
    ),
    pytest.param(
        USE_CASE + "---\n" + ksp(SELECT_NGINX, metadata="name: second"),
        "document[1].spec",
        "no rules",
        id="second-document",
    ),
    pytest.param(
        "---\n---\n" + USE_CASE + "---\n" + ksp(SELECT_NGINX, metadata="name: second"),
        "document[2].spec",
        "no rules",
        id="document-index-counts-empty-documents",
    ),
]


@pytest.mark.parametrize(("text", "field", "fragment"), REJECTIONS)
def test_invalid_policy_is_rejected_with_file_field_and_reason(text: str, field: str, fragment: str) -> None:
    """Each invalid policy raises InputError naming the file, the exact field and what was expected."""
    error = rejection(text)
    assert error.file == "p.yaml"
    assert error.field == field
    assert fragment in error.reason
    prefix = f"p.yaml: {field}: " if field else "p.yaml: "
    assert str(error).startswith(prefix + error.reason)


def test_error_names_the_line_of_the_field() -> None:
    """The error carries, and prints, the line of the offending value."""
    error = rejection(USE_CASE.replace("/usr/bin/apt", "usr/bin/apt"))
    assert error.line == 15
    assert str(error).endswith("(line 15)")


def test_preset_error_names_the_line_of_the_entry() -> None:
    """A preset error points at the offending entry's line, as every other error does."""
    error = rejection(ksp(presets("{name: filelessExec}", "{name: execute}")))
    assert (error.field, error.line) == ("spec.presets[1].name", 11)


def test_bad_yaml_is_reported_with_its_line() -> None:
    """A YAML syntax error names the file, says 'invalid YAML' and gives the line."""
    error = rejection("apiVersion: security.kubearmor.com/v1\nkind: [KubeArmorPolicy\nmetadata: {}\n")
    assert (error.field, error.line) == ("", 3)
    assert str(error).startswith("p.yaml: invalid YAML at column ")
    assert str(error).endswith("(line 3)")


def test_python_tags_are_refused_as_invalid_yaml() -> None:
    """Safe loading refuses object-constructing tags instead of running them."""
    error = rejection("!!python/object/apply:os.system ['true']\n")
    assert (error.line, error.reason[:12]) == (1, "invalid YAML")


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{below}'] * 9)}]\n" for below, name in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        # libyaml from 0.2.6 refuses this itself at 1,000 levels, before our check sees the 101st
        pytest.param("[" * 50_000, 1, "nesting", id="deep-nesting-crashed-libyaml"),
        pytest.param("a:\n" + "  - " * 101 + "x\n", 2, "more than 100 levels of nesting", id="deep-block-nesting"),
        pytest.param(LAUGHS + "kind: *i\n", 5, "aliases repeat more than 10000 values", id="billion-laughs"),
        pytest.param("kind: &a [*a]\n", 1, "alias *a is inside the value it names", id="self-alias"),
        pytest.param("kind: x\nname: \ud800\n", 2, "not UTF-8 text", id="lone-surrogate"),
    ],
)
def test_yaml_that_would_crash_or_stall_the_reader_is_refused_at_its_line(text: str, line: int, fragment: str) -> None:
    """Nesting that crashed libyaml, alias bombs, self-aliases and lone surrogates are refused, naming the line."""
    error = rejection(text)
    assert (error.field, error.line) == ("", line)
    assert fragment in error.reason


def test_nesting_up_to_the_limit_is_read() -> None:
    """A hundred levels are no reason to refuse a document: it is refused for what it is."""
    assert rejection("[" * 100 + "]" * 100).reason.startswith("expected a mapping")


def test_a_character_yaml_refuses_is_reported_with_its_line_and_column() -> None:
    """A control character is refused at its line and column (the reader's own error names neither)."""
    error = rejection("kind: KubeArmorPolicy\nname: a\x01b\n")
    assert error.line == 2
    assert error.reason == "invalid YAML at column 8: character U+0001 (control characters are not allowed)"


def test_duplicate_policy_in_one_file_is_rejected() -> None:
    """Two policies with the same kind, namespace and name in one file are refused at the second."""
    error = rejection(USE_CASE + "---\n" + USE_CASE)
    assert error.field == "document[1].metadata.name"
    assert "KubeArmorPolicy 'ksp-nginx-block-apt' in namespace 'default' is defined twice" in error.reason


def test_same_name_in_other_namespace_or_kind_is_not_a_duplicate() -> None:
    """Names only clash within the same kind and namespace."""
    other_namespace = USE_CASE.replace("namespace: default", "namespace: web")
    cluster = ksp(
        "selector:\n  matchExpressions:\n  - {key: namespace, operator: In, values: [web]}\n" + BLOCK_APT,
        kind="KubeArmorClusterPolicy",
        metadata="name: ksp-nginx-block-apt",
    )
    policies = parse_policies(USE_CASE + "---\n" + other_namespace + "---\n" + cluster, source="p.yaml")
    assert [(policy.kind, policy.namespace) for policy in policies] == [
        (PolicyKind.POLICY, "default"),
        (PolicyKind.POLICY, "web"),
        (PolicyKind.CLUSTER_POLICY, None),
    ]


# --- directories and files ------------------------------------------------------------------------


def test_load_policy_dir_reads_yaml_files_in_sorted_order(tmp_path: Path) -> None:
    """Every *.yaml and *.yml file is read, sorted by name; other and hidden files are skipped."""
    (tmp_path / "b.yml").write_text(ksp(SELECT_NGINX + BLOCK_APT, metadata="name: b"))
    (tmp_path / "a.yaml").write_text(ksp(SELECT_NGINX + BLOCK_APT, metadata="name: a"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / ".hidden.yaml").write_text("not yaml: [")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("not yaml: [")
    policies = load_policy_dir(tmp_path)
    assert [(policy.name, Path(policy.source).name) for policy in policies] == [("a", "a.yaml"), ("b", "b.yml")]


def test_load_policy_dir_is_all_or_nothing(tmp_path: Path) -> None:
    """One bad file makes the whole directory fail, and the error names that file."""
    (tmp_path / "a-good.yaml").write_text(USE_CASE)
    (tmp_path / "b-bad.yaml").write_text(USE_CASE.replace("/usr/bin/apt", "/usr/bin/"))
    with pytest.raises(InputError) as caught:
        load_policy_dir(tmp_path)
    assert caught.value.file == str(tmp_path / "b-bad.yaml")
    assert caught.value.field == "spec.process.matchPaths[0].path"


def test_duplicate_names_across_files_are_rejected(tmp_path: Path) -> None:
    """A policy defined in two files is refused at the second, naming the first."""
    (tmp_path / "one.yaml").write_text(USE_CASE)
    (tmp_path / "two.yaml").write_text(USE_CASE.replace("severity: 5", "severity: 6"))
    with pytest.raises(InputError) as caught:
        load_policy_dir(tmp_path)
    assert caught.value.file == str(tmp_path / "two.yaml")
    assert caught.value.field == "metadata.name"
    assert f"the other definition is in {tmp_path / 'one.yaml'}" in caught.value.reason


def test_empty_directory_has_no_policies(tmp_path: Path) -> None:
    """A directory without YAML files loads as no policies."""
    assert load_policy_dir(tmp_path) == []


def test_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    """A policy directory that does not exist is reported, not crashed on."""
    with pytest.raises(InputError, match="not a directory"):
        load_policy_dir(tmp_path / "absent")


def test_non_utf8_file_is_an_input_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is refused with its name."""
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"metadata: {name: caf\xe9}\n")
    with pytest.raises(InputError) as caught:
        load_policy_file(bad)
    assert caught.value.file == str(bad)
    assert "not UTF-8 text" in caught.value.reason


def test_input_error_formats_file_field_and_reason() -> None:
    """str(InputError) is 'file: field: reason', or 'file: reason' for whole-file problems."""
    assert str(InputError(file="f.yaml", field="spec.x", reason="bad")) == "f.yaml: spec.x: bad"
    assert str(InputError(file="f.yaml", field="", reason="bad")) == "f.yaml: bad"
    assert str(InputError(file="f.yaml", field="spec", reason="bad", line=3)) == "f.yaml: spec: bad (line 3)"


def test_match_directories_become_directory_rules() -> None:
    """matchDirectories entries are rules on directories (paths ending in '/'), recursive or not, with inheritance."""
    spec = SELECT_NGINX + (
        "process:\n  action: Audit\n  matchDirectories:\n  - dir: /usr/sbin/\n  - dir: /opt/tools/\n"
        "    recursive: true\n    action: Block\n  matchPaths:\n  - path: /bin/sh\n"
    )
    rules = {rule.path: rule for rule in parse_one(ksp(spec)).process_rules}
    assert (rules["/usr/sbin/"].action, rules["/usr/sbin/"].recursive) == (Action.AUDIT, False)
    assert (rules["/opt/tools/"].action, rules["/opt/tools/"].recursive) == (Action.BLOCK, True)
    assert rules["/bin/sh"].recursive is False


def test_directory_that_is_not_normalised_is_refused_with_the_fix() -> None:
    """A dir with '..' would never match the kernel's names; the hint keeps the trailing slash."""
    spec = SELECT_NGINX + "process:\n  matchDirectories:\n  - dir: /usr/lib/../sbin/\n"
    with pytest.raises(InputError, match=r"write '/usr/sbin/'") as error:
        parse_one(ksp(spec))
    assert error.value.field == "spec.process.matchDirectories[0].dir"


def test_execname_is_a_rule_on_a_file_name() -> None:
    """matchPaths with execname names an executable wherever it is, with the usual inheritance."""
    rule = parse_one(
        ksp(SELECT_NGINX + "process:\n  matchPaths:\n  - execname: apt\n    action: Audit\n")
    ).process_rules[0]
    assert (rule.path, rule.execname, rule.action) == ("", "apt", Action.AUDIT)


@pytest.mark.parametrize(
    ("section", "model_field"),
    [
        pytest.param(BLOCK_APT, "process_rules", id="process.matchPaths"),
        pytest.param(
            "process:\n  matchDirectories:\n  - dir: /sbin/\n", "process_rules", id="process.matchDirectories"
        ),
        pytest.param(FILE_SHADOW, "file_rules", id="file.matchPaths"),
        pytest.param(FILE_DIRECTORY, "file_rules", id="file.matchDirectories"),
        pytest.param(NETWORK_RAW, "network_rules", id="network.matchProtocols"),
    ],
)
def test_pts_false_narrows_a_rule_to_terminals_and_true_is_the_default(section: str, model_field: str) -> None:
    """KubeArmor's "pts: false" (not from a pseudo-terminal) becomes no_terminal; "pts: true" asks for nothing more."""
    (narrowed,) = getattr(parse_one(ksp(SELECT_NGINX + section + "    pts: false\n")), model_field)
    (plain,) = getattr(parse_one(ksp(SELECT_NGINX + section + "    pts: true\n")), model_field)
    assert (narrowed.no_terminal, plain.no_terminal) == (True, False)


@pytest.mark.parametrize("value", ['""', '"[]"', '"[ , ]"'])
def test_an_empty_container_name_list_covers_every_container(value: str) -> None:
    """As in KubeArmor's multicontainer tests, an empty kubearmor.io/container.name leaves every container selected."""
    selector = parse_one(
        ksp(f"selector:\n  matchLabels:\n    app: a\n    kubearmor.io/container.name: {value}\n" + BLOCK_APT)
    )
    assert selector.selector == Selector(match_labels=(("app", "a"),), container_names=(), match_expressions=())


def test_a_merge_key_whose_fields_are_overridden_is_read_as_yaml_means_it(tmp_path: Path) -> None:
    """`<<: *base` then `path:` is an override (YAML's merge), not a duplicate key; a repeated explicit key still is."""
    merged = textwrap.dedent("""\
        apiVersion: security.kubearmor.com/v1
        kind: KubeArmorPolicy
        metadata: {name: merged, namespace: default}
        spec:
          selector: {matchLabels: {app: nginx}}
          process:
            matchPaths:
            - &base {path: /usr/bin/apt, action: Audit}
            - <<: *base
              path: /usr/bin/apt-get
          action: Block
        """)
    (tmp_path / "merged.yaml").write_text(merged)
    (policy,) = load_policy_file(tmp_path / "merged.yaml")
    assert [(rule.path, rule.action.value) for rule in policy.process_rules] == [
        ("/usr/bin/apt", "Audit"),
        ("/usr/bin/apt-get", "Audit"),
    ]
    (tmp_path / "twice.yaml").write_text(merged.replace("path: /usr/bin/apt-get", "path: /a\n      path: /b"))
    with pytest.raises(InputError, match="duplicate key"):
        load_policy_file(tmp_path / "twice.yaml")
