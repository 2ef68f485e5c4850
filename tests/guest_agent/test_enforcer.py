"""What the Enforcer writes into the kernel's maps for a container, with the BPF object replaced by dictionaries.

The maps' contents are read back through the ctypes mirrors the kernel side
shares (guest_agent/bpf_types.py), so these tests see what the programs would.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from guest_agent import bpf_types, enforcer
from guest_agent.bpf_types import Kind
from guest_agent.libbpf import BpfError, CStruct, CValue
from guest_agent.rules import CompiledRules, ContainerKey, compile_rules
from kadapter_api import agent_pb2

RULE_MAPS = ("name_rules", "inode_rules", "dir_rules", "id_rules", "pattern_rules", "source_rules")


class FakeMap:
    """A map as bytes to bytes; its batch updates fail on request, as a full map's do."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: dict[bytes, bytes] = {}
        self.fail = False
        self.batches = 0  # update_batch calls that wrote something: one system call each in the kernel

    def update(self, key: CValue, value: CValue) -> None:
        """Insert or replace one element."""
        self.entries[bytes(key)] = bytes(value)

    def lookup(self, key: CValue, value: CValue) -> bool:
        """Copy one element into value."""
        found = self.entries.get(bytes(key))
        if found is not None:
            ctypes.memmove(ctypes.addressof(value), found, len(found))
        return found is not None

    def update_batch(self, keys: Sequence[ctypes.Structure], values: Sequence[ctypes.Structure]) -> None:
        """Write all or, when told to fail, nothing."""
        if self.fail and keys:
            raise BpfError(errno.ENOSPC, f"update map {self.name}: No space left on device")
        self.batches += bool(keys)
        for key, value in zip(keys, values, strict=True):
            self.update(key, value)

    def delete_batch(self, keys: Sequence[ctypes.Structure]) -> None:
        """Delete those present."""
        for key in keys:
            self.entries.pop(bytes(key), None)

    def delete(self, key: CValue) -> bool:
        """Delete one element."""
        return self.entries.pop(bytes(key), None) is not None

    def keys(self, key_type: type[CStruct]) -> list[CStruct]:
        """Return every key as key_type."""
        return [key_type.from_buffer_copy(key) for key in self.entries]


class FakeObject:
    """The loaded BPF object: its maps by name, the sizes the Enforcer asked for, its on-demand programs attached."""

    def __init__(self, path: Path, *, max_entries: dict[str, int], on_demand: set[str]) -> None:
        self.max_entries = max_entries
        self.maps: dict[str, FakeMap] = {}
        self.on_demand = on_demand
        self.attached: set[str] = set()

    def map(self, name: str) -> FakeMap:
        """Return the named map."""
        return self.maps.setdefault(name, FakeMap(name))

    def attach(self, name: str) -> None:
        """Attach an on-demand program."""
        assert name in self.on_demand
        self.attached.add(name)

    def detach(self, name: str) -> None:
        """Detach an on-demand program."""
        self.attached.discard(name)


@dataclass
class Loaded:
    """An Enforcer and the maps of its fake BPF object."""

    enforcer: enforcer.Enforcer
    maps: dict[str, FakeMap]
    bpf_object: FakeObject


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Loaded:
    """Return an Enforcer over fake maps, having checked it sizes the rule maps alike."""
    objects: list[FakeObject] = []

    def load(path: Path, *, max_entries: dict[str, int], on_demand: set[str], pin_dir: Path | None) -> FakeObject:
        objects.append(FakeObject(path, max_entries=max_entries, on_demand=on_demand))
        return objects[-1]

    monkeypatch.setattr(enforcer, "BpfObject", load)
    made = enforcer.Enforcer(Path("kadapter.bpf.o"), max_containers=4, max_rules=64, alerts_per_second=10)
    (fake,) = objects
    assert {name: fake.max_entries[name] for name in RULE_MAPS} == dict.fromkeys(RULE_MAPS, 64)
    return Loaded(made, fake.maps, fake)


def compiled(*file_rules: agent_pb2.PathRule) -> CompiledRules:
    """Compile file rules for one container."""
    policies = [agent_pb2.Policy(name="p", file_rules=file_rules)]
    return compile_rules(policies, container_name="c", postures={}, view=None)


def block(pattern: str, **fields: object) -> agent_pb2.PathRule:
    """Return a Block rule on a pattern."""
    return agent_pb2.PathRule(pattern=pattern, action=agent_pb2.ACTION_BLOCK, **fields)


def container_policy(maps: dict[str, FakeMap], kernel_id: int = 1) -> bpf_types.ContainerPolicy:
    """Read a container's policy back."""
    return bpf_types.ContainerPolicy.from_buffer_copy(maps["containers"].entries[bytes(ctypes.c_uint32(kernel_id))])


def patterns(maps: dict[str, FakeMap]) -> dict[tuple[int, int], tuple[bytes, bpf_types.RuleEntry]]:
    """Read every pattern rule back: (ruleset, index) -> (glob, rule entry)."""
    found = {}
    for key, value in maps["pattern_rules"].entries.items():
        pattern_key = bpf_types.PatternKey.from_buffer_copy(key)
        rule = bpf_types.PatternRule.from_buffer_copy(value)
        found[pattern_key.ruleset, pattern_key.index] = (rule.pattern, rule.rule)
    return found


def entry(rule: bpf_types.RuleEntry) -> tuple[int, ...]:
    """Return a kernel rule entry's fields."""
    return (rule.block, rule.audit, rule.allow, rule.block_rule, rule.audit_rule, rule.allow_rule)


def enforce(made: enforcer.Enforcer, rules: CompiledRules) -> tuple[int, ...]:
    """Enforce rules on container c1, tagging this process as its init."""
    return made.enforce("c1", rules, key=ContainerKey(1, 1), init_pid=os.getpid())


def test_patterns_are_written_by_index_and_counted_in_the_kind(
    loaded: Loaded,
) -> None:
    """Each glob of a kind goes under its ruleset at indexes 0 to n - 1; the kind carries n and the flag."""
    made, maps = loaded.enforcer, loaded.maps
    enforce(
        made,
        compiled(
            block("/etc/*hado?"),
            agent_pb2.PathRule(pattern="/usr/**", action=agent_pb2.ACTION_ALLOW, read_only=True),
            agent_pb2.PathRule(path="/etc/hostname", action=agent_pb2.ACTION_AUDIT),
        ),
    )
    kind = container_policy(maps).kinds[Kind.FILE]
    assert kind.patterns == 2
    assert kind.flags == bpf_types.PATTERNS | bpf_types.ALLOWLIST | bpf_types.BLOCKS
    written = {key: (pattern, entry(rule)) for key, (pattern, rule) in patterns(maps).items()}
    assert written == {
        (kind.ruleset, 0): (b"/etc/*hado?", (1, 0, 0, 1, 0, 0)),
        (kind.ruleset, 1): (b"/usr/**", (0, 0, 1 << bpf_types.VARIANT_READ_ONLY, 0, 0, 2)),
    }
    assert container_policy(maps).kinds[Kind.PROCESS].patterns == 0


def test_a_pattern_at_the_byte_limit_keeps_its_terminating_nul(
    loaded: Loaded,
) -> None:
    """A 255-byte glob fills the kernel's field but its last byte, which the matcher reads as the end."""
    made, maps = loaded.enforcer, loaded.maps
    glob = "/" + "a" * 252 + "**"
    enforce(made, compiled(block(glob)))
    (raw,) = maps["pattern_rules"].entries.values()
    pattern = bytes(raw)[ctypes.sizeof(bpf_types.RuleEntry) :]
    assert pattern == glob.encode() + b"\0"


def test_new_rules_replace_the_old_patterns_and_release_removes_them(
    loaded: Loaded,
) -> None:
    """A change writes the patterns under a fresh ruleset and deletes the old ones; release deletes the rest."""
    made, maps = loaded.enforcer, loaded.maps
    enforce(made, compiled(block("/tmp/a*"), block("/tmp/b*")))
    first = container_policy(maps).kinds[Kind.FILE].ruleset
    enforce(made, compiled(block("/tmp/c*")))
    second = container_policy(maps).kinds[Kind.FILE].ruleset
    assert second != first
    assert {key: pattern for key, (pattern, _) in patterns(maps).items()} == {(second, 0): b"/tmp/c*"}
    made.release("c1")
    assert not any(maps[name].entries for name in RULE_MAPS) and not maps["containers"].entries


def test_a_full_pattern_map_leaves_the_rules_in_force(loaded: Loaded) -> None:
    """Patterns are written all or nothing: when they do not fit, the container keeps its previous rules whole."""
    made, maps = loaded.enforcer, loaded.maps
    enforce(made, compiled(block("/tmp/a*"), agent_pb2.PathRule(path="/etc/shadow", action=agent_pb2.ACTION_BLOCK)))
    before = {name: dict(maps[name].entries) for name in (*RULE_MAPS, "containers")}
    maps["pattern_rules"].fail = True
    with pytest.raises(BpfError):
        enforce(made, compiled(block("/tmp/b*"), agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_BLOCK)))
    assert {name: maps[name].entries for name in (*RULE_MAPS, "containers")} == before


def test_a_new_container_whose_patterns_do_not_fit_is_not_left_half_written(
    loaded: Loaded,
) -> None:
    """The first rules of a container failing leave no rule and no container entry behind."""
    made, maps = loaded.enforcer, loaded.maps
    maps["pattern_rules"].fail = True
    with pytest.raises(BpfError):
        enforce(made, compiled(block("/tmp/a*"), agent_pb2.PathRule(path="/etc/shadow", action=agent_pb2.ACTION_BLOCK)))
    assert not any(maps[name].entries for name in (*RULE_MAPS, "containers", "container_ns"))


def test_a_sources_patterns_are_counted_in_its_own_kind_policy(
    loaded: Loaded,
) -> None:
    """A source's ruleset gets its patterns, and the source_rules value that enters it their count and flag."""
    made, maps = loaded.enforcer, loaded.maps
    enforce(made, compiled(block("/tmp/*", from_source=["/bin/sh"]), block("/etc/*")))
    kind = container_policy(maps).kinds[Kind.FILE]
    assert (kind.patterns, kind.flags) == (1, bpf_types.PATTERNS | bpf_types.SOURCES | bpf_types.BLOCKS)
    (value,) = maps["source_rules"].entries.values()
    source = bpf_types.KindPolicy.from_buffer_copy(value)
    assert (source.patterns, source.flags) == (1, bpf_types.PATTERNS | bpf_types.BLOCKS)
    assert {key: pattern for key, (pattern, _) in patterns(maps).items()} == {
        (kind.ruleset, 0): b"/etc/*",
        (source.ruleset, 0): b"/tmp/*",
    }


def test_the_syscall_program_runs_only_while_a_container_has_syscalls_rules(loaded: Loaded) -> None:
    """It costs every system call in the guest, so it is attached with the first such container, detached after."""
    rule = agent_pb2.SyscallRule(syscall="unlinkat", path="/home/", action=agent_pb2.ACTION_AUDIT)
    policies = [agent_pb2.Policy(name="p", syscall_rules=[rule])]
    with_syscalls = compile_rules(policies, container_name="c", postures={}, view=None)
    assert loaded.bpf_object.attached == set()
    enforce(loaded.enforcer, with_syscalls)
    assert loaded.bpf_object.attached == {enforcer.SYSCALLS_PROGRAM}
    ((scope_key, scope_value),) = loaded.maps["syscall_scopes"].entries.items()
    scope = bpf_types.SyscallScope.from_buffer_copy(scope_value)
    assert bpf_types.IdRuleKey.from_buffer_copy(scope_key).id == 263  # x86_64 unlinkat
    assert (scope.path_arg, scope.dirfd_arg, scope.exec, scope.flags) == (1, 0, 0, bpf_types.DIRS)
    enforce(loaded.enforcer, compiled(block("/etc/*")))
    assert loaded.bpf_object.attached == set()
    assert not loaded.maps["syscall_scopes"].entries


def test_a_restarted_enforcer_takes_over_a_container_and_sweeps_the_old_rules(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the same (pinned) maps, ids continue past the old ones and only the new rules survive the sweep."""
    old_rulesets = enforce(loaded.enforcer, compiled(block("/etc/*")))
    kernel_id = loaded.enforcer.kernel_id("c1")
    monkeypatch.setattr(enforcer, "BpfObject", lambda *_, **__: loaded.bpf_object)
    restarted = enforcer.Enforcer(Path("kadapter.bpf.o"), max_containers=4, max_rules=64, alerts_per_second=10)
    restarted.adopt("c1", kernel_id=kernel_id, key=ContainerKey(1, 1))
    new_rulesets = enforce(restarted, compiled(block("/usr/*")))
    assert min(new_rulesets) > max(old_rulesets)
    assert {ruleset for ruleset, _ in patterns(loaded.maps)} == set(old_rulesets) | set(new_rulesets)
    assert container_policy(loaded.maps, kernel_id).kinds[Kind.FILE].ruleset in new_rulesets
    assert restarted.collect_garbage() == len(old_rulesets)
    assert [pattern for pattern, _ in patterns(loaded.maps).values()] == [b"/usr/*"]


def test_a_container_gone_while_no_agent_ran_is_forgotten(loaded: Loaded) -> None:
    """Its namespaces, policy and budget entries go; no new container is found by its old namespaces."""
    enforce(loaded.enforcer, compiled(block("/etc/*")))
    kernel_id = loaded.enforcer.kernel_id("c1")
    loaded.enforcer.forget(kernel_id=kernel_id, key=ContainerKey(1, 1))
    assert not loaded.maps["container_ns"].entries
    assert not loaded.maps["containers"].entries
    assert list(loaded.maps["alert_budgets"].entries) == [
        bytes(ctypes.c_uint32(0))
    ]  # no container's: unregistered ones'


def test_thousands_of_source_rulesets_are_written_in_one_batch_per_map(loaded: Loaded) -> None:
    """Every ruleset of a container goes to each rule map in one batch: map writes, not rulesets, bound the cost."""
    made, maps = loaded.enforcer, loaded.maps
    network = [
        agent_pb2.NetworkRule(protocol="tcp", action=agent_pb2.ACTION_BLOCK, from_source=[f"/opt/source-{n}"])
        for n in range(2000)
    ]
    file_rules = [agent_pb2.PathRule(path=f"/opt/file-{n}", action=agent_pb2.ACTION_BLOCK) for n in range(2000)]
    policy = agent_pb2.Policy(name="p", network_rules=network, file_rules=file_rules)
    rulesets = enforce(made, compile_rules([policy], container_name="c", postures={}, view=None))
    assert len(rulesets) == 2002  # file, network, and a network ruleset per source
    assert len(maps["id_rules"].entries) == 2000 and len(maps["source_rules"].entries) == 2000
    assert len(maps["name_rules"].entries) == 2000
    assert {name: maps[name].batches for name in ("id_rules", "source_rules", "name_rules")} == dict.fromkeys(
        ("id_rules", "source_rules", "name_rules"), 1
    )
    made.release("c1")
    assert not any(maps[name].entries for name in RULE_MAPS)
