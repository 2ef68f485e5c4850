# SPDX-License-Identifier: Apache-2.0
"""Turn a pod's desired policies into one container's exec rule table.

Pure functions over the wire messages and a view of the container's files,
so the whole decision of what goes into the kernel can be tested without a
kernel. The host has already chosen which policies apply to the pod; here
they are narrowed to one container (by name) and merged per path. Each rule
path is also resolved inside the container (on a merged-/usr image
`/bin/ls` runs as `/usr/bin/ls`) and the file it names is recorded by
identity, so a hard link or a bind mount of it matches the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from guest_agent.bpf_types import ACTION_ALLOW, ACTION_AUDIT, ACTION_BLOCK, PATH_MAX
from guest_agent.container_fs import ContainerView, FileIdentity
from kadapter_api import agent_pb2


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
class ExecEntry:
    """The kernel value for one path: action bits and the rule id behind each."""

    actions: int = 0
    block_rule: int = 0
    audit_rule: int = 0
    allow_rule: int = 0


@dataclass(frozen=True)
class DirEntry:
    """The kernel value for one directory: rules for any file below it, and for files directly in it."""

    any_depth: ExecEntry = ExecEntry()
    direct: ExecEntry = ExecEntry()


@dataclass(frozen=True)
class CompiledRules:
    """A container's complete exec rule table, by path and by file identity; rule id N is rules[N - 1]."""

    entries: Mapping[str, ExecEntry]  # by path, or by file name (no "/") for execname rules
    inodes: Mapping[FileIdentity, ExecEntry]
    dirs: Mapping[str, DirEntry]  # directory paths end with "/"
    rules: tuple[RuleInfo, ...]
    allowlist: bool
    posture_audit: bool
    fileless_actions: int = 0  # filelessExec preset: ACTION_BLOCK and/or ACTION_AUDIT bits
    fileless_rule: int = 0

    @property
    def has_execnames(self) -> bool:
        """Tell whether any rule names an executable by file name alone."""
        return any(not name.startswith("/") for name in self.entries)

    def rule(self, rule_id: int) -> RuleInfo | None:
        """Return the rule with this id, or None for 0 (the posture decided)."""
        return self.rules[rule_id - 1] if 0 < rule_id <= len(self.rules) else None


_ACTION_BITS = {
    agent_pb2.ACTION_BLOCK: (ACTION_BLOCK, "block_rule"),
    agent_pb2.ACTION_AUDIT: (ACTION_AUDIT, "audit_rule"),
    agent_pb2.ACTION_ALLOW: (ACTION_ALLOW, "allow_rule"),
}
_PRESET_ACTIONS = (agent_pb2.ACTION_BLOCK, agent_pb2.ACTION_AUDIT)


def check_policies(policies: Iterable[agent_pb2.Policy]) -> None:
    """Refuse the whole set if any rule is malformed (the host may be buggy or hostile)."""
    names: set[tuple[str, str]] = set()
    for index, policy in enumerate(policies):
        where = f"policies[{index}]"
        if not policy.name:
            raise InvalidPolicyError(f"{where}.name: empty")
        if (policy.namespace, policy.name) in names:
            raise InvalidPolicyError(f"{where}.name: {policy.name!r} appears twice")
        names.add((policy.namespace, policy.name))
        for number, rule in enumerate(policy.process_rules):
            if rule.execname:
                _check_execname(f"{where}.process_rules[{number}]", rule)
            else:
                _check_path(f"{where}.process_rules[{number}]", rule)
            if rule.action not in _ACTION_BITS:
                raise InvalidPolicyError(f"{where}.process_rules[{number}].action: unspecified")
        for number, preset in enumerate(policy.presets):
            if preset.preset != agent_pb2.PRESET_FILELESS_EXEC:
                raise InvalidPolicyError(f"{where}.presets[{number}].preset: not one this agent enforces")
            if preset.action not in _PRESET_ACTIONS:
                raise InvalidPolicyError(f"{where}.presets[{number}].action: must be Block or Audit")


def _check_execname(where: str, rule: agent_pb2.ProcessRule) -> None:
    name = rule.execname
    if rule.path or rule.recursive:
        raise InvalidPolicyError(f"{where}: an execname rule has no path and is not recursive")
    if "/" in name or "\0" in name or name in (".", "..") or len(name.encode()) >= PATH_MAX:
        raise InvalidPolicyError(f"{where}.execname: {name!r} is not a file name")


def _check_path(where: str, rule: agent_pb2.ProcessRule) -> None:
    path, encoded = rule.path, rule.path.encode()
    if not path.startswith("/"):
        raise InvalidPolicyError(f"{where}.path: {path!r} is not absolute")
    if rule.recursive and not path.endswith("/"):
        raise InvalidPolicyError(f"{where}.recursive: {path!r} is a file, not a directory ending in '/'")
    if len(encoded) >= PATH_MAX or b"\0" in encoded:
        raise InvalidPolicyError(f"{where}.path: longer than {PATH_MAX - 1} bytes or contains NUL")
    if path != "/" and any(part in ("", ".", "..") for part in path[1:].removesuffix("/").split("/")):
        raise InvalidPolicyError(f"{where}.path: {path!r} is not normalised")


def _with(entry: ExecEntry, action: agent_pb2.Action.ValueType, rule_id: int) -> ExecEntry:
    """Add one rule's action to an entry, keeping the first rule id of each action."""
    bit, slot = _ACTION_BITS[action]
    return replace(entry, actions=entry.actions | bit, **{slot: getattr(entry, slot) or rule_id})


def _add_file(
    entries: dict[str, ExecEntry],
    inodes: dict[FileIdentity, ExecEntry],
    rule: agent_pb2.ProcessRule,
    rule_id: int,
    view: ContainerView | None,
) -> None:
    """Add a file rule under its written path, the path it resolves to, and the identities of that file."""
    resolved = view.resolve(rule.path) if view else None
    for path in {rule.path, resolved or rule.path}:
        if len(path.encode()) < PATH_MAX:
            entries[path] = _with(entries.get(path, ExecEntry()), rule.action, rule_id)
    for identity in view.identities(resolved) if view and resolved else ():
        inodes[identity] = _with(inodes.get(identity, ExecEntry()), rule.action, rule_id)


def _add_directory(
    dirs: dict[str, DirEntry], rule: agent_pb2.ProcessRule, rule_id: int, view: ContainerView | None
) -> None:
    """Add a directory rule under its written path and the path it resolves to inside the container."""
    resolved = view.resolve(rule.path) if view else None
    for path in {rule.path, resolved.rstrip("/") + "/" if resolved else rule.path}:
        if len(path.encode()) >= PATH_MAX:
            continue
        entry = dirs.get(path, DirEntry())
        if rule.recursive:
            entry = replace(entry, any_depth=_with(entry.any_depth, rule.action, rule_id))
        else:
            entry = replace(entry, direct=_with(entry.direct, rule.action, rule_id))
        dirs[path] = entry


def compile_rules(
    policies: Iterable[agent_pb2.Policy],
    *,
    container_name: str,
    posture: agent_pb2.Posture.ValueType,
    view: ContainerView | None,
) -> CompiledRules:
    """Build the exec rule table of one container from its pod's policies."""
    entries: dict[str, ExecEntry] = {}
    inodes: dict[FileIdentity, ExecEntry] = {}
    dirs: dict[str, DirEntry] = {}
    fileless = ExecEntry()
    rules: list[RuleInfo] = []

    def remember(policy: agent_pb2.Policy, rule: agent_pb2.ProcessRule | agent_pb2.PresetRule) -> int:
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

    for policy in policies:
        if policy.containers and container_name not in policy.containers:
            continue
        for rule in policy.process_rules:
            rule_id = remember(policy, rule)
            if rule.execname:
                entries[rule.execname] = _with(entries.get(rule.execname, ExecEntry()), rule.action, rule_id)
                continue
            if rule.path.endswith("/"):
                _add_directory(dirs, rule, rule_id, view)
            else:
                _add_file(entries, inodes, rule, rule_id, view)
        for preset in policy.presets:
            fileless = _with(fileless, preset.action, remember(policy, preset))
    return CompiledRules(
        entries=entries,
        inodes=inodes,
        dirs=dirs,
        rules=tuple(rules),
        allowlist=any(rule.action == agent_pb2.ACTION_ALLOW for rule in rules),
        posture_audit=posture == agent_pb2.POSTURE_AUDIT,
        fileless_actions=fileless.actions,
        fileless_rule=fileless.block_rule or fileless.audit_rule,
    )
