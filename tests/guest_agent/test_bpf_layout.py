"""The ctypes mirrors in guest_agent/bpf_types.py match the structs compiled into kadapter.bpf.o."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from pathlib import Path

import pytest

from guest_agent import bpf_types

LSM = Path(__file__).resolve().parents[2] / "bpf" / "lsm"
OBJECT = LSM / ".output" / "kadapter.bpf.o"
MIRRORS = {
    "ns_key": bpf_types.NsKey,
    "settings": bpf_types.Settings,
    "container_policy": bpf_types.ContainerPolicy,
    "alert_budget": bpf_types.AlertBudget,
    "kind_policy": bpf_types.KindPolicy,
    "rule_entry": bpf_types.RuleEntry,
    "name_rule_key": bpf_types.NameRuleKey,
    "dir_rule": bpf_types.DirRule,
    "inode_rule_key": bpf_types.InodeRuleKey,
    "id_rule_key": bpf_types.IdRuleKey,
    "allowed_arg_key": bpf_types.AllowedArgKey,
    "pattern_key": bpf_types.PatternKey,
    "pattern_rule": bpf_types.PatternRule,
    "source_dir": bpf_types.SourceDir,
    "syscall_scope": bpf_types.SyscallScope,
    "alert_event": bpf_types.AlertEvent,
}


@pytest.fixture(scope="module")
def btf_structs() -> dict[str, dict]:
    """Read struct layouts from the object's BTF with bpftool."""
    dump = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", str(OBJECT)], capture_output=True, text=True, check=True
    )
    return {t["name"]: t for t in json.loads(dump.stdout)["types"] if t["kind"] == "STRUCT"}


@pytest.mark.parametrize("name", sorted(MIRRORS))
def test_mirror_matches_btf(btf_structs: dict[str, dict], name: str) -> None:
    """Same size, same field names in the same order at the same offsets."""
    mirror = MIRRORS[name]
    compiled = btf_structs[name]
    assert ctypes.sizeof(mirror) == compiled["size"]
    btf_fields = [(m["name"], m["bits_offset"] // 8) for m in compiled["members"]]
    mirror_fields = [(field, getattr(mirror, field).offset) for field, _ in mirror._fields_]
    assert mirror_fields == btf_fields


def test_numbers_the_mirror_names_match_the_header() -> None:
    """Every KADAPTER_X number of kadapter.h that bpf_types names X has its value there (flags, limits, bits)."""
    header = (LSM / "kadapter.h").read_text()
    defined = {name: int(value) for name, value in re.findall(r"#define KADAPTER_(\w+) (\d+)\b", header)}
    named = {name: getattr(bpf_types, name) for name in defined if isinstance(getattr(bpf_types, name, None), int)}
    assert named == {name: defined[name] for name in named}
    assert {"PATTERNS", "PATTERNS_MAX", "NAME_PATTERN_BOUND", "SOURCES", "PATH_MAX"} <= named.keys()
