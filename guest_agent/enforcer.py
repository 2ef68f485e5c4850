# SPDX-License-Identifier: Apache-2.0
"""The Enforcer: owns the BPF-LSM object and writes each container's rules into its maps.

A container's rules are written under a fresh ruleset id and only then is
the container pointed at it, in one map update; the old rules are deleted
after. A policy change therefore takes effect whole or not at all, and a
failure half way (a full map) rolls back to the rules already in force.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from guest_agent import bpf_types
from guest_agent.libbpf import BpfError, BpfObject, RingBuffer
from guest_agent.rules import CompiledRules, ContainerKey

log = logging.getLogger(__name__)


@dataclass
class _Installed:
    """What the maps hold for one container."""

    ruleset: int
    paths: tuple[bytes, ...] = field(default_factory=tuple)


class Enforcer:
    """Load the exec enforcer and keep its maps in step with the containers' rules."""

    def __init__(self, bpf_object: Path, *, max_containers: int, max_rules: int) -> None:
        self._object = BpfObject(bpf_object, max_entries={"containers": max_containers, "exec_rules": max_rules})
        self._containers = self._object.map("containers")
        self._exec_rules = self._object.map("exec_rules")
        self._installed: dict[ContainerKey, _Installed] = {}
        self._ruleset_ids = itertools.count(1)
        self._lock = threading.Lock()

    def enforce(self, key: ContainerKey, rules: CompiledRules) -> int:
        """Make the container's rules exactly `rules`; return the new ruleset id."""
        with self._lock:
            ruleset = next(self._ruleset_ids)
            written = self._write_rules(ruleset, rules)
            flags = (bpf_types.PROCESS_ALLOWLIST if rules.allowlist else 0) | (
                bpf_types.POSTURE_AUDIT if rules.posture_audit else 0
            )
            try:
                self._containers.update(_ns_key(key), bpf_types.ContainerPolicy(ruleset=ruleset, flags=flags))
            except BpfError:
                self._delete_rules(ruleset, written)
                raise
            previous = self._installed.get(key)
            self._installed[key] = _Installed(ruleset, written)
            if previous:
                self._delete_rules(previous.ruleset, previous.paths)
            return ruleset

    def release(self, key: ContainerKey) -> None:
        """Forget a container: its map entry and all its rules."""
        with self._lock:
            installed = self._installed.pop(key, None)
            self._containers.delete(_ns_key(key))
            if installed:
                self._delete_rules(installed.ruleset, installed.paths)

    def installed_rules(self, key: ContainerKey) -> int:
        """Return how many exec rule entries the maps hold for a container."""
        with self._lock:
            installed = self._installed.get(key)
            return len(installed.paths) if installed else 0

    def _write_rules(self, ruleset: int, rules: CompiledRules) -> tuple[bytes, ...]:
        """Write every entry of a new ruleset, or none of them."""
        written: list[bytes] = []
        try:
            for path, entry in rules.entries.items():
                value = bpf_types.ExecRule(
                    actions=entry.actions,
                    block_rule=entry.block_rule,
                    audit_rule=entry.audit_rule,
                    allow_rule=entry.allow_rule,
                )
                encoded = path.encode()
                self._exec_rules.update(bpf_types.ExecRuleKey(ruleset=ruleset, path=encoded), value)
                written.append(encoded)
        except BpfError:
            self._delete_rules(ruleset, written)
            raise
        return tuple(written)

    def _delete_rules(self, ruleset: int, paths: tuple[bytes, ...] | list[bytes]) -> None:
        for path in paths:
            self._exec_rules.delete(bpf_types.ExecRuleKey(ruleset=ruleset, path=path))

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


def _ns_key(key: ContainerKey) -> bpf_types.NsKey:
    return bpf_types.NsKey(pid_ns=key.pid_ns, mnt_ns=key.mnt_ns)
