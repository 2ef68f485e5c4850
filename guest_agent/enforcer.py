# SPDX-License-Identifier: Apache-2.0
"""The Enforcer: owns the BPF-LSM object and every map the agent writes.

A container gets a kernel id when it is registered: its init process is
tagged with it (task storage, through a pidfd) and its namespaces point to
it, so every process the container ever has is judged by its rules
(bpf/lsm/container.bpf.h). A container's rules are written under a fresh
ruleset id and only then is the container pointed at it, in one map
update; the old rules are deleted after. A policy change therefore takes
effect whole or not at all, and a failure half way (a full map) rolls back
to the rules already in force.
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
from typing import TypeVar

from guest_agent import bpf_types
from guest_agent.container_fs import FileIdentity
from guest_agent.libbpf import BpfError, BpfMap, BpfObject, RingBuffer
from guest_agent.rules import CompiledRules, ContainerKey, DirEntry, ExecEntry

log = logging.getLogger(__name__)

RuleName = TypeVar("RuleName", str, FileIdentity)  # rules are found by path or by file identity
Entry = TypeVar("Entry", ExecEntry, DirEntry)
_FILELESS_FLAGS = {bpf_types.ACTION_BLOCK: bpf_types.FILELESS_BLOCK, bpf_types.ACTION_AUDIT: bpf_types.FILELESS_AUDIT}


@dataclass
class _Installed:
    """What the maps hold for one container."""

    kernel_id: int
    key: ContainerKey
    ruleset: int = 0
    paths: tuple[str, ...] = field(default_factory=tuple)
    inodes: tuple[FileIdentity, ...] = field(default_factory=tuple)
    dirs: tuple[str, ...] = field(default_factory=tuple)


class Enforcer:
    """Load the exec enforcer and keep its maps in step with the containers' rules.

    Containers are known by the runtime's container id, never by their
    namespaces alone: namespace ids are recycled, and a new container may
    hold the ids of one whose poststop has not run yet.
    """

    def __init__(self, bpf_object: Path, *, max_containers: int, max_rules: int, alerts_per_second: int) -> None:
        sizes = dict.fromkeys(("containers", "container_ns", "container_roots", "alert_budgets"), max_containers)
        rule_maps = dict.fromkeys(("exec_rules", "exec_inodes", "exec_dirs"), max_rules)
        self._object = BpfObject(bpf_object, max_entries=sizes | rule_maps)
        self._containers = self._object.map("containers")
        self._container_ns = self._object.map("container_ns")
        self._container_roots = self._object.map("container_roots")
        self._task_container = self._object.map("task_container")
        self._alert_budgets = self._object.map("alert_budgets")
        self._alerts_per_second = alerts_per_second
        self._exec_rules = self._object.map("exec_rules")
        self._exec_inodes = self._object.map("exec_inodes")
        self._exec_dirs = self._object.map("exec_dirs")
        self._installed: dict[str, _Installed] = {}
        self._kernel_ids = itertools.count(1)
        self._ruleset_ids = itertools.count(1)
        self._lock = threading.Lock()

    def enforce(self, container_id: str, rules: CompiledRules, *, key: ContainerKey, init_pid: int) -> int:
        """Make the container's rules exactly `rules`, tagging its init on first sight; return the ruleset id."""
        with self._lock:
            previous = self._installed.get(container_id)
            installed = _Installed(previous.kernel_id if previous else next(self._kernel_ids), key)
            installed.ruleset = next(self._ruleset_ids)
            try:
                installed.paths = self._write(self._exec_rules, installed.ruleset, rules.entries, _path_key, _rule)
                installed.inodes = self._write(self._exec_inodes, installed.ruleset, rules.inodes, _inode_key, _rule)
                installed.dirs = self._write(self._exec_dirs, installed.ruleset, rules.dirs, _path_key, _dir_rule)
                self._containers.update(
                    ctypes.c_uint32(installed.kernel_id), _container_policy(installed.ruleset, rules)
                )
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
            return installed.ruleset

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

    def _forget(self, installed: _Installed) -> None:
        """Delete a container's entries; its namespaces' entry only while it still names this container."""
        kernel_id = ctypes.c_uint32(installed.kernel_id)
        named = ctypes.c_uint32()
        if self._container_ns.lookup(_ns_key(installed.key), named) and named.value == installed.kernel_id:
            self._container_ns.delete(_ns_key(installed.key))
        self._containers.delete(kernel_id)
        self._container_roots.delete(kernel_id)
        self._alert_budgets.delete(kernel_id)

    def installed_rules(self, container_id: str) -> int:
        """Return how many exec rule entries (by path, inode and directory) the maps hold for a container."""
        with self._lock:
            installed = self._installed.get(container_id)
            return len(installed.paths) + len(installed.inodes) + len(installed.dirs) if installed else 0

    def alerts_dropped(self, container_id: str) -> int:
        """Return how many of a container's alerts the kernel dropped over its budget."""
        with self._lock:
            installed = self._installed.get(container_id)
            budget = bpf_types.AlertBudget()
            if installed and self._alert_budgets.lookup(ctypes.c_uint32(installed.kernel_id), budget):
                return budget.dropped
            return 0

    @staticmethod
    def _write(
        bpf_map: BpfMap,
        ruleset: int,
        table: Mapping[RuleName, Entry],
        make_key: Callable[[int, RuleName], ctypes.Structure],
        make_value: Callable[[Entry], ctypes.Structure],
    ) -> tuple[RuleName, ...]:
        """Write every entry of one table of a new ruleset; the caller deletes them if a later write fails."""
        written: list[RuleName] = []
        try:
            for name, entry in table.items():
                bpf_map.update(make_key(ruleset, name), make_value(entry))
                written.append(name)
        except BpfError:
            for name in written:
                bpf_map.delete(make_key(ruleset, name))
            raise
        return tuple(written)

    def _delete_rules(self, installed: _Installed) -> None:
        for path in installed.paths:
            self._exec_rules.delete(_path_key(installed.ruleset, path))
        for identity in installed.inodes:
            self._exec_inodes.delete(_inode_key(installed.ruleset, identity))
        for path in installed.dirs:
            self._exec_dirs.delete(_path_key(installed.ruleset, path))

    def watch_events(self, on_event: Callable[[bpf_types.ExecEvent], None], stop: threading.Event) -> None:
        """Deliver kernel events to on_event until stop is set (runs in the caller's thread)."""
        ring = RingBuffer(
            self._object.map("events"),
            lambda record: on_event(bpf_types.ExecEvent.from_buffer_copy(record)),
        )
        try:
            while not stop.is_set():
                ring.poll(200)
        finally:
            ring.close()

    def close(self) -> None:
        """Detach the programs; enforcement stops."""
        self._object.close()


def _container_policy(ruleset: int, rules: CompiledRules) -> bpf_types.ContainerPolicy:
    flags = (bpf_types.PROCESS_ALLOWLIST if rules.allowlist else 0) | (
        bpf_types.POSTURE_AUDIT if rules.posture_audit else 0
    )
    if rules.dirs:
        flags |= bpf_types.PROCESS_DIRS
    if rules.has_execnames:
        flags |= bpf_types.PROCESS_EXECNAMES
    for action, flag in _FILELESS_FLAGS.items():
        if rules.fileless_actions & action:
            flags |= flag
    return bpf_types.ContainerPolicy(ruleset=ruleset, flags=flags, fileless_rule=rules.fileless_rule)


def _rule(entry: ExecEntry) -> bpf_types.ExecRule:
    return bpf_types.ExecRule(
        actions=entry.actions, block_rule=entry.block_rule, audit_rule=entry.audit_rule, allow_rule=entry.allow_rule
    )


def _dir_rule(entry: DirEntry) -> bpf_types.DirRule:
    return bpf_types.DirRule(any_depth=_rule(entry.any_depth), direct=_rule(entry.direct))


def _ns_key(key: ContainerKey) -> bpf_types.NsKey:
    return bpf_types.NsKey(pid_ns=key.pid_ns, mnt_ns=key.mnt_ns)


def _path_key(ruleset: int, path: str) -> bpf_types.ExecRuleKey:
    return bpf_types.ExecRuleKey(ruleset=ruleset, path=path.encode())


def _inode_key(ruleset: int, identity: FileIdentity) -> bpf_types.InodeRuleKey:
    return bpf_types.InodeRuleKey(ruleset=ruleset, dev=identity.dev, ino=identity.ino)
