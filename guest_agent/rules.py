# SPDX-License-Identifier: Apache-2.0
"""Turn a pod's desired policies into one container's rule tables, one per kind.

Pure functions over the wire messages and a view of the container's files,
so the whole decision of what goes into the kernel can be tested without a
kernel. The host has already chosen which policies apply to the pod; here
they are narrowed to one container (by name) and merged per name. Each rule
path is also resolved inside the container (on a merged-/usr image
`/bin/ls` runs as `/usr/bin/ls`) and the file it names is recorded by
identity, so a hard link or a bind mount of it matches the same rule.
Patterns (matchPatterns) cannot be resolved or identified beforehand: they
are matched in the kernel against each name (bpf/lsm/patterns.bpf.h).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from guest_agent.bpf_types import (
    ACTION_ALLOW,
    ACTION_AUDIT,
    ACTION_BLOCK,
    ARGS_MAX,
    NETWORK_PROTOCOLS,
    PATH_MAX,
    PATTERNS_MAX,
    VARIANT_NO_TERMINAL,
    VARIANT_OWNER_ONLY,
    VARIANT_READ_ONLY,
    Kind,
    Preset,
    preset_bits,
)
from guest_agent.capabilities import CAPABILITIES
from guest_agent.container_fs import ContainerView, FileIdentity
from kadapter_api import agent_pb2
from kadapter_api.domains import is_domain
from kadapter_api.syscalls import NUMBERS as SYSCALL_NUMBERS
from kadapter_api.syscalls import PATH_ARGUMENTS


class ContainerKey(NamedTuple):
    """The kernel's name for a container: its pid and mount namespace ids."""

    pid_ns: int
    mnt_ns: int


class InvalidPolicyError(ValueError):
    """A policy from the host that the agent refuses to enforce, with the field at fault."""


@dataclass(frozen=True)
class RuleInfo:
    """What an alert reports about the rule that fired."""

    policy_name: str
    policy_namespace: str
    severity: int
    tags: tuple[str, ...]
    message: str
    action: agent_pb2.Action.ValueType


@dataclass(frozen=True)
class RuleEntry:
    """The kernel value for one name, inode or id: per action, a bit per rule variant; the first rule id of each.

    args has an ACTION_* bit for each action whose rule is narrowed to its allowedArgs (bpf/lsm/args.bpf.h).
    """

    block: int = 0
    audit: int = 0
    allow: int = 0
    block_rule: int = 0
    audit_rule: int = 0
    allow_rule: int = 0
    args: int = 0


@dataclass(frozen=True)
class DirEntry:
    """The kernel value for one directory: rules for any file below it, and for files directly in it."""

    any_depth: RuleEntry = RuleEntry()
    direct: RuleEntry = RuleEntry()


@dataclass(frozen=True)
class KindRules:
    """One kind's rule table for one container."""

    names: Mapping[str, RuleEntry] = field(default_factory=dict)  # paths, or file names (no "/") for execname
    inodes: Mapping[FileIdentity, RuleEntry] = field(default_factory=dict)
    dirs: Mapping[str, DirEntry] = field(default_factory=dict)  # directory paths end with "/"
    patterns: Mapping[str, RuleEntry] = field(default_factory=dict)  # canonical globs, in the kernel's order
    ids: Mapping[int, RuleEntry] = field(default_factory=dict)  # protocol names, capabilities, system calls
    allowlist: bool = False
    posture_audit: bool = False
    # fromSource rules: a table per source executable, under each name that leads to it (written and resolved).
    sources: Mapping[str, KindRules] = field(default_factory=dict)
    source_names: Mapping[str, str] = field(default_factory=dict)  # name -> its key in sources
    # fromSource directories -> the keys in sources of the tables for executables at any depth below them and
    # directly in them; each table holds the rules of every source directory that covers its executables too.
    source_dirs: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    scopes: Mapping[int, KindRules] = field(default_factory=dict)  # system call -> its matchPaths rules
    allowed_args: frozenset[tuple[int, str]] = frozenset()  # (rule id, argument) for each rule's allowedArgs

    @property
    def has_execnames(self) -> bool:
        """Tell whether any rule names an executable by file name alone."""
        return any(not name.startswith("/") for name in self.names)

    @property
    def blocks(self) -> bool:
        """Tell whether a Block rule is in the table or its sources' (what cannot be judged is then refused)."""
        entries = (*self.names.values(), *self.inodes.values(), *self.patterns.values(), *self.ids.values())
        directories = (part for entry in self.dirs.values() for part in (entry.any_depth, entry.direct))
        return any(entry.block for entry in (*entries, *directories)) or any(
            table.blocks for table in self.sources.values()
        )

    @property
    def size(self) -> int:
        """Return how many kernel map entries the table takes, its sources' included."""
        own = len(self.names) + len(self.inodes) + len(self.dirs) + len(self.patterns) + len(self.ids)
        own += len(self.source_names) + len(self.source_dirs) + len(self.scopes) + len(self.allowed_args)
        tables = (*self.sources.values(), *self.scopes.values())
        return own + sum(table.size for table in tables)


@dataclass(frozen=True)
class CompiledRules:
    """A container's complete rule tables; rule id N is rules[N - 1]."""

    kinds: Mapping[Kind, KindRules]
    rules: tuple[RuleInfo, ...]
    presets: Mapping[Preset, RuleEntry] = field(default_factory=dict)  # plain Block and Audit bits, rule ids

    @property
    def size(self) -> int:
        """Return how many rule-table entries the container takes, every kind together."""
        return sum(rules.size for rules in self.kinds.values())

    def active(self, kind: Kind) -> bool:
        """Tell whether the kernel must judge this kind at all for the container (its rules, or a preset's hooks)."""
        rules = self.kinds[kind]
        return bool(rules.size or rules.allowlist or any(_PRESET_KINDS[preset] is kind for preset in self.presets))

    @property
    def preset_bits(self) -> int:
        """Return the kernel's ContainerPolicy.presets: each preset's Block and Audit bits."""
        bits = 0
        for preset, entry in self.presets.items():
            bits |= preset_bits(preset, block=bool(entry.block), audit=bool(entry.audit))
        return bits

    def preset_rule(self, preset: Preset) -> int:
        """Return the rule id alerts of a preset name: its Block rule's, else its Audit rule's."""
        entry = self.presets.get(preset, RuleEntry())
        return entry.block_rule or entry.audit_rule

    def rule(self, rule_id: int) -> RuleInfo | None:
        """Return the rule with this id, or None for 0 (the posture decided)."""
        return self.rules[rule_id - 1] if 0 < rule_id <= len(self.rules) else None


_ACTION_SLOTS = {
    agent_pb2.ACTION_BLOCK: ("block", "block_rule"),
    agent_pb2.ACTION_AUDIT: ("audit", "audit_rule"),
    agent_pb2.ACTION_ALLOW: ("allow", "allow_rule"),
}
_ACTION_BITS = {
    agent_pb2.ACTION_BLOCK: ACTION_BLOCK,
    agent_pb2.ACTION_AUDIT: ACTION_AUDIT,
    agent_pb2.ACTION_ALLOW: ACTION_ALLOW,
}
_PRESET_ACTIONS = (agent_pb2.ACTION_BLOCK, agent_pb2.ACTION_AUDIT)
_PRESETS = {
    agent_pb2.PRESET_FILELESS_EXEC: Preset.FILELESS_EXEC,
    agent_pb2.PRESET_ANONYMOUS_MAP_EXEC: Preset.ANON_MAP_EXEC,
    agent_pb2.PRESET_PROTECT_ENV: Preset.PROTECT_ENV,
    agent_pb2.PRESET_PROTECT_PROC: Preset.PROTECT_PROC,
    agent_pb2.PRESET_EXEC: Preset.EXEC,
}
_PRESET_KINDS = {  # the enforcer whose hooks judge each preset
    Preset.FILELESS_EXEC: Kind.PROCESS,
    Preset.ANON_MAP_EXEC: Kind.PROCESS,
    Preset.PROTECT_ENV: Kind.FILE,
    Preset.PROTECT_PROC: Kind.FILE,
    Preset.EXEC: Kind.PROCESS,
}
# Glob syntax AppArmor has and the kernel's matcher does not: classes, alternations, escapes.
PATTERN_UNSUPPORTED = "[]{}\\"
_Key = TypeVar("_Key", str, FileIdentity, int)
IdRule = agent_pb2.NetworkRule | agent_pb2.CapabilityRule
SourcedRule = (
    agent_pb2.PathRule | agent_pb2.NetworkRule | agent_pb2.CapabilityRule | agent_pb2.SyscallRule | agent_pb2.DnsRule
)
WireRule = SourcedRule | agent_pb2.PresetRule


def check_policies(policies: Iterable[agent_pb2.Policy]) -> None:
    """Refuse the whole set if any rule is malformed (the host may be buggy or hostile)."""
    names: set[tuple[str, str]] = set()
    patterns: dict[str, set[str]] = {"process_rules": set(), "file_rules": set()}  # what the kernel holds of each
    for index, policy in enumerate(policies):
        where = f"policies[{index}]"
        if not policy.name:
            raise InvalidPolicyError(f"{where}.name: empty")
        if (policy.namespace, policy.name) in names:
            raise InvalidPolicyError(f"{where}.name: {policy.name!r} appears twice")
        names.add((policy.namespace, policy.name))
        _check_policy_rules(where, policy, patterns)
    for section, distinct in patterns.items():
        if len(distinct) > PATTERNS_MAX:
            raise InvalidPolicyError(
                f"policies: {len(distinct)} distinct patterns in {section}; the kernel holds at most {PATTERNS_MAX}"
            )


def _check_policy_rules(where: str, policy: agent_pb2.Policy, patterns: Mapping[str, set[str]]) -> None:
    """Refuse a policy with a malformed rule; add its patterns to those of their section."""
    for section, file_rule in (("process_rules", False), ("file_rules", True)):
        for number, rule in enumerate(getattr(policy, section)):
            _check_path_rule(f"{where}.{section}[{number}]", rule, file_rule=file_rule)
            if rule.pattern:
                patterns[section].add(canonical_pattern(rule.pattern))
    _check_named_rules(where, policy)
    for number, syscall in enumerate(policy.syscall_rules):
        _check_syscall_rule(f"{where}.syscall_rules[{number}]", syscall)
    for number, preset in enumerate(policy.presets):
        if preset.preset not in _PRESETS:
            raise InvalidPolicyError(f"{where}.presets[{number}].preset: not one this agent enforces")
        if preset.action not in _PRESET_ACTIONS:
            raise InvalidPolicyError(f"{where}.presets[{number}].action: must be Block or Audit")


def _check_named_rules(where: str, policy: agent_pb2.Policy) -> None:
    """Refuse a network, DNS or capabilities rule whose protocol, domain or capability the kernel cannot match."""
    for number, network in enumerate(policy.network_rules):
        _check_rule(f"{where}.network_rules[{number}]", network)
        if network.protocol not in NETWORK_PROTOCOLS:
            raise InvalidPolicyError(f"{where}.network_rules[{number}].protocol: {network.protocol!r} is unknown")
    for number, dns in enumerate(policy.dns_rules):
        _check_rule(f"{where}.dns_rules[{number}]", dns)
        if not is_domain(dns.domain):
            raise InvalidPolicyError(f"{where}.dns_rules[{number}].domain: {dns.domain!r} is not a DNS name")
    for number, capability in enumerate(policy.capability_rules):
        _check_rule(f"{where}.capability_rules[{number}]", capability)
        if capability.capability not in CAPABILITIES:
            raise InvalidPolicyError(
                f"{where}.capability_rules[{number}].capability: {capability.capability!r} is unknown"
            )


def _check_rule(where: str, rule: WireRule) -> None:
    if rule.action not in _ACTION_SLOTS:
        raise InvalidPolicyError(f"{where}.action: unspecified")
    for number, source in enumerate(rule.from_source):
        encoded = source.encode()
        if not source.startswith("/") or source.endswith("/") or len(encoded) >= PATH_MAX or b"\0" in encoded:
            raise InvalidPolicyError(f"{where}.from_source[{number}]: {source!r} is not an executable's path")


def _check_syscall_rule(where: str, rule: agent_pb2.SyscallRule) -> None:
    _check_rule(where, rule)
    if rule.action != agent_pb2.ACTION_AUDIT:
        raise InvalidPolicyError(f"{where}.action: system calls are audited, never blocked or allowed")
    if rule.syscall not in SYSCALL_NUMBERS:
        raise InvalidPolicyError(f"{where}.syscall: {rule.syscall!r} is unknown")
    if rule.path:
        if rule.syscall not in PATH_ARGUMENTS:
            raise InvalidPolicyError(f"{where}.path: {rule.syscall} takes no path")
        _check_path(where, rule.path, recursive=rule.recursive)
    elif rule.recursive:
        raise InvalidPolicyError(f"{where}.recursive: set without a path")
    for number, source in enumerate(rule.from_source_dirs):
        _check_path(f"{where}.from_source_dirs[{number}]", source.dir, field="dir")
        if not source.dir.endswith("/"):
            raise InvalidPolicyError(f"{where}.from_source_dirs[{number}].dir: {source.dir!r} does not end in '/'")


def _check_path_rule(where: str, rule: agent_pb2.PathRule, *, file_rule: bool) -> None:
    _check_rule(where, rule)
    if rule.read_only and not file_rule:
        raise InvalidPolicyError(f"{where}.read_only: only file rules can be read-only")
    if rule.allowed_args:
        _check_allowed_args(where, rule, file_rule=file_rule)
    if rule.pattern:
        _check_pattern(where, rule)
    elif rule.execname:
        if file_rule:
            raise InvalidPolicyError(f"{where}.execname: only process rules name executables")
        _check_execname(where, rule)
    else:
        _check_path(where, rule.path, recursive=rule.recursive)


def _check_allowed_args(where: str, rule: agent_pb2.PathRule, *, file_rule: bool) -> None:
    """Refuse allowedArgs but on a process rule for one file or execname, or arguments the kernel cannot match."""
    if file_rule or rule.pattern or rule.path.endswith("/"):
        raise InvalidPolicyError(f"{where}.allowed_args: only process rules for a file or an execname have them")
    if len(rule.allowed_args) > ARGS_MAX:
        raise InvalidPolicyError(f"{where}.allowed_args: {len(rule.allowed_args)} arguments; at most {ARGS_MAX}")
    for number, argument in enumerate(rule.allowed_args):
        encoded = argument.encode()
        if not encoded or len(encoded) >= PATH_MAX - 1 or b"\0" in encoded:
            raise InvalidPolicyError(
                f"{where}.allowed_args[{number}]: {argument!r} is empty, longer than {PATH_MAX - 2} bytes or has NUL"
            )


def _check_execname(where: str, rule: agent_pb2.PathRule) -> None:
    name = rule.execname
    if rule.path or rule.recursive:
        raise InvalidPolicyError(f"{where}: an execname rule has no path and is not recursive")
    if "/" in name or "\0" in name or name in (".", "..") or len(name.encode()) >= PATH_MAX:
        raise InvalidPolicyError(f"{where}.execname: {name!r} is not a file name")


def _check_path(where: str, path: str, *, field: str = "path", recursive: bool = False) -> None:
    """Refuse a path that is not absolute and normalised or does not fit the kernel's keys, or a recursive file."""
    encoded = path.encode()
    if not path.startswith("/"):
        raise InvalidPolicyError(f"{where}.{field}: {path!r} is not absolute")
    if recursive and not path.endswith("/"):
        raise InvalidPolicyError(f"{where}.recursive: {path!r} is a file, not a directory ending in '/'")
    if len(encoded) >= PATH_MAX or b"\0" in encoded:
        raise InvalidPolicyError(f"{where}.{field}: longer than {PATH_MAX - 1} bytes or contains NUL")
    if path != "/" and any(part in ("", ".", "..") for part in path[1:].removesuffix("/").split("/")):
        raise InvalidPolicyError(f"{where}.{field}: {path!r} is not normalised")


def _check_pattern(where: str, rule: agent_pb2.PathRule) -> None:
    pattern, encoded = rule.pattern, rule.pattern.encode()
    if rule.path or rule.execname or rule.recursive:
        raise InvalidPolicyError(f"{where}: a pattern rule has no path or execname and is not recursive")
    if not pattern.startswith("/") or pattern.endswith("/"):
        raise InvalidPolicyError(f"{where}.pattern: {pattern!r} does not start with '/' or ends with one")
    if len(encoded) >= PATH_MAX or b"\0" in encoded:
        raise InvalidPolicyError(f"{where}.pattern: longer than {PATH_MAX - 1} bytes or contains NUL")
    if any(character in PATTERN_UNSUPPORTED for character in pattern):
        raise InvalidPolicyError(f"{where}.pattern: {pattern!r} uses one of {PATTERN_UNSUPPORTED!r}, not matched")
    if any(part in ("", ".", "..") for part in pattern[1:].split("/")):
        raise InvalidPolicyError(f"{where}.pattern: {pattern!r} is not normalised")


def canonical_pattern(pattern: str) -> str:
    """Write a glob as the kernel matches it: a run of three or more '*' means what '**' does."""
    return re.sub(r"\*{3,}", "**", pattern)


def _variant(rule: WireRule) -> int:
    """Return the kernel's variant number of a rule: which of readOnly, ownerOnly and "pts: false" it has."""
    variant = 0
    if isinstance(rule, agent_pb2.PathRule):
        variant |= (VARIANT_READ_ONLY if rule.read_only else 0) | (VARIANT_OWNER_ONLY if rule.owner_only else 0)
    if isinstance(rule, agent_pb2.PathRule | agent_pb2.NetworkRule) and rule.no_terminal:
        variant |= VARIANT_NO_TERMINAL
    return variant


def _with(entry: RuleEntry, rule: WireRule, rule_id: int) -> RuleEntry:
    """Add one rule to an entry, as the kernel merges what several entries say."""
    bits, slot = _ACTION_SLOTS[rule.action]
    narrowed = isinstance(rule, agent_pb2.PathRule) and bool(rule.allowed_args)
    single = RuleEntry(**{bits: 1 << _variant(rule), slot: rule_id}, args=_ACTION_BITS[rule.action] if narrowed else 0)
    return _merged(entry, single)


def _narrowing(first: RuleEntry, second: RuleEntry, action: agent_pb2.Action.ValueType) -> int:
    """Return whether one action stays narrowed to allowedArgs when two entries merge (judge.bpf.h's narrowing()).

    The kernel checks one rule's arguments per action: Block and Audit stay narrowed only if both sides are,
    by the same rule; Allow only if both are (by the first rule's set, so an exec never meets more than it would).
    """
    bits, slot = _ACTION_SLOTS[action]
    bit = _ACTION_BITS[action]
    if not getattr(second, bits):
        return first.args & bit
    if not getattr(first, bits):
        return second.args & bit
    if action != agent_pb2.ACTION_ALLOW and getattr(first, slot) != getattr(second, slot):
        return 0
    return first.args & second.args & bit


def _merged(first: RuleEntry, second: RuleEntry) -> RuleEntry:
    """Combine two entries as the kernel merges what several of them say: every variant bit, the first rule ids."""
    return RuleEntry(
        block=first.block | second.block,
        audit=first.audit | second.audit,
        allow=first.allow | second.allow,
        block_rule=first.block_rule or second.block_rule,
        audit_rule=first.audit_rule or second.audit_rule,
        allow_rule=first.allow_rule or second.allow_rule,
        args=sum(_narrowing(first, second, action) for action in _ACTION_SLOTS),
    )


def _merge_into(into: dict[_Key, RuleEntry], more: Mapping[_Key, RuleEntry]) -> None:
    for key, entry in more.items():
        into[key] = _merged(into.get(key, RuleEntry()), entry)


class _TableBuilder:
    """Collect one kind's rules for one container; fromSource rules go to a builder per source.

    A source directory has a builder for executables at any depth below it and one for those directly
    in it; build() adds to each source's table the rules of the directories that cover it, since the
    kernel enters only the most specific source an executable has.
    """

    def __init__(self, view: ContainerView | None) -> None:
        self._view = view
        self.names: dict[str, RuleEntry] = {}
        self.inodes: dict[FileIdentity, RuleEntry] = {}
        self.dirs: dict[str, DirEntry] = {}
        self.patterns: dict[str, RuleEntry] = {}
        self.ids: dict[int, RuleEntry] = {}
        self.allowed_args: set[tuple[int, str]] = set()
        self.allowlist = False
        self._sources: dict[str, _TableBuilder] = {}
        self._source_names: dict[str, str] = {}
        self._source_dirs: dict[tuple[str, bool], _TableBuilder] = {}  # (directory, recursive) -> its rules
        self._scopes: dict[int, _TableBuilder] = {}

    def _tables_for(self, rule: SourcedRule) -> list[_TableBuilder]:
        """Return where a rule goes: this table, or the table of each of its sources."""
        directories = rule.from_source_dirs if isinstance(rule, agent_pb2.SyscallRule) else ()
        if not rule.from_source and not directories:
            return [self]
        tables = []
        for source in rule.from_source:
            resolved = (self._view.resolve(source) if self._view else None) or source
            for name in (source, resolved):
                if len(name.encode()) < PATH_MAX:
                    self._source_names[name] = resolved
            tables.append(self._sources.setdefault(resolved, _TableBuilder(self._view)))
        for directory in directories:
            key = (directory.dir, directory.recursive)
            tables.append(self._source_dirs.setdefault(key, _TableBuilder(self._view)))
        return tables

    def add_syscall_rule(self, rule: agent_pb2.SyscallRule, rule_id: int) -> None:
        """Add a system call rule: for every call of it, or (matchPaths) for those naming a file or directory."""
        number = SYSCALL_NUMBERS[rule.syscall]
        for table in self._tables_for(rule):
            if not rule.path:
                table.ids[number] = _with(table.ids.get(number, RuleEntry()), rule, rule_id)
                continue
            scope = table._scopes.setdefault(number, _TableBuilder(self._view))
            if rule.path.endswith("/"):
                scope._add_directory(rule, rule_id)
                directory = rule.path.rstrip("/") or "/"  # the directory itself, as a call names it
                scope.names[directory] = _with(scope.names.get(directory, RuleEntry()), rule, rule_id)
            else:
                scope.names[rule.path] = _with(scope.names.get(rule.path, RuleEntry()), rule, rule_id)

    def _absorb(self, other: _TableBuilder) -> None:
        """Add another builder's own rules (not its sources) to this one's."""
        _merge_into(self.names, other.names)
        _merge_into(self.inodes, other.inodes)
        _merge_into(self.patterns, other.patterns)
        _merge_into(self.ids, other.ids)
        self.allowed_args |= other.allowed_args
        for path, entry in other.dirs.items():
            mine = self.dirs.get(path, DirEntry())
            self.dirs[path] = DirEntry(_merged(mine.any_depth, entry.any_depth), _merged(mine.direct, entry.direct))
        self.allowlist |= other.allowlist
        for number, scope in other._scopes.items():
            self._scopes.setdefault(number, _TableBuilder(self._view))._absorb(scope)

    def _combined(self, parts: Iterable[_TableBuilder]) -> _TableBuilder:
        combined = _TableBuilder(self._view)
        for part in parts:
            combined._absorb(part)
        return combined

    def _covering(self, directory: str, *, recursive_only: bool) -> list[_TableBuilder]:
        """Return the source-directory builders whose rules reach executables directly in ``directory``."""
        return [
            table
            for (source, recursive), table in self._source_dirs.items()
            if (recursive and directory.startswith(source)) or (not recursive_only and source == directory)
        ]

    def add_path_rule(self, rule: agent_pb2.PathRule, rule_id: int) -> None:
        """Add a process or file rule by pattern, execname, directory or file."""
        for table in self._tables_for(rule):
            table._add_path_rule(rule, rule_id)

    def add_dns_rule(self, rule: agent_pb2.DnsRule, rule_id: int, search: Iterable[str]) -> None:
        """Add a DNS rule for its domain, and for it followed by each search domain (the names resolvers try first)."""
        for table in self._tables_for(rule):
            table.allowlist |= rule.action == agent_pb2.ACTION_ALLOW
            for name in (rule.domain, *(f"{rule.domain}.{domain}" for domain in search)):
                if is_domain(name):
                    table.names[name] = _with(table.names.get(name, RuleEntry()), rule, rule_id)

    def add_id_rule(self, identifier: int, rule: IdRule, rule_id: int) -> None:
        """Add a network protocol or capability rule."""
        for table in self._tables_for(rule):
            table.allowlist |= rule.action == agent_pb2.ACTION_ALLOW
            table.ids[identifier] = _with(table.ids.get(identifier, RuleEntry()), rule, rule_id)

    def _add_path_rule(self, rule: agent_pb2.PathRule, rule_id: int) -> None:
        self.allowlist |= rule.action == agent_pb2.ACTION_ALLOW
        self.allowed_args.update((rule_id, argument) for argument in rule.allowed_args)
        if rule.pattern:
            pattern = canonical_pattern(rule.pattern)
            self.patterns[pattern] = _with(self.patterns.get(pattern, RuleEntry()), rule, rule_id)
        elif rule.execname:
            self.names[rule.execname] = _with(self.names.get(rule.execname, RuleEntry()), rule, rule_id)
        elif _names_a_file(rule):
            self._add_file(rule, rule_id)
        else:
            self._add_directory(rule, rule_id)

    def _add_file(self, rule: agent_pb2.PathRule, rule_id: int) -> None:
        """Add a file rule under its written path, the path it resolves to, and the identities of that file."""
        resolved = self._view.resolve(rule.path) if self._view else None
        for path in {rule.path, resolved or rule.path}:
            if len(path.encode()) < PATH_MAX:
                self.names[path] = _with(self.names.get(path, RuleEntry()), rule, rule_id)
        for identity in self._view.identities(resolved) if self._view and resolved else ():
            self.inodes[identity] = _with(self.inodes.get(identity, RuleEntry()), rule, rule_id)

    def _add_directory(self, rule: agent_pb2.PathRule, rule_id: int) -> None:
        """Add a directory rule under its written path and the path it resolves to inside the container."""
        resolved = self._view.resolve(rule.path) if self._view else None
        for path in {rule.path, resolved.rstrip("/") + "/" if resolved else rule.path}:
            if len(path.encode()) >= PATH_MAX:
                continue
            entry = self.dirs.get(path, DirEntry())
            if rule.recursive:
                entry = replace(entry, any_depth=_with(entry.any_depth, rule, rule_id))
            else:
                entry = replace(entry, direct=_with(entry.direct, rule, rule_id))
            self.dirs[path] = entry

    def build(self, posture: agent_pb2.Posture.ValueType) -> KindRules:
        """Freeze the table with the kind's posture."""
        sources = {
            name: self._combined((source, *self._covering(name.rsplit("/", 1)[0] + "/", recursive_only=False)))
            for name, source in self._sources.items()
        }
        source_dirs: dict[str, tuple[str | None, str | None]] = {}
        for directory in sorted({directory for directory, _ in self._source_dirs}):
            any_depth = self._covering(directory, recursive_only=True) if (directory, True) in self._source_dirs else []
            direct = self._source_dirs.get((directory, False))
            # Keys no executable has (paths hold no NUL), beside the executables' own.
            any_label, direct_label = f"\0{directory}**", f"\0{directory}*"
            if any_depth:
                sources[any_label] = self._combined(any_depth)
            if direct:
                sources[direct_label] = self._combined((direct, *self._covering(directory, recursive_only=True)))
            source_dirs[directory] = (any_label if any_depth else None, direct_label if direct else None)
        return KindRules(
            names=self.names,
            inodes=self.inodes,
            dirs=self.dirs,
            patterns=self.patterns,
            ids=self.ids,
            allowlist=self.allowlist,
            posture_audit=posture == agent_pb2.POSTURE_AUDIT,
            sources={name: source.build(posture) for name, source in sources.items()},
            source_names=self._source_names,
            source_dirs=source_dirs,
            scopes={number: scope.build(posture) for number, scope in self._scopes.items()},
            allowed_args=frozenset(self.allowed_args),
        )


def _names_a_file(rule: agent_pb2.PathRule) -> bool:
    """Tell whether a process or file rule names one file (rather than a pattern, an execname or a directory)."""
    return not rule.pattern and not rule.execname and not rule.path.endswith("/")


def compile_rules(
    policies: Iterable[agent_pb2.Policy],
    *,
    container_name: str,
    postures: Mapping[Kind, agent_pb2.Posture.ValueType],
    view: ContainerView | None,
) -> CompiledRules:
    """Build the rule tables of one container from its pod's policies."""
    tables = {kind: _TableBuilder(view) for kind in Kind}
    presets: dict[Preset, RuleEntry] = {}
    rules: list[RuleInfo] = []

    def remember(policy: agent_pb2.Policy, rule: WireRule) -> int:
        rules.append(
            RuleInfo(
                policy_name=policy.name,
                policy_namespace=policy.namespace,
                severity=rule.severity,
                tags=tuple(rule.tags),
                message=rule.message,
                action=rule.action,
            )
        )
        return len(rules)

    policies = [policy for policy in policies if not policy.containers or container_name in policy.containers]
    search = view.search_domains() if view and any(policy.dns_rules for policy in policies) else ()
    if view:
        view.read_identities(
            resolved
            for policy in policies
            for rule in (*policy.process_rules, *policy.file_rules)
            if _names_a_file(rule) and (resolved := view.resolve(rule.path))
        )
    for policy in policies:
        for path_rule in policy.process_rules:
            tables[Kind.PROCESS].add_path_rule(path_rule, remember(policy, path_rule))
        for path_rule in policy.file_rules:
            tables[Kind.FILE].add_path_rule(path_rule, remember(policy, path_rule))
        for network in policy.network_rules:
            tables[Kind.NETWORK].add_id_rule(NETWORK_PROTOCOLS[network.protocol], network, remember(policy, network))
        for capability in policy.capability_rules:
            tables[Kind.CAPABILITIES].add_id_rule(
                CAPABILITIES[capability.capability], capability, remember(policy, capability)
            )
        for syscall in policy.syscall_rules:
            tables[Kind.SYSCALLS].add_syscall_rule(syscall, remember(policy, syscall))
        for dns in policy.dns_rules:
            tables[Kind.DNS].add_dns_rule(dns, remember(policy, dns), search)
        for preset in policy.presets:
            kernel_preset = _PRESETS[preset.preset]
            presets[kernel_preset] = _with(presets.get(kernel_preset, RuleEntry()), preset, remember(policy, preset))
    return CompiledRules(
        kinds={kind: table.build(postures.get(kind, agent_pb2.POSTURE_BLOCK)) for kind, table in tables.items()},
        rules=tuple(rules),
        presets=presets,
    )
