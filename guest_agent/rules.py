# SPDX-License-Identifier: Apache-2.0
"""Turn a pod's desired policies into one container's exec rule table.

Pure functions over the wire messages, so the whole decision of what goes
into the kernel can be tested without a kernel. The host has already chosen
which policies apply to the pod; here they are narrowed to one container
(by name), merged per path, and each rule path is also resolved inside the
container's rootfs, because the kernel matches the executed file's real
path: on a merged-/usr image `/bin/ls` runs as `/usr/bin/ls`.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from guest_agent.bpf_types import ACTION_ALLOW, ACTION_AUDIT, ACTION_BLOCK, PATH_MAX
from kadapter_api import agent_pb2

MAX_SYMLINKS = 40  # the kernel's own limit for one lookup


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
class CompiledRules:
    """A container's complete exec rule table; rule id N is rules[N - 1]."""

    entries: Mapping[str, ExecEntry]
    rules: tuple[RuleInfo, ...]
    allowlist: bool
    posture_audit: bool

    def rule(self, rule_id: int) -> RuleInfo | None:
        """Return the rule with this id, or None for 0 (the posture decided)."""
        return self.rules[rule_id - 1] if 0 < rule_id <= len(self.rules) else None


_ACTION_BITS = {
    agent_pb2.ACTION_BLOCK: (ACTION_BLOCK, "block_rule"),
    agent_pb2.ACTION_AUDIT: (ACTION_AUDIT, "audit_rule"),
    agent_pb2.ACTION_ALLOW: (ACTION_ALLOW, "allow_rule"),
}


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
            _check_path(f"{where}.process_rules[{number}].path", rule.path)
            if rule.action not in _ACTION_BITS:
                raise InvalidPolicyError(f"{where}.process_rules[{number}].action: unspecified")


def _check_path(field: str, path: str) -> None:
    encoded = path.encode()
    if not path.startswith("/") or path.endswith("/"):
        raise InvalidPolicyError(f"{field}: {path!r} is not an absolute path to a file")
    if len(encoded) >= PATH_MAX or b"\0" in encoded:
        raise InvalidPolicyError(f"{field}: longer than {PATH_MAX - 1} bytes or contains NUL")
    if any(part in ("", ".", "..") for part in path[1:].split("/")):
        raise InvalidPolicyError(f"{field}: {path!r} is not normalised")


def compile_rules(
    policies: Iterable[agent_pb2.Policy],
    *,
    container_name: str,
    posture: agent_pb2.Posture.ValueType,
    rootfs: Path | None,
) -> CompiledRules:
    """Build the exec rule table of one container from its pod's policies."""
    entries: dict[str, ExecEntry] = {}
    rules: list[RuleInfo] = []
    for policy in policies:
        if policy.containers and container_name not in policy.containers:
            continue
        for rule in policy.process_rules:
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
            bit, slot = _ACTION_BITS[rule.action]
            for path in _paths_to_match(rule.path, rootfs):
                entry = entries.get(path, ExecEntry())
                first_rule = getattr(entry, slot) or len(rules)
                entries[path] = replace(entry, actions=entry.actions | bit, **{slot: first_rule})
    return CompiledRules(
        entries=entries,
        rules=tuple(rules),
        allowlist=any(rule.action == agent_pb2.ACTION_ALLOW for rule in rules),
        posture_audit=posture == agent_pb2.POSTURE_AUDIT,
    )


def _paths_to_match(path: str, rootfs: Path | None) -> tuple[str, ...]:
    """Return the rule's path and, when it differs, the file it names inside the rootfs."""
    resolved = resolve_in_root(rootfs, path) if rootfs else None
    if resolved and resolved != path and len(resolved.encode()) < PATH_MAX:
        return (path, resolved)
    return (path,)


def resolve_in_root(root: Path, path: str) -> str | None:
    """Follow symlinks in an absolute path the way a process chrooted at root would.

    Components that do not exist are kept as written. Returns None on a
    symlink loop or an unreadable directory.
    """
    pending = deque(part for part in path.split("/") if part)
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        try:
            target = os.readlink(root.joinpath(*resolved, part))
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                return None
            resolved.append(part)  # not a symlink, or not there (yet)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            return None
        if target.startswith("/"):
            resolved.clear()
        pending.extendleft(reversed([piece for piece in target.split("/") if piece]))
    return "/" + "/".join(resolved)
