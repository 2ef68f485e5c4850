# SPDX-License-Identifier: Apache-2.0
"""Reading spec.syscalls: audit rules per system call, their paths and source directories, and what is refused."""

from __future__ import annotations

import pytest

from adapter.policy import Action, SyscallRule
from kadapter_api.syscalls import NUMBERS, PATH_ARGUMENTS
from tests.adapter.test_policy_validation import SELECT_NGINX, ksp, parse_one, rejection

HOME_UNLINKS = """\
syscalls:
  matchPaths:
  - syscall: [unlink, unlinkat]
    path: /home/
    recursive: true
    fromSource:
    - dir: /bin
  severity: 7
  message: removed under /home
action: Block
"""


def test_match_paths_become_one_audit_rule_per_system_call() -> None:
    """Each named call gets its rule with the path, the section's verdict, and Audit whatever the action says."""
    rules = parse_one(ksp(SELECT_NGINX + HOME_UNLINKS)).syscall_rules
    assert rules == tuple(
        SyscallRule(
            action=Action.AUDIT,
            severity=7,
            tags=(),
            message="removed under /home",
            syscall=name,
            path="/home/",
            recursive=True,
            source_dirs=(("/bin/", False),),
        )
        for name in ("unlink", "unlinkat")
    )


def test_match_syscalls_take_executables_and_directories_as_sources() -> None:
    """fromSource mixes executables and directories; a directory gains its final '/', recursive is read."""
    spec = SELECT_NGINX + (
        "syscalls:\n  matchSyscalls:\n  - syscall: [ptrace]\n    fromSource:\n"
        "    - path: /usr/bin/gdb\n    - dir: /opt/tools\n      recursive: true\n"
    )
    (rule,) = parse_one(ksp(spec)).syscall_rules
    assert (rule.syscall, rule.path, rule.from_source, rule.source_dirs) == (
        "ptrace", "", ("/usr/bin/gdb",), (("/opt/tools/", True),)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param("- syscall: [read]\n    path: /etc/passwd", "read takes no path", id="call-without-a-path"),
        pytest.param("- syscall: [unlink]", "the file or directory", id="match-paths-without-path"),
        pytest.param("- syscall: [unlink]\n    path: /etc/passwd\n    recursive: true", "recursive is for a directory",
                     id="recursive-file"),
        pytest.param("- syscall: [unlink]\n    path: /etc/../passwd", "not normalised", id="unnormalised"),
        pytest.param("- syscall: []\n    path: /etc/passwd", "non-empty list of system call names", id="no-calls"),
        pytest.param("- syscall: [unlink]\n    path: /tmp/x\n    fromSource:\n    - dir: bin", "absolute directory",
                     id="relative-source-dir"),
        pytest.param("- syscall: [unlink]\n    path: /tmp/x\n    fromSource:\n    - dir: /bin/\n      path: /bin/rm",
                     "either path", id="path-and-dir"),
    ],
)  # fmt: skip
def test_invalid_syscall_rules_are_refused_naming_the_field(entry: str, message: str) -> None:
    """A matchPaths entry that could never match, or is malformed, is refused with its field named."""
    error = rejection(ksp(SELECT_NGINX + f"syscalls:\n  matchPaths:\n  {entry}\n"))
    assert "spec.syscalls.matchPaths[0]" in str(error)
    assert message in str(error)


def test_an_unknown_system_call_is_refused_by_the_schema() -> None:
    """Names outside the CRD's list are refused before Kadapter reads the rule."""
    error = rejection(ksp(SELECT_NGINX + "syscalls:\n  matchSyscalls:\n  - syscall: [frobnicate]\n"))
    assert "frobnicate" in str(error)


def test_every_path_argument_names_a_known_call() -> None:
    """The table of path arguments only names calls the CRD lists."""
    assert set(PATH_ARGUMENTS) <= set(NUMBERS)
