# SPDX-License-Identifier: Apache-2.0
"""The Enforcer: owns the BPF-LSM object and every map the agent writes.

A container gets a kernel id when it is registered: its init process is
tagged with it (task storage, through a pidfd) and its namespaces point to
it, so every process the container ever has is judged by its rules
(bpf/lsm/container.bpf.h). A container's rules are written under fresh
ruleset ids, one per kind, and only then is the container pointed at them,
in one map update; the old rules are deleted after. A policy change
therefore takes effect whole or not at all, and a failure half way (a full
map) rolls back to the rules already in force.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

from guest_agent import bpf_types
from guest_agent.bpf_types import Kind
from guest_agent.container_fs import FileIdentity
from guest_agent.libbpf import BpfError, BpfMap, BpfObject, CValue, RingBuffer
from guest_agent.rules import CompiledRules, ContainerKey, DirEntry, KindRules, RuleEntry
from kadapter_api.syscalls import NUMBERS as SYSCALL_NUMBERS
from kadapter_api.syscalls import PATH_ARGUMENTS

log = logging.getLogger(__name__)

# Rules are found by path, file identity, id or index; allowedArgs by rule id and argument.
RuleName = TypeVar("RuleName", str, FileIdentity, int, tuple[int, str])
Entry = TypeVar(
    "Entry",
    bool,
    RuleEntry,
    DirEntry,
    tuple[str, RuleEntry],
    bpf_types.KindPolicy,
    bpf_types.SourceDir,
    bpf_types.SyscallScope,
)
# The program the agent attaches only while a container has syscalls rules: it runs on every system call.
SYSCALLS_PROGRAM = "kadapter_sys_exit"
# Which argument of each system call holds its path, as the kernel side reads it.
_SYSCALL_PATHS = {SYSCALL_NUMBERS[name]: argument for name, argument in PATH_ARGUMENTS.items()}


class _Nested(NamedTuple):
    """The ruleset ids a kind's nested tables were written under: its sources' and its system calls' scopes."""

    sources: Mapping[str, int]
    scopes: Mapping[int, int]


@dataclass(frozen=True)
class _Table(Generic[RuleName, Entry]):
    """One rule map: how a kind's table is read (from its rules and its nested tables' ruleset ids) and written."""

    map_name: str
    entries: Callable[[KindRules, _Nested], Mapping[RuleName, Entry]]
    make_key: Callable[[int, RuleName], ctypes.Structure]
    make_value: Callable[[Entry], CValue]
    key_type: type[ctypes.Structure]  # every key type starts with the ruleset id


class _Writes:
    """The elements of a container's new rulesets, gathered per rule map for one batch (system call) per map.

    A container with ten thousand fromSource rulesets would otherwise cost a system call for each of them.
    """

    def __init__(self) -> None:
        self._elements: dict[str, tuple[list[ctypes.Structure], list[CValue]]] = {}

    def add(self, table: _Table, ruleset: int, entries: Mapping[RuleName, Entry]) -> None:
        """Add one table of a ruleset."""
        keys, values = self._elements.setdefault(table.map_name, ([], []))
        keys.extend(table.make_key(ruleset, name) for name in entries)
        values.extend(table.make_value(entry) for entry in entries.values())

    def flush(self, maps: Mapping[str, BpfMap]) -> None:
        """Write every map's elements, each map all or nothing; the caller deletes the rest if one fails."""
        for map_name, (keys, values) in self._elements.items():
            maps[map_name].update_batch(keys, values)


@dataclass
class _Installed:
    """What the maps hold for one container: per ruleset id, the names written in each table."""

    kernel_id: int
    key: ContainerKey
    written: dict[int, dict[str, tuple[object, ...]]] = field(default_factory=dict)
    audits_syscalls: bool = False


class Enforcer:
    """Load the enforcers and keep their maps in step with the containers' rules.

    Containers are known by the runtime's container id, never by their
    namespaces alone: namespace ids are recycled, and a new container may
    hold the ids of one whose poststop has not run yet.
    """

    def __init__(
        self,
        bpf_object: Path,
        *,
        max_containers: int,
        max_rules: int,
        alerts_per_second: int,
        pin_dir: Path | None = None,
        fail_closed: bool = False,
    ) -> None:
        """Load the object (reusing the maps pinned in pin_dir by a previous agent, if any) and attach it.

        fail_closed: refuse every exec in a container never registered, instead of only reporting it.
        """
        sizes = dict.fromkeys(("containers", "container_ns", "container_roots", "alert_budgets"), max_containers)
        rule_maps = dict.fromkeys((table.map_name for table in _TABLES), max_rules)
        self._object = BpfObject(
            bpf_object, max_entries=sizes | rule_maps, on_demand={SYSCALLS_PROGRAM}, pin_dir=pin_dir
        )
        self._containers = self._object.map("containers")
        self._container_ns = self._object.map("container_ns")
        self._container_roots = self._object.map("container_roots")
        self._task_container = self._object.map("task_container")
        self._alert_budgets = self._object.map("alert_budgets")
        self._rule_maps = {table.map_name: self._object.map(table.map_name) for table in _TABLES}
        self._alerts_per_second = alerts_per_second
        self.fail_closed = fail_closed
        zero = ctypes.c_uint32(0)
        self._object.map("settings").update(zero, bpf_types.Settings(fail_closed=fail_closed))
        # Kernel id 0 is no container: its budget limits the reports about unregistered ones.
        self._alert_budgets.update(zero, bpf_types.AlertBudget(limit=alerts_per_second))
        self._installed: dict[str, _Installed] = {}
        # Past whatever a previous agent left in pinned maps, so no id is handed out twice.
        self._kernel_ids = itertools.count(
            max((key.value for key in self._containers.keys(ctypes.c_uint32)), default=0) + 1
        )
        self._ruleset_ids = itertools.count(max(self._rulesets_in_maps(), default=0) + 1)
        self._lock = threading.Lock()

    def adopt(self, container_id: str, *, kernel_id: int, key: ContainerKey) -> None:
        """Take over a container a previous agent registered: its init is tagged, its rules are in force.

        The rules it holds stay until enforce() writes the container's new ones; collect_garbage()
        then deletes what no container uses any more.
        """
        with self._lock:
            self._installed[container_id] = _Installed(kernel_id, key)

    def kernel_id(self, container_id: str) -> int:
        """Return the kernel's id of a container the Enforcer holds."""
        with self._lock:
            return self._installed[container_id].kernel_id

    def forget(self, *, kernel_id: int, key: ContainerKey) -> None:
        """Delete the entries of a container a previous agent registered and that is gone."""
        with self._lock:
            self._forget(_Installed(kernel_id, key))

    def collect_garbage(self) -> int:
        """Delete every rule no container's rulesets hold (a previous agent's); return how many."""
        with self._lock:
            live = {ruleset for installed in self._installed.values() for ruleset in installed.written}
            deleted = 0
            for table in _TABLES:
                rule_map = self._rule_maps[table.map_name]
                stale = [key for key in rule_map.keys(table.key_type) if key.ruleset not in live]
                rule_map.delete_batch(stale)
                deleted += len(stale)
            return deleted

    def _rulesets_in_maps(self) -> set[int]:
        return {key.ruleset for table in _TABLES for key in self._rule_maps[table.map_name].keys(table.key_type)}

    def enforce(self, container_id: str, rules: CompiledRules, *, key: ContainerKey, init_pid: int) -> tuple[int, ...]:
        """Make the container's rules exactly `rules`, tagging its init on first sight; return every ruleset id."""
        with self._lock:
            previous = self._installed.get(container_id)
            installed = _Installed(
                previous.kernel_id if previous else next(self._kernel_ids),
                key,
                audits_syscalls=rules.active(Kind.SYSCALLS),
            )
            try:
                if installed.audits_syscalls:
                    self._object.attach(SYSCALLS_PROGRAM)
                writes = _Writes()
                rulesets = {
                    kind: self._write_kind(installed, rules.kinds[kind], writes) for kind in Kind if rules.active(kind)
                }
                writes.flush(self._rule_maps)
                self._containers.update(ctypes.c_uint32(installed.kernel_id), _container_policy(rulesets, rules))
                if not previous:
                    self._join(installed, init_pid)
            except (BpfError, OSError):
                self._delete_rules(installed)
                if not previous:
                    self._forget(installed)
                raise
            self._installed[container_id] = installed
            if previous:
                self._delete_rules(previous)
            self._detach_unused()
            return tuple(installed.written)

    def _write_kind(self, installed: _Installed, rules: KindRules, writes: _Writes) -> int:
        """Add one kind's tables, and its nested ones under rulesets of their own, to writes under a new ruleset id.

        What is added is recorded in installed first, so that a failed write is deleted whole.
        """
        ruleset = next(self._ruleset_ids)
        written = installed.written.setdefault(ruleset, {})
        nested = _Nested(
            sources={name: self._write_kind(installed, source, writes) for name, source in rules.sources.items()},
            scopes={number: self._write_kind(installed, scope, writes) for number, scope in rules.scopes.items()},
        )
        for table in _TABLES:
            entries = table.entries(rules, nested)
            written[table.map_name] = tuple(entries)
            writes.add(table, ruleset, entries)
        return ruleset

    def _detach_unused(self) -> None:
        """Detach the system call program once no container has syscalls rules (it costs every call)."""
        if not any(installed.audits_syscalls for installed in self._installed.values()):
            self._object.detach(SYSCALLS_PROGRAM)

    def _join(self, installed: _Installed, init_pid: int) -> None:
        """Bind the container's namespaces and tag its init process: from now on it cannot leave."""
        kernel_id = ctypes.c_uint32(installed.kernel_id)
        self._container_ns.update(_ns_key(installed.key), kernel_id)  # a recycled key now names this container
        self._alert_budgets.update(kernel_id, bpf_types.AlertBudget(limit=self._alerts_per_second))
        pidfd = os.pidfd_open(init_pid)
        try:
            self._task_container.update(ctypes.c_int(pidfd), kernel_id)
        finally:
            os.close(pidfd)

    def release(self, container_id: str) -> None:
        """Forget a stopped container: its entries and all its rules."""
        with self._lock:
            installed = self._installed.pop(container_id, None)
            if installed:
                self._forget(installed)
                self._delete_rules(installed)
                self._detach_unused()

    def _forget(self, installed: _Installed) -> None:
        """Delete a container's entries; its namespaces' entry only while it still names this container."""
        kernel_id = ctypes.c_uint32(installed.kernel_id)
        named = ctypes.c_uint32()
        if self._container_ns.lookup(_ns_key(installed.key), named) and named.value == installed.kernel_id:
            self._container_ns.delete(_ns_key(installed.key))
        self._containers.delete(kernel_id)
        self._container_roots.delete(kernel_id)
        self._alert_budgets.delete(kernel_id)

    def alerts_dropped(self, container_id: str) -> int:
        """Return how many of a container's alerts the kernel dropped over its budget."""
        with self._lock:
            installed = self._installed.get(container_id)
            budget = bpf_types.AlertBudget()
            if installed and self._alert_budgets.lookup(ctypes.c_uint32(installed.kernel_id), budget):
                return budget.dropped
            return 0

    def _delete_rules(self, installed: _Installed) -> None:
        for table in _TABLES:
            keys = [
                table.make_key(ruleset, name)
                for ruleset, tables in installed.written.items()
                for name in tables.get(table.map_name, ())
            ]
            self._rule_maps[table.map_name].delete_batch(keys)

    def watch_events(self, on_event: Callable[[bpf_types.AlertEvent], None], stop: threading.Event) -> None:
        """Deliver kernel events to on_event until stop is set (runs in the caller's thread)."""
        ring = RingBuffer(
            self._object.map("events"),
            lambda record: on_event(bpf_types.AlertEvent.from_buffer_copy(record)),
        )
        try:
            while not stop.is_set():
                ring.poll(200)
        finally:
            ring.close()

    @property
    def object_sha256(self) -> str:
        """The digest of the BPF object loaded: which build enforces, after an upgrade."""
        return self._object.sha256

    def close(self) -> None:
        """Detach the programs; enforcement stops."""
        self._object.close()


def _container_policy(rulesets: Mapping[Kind, int], rules: CompiledRules) -> bpf_types.ContainerPolicy:
    policy = bpf_types.ContainerPolicy(presets=rules.preset_bits)
    for preset in bpf_types.Preset:
        policy.preset_rules[preset] = rules.preset_rule(preset)
    for kind, ruleset in rulesets.items():
        policy.kinds[kind] = _kind_policy(ruleset, rules.kinds[kind])
    return policy


def _kind_policy(ruleset: int, rules: KindRules) -> bpf_types.KindPolicy:
    return bpf_types.KindPolicy(ruleset=ruleset, flags=_kind_flags(rules), patterns=len(rules.patterns))


def _kind_flags(rules: KindRules) -> int:
    flags = (bpf_types.ALLOWLIST if rules.allowlist else 0) | (bpf_types.POSTURE_AUDIT if rules.posture_audit else 0)
    if rules.dirs:
        flags |= bpf_types.DIRS
    if rules.has_execnames:
        flags |= bpf_types.EXECNAMES
    if rules.sources:
        flags |= bpf_types.SOURCES
    if rules.source_dirs:
        flags |= bpf_types.SOURCE_DIRS
    if rules.patterns:
        flags |= bpf_types.PATTERNS
    if rules.blocks:
        flags |= bpf_types.BLOCKS
    return flags


def _rule(entry: RuleEntry) -> bpf_types.RuleEntry:
    return bpf_types.RuleEntry(
        block=entry.block,
        audit=entry.audit,
        allow=entry.allow,
        block_rule=entry.block_rule,
        audit_rule=entry.audit_rule,
        allow_rule=entry.allow_rule,
        args=entry.args,
    )


def _dir_rule(entry: DirEntry) -> bpf_types.DirRule:
    return bpf_types.DirRule(any_depth=_rule(entry.any_depth), direct=_rule(entry.direct))


def _ns_key(key: ContainerKey) -> bpf_types.NsKey:
    return bpf_types.NsKey(pid_ns=key.pid_ns, mnt_ns=key.mnt_ns)


def _name_key(ruleset: int, path: str) -> bpf_types.NameRuleKey:
    return bpf_types.NameRuleKey(ruleset=ruleset, path=path.encode())


def _inode_key(ruleset: int, identity: FileIdentity) -> bpf_types.InodeRuleKey:
    return bpf_types.InodeRuleKey(ruleset=ruleset, dev=identity.dev, ino=identity.ino)


def _id_key(ruleset: int, identifier: int) -> bpf_types.IdRuleKey:
    return bpf_types.IdRuleKey(ruleset=ruleset, id=identifier)


def _pattern_key(ruleset: int, index: int) -> bpf_types.PatternKey:
    return bpf_types.PatternKey(ruleset=ruleset, index=index)


def _allowed_arg_key(ruleset: int, allowed: tuple[int, str]) -> bpf_types.AllowedArgKey:
    rule, argument = allowed
    return bpf_types.AllowedArgKey(ruleset=ruleset, rule=rule, arg=argument.encode())


def _pattern_rule(entry: tuple[str, RuleEntry]) -> bpf_types.PatternRule:
    pattern, rule = entry
    return bpf_types.PatternRule(rule=_rule(rule), pattern=pattern.encode())


def _source_policies(rules: KindRules, nested: _Nested) -> dict[str, bpf_types.KindPolicy]:
    """Each name of a source executable -> the ruleset its rules were written under, and their flags."""
    return {name: _source(rules, nested, key) for name, key in rules.source_names.items()}


def _source_directories(rules: KindRules, nested: _Nested) -> dict[str, bpf_types.SourceDir]:
    """Each source directory -> the rulesets of executables at any depth below it and directly in it."""
    return {
        directory: bpf_types.SourceDir(
            any_depth=_source(rules, nested, any_depth), direct=_source(rules, nested, direct)
        )
        for directory, (any_depth, direct) in rules.source_dirs.items()
    }


def _source(rules: KindRules, nested: _Nested, key: str | None) -> bpf_types.KindPolicy:
    """Return the kernel's record of one source's table; ruleset 0 (none) for no key."""
    return bpf_types.KindPolicy() if key is None else _kind_policy(nested.sources[key], rules.sources[key])


def _syscall_scopes(rules: KindRules, nested: _Nested) -> dict[int, bpf_types.SyscallScope]:
    """Each system call with matchPaths rules -> their ruleset and flags, and where the call's path is."""
    scopes = {}
    for number, scope in rules.scopes.items():
        argument = _SYSCALL_PATHS[number]
        scopes[number] = bpf_types.SyscallScope(
            ruleset=nested.scopes[number],
            flags=_kind_flags(scope),
            path_arg=argument.path,
            dirfd_arg=bpf_types.NO_ARG if argument.dirfd is None else argument.dirfd,
            exec=argument.exec,
        )
    return scopes


_TABLES: tuple[_Table, ...] = (
    _Table("name_rules", lambda rules, _: rules.names, _name_key, _rule, bpf_types.NameRuleKey),
    _Table("inode_rules", lambda rules, _: rules.inodes, _inode_key, _rule, bpf_types.InodeRuleKey),
    _Table("dir_rules", lambda rules, _: rules.dirs, _name_key, _dir_rule, bpf_types.NameRuleKey),
    _Table("id_rules", lambda rules, _: rules.ids, _id_key, _rule, bpf_types.IdRuleKey),
    # A ruleset's patterns by index, 0 to KindPolicy.patterns - 1: the kernel tries each in turn.
    _Table(
        "pattern_rules",
        lambda rules, _: dict(enumerate(rules.patterns.items())),
        _pattern_key,
        _pattern_rule,
        bpf_types.PatternKey,
    ),
    # A kind's sources: (its ruleset, an executable's name) -> the source's ruleset and flags.
    _Table("source_rules", _source_policies, _name_key, lambda policy: policy, bpf_types.NameRuleKey),
    _Table("source_dirs", _source_directories, _name_key, lambda record: record, bpf_types.NameRuleKey),
    _Table("syscall_scopes", _syscall_scopes, _id_key, lambda scope: scope, bpf_types.IdRuleKey),
    # Each allowedArgs rule's arguments, under the ruleset the rule is in: the kernel looks up each one an exec passes.
    _Table(
        "allowed_args",
        lambda rules, _: dict.fromkeys(rules.allowed_args, True),
        _allowed_arg_key,
        lambda _: ctypes.c_uint8(1),
        bpf_types.AllowedArgKey,
    ),
)
