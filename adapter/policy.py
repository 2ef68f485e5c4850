# SPDX-License-Identifier: Apache-2.0
"""KubeArmor policies as Kadapter reads them: the model, and validation that refuses what it cannot enforce.

Kadapter takes KubeArmor policy files unchanged. Each is first checked against
the CRD schema of its kind (adapter/schema.py), as the API server would check
it; the semantic checks here come after. Whatever Kadapter would otherwise
skip without a word (a field the schema accepts but Kadapter does not enforce
yet, a path the kernel never reports) is refused with an InputError instead,
so a policy is either enforced as written or not loaded at all. Loading a
directory is all or nothing for the same reason.
"""

from __future__ import annotations

import dataclasses
import enum
import posixpath
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from adapter.schema import validate
from adapter.yaml_reader import Field, read_documents, read_text, yaml_files
from kadapter_api.domains import DOMAIN_MAX, is_domain
from kadapter_api.syscalls import PATH_ARGUMENTS

API_VERSION = "security.kubearmor.com/v1"
DEFAULT_NAMESPACE = "default"
CONTAINER_NAME_LABEL = "kubearmor.io/container.name"
# guest_agent/bpf_types.PATH_MAX is 256: paths live in the BPF maps with their trailing NUL.
MAX_PATH_BYTES = 255
# An allowedArgs argument: the kernel reads each one into a 256-byte key and cannot tell 255 bytes from more.
MAX_ARGUMENT_BYTES = 254

# The rule lists Kadapter enforces in each section of spec, and the fields it reads in their entries
# besides the verdict (action, severity, tags, message), which every level may set. Add a list or a
# field here once the guest agent enforces it (and read it in that section's reader, see _policy).
_VERDICT = ("action", "severity", "tags", "message")
RULE_FIELDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "process": {
        "matchPaths": ("path", "execname", "allowedArgs", "ownerOnly", "pts", "fromSource"),
        "matchDirectories": ("dir", "recursive", "ownerOnly", "pts", "fromSource"),
        "matchPatterns": ("pattern", "ownerOnly"),
    },
    "file": {
        "matchPaths": ("path", "readOnly", "ownerOnly", "pts", "fromSource"),
        "matchDirectories": ("dir", "recursive", "readOnly", "ownerOnly", "pts", "fromSource"),
        "matchPatterns": ("pattern", "readOnly", "ownerOnly"),
    },
    "network": {"matchProtocols": ("protocol", "pts", "fromSource"), "matchDNSQueries": ("domain", "fromSource")},
    "capabilities": {"matchCapabilities": ("capability", "fromSource")},
    "syscalls": {
        "matchSyscalls": ("syscall", "fromSource"),
        "matchPaths": ("path", "recursive", "syscall", "fromSource"),
    },
}
# The part of the policy schema Kadapter enforces, as nested field names: None where Kadapter
# reads the whole value, else the fields it reads inside it (inside each item, for a list).
# Any other field the schema accepts is refused with NOT_ENFORCED_REASON unless its value asks
# for nothing (see _asks_for_nothing).
EnforcedFields = Mapping[str, "EnforcedFields | None"]
ENFORCED: EnforcedFields = {
    "apiVersion": None,
    "kind": None,
    "metadata": None,
    "status": None,
    "spec": {
        "selector": None,
        "presets": None,
        **{
            section: {
                **{name: dict.fromkeys((*fields, *_VERDICT)) for name, fields in lists.items()},
                **dict.fromkeys(_VERDICT),
            }
            for section, lists in RULE_FIELDS.items()
        },
        **dict.fromkeys(_VERDICT),
    },
}
NOT_ENFORCED_REASON = (
    "not enforced by Kadapter yet; remove it or wait for support (refusing rather than silently not enforcing it)"
)
# Fields Kadapter will never enforce, with why.
NEVER_ENFORCED = {
    "apparmor": (
        "AppArmor profile text cannot be enforced by Kadapter: it enforces with BPF-LSM programs in the Kata guest "
        "kernel, which do not read AppArmor profiles; write the rules as process, file, network or capabilities "
        "sections instead"
    ),
}
# The names network.matchProtocols and capabilities.matchCapabilities take, as the CRD lists them
# (tests/adapter/test_policy_validation.py checks they agree) and as they go on the wire: lower
# case, and capabilities without "cap_" (CAP_CHOWN to CAP_MAC_ADMIN, in the kernel's order).
PROTOCOLS = (
    "tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "raw", "packet", "stream", "dgram", "seqpacket", "rdm", "all",
)  # fmt: skip
CAPABILITIES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin",
)  # fmt: skip
# What AppArmor globs have and the guest's matcher does not (bpf/lsm/patterns.bpf.h matches '*', '**' and '?').
PATTERN_UNSUPPORTED = {
    "[": "'[...]' character classes",
    "]": "'[...]' character classes",
    "{": "'{a,b}' alternations (and AppArmor variables such as '@{HOME}')",
    "}": "'{a,b}' alternations",
    "\\": "'\\' escapes",
}


class Action(enum.Enum):
    """What happens when a rule matches."""

    ALLOW = "Allow"
    AUDIT = "Audit"
    BLOCK = "Block"


class Preset(enum.Enum):
    """KubeArmor's presets, by their spec.presets name, in its documentation's order; Kadapter enforces each."""

    FILELESS_EXEC = "filelessExec"
    ANONYMOUS_MAP_EXEC = "anonymousMapExec"
    PROTECT_ENV = "protectEnv"
    PROTECT_PROC = "protectProc"
    EXEC = "exec"


# A preset names something to stop or report; there is nothing for Allow to permit.
PRESET_ACTIONS = (Action.AUDIT, Action.BLOCK)


class PolicyKind(enum.Enum):
    """The KubeArmor policy kinds that can select pods, and so Kata pods."""

    POLICY = "KubeArmorPolicy"
    CLUSTER_POLICY = "KubeArmorClusterPolicy"


@dataclass(frozen=True, kw_only=True)
class Rule:
    """What every rule does when it matches, after inheritance; the subclasses say what it matches."""

    action: Action
    severity: int
    tags: tuple[str, ...]
    message: str


@dataclass(frozen=True, kw_only=True)
class MatchRule(Rule):
    """A rule of a section's match lists, which KubeArmor's fromSource may narrow to some executables."""

    from_source: tuple[str, ...] = ()  # absolute paths of executables; empty (and no source_dirs): every process
    # KubeArmor's "pts: false" (not from a pseudo-terminal): Block and Audit cover callers with a controlling
    # terminal only, Allow allows callers without one only. Process, file and network rules may set it.
    no_terminal: bool = False
    # Directories of executables, each ending in "/", and whether it covers subdirectories (syscalls rules only).
    source_dirs: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True, kw_only=True)
class PathRule(MatchRule):
    """Files by path, directory, execname or pattern: executing them (process rules) or opening and changing them.

    A pattern is a glob over a file's whole name as the container sees it: '*' is any run of
    characters but '/', '**' any run at all, '?' one character but '/' (matchPatterns).
    """

    path: str  # a directory ends with "/"; empty for an execname or pattern rule
    recursive: bool = False  # a directory rule covering subdirectories too
    execname: str = ""  # process rules only: any executable of this name, wherever it is
    pattern: str = ""  # a matchPatterns glob, starting with "/"
    read_only: bool = False  # file rules only: Block and Audit cover writing, Allow allows reading
    owner_only: bool = False  # Block and Audit cover users other than the owner, Allow allows the owner
    # Process matchPaths only (allowedArgs): the rule is met by an exec whose arguments after argv[0] are 1 to 20,
    # each one of these; Block and Audit then cover the other execs, Allow allows only those that meet it.
    allowed_args: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NetworkRule(MatchRule):
    """Creating sockets of one protocol or type (network.matchProtocols), one of PROTOCOLS."""

    protocol: str


@dataclass(frozen=True, kw_only=True)
class DnsRule(MatchRule):
    """Asking a DNS server (port 53) for a domain or any name in it (network.matchDNSQueries)."""

    domain: str  # lower case, without leading or trailing dots


@dataclass(frozen=True, kw_only=True)
class CapabilityRule(MatchRule):
    """Using one capability (capabilities.matchCapabilities), one of CAPABILITIES."""

    capability: str


@dataclass(frozen=True, kw_only=True)
class SyscallRule(MatchRule):
    """A system call returning (syscalls section), always audited: KubeArmor never blocks system calls.

    With a path (syscalls.matchPaths), only calls whose path argument names that file, or that
    directory (ending in "/") or what is directly in it (at any depth when recursive).
    """

    syscall: str  # KubeArmor's x86_64 name, as the CRD lists it
    path: str = ""
    recursive: bool = False


@dataclass(frozen=True, kw_only=True)
class PresetRule(Rule):
    """One spec.presets entry, with the spec's severity, tags and message (a preset has none of its own)."""

    preset: Preset


_R = TypeVar("_R", bound=Rule)
_M = TypeVar("_M", bound=MatchRule)


@dataclass(frozen=True)
class LabelExpression:
    """One matchExpressions entry: key "label" (values "k=v") or "namespace" (cluster policies).

    Selectors keep their entries in file order, which KubeArmor's reading of them depends on.
    """

    key: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Selector:
    """The pods a policy selects, all it can reach when empty; container_names narrows it to some containers."""

    match_labels: tuple[tuple[str, str], ...]
    container_names: tuple[str, ...]
    match_expressions: tuple[LabelExpression, ...]


@dataclass(frozen=True)
class Policy:
    """A validated KubeArmor policy, reduced to what Kadapter enforces."""

    kind: PolicyKind
    name: str
    namespace: str | None
    selector: Selector
    process_rules: tuple[PathRule, ...]
    source: str
    presets: tuple[PresetRule, ...] = ()
    file_rules: tuple[PathRule, ...] = ()
    network_rules: tuple[NetworkRule, ...] = ()
    capability_rules: tuple[CapabilityRule, ...] = ()
    syscall_rules: tuple[SyscallRule, ...] = ()
    dns_rules: tuple[DnsRule, ...] = ()


@dataclass(frozen=True)
class _Inherited:
    """The action, severity, tags and message a rule gets unless it sets its own."""

    action: Action = Action.BLOCK
    severity: int = 1
    tags: tuple[str, ...] = ()
    message: str = ""

    def override(self, level: Field) -> _Inherited:
        """Apply what one level (spec, section or rule) sets; empty or missing values inherit."""
        changes = {
            "action": _action(level.child("action")),
            "severity": _severity(level.child("severity")),
            "tags": _tags(level.child("tags")),
            "message": _message(level.child("message")),
        }
        return dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})

    def rule(self, kind: type[_R], **subject: Any) -> _R:
        """Build a rule of ``kind`` about ``subject`` that does what these values say."""
        return kind(action=self.action, severity=self.severity, tags=self.tags, message=self.message, **subject)


def parse_policies(text: str, *, source: str) -> list[Policy]:
    """Parse and validate every policy of one YAML stream."""
    return _parse(text, source=source, seen={})


def load_policy_file(path: Path) -> list[Policy]:
    """Load and validate the policies of one file."""
    return parse_policies(read_text(path), source=str(path))


def load_policy_dir(directory: Path) -> list[Policy]:
    """Load every *.yaml and *.yml file of a directory, failing on the first invalid one."""
    seen: dict[tuple[PolicyKind, str | None, str], str] = {}
    policies: list[Policy] = []
    for path in yaml_files(directory):
        policies.extend(_parse(read_text(path), source=str(path), seen=seen))
    return policies


def _parse(text: str, *, source: str, seen: dict[tuple[PolicyKind, str | None, str], str]) -> list[Policy]:
    """Parse one stream, refusing a policy whose kind, namespace and name are already in ``seen``."""
    policies = []
    for doc in read_documents(text, source=source):
        policy = _policy(doc, source)
        key = (policy.kind, policy.namespace, policy.name)
        if key in seen:
            scope = f" in namespace {policy.namespace!r}" if policy.namespace else ""
            raise (
                doc.child("metadata")
                .child("name")
                .error(
                    f"{policy.kind.value} {policy.name!r}{scope} is defined twice; "
                    f"the other definition is in {seen[key]}"
                )
            )
        seen[key] = source
        policies.append(policy)
    return policies


def _policy(doc: Field, source: str) -> Policy:
    """Validate one document as a policy: its kind and apiVersion, the CRD schema, then Kadapter's checks."""
    if not isinstance(doc.value, dict):
        raise doc.expected("a mapping (a KubeArmor policy object)")
    kind = _kind(doc.child("kind"))
    api_version = doc.child("apiVersion")
    if api_version.string() != API_VERSION:
        raise api_version.error(f"expected {API_VERSION!r}, got {api_version.value!r}")
    validate(doc, kind.value)
    _refuse_not_enforced(doc, ENFORCED)
    metadata = doc.child("metadata")
    name = metadata.child("name").dns_subdomain()
    namespace = None
    if kind is PolicyKind.POLICY:
        given = metadata.child("namespace")
        namespace = DEFAULT_NAMESPACE if given.missing else given.dns_label()
    spec = doc.child("spec")
    selector = _selector(spec.child("selector"))
    inherited = _Inherited().override(spec)
    policy = Policy(
        kind=kind,
        name=name,
        namespace=namespace,
        selector=selector,
        process_rules=_section_rules(spec.child("process"), inherited, _path_rule),
        source=source,
        presets=_presets(spec.child("presets"), inherited),
        file_rules=_section_rules(spec.child("file"), inherited, _path_rule),
        network_rules=_section_rules(spec.child("network"), inherited, _protocol_rules, only="matchProtocols"),
        capability_rules=_section_rules(spec.child("capabilities"), inherited, _capability_rules),
        syscall_rules=_section_rules(spec.child("syscalls"), inherited, _syscall_rules),
        dns_rules=_section_rules(spec.child("network"), inherited, _dns_rules, only="matchDNSQueries"),
    )
    rules = (
        policy.process_rules, policy.file_rules, policy.network_rules, policy.capability_rules, policy.syscall_rules,
        policy.dns_rules,
    )  # fmt: skip
    if not any(rules) and not policy.presets:
        enforced = ", ".join(f"spec.{section} ({', '.join(lists)})" for section, lists in RULE_FIELDS.items())
        raise spec.error(f"no rules: Kadapter enforces {enforced} and spec.presets, and this policy has none")
    return policy


def _kind(field: Field) -> PolicyKind:
    """Read the kind, explaining why host and other policies are refused."""
    text = field.string()
    if text == "KubeArmorHostPolicy":
        raise field.error(
            "host policies are not for Kata pods; Kadapter reads KubeArmorPolicy and KubeArmorClusterPolicy"
        )
    try:
        return PolicyKind(text)
    except ValueError:
        raise field.error(f"unknown kind {text!r}; expected KubeArmorPolicy or KubeArmorClusterPolicy") from None


def _selector(field: Field) -> Selector:
    """Read spec.selector; missing or empty, it selects every pod the policy can reach.

    As in KubeArmor, that is every pod of its namespace for a KubeArmorPolicy and
    of every namespace for a KubeArmorClusterPolicy. The schema has left each kind
    only its own fields: matchLabels only in KubeArmorPolicy, the namespace key
    only in KubeArmorClusterPolicy. adapter/selection.py gives them their meaning.
    """
    if field.missing:
        return Selector((), (), ())
    labels, expressions = field.child("matchLabels"), field.child("matchExpressions")
    match_labels, container_names = ((), ()) if labels.missing else _match_labels(labels)
    match_expressions = () if expressions.missing else _expressions(expressions)
    return Selector(match_labels, container_names, match_expressions)


def _match_labels(field: Field) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Split matchLabels into ordinary labels and the container-name pseudo label.

    The pseudo label names containers as "name" or "[name, other]"; as in KubeArmor, an empty
    value ("" or "[]") names none, which leaves the policy on every container of the pod.
    """
    pairs = field.string_map()
    labels = tuple(pair for pair in pairs if pair[0] != CONTAINER_NAME_LABEL)
    containers: tuple[str, ...] = ()
    if len(labels) < len(pairs):
        text = dict(pairs)[CONTAINER_NAME_LABEL]
        names = (name.strip() for name in text.strip().removeprefix("[").removesuffix("]").split(","))
        containers = tuple(dict.fromkeys(name for name in names if name))
    return labels, containers


def _expressions(field: Field) -> tuple[LabelExpression, ...]:
    """Read matchExpressions, whose keys and operators the schema has checked if present."""
    expressions = []
    for item in field.items():
        key, operator = item.child("key").string(), item.child("operator").string()
        values_field = item.child("values")
        values = values_field.strings()
        if not values:
            raise values_field.error("expected at least one value, got an empty list")
        for value_field, value in zip(values_field.items(), values, strict=True):
            label, equals, _ = value.partition("=")
            if key == "label" and not (label and equals):
                raise value_field.error(f"expected a label as 'key=value', got {value!r}")
        expressions.append(LabelExpression(key=key, operator=operator, values=values))
    return tuple(expressions)


def _section_rules(
    section: Field, inherited: _Inherited, read: Callable[[Field, _Inherited], Iterable[_M]], *, only: str = ""
) -> tuple[_M, ...]:
    """Read spec.process, file, network, capabilities or syscalls into rules, each entry with ``read``.

    Each entry's action, severity, tags and message default to the section's, and those to the
    spec's; its fromSource, read here for every kind, narrows each rule ``read`` makes of it. A
    missing section has no rules (the others or the presets may hold some); a section with none
    of its rule lists is refused, since whatever else it sets would apply to nothing. ``only``
    names the one list to read where a section's lists make rules of different kinds (network).
    """
    if section.missing:
        return ()
    inherited = inherited.override(section)
    names = RULE_FIELDS[str(section.path[-1])]
    lists = [section.child(name) for name in names]
    if all(field.missing for field in lists):
        raise section.error(f"no rules: this section has no {' or '.join(names)}, where Kadapter reads its rules")
    rules: list[_M] = []
    for field in lists:
        if field.missing or (only and field.path[-1] != only):
            continue
        items = field.items()
        if not items:
            raise field.error("expected a non-empty list of rules, got an empty list")
        for item in items:
            made = read(item, inherited.override(item))
            sources, directories = _sources(item.child("fromSource"))
            no_terminal = _no_terminal(item.child("pts"))
            rules.extend(
                dataclasses.replace(rule, from_source=sources, source_dirs=directories, no_terminal=no_terminal)
                for rule in made
            )
    return tuple(rules)


def _sources(field: Field) -> tuple[tuple[str, ...], tuple[tuple[str, bool], ...]]:
    """Read a rule's fromSource: the executables, and directories of them, it is limited to, each listed once.

    Missing or empty, as in KubeArmor, the rule applies to every process. The schema has made each
    path absolute and not end in '/' (a source is an executable), but not required it; only
    syscalls rules may name a directory (dir, with recursive), which, as KubeArmor does, need not
    end in '/'.
    """
    if field.missing:
        return (), ()
    sources: list[str] = []
    directories: list[tuple[str, bool]] = []
    for item in field.items():
        path, directory = item.child("path"), item.child("dir")
        if path.missing and directory.missing:
            raise path.expected("the absolute path of an executable (fromSource entries name one path each)")
        if not (path.missing or directory.missing):
            raise item.error("expected either path (an executable) or dir (a directory of executables), not both")
        if path.missing:
            if not directory.string().startswith("/"):
                raise directory.error(f"expected an absolute directory, got {directory.value!r}")
            directories.append((_normalised_path(directory).rstrip("/") + "/", _flag(item.child("recursive"))))
        else:
            sources.append(_normalised_path(path))
    return tuple(dict.fromkeys(sources)), tuple(dict.fromkeys(directories))


def _path_rule(item: Field, verdict: _Inherited) -> tuple[PathRule]:
    """Read one matchPaths, matchDirectories or matchPatterns entry of spec.process or spec.file.

    The schema has left only the fields of the entry's own section and list: execname only in
    process rules, readOnly only in file rules, path (or dir, or pattern) required in file rules.
    """
    flags = {"read_only": _flag(item.child("readOnly")), "owner_only": _flag(item.child("ownerOnly"))}
    pattern = item.child("pattern")
    if not pattern.missing:
        return (verdict.rule(PathRule, path="", pattern=_pattern(pattern), **flags),)
    directory = item.child("dir")
    if not directory.missing:
        recursive = _flag(item.child("recursive"))
        return (verdict.rule(PathRule, path=_normalised_path(directory), recursive=recursive, **flags),)
    path, execname = item.child("path"), item.child("execname")
    if path.missing == execname.missing:
        raise item.error("expected either path or execname")
    arguments = item.child("allowedArgs")
    flags["allowed_args"] = () if arguments.missing else _allowed_args(arguments)
    if path.missing:
        return (verdict.rule(PathRule, path="", execname=_execname(execname), **flags),)
    return (verdict.rule(PathRule, path=_normalised_path(path), **flags),)


def _protocol_rules(item: Field, verdict: _Inherited) -> tuple[NetworkRule, ...]:
    """Read one matchProtocols entry: a rule for each protocol it names."""
    protocols = _names(item.child("protocol"), PROTOCOLS, what="protocol")
    return tuple(verdict.rule(NetworkRule, protocol=protocol) for protocol in protocols)


def _dns_rules(item: Field, verdict: _Inherited) -> tuple[DnsRule, ...]:
    """Read one matchDNSQueries entry: a rule for each domain it names (KubeArmor splits at commas too)."""
    field = item.child("domain")
    text = field.string()
    domains = []
    for piece in text.split(","):
        domain = piece.strip().strip(".").lower()  # as KubeArmor trims them; DNS compares names without case
        if not is_domain(domain):
            within = f" in {text!r}" if piece != text else ""
            raise field.error(
                f"expected a domain name (labels of 1 to 63 letters, digits, '-' or '_', separated by dots, "
                f"{DOMAIN_MAX} characters at most; no wildcards: a domain covers every name below it), "
                f"got {piece.strip()!r}{within}"
            )
        domains.append(domain)
    return tuple(verdict.rule(DnsRule, domain=domain) for domain in dict.fromkeys(domains))


def _capability_rules(item: Field, verdict: _Inherited) -> tuple[CapabilityRule, ...]:
    """Read one matchCapabilities entry: a rule for each capability it names."""
    capabilities = _names(item.child("capability"), CAPABILITIES, what="capability", prefix="cap_")
    return tuple(verdict.rule(CapabilityRule, capability=capability) for capability in capabilities)


def _no_terminal(field: Field) -> bool:
    """Read pts: false narrows the rule to callers with (or for Allow, without) a terminal; true or missing, all."""
    return not field.missing and field.of_type(bool) is False


def _syscall_rules(item: Field, verdict: _Inherited) -> tuple[SyscallRule, ...]:
    """Read one matchSyscalls or matchPaths entry of spec.syscalls: an audit rule for each system call it names.

    KubeArmor audits system calls whatever action the policy sets, and Kadapter does the same
    (README, "syscalls"). The schema has checked the names against the CRD's list.
    """
    audit = dataclasses.replace(verdict, action=Action.AUDIT)
    names_field = item.child("syscall")
    names = () if names_field.missing else tuple(dict.fromkeys(names_field.strings()))
    if not names:
        raise names_field.expected("a non-empty list of system call names")
    if str(item.path[-2]) == "matchSyscalls":
        return tuple(audit.rule(SyscallRule, syscall=name) for name in names)
    path_field, recursive = item.child("path"), _flag(item.child("recursive"))
    if path_field.missing:
        raise path_field.expected("the file or directory (ending in '/') the system calls name")
    path = _normalised_path(path_field)
    if recursive and not path.endswith("/"):
        raise item.child("recursive").error(f"recursive is for a directory ending in '/'; {path!r} is a file")
    without_path = [name for name in names if name not in PATH_ARGUMENTS]
    if without_path:
        raise names_field.error(
            f"{', '.join(without_path)} takes no path, so a matchPaths rule on it would never match; "
            "use matchSyscalls for it"
        )
    return tuple(audit.rule(SyscallRule, syscall=name, path=path, recursive=recursive) for name in names)


def _presets(field: Field, spec: _Inherited) -> tuple[PresetRule, ...]:
    """Read spec.presets, refusing a preset listed twice (its entries could disagree on the action)."""
    if field.missing:
        return ()
    presets: dict[Preset, PresetRule] = {}
    for item in field.items():
        rule = _preset_rule(item, spec)
        if rule.preset in presets:
            raise item.child("name").error(f"preset {rule.preset.value!r} is listed twice; list each preset once")
        presets[rule.preset] = rule
    return tuple(presets.values())


def _preset_rule(item: Field, spec: _Inherited) -> PresetRule:
    """Read one spec.presets entry.

    KubeArmor gives a preset only a name and an action: a missing action
    means Block (spec.action does not apply), and severity, tags and message are the spec's.
    """
    preset = _preset(item.child("name"))
    action = _action(item.child("action"), allowed=PRESET_ACTIONS) or Action.BLOCK
    return dataclasses.replace(spec, action=action).rule(PresetRule, preset=preset)


def _preset(field: Field) -> Preset:
    """Read a preset name; Kadapter enforces every preset KubeArmor has."""
    name = field.string()
    try:
        return Preset(name)
    except ValueError:
        known = ", ".join(preset.value for preset in Preset)
        raise field.error(f"unknown preset {name!r}; KubeArmor's presets are {known}") from None


def _refuse_not_enforced(field: Field, enforced: EnforcedFields) -> None:
    """Refuse each field under ``field`` that Kadapter does not enforce, unless it asks for nothing."""
    for item in field.items() if isinstance(field.value, list) else (field,):
        for key, child in item.mapping().items():
            if key not in enforced:
                if _asks_for_nothing(child.value):
                    continue
                raise child.error(NEVER_ENFORCED.get(key, NOT_ENFORCED_REASON))
            inner = enforced[key]
            if inner is not None and not child.missing:
                _refuse_not_enforced(child, inner)


def _asks_for_nothing(value: object) -> bool:
    """Tell whether a value asks for nothing: null or empty (a boolean always asks for something)."""
    return value is None or (not isinstance(value, bool) and value in ("", [], {}))


def _flag(field: Field) -> bool:
    """Read an optional boolean (the schema has checked its type); missing means false."""
    return not field.missing and bool(field.of_type(bool))


def _names(field: Field, known: Sequence[str], *, what: str, prefix: str = "") -> tuple[str, ...]:
    """Read the protocols or capabilities of one entry, in lower case without ``prefix``.

    KubeArmor splits the value at commas and drops spaces, and compares names in any case; the
    schema only checked how the value ends. KubeArmor splits only when the list's first entry
    holds a comma; Kadapter splits every entry, since an unsplit one would match nothing.
    """
    text = field.string()
    names = []
    for piece in text.replace(" ", "").split(","):
        name = piece.lower().removeprefix(prefix)
        if name not in known:
            within = f" in {text!r}" if piece != text else ""
            with_prefix = f", with or without {prefix!r}" if prefix else ""
            raise field.error(f"unknown {what} {piece!r}{within}; expected one of {', '.join(known)}{with_prefix}")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _execname(field: Field) -> str:
    """Read an executable's name (the schema has refused any '/') that fits the guest's BPF maps."""
    name = field.string()
    if "\0" in name or name in (".", "..") or len(name.encode()) > MAX_PATH_BYTES:
        raise field.error(f"expected a file name of at most {MAX_PATH_BYTES} bytes, got {name!r}")
    return name


def _allowed_args(field: Field) -> tuple[str, ...]:
    """Read allowedArgs (the schema has checked it is a list of at most 20): arguments the guest's BPF maps hold."""
    arguments = []
    for item in field.items():
        argument = item.string()
        if not argument or "\0" in argument or len(argument.encode()) > MAX_ARGUMENT_BYTES:
            raise item.error(f"expected an argument of 1 to {MAX_ARGUMENT_BYTES} bytes without NUL, got {argument!r}")
        arguments.append(argument)
    return tuple(dict.fromkeys(arguments))


def _pattern(field: Field) -> str:
    """Read a matchPatterns glob the guest's matcher implements, that names files and fits its BPF maps."""
    pattern = field.string()
    if not pattern.startswith("/"):
        raise field.error(f"expected an absolute pattern (starting with '/'), got {pattern!r}")
    if "\0" in pattern:
        raise field.error("the pattern contains a NUL byte")
    for character, construct in PATTERN_UNSUPPORTED.items():
        if character in pattern:
            raise field.error(
                f"pattern {pattern!r} uses {construct}, which Kadapter does not match (it matches '*', '**' and "
                "'?'); refusing rather than matching the character literally"
            )
    if pattern.endswith("/"):
        raise field.error(
            f"pattern {pattern!r} ends with '/': the kernel names files and directories without a final '/', "
            f"so this rule would never match; write {pattern + '**'!r} for everything below"
        )
    if any(segment in ("", ".", "..") for segment in pattern[1:].split("/")):
        raise field.error(
            f"pattern {pattern!r} is not normalised: the kernel reports files without '//', '.' or '..' "
            "segments, so this rule would never match"
        )
    size = len(pattern.encode())
    if size > MAX_PATH_BYTES:
        raise field.error(
            f"pattern is {size} bytes of UTF-8; Kadapter's limit is {MAX_PATH_BYTES} bytes "
            "(the guest's BPF maps hold a pattern and its trailing NUL in 256 bytes)"
        )
    return pattern


def _normalised_path(field: Field) -> str:
    """Read a normalised file or directory path (the schema has made it absolute) that fits the guest's BPF maps."""
    path = field.string()
    if "\0" in path:
        raise field.error("the path contains a NUL byte")
    if any(segment in ("", ".", "..") for segment in path[1:].removesuffix("/").split("/")) and path != "/":
        normal = "/" + posixpath.normpath(path).lstrip("/")
        if path.endswith("/") and normal != "/":
            normal += "/"
        hint = f"; write {normal!r}" if normal != "/" else ""
        raise field.error(
            f"path {path!r} is not normalised: the kernel reports files without '//', '.' or '..' "
            f"segments, so this rule would never match{hint}"
        )
    size = len(path.encode())
    if size > MAX_PATH_BYTES:
        raise field.error(
            f"path is {size} bytes of UTF-8; Kadapter's limit is {MAX_PATH_BYTES} bytes "
            "(the guest's BPF maps hold a path and its trailing NUL in 256 bytes)"
        )
    return path


def _action(field: Field, *, allowed: Collection[Action] = tuple(Action)) -> Action | None:
    """Read one of the ``allowed`` actions (the schema has checked it is an action); missing means inherit."""
    if field.missing:
        return None
    action = Action(field.string())
    if action not in allowed:
        raise field.error(f"expected one of {', '.join(choice.value for choice in allowed)}, got {action.value!r}")
    return action


def _severity(field: Field) -> int | None:
    """Read a severity (the schema has checked its range); missing means inherit."""
    return None if field.missing else field.integer()


def _tags(field: Field) -> tuple[str, ...] | None:
    """Read a list of tags; empty or missing means inherit."""
    return None if field.missing else field.strings() or None


def _message(field: Field) -> str | None:
    """Read a message; empty or missing means inherit."""
    return None if field.missing else field.string() or None
