"""How matchPatterns globs match a file's name: the kernel's algorithm in Python, and the kernel's matcher held to it.

The semantics, as KubeArmor documents its (AppArmor) globs: '*' is any run
of characters but '/', '**' any run at all, '?' one character but '/';
every other character stands for itself and the glob must cover the whole
name. A '**' between slashes needs both slashes: '/**/*.conf' matches
/etc/x.conf and /etc/a/b/x.conf but not /x.conf (as in AppArmor). Runs of
three or more stars mean '**' (the agent writes them so).

`reference` below is bpf/lsm/patterns.bpf.h's matcher step for step,
including the steps it counts against KADAPTER_PATTERN_STEPS. It is checked
against a regular-expression translation of the globs, and, where this
machine may load BPF programs, the C matcher itself runs every case through
BPF_PROG_TEST_RUN (tests/guest_agent/pattern_harness.bpf.c) and must agree
on the verdict and the step count; so must judge.bpf.h's walk over a
ruleset's pattern rules, which merges what matched and fails closed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import platform
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from guest_agent import bpf_types
from guest_agent.libbpf import BpfMap
from guest_agent.rules import RuleEntry, canonical_pattern

REPO = Path(__file__).resolve().parents[2]
LSM = REPO / "bpf" / "lsm"
_HEADER = (LSM / "patterns.bpf.h").read_text()
_DEFINED = {name: int(value, 0) for name, value in re.findall(r"#define (\w+) (\d+|0x[0-9a-f]+)\b", _HEADER)}
STEPS = _DEFINED["KADAPTER_PATTERN_STEPS"]
MATCH, NO_MATCH, BOUND = (_DEFINED[name] for name in ("PATTERN_MATCH", "PATTERN_NO_MATCH", "PATTERN_BOUND"))
NAME_MAX_BYTES = 4095  # the name buffer's (filename.bpf.h NAME_MASK)
_STAR, _QUESTION, _SLASH = ord("*"), ord("?"), ord("/")


def reference(pattern: bytes, name: bytes, *, steps: int = 0) -> tuple[int, int]:
    """Match as the kernel does, having spent `steps` on the name already; return (result, steps spent after)."""
    p = n = star_n = any_n = 0
    star_p: int | None = None  # where the pattern resumes after the last '*', which has taken name[..star_n]
    any_p: int | None = None  # the same for the last '**'
    while True:
        if steps >= STEPS:
            return BOUND, steps
        steps += 1
        want = pattern[p] if p < len(pattern) else 0
        if want == _STAR:
            if pattern[p + 1 : p + 2] == b"*":
                if p + 2 >= len(pattern):
                    return MATCH, steps  # a final '**' takes whatever is left
                any_p, any_n, star_p, p = p + 2, n, None, p + 2
            else:
                star_p, star_n, p = p + 1, n, p + 1
            continue
        at_end = n >= len(name)
        if want and not at_end and (want == name[n] or (want == _QUESTION and name[n] != _SLASH)):
            p, n = p + 1, n + 1
        elif not want and at_end:
            return MATCH, steps
        elif star_p is not None and star_n < len(name) and name[star_n] != _SLASH:
            star_n += 1  # the last '*' takes one more character
            p, n = star_p, star_n
        elif any_p is not None and any_n < len(name):
            any_n += 1  # else the last '**' does, and the '*'s after it start over
            p, n, star_p = any_p, any_n, None
        else:
            return NO_MATCH, steps


def matches(pattern: str, name: str) -> bool:
    """Tell whether the kernel's matcher, with its whole budget, matches a written glob."""
    result, _ = reference(canonical_pattern(pattern).encode(), name.encode())
    assert result != BOUND
    return result == MATCH


def oracle(pattern: str, name: str) -> bool:
    """Match by translating the glob into a regular expression, the obvious way."""
    pieces = re.findall(r"\*\*+|\*|\?|[^*?]+", pattern)
    wildcards = {"*": "[^/]*", "?": "[^/]"}
    regex = "".join(".*" if piece.startswith("**") else wildcards.get(piece, re.escape(piece)) for piece in pieces)
    return re.fullmatch(regex, name, re.DOTALL) is not None


DEEP = "/tmp/deep/" + "/".join(["d" * 99] * 30) + "/f"  # 3,011 bytes, as in the guest tests
SEGMENT = "a" * 250
# Names of several long segments under a glob whose '**' is followed by '*'s: more than STEPS steps.
COSTLY_PATTERN = "/tmp/bound/**a*a*b"
COSTLY_NOT_MATCHING = "/tmp/bound/" + "/".join([SEGMENT] * 3) + "/b"
COSTLY_MATCHING = "/tmp/bound/" + "/".join([SEGMENT] * 3) + "/aab"

CASES = [
    # literal characters
    pytest.param("/etc/passwd", "/etc/passwd", True, id="literal"),
    pytest.param("/etc/passwd", "/etc/passwdx", False, id="literal-whole-name"),
    pytest.param("/etc/passwd", "/etc/passw", False, id="literal-short-name"),
    # '*': any run but '/'
    pytest.param("/tmp/*", "/tmp/x", True, id="star"),
    pytest.param("/tmp/*", "/tmp/a/b", False, id="star-stops-at-slash"),
    pytest.param("/tmp/*", "/tmp", False, id="star-needs-the-slash"),
    pytest.param("/etc/*hado?", "/etc/shadow", True, id="corpus-shadow"),
    pytest.param("/etc/*hado?", "/etc/gshadow", True, id="corpus-gshadow"),
    pytest.param("/etc/*hado?", "/etc/passwd", False, id="corpus-passwd"),
    pytest.param("/etc/*hado?", "/etc/shadow-", False, id="corpus-shadow-backup"),
    pytest.param("/etc/*hado?", "/etc/sub/shadow", False, id="corpus-shadow-below"),
    pytest.param("/home/user1/secret_data*", "/home/user1/secret_data.txt", True, id="corpus-secret"),
    pytest.param("/home/user1/secret_data*", "/home/user1/secret_data", True, id="corpus-secret-star-empty"),
    pytest.param("/home/user1/secret_data*", "/home/user1/secret_data/x", False, id="corpus-secret-below"),
    pytest.param("/*/*/kubectl", "/usr/bin/kubectl", True, id="corpus-kubectl"),
    pytest.param("/*/*/kubectl", "/usr/local/bin/kubectl", False, id="corpus-kubectl-deeper"),
    pytest.param("/*/*/kubectl", "/bin/kubectl", False, id="corpus-kubectl-shallower"),
    pytest.param("/usr/bin/apt*", "/usr/bin/apt", True, id="corpus-apt"),
    pytest.param("/usr/bin/apt*", "/usr/bin/apt-get", True, id="corpus-apt-get"),
    pytest.param("/usr/bin/apt*", "/usr/bin/xapt", False, id="corpus-apt-prefix"),
    pytest.param("/usr/bin/apt*", "/usr/bin/id", False, id="corpus-id"),
    # '?': one character but '/'
    pytest.param("/a?b", "/axb", True, id="question"),
    pytest.param("/a?b", "/a/b", False, id="question-not-slash"),
    pytest.param("/a?b", "/ab", False, id="question-one-character"),
    # '**': any run, '/' included
    pytest.param("/tmp/deep/**", DEEP, True, id="double-star-deep"),
    pytest.param("/tmp/deep/**", "/tmp/deep", False, id="double-star-needs-the-slash"),
    pytest.param("/tmp/deep/**", "/tmp/deeper/x", False, id="double-star-literal-before"),
    pytest.param("/**/*.conf", "/etc/x.conf", True, id="corpus-conf-one-level"),
    pytest.param("/**/*.conf", "/etc/a/b/x.conf", True, id="corpus-conf-deep"),
    pytest.param("/**/*.conf", "/x.conf", False, id="corpus-conf-zero-directories"),
    pytest.param("/**/*.conf", "/etc/x.conf.bak", False, id="corpus-conf-suffix"),
    pytest.param("/**/*.conf", "/etc/.conf", True, id="corpus-conf-star-empty"),
    pytest.param("/**/*.conf", DEEP + ".conf", True, id="corpus-conf-3000-bytes"),
    pytest.param("/**/*.conf", DEEP, False, id="corpus-conf-3000-bytes-other"),
    pytest.param("/**", "/", True, id="double-star-root"),
    pytest.param("/***", "/a/b", True, id="three-stars-are-two"),
    # backtracking
    pytest.param("/a*b*c", "/aXbYbZc", True, id="backtrack-star"),
    pytest.param("/a*b*c", "/abc", True, id="backtrack-star-empty"),
    pytest.param("/a*b*c", "/aXbYbZ", False, id="backtrack-star-no-end"),
    pytest.param("/a*b*c", "/aXb/Zc", False, id="backtrack-star-not-across-slash"),
    pytest.param("/**/b*c", "/a/bx/bYc", True, id="backtrack-double-star-then-star"),
    pytest.param("/**a", "/x/y/za", True, id="backtrack-double-star"),
    pytest.param("/x/**/y/*/z", "/x/y/y/q/z", True, id="backtrack-double-star-over-literal"),
    pytest.param("/x/**/y/*/z", "/x/y/q/z", False, id="backtrack-double-star-needs-both-slashes"),
    pytest.param("/a**b*c", "/aXX/b/YbQc", True, id="backtrack-star-restarts-after-double-star"),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), CASES)
def test_reference_matches_as_documented(pattern: str, name: str, expected: bool) -> None:
    """The table of what matches: literal, '*', '?', '**', the corpus's globs and backtracking."""
    assert matches(pattern, name) is expected
    assert oracle(pattern, name) is expected


def random_cases(count: int, seed: int) -> Iterator[tuple[str, str]]:
    """Yield short random globs and names over a small alphabet, so wildcards meet every kind of character."""
    rng = random.Random(seed)
    for _ in range(count):
        pattern = "/" + "".join(rng.choice(["a", "b", "/", "*", "**", "?", "***"]) for _ in range(rng.randint(0, 7)))
        name = "/" + "".join(rng.choice("ab/") for _ in range(rng.randint(0, 9)))
        yield pattern, name


def test_reference_agrees_with_the_regular_expressions() -> None:
    """On 20,000 random globs and names, going back to the last '*' and the last '**' is enough."""
    disagreements = [(p, n) for p, n in random_cases(20_000, seed=1) if matches(p, n) is not oracle(p, n)]
    assert not disagreements


def test_a_plain_name_costs_about_its_length() -> None:
    """Literal prefixes fail fast; a final '**' stops at once; a leading '**' walks the name once per level."""
    assert reference(b"/usr/bin/apt*", b"/etc/passwd") == (NO_MATCH, 2)
    assert reference(b"/tmp/deep/**", DEEP.encode()) == (MATCH, 11)
    result, steps = reference(b"/**/*.conf", DEEP.encode())
    assert result == NO_MATCH and len(DEEP) < steps < 3 * len(DEEP)


def test_the_work_bound_stops_a_costly_name() -> None:
    """Past KADAPTER_PATTERN_STEPS the matcher stops unfinished, whatever the answer would have been."""
    assert not oracle(COSTLY_PATTERN, COSTLY_NOT_MATCHING) and oracle(COSTLY_PATTERN, COSTLY_MATCHING)
    assert reference(COSTLY_PATTERN.encode(), COSTLY_NOT_MATCHING.encode()) == (BOUND, STEPS)
    assert reference(COSTLY_PATTERN.encode(), COSTLY_MATCHING.encode()) == (BOUND, STEPS)
    assert reference(COSTLY_PATTERN.encode(), ("/tmp/bound/" + SEGMENT + "/aab").encode())[0] == MATCH


def test_a_names_patterns_share_the_bound() -> None:
    """The steps are the name's, not each pattern's: what one pattern spent, the next has not."""
    _, spent = reference(b"/**/*.conf", DEEP.encode())
    assert reference(b"/tmp/deep/**", DEEP.encode(), steps=STEPS - 5) == (BOUND, STEPS)
    assert reference(b"/tmp/deep/**", DEEP.encode(), steps=spent) == (MATCH, spent + 11)


# --- the kernel's matcher, run where this machine may load BPF programs ----------------------------


class HarnessCase(ctypes.Structure):
    """pattern_harness.bpf.c's struct harness_case."""

    _fields_ = (
        ("pattern", ctypes.c_char * 256),
        ("name", ctypes.c_char * (NAME_MAX_BYTES + 1)),
        ("length", ctypes.c_uint32),
        ("steps", ctypes.c_uint32),
        ("result", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    )


class RunOpts(ctypes.Structure):
    """libbpf's struct bpf_test_run_opts (libbpf 1.x)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    )


class HarnessJudgement(ctypes.Structure):
    """pattern_harness.bpf.c's struct harness_judgement."""

    _fields_ = (
        ("name", ctypes.c_char * (NAME_MAX_BYTES + 1)),
        ("length", ctypes.c_uint32),
        ("ruleset", ctypes.c_uint32),
        ("patterns", ctypes.c_uint32),
        ("name_flags", ctypes.c_uint32),
        ("rule", bpf_types.RuleEntry),
    )


HARNESS_PROGRAMS = (b"match_one", b"judge_patterns")
SMALL_MAPS = ("name_rules", "dir_rules", "inode_rules", "source_rules", "id_rules", "pattern_rules")


class KernelMatcher:
    """bpf/lsm's pattern matching compiled into BPF_PROG_TYPE_SYSCALL programs and run with BPF_PROG_TEST_RUN."""

    def __init__(self, object_file: Path) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        p, i = ctypes.c_void_p, ctypes.c_int
        for name, restype, argtypes in (
            ("bpf_object__open_file", p, [ctypes.c_char_p, p]),
            ("bpf_object__load", i, [p]),
            ("bpf_object__close", None, [p]),
            ("bpf_object__next_program", p, [p, p]),
            ("bpf_object__find_map_by_name", p, [p, ctypes.c_char_p]),
            ("bpf_program__name", ctypes.c_char_p, [p]),
            ("bpf_program__set_autoload", i, [p, ctypes.c_bool]),
            ("bpf_program__fd", i, [p]),
            ("bpf_map__set_max_entries", i, [p, ctypes.c_uint32]),
            ("bpf_map__fd", i, [p]),
            ("bpf_prog_test_run_opts", i, [i, ctypes.POINTER(RunOpts)]),
        ):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        self._lib = lib
        self._object = lib.bpf_object__open_file(str(object_file).encode(), None)
        assert self._object, f"cannot open {object_file}"
        self._programs: dict[bytes, int] = {}
        program = lib.bpf_object__next_program(self._object, None)
        while program:  # judge.bpf.h brings the LSM programs of its headers along: leave them out
            name = lib.bpf_program__name(program)
            lib.bpf_program__set_autoload(program, name in HARNESS_PROGRAMS)
            self._programs[name] = program
            program = lib.bpf_object__next_program(self._object, program)
        for map_name in SMALL_MAPS:
            lib.bpf_map__set_max_entries(lib.bpf_object__find_map_by_name(self._object, map_name.encode()), 1024)
        self.load_error = -lib.bpf_object__load(self._object)

    def pattern_rules(self) -> BpfMap:
        """Return the loaded object's pattern_rules map."""
        found = self._lib.bpf_object__find_map_by_name(self._object, b"pattern_rules")
        return BpfMap("pattern_rules", self._lib.bpf_map__fd(found))

    def _run(self, program: bytes, context: ctypes.Structure) -> None:
        opts = RunOpts(sz=ctypes.sizeof(RunOpts), ctx_in=ctypes.addressof(context), ctx_size_in=ctypes.sizeof(context))
        fd = self._lib.bpf_program__fd(self._programs[program])
        assert self._lib.bpf_prog_test_run_opts(fd, ctypes.byref(opts)) == 0
        assert opts.retval == 0

    def run(self, pattern: bytes, name: bytes, *, steps: int = 0) -> tuple[int, int]:
        """Match one pattern against one name in the kernel; return (result, steps spent after)."""
        case = HarnessCase(pattern=pattern, name=name, length=len(name), steps=steps)
        self._run(b"match_one", case)
        return case.result, case.steps

    def judge(self, name: bytes, *, ruleset: int, patterns: int) -> tuple[RuleEntry, int]:
        """Match a name against a ruleset's first `patterns` pattern rules; return what they say and the name flags."""
        judgement = HarnessJudgement(name=name, length=len(name), ruleset=ruleset, patterns=patterns)
        self._run(b"judge_patterns", judgement)
        rule = judgement.rule
        merged = RuleEntry(rule.block, rule.audit, rule.allow, rule.block_rule, rule.audit_rule, rule.allow_rule)
        return merged, judgement.name_flags

    def close(self) -> None:
        """Unload the programs and maps."""
        self._lib.bpf_object__close(self._object)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelMatcher]:
    """Build and load the harness (syscall programs load on the development and CI machines); fail otherwise."""
    assert shutil.which("clang"), "clang is needed to build the BPF harness (scripts/install-deps.sh installs it)"
    vmlinux = LSM / ".output" / "vmlinux.h"
    assert vmlinux.exists(), "run `make -C bpf/lsm` first (it writes the vmlinux.h the harness is built against)"
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    built = tmp_path_factory.mktemp("harness") / "pattern_harness.bpf.o"
    source = Path(__file__).with_name("pattern_harness.bpf.c")
    flags = ["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", f"-D__TARGET_ARCH_{arch}"]  # as bpf/lsm/Makefile
    subprocess.run(
        ["clang", *flags, f"-I{vmlinux.parent}", f"-I{LSM}", "-c", str(source), "-o", str(built)], check=True
    )
    matcher = KernelMatcher(built)
    try:
        assert not matcher.load_error, f"the verifier refused the matcher: {errno.errorcode.get(matcher.load_error)}"
        yield matcher
    finally:
        matcher.close()


KERNEL_CASES = [
    *CASES,
    pytest.param(COSTLY_PATTERN, COSTLY_NOT_MATCHING, None, id="bound-not-matching"),
    pytest.param(COSTLY_PATTERN, COSTLY_MATCHING, None, id="bound-matching"),
    pytest.param("/" + "*" * 2 + "a" * 252, "/" + "a" * 252, None, id="pattern-of-255-bytes"),
    pytest.param("/**/*.conf", "/" + "/".join(["c" * 200] * 20) + "/x.conf", None, id="name-of-4095-bytes"),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), KERNEL_CASES)
def test_kernel_matcher_agrees_with_the_reference(
    kernel: KernelMatcher, pattern: str, name: str, expected: bool | None
) -> None:
    """The C matcher gives the reference's verdict after the same number of steps."""
    glob = canonical_pattern(pattern).encode()
    assert len(name.encode()) <= NAME_MAX_BYTES and len(glob) <= 255
    assert kernel.run(glob, name.encode()) == reference(glob, name.encode())


def test_kernel_matcher_agrees_on_random_globs(kernel: KernelMatcher) -> None:
    """2,000 of the random globs and names, in the kernel."""
    for pattern, name in random_cases(2_000, seed=2):
        glob = canonical_pattern(pattern).encode()
        assert kernel.run(glob, name.encode()) == reference(glob, name.encode()), (pattern, name)


def test_kernel_matcher_shares_the_bound_between_patterns(kernel: KernelMatcher) -> None:
    """Steps already spent on the name count: near the bound even a cheap pattern stops unfinished."""
    assert kernel.run(b"/tmp/deep/**", DEEP.encode(), steps=STEPS - 5) == (BOUND, STEPS)
    assert kernel.run(b"/tmp/deep/**", DEEP.encode(), steps=STEPS - 11) == (MATCH, STEPS)


def write_patterns(kernel: KernelMatcher, ruleset: int, *rules: tuple[str, RuleEntry]) -> None:
    """Write pattern rules under a ruleset at indexes 0, 1, ..., as the Enforcer does."""
    table = kernel.pattern_rules()
    keys = [bpf_types.PatternKey(ruleset=ruleset, index=index) for index in range(len(rules))]
    values = [
        bpf_types.PatternRule(rule=bpf_types.RuleEntry(**dataclasses.asdict(entry)), pattern=glob.encode())
        for glob, entry in rules
    ]
    table.update_batch(keys, values)


def test_kernel_walk_merges_every_pattern_that_matches(kernel: KernelMatcher) -> None:
    """Each action's bits add up across patterns; the first matching pattern's rule id names the action."""
    write_patterns(
        kernel,
        1,
        ("/etc/*hado?", RuleEntry(block=1, block_rule=1)),
        ("/etc/**", RuleEntry(audit=1 << bpf_types.VARIANT_READ_ONLY, audit_rule=2)),
        ("/etc/sha*", RuleEntry(block=1 << bpf_types.VARIANT_OWNER_ONLY, allow=1, block_rule=3, allow_rule=3)),
        ("/usr/**", RuleEntry(block=1, block_rule=4)),
    )
    merged = RuleEntry(
        block=1 | 1 << bpf_types.VARIANT_OWNER_ONLY, audit=2, allow=1, block_rule=1, audit_rule=2, allow_rule=3
    )
    assert kernel.judge(b"/etc/shadow", ruleset=1, patterns=4) == (merged, 0)
    assert kernel.judge(b"/etc/passwd", ruleset=1, patterns=4) == (RuleEntry(audit=2, audit_rule=2), 0)
    assert kernel.judge(b"/etc/shadow", ruleset=1, patterns=1) == (RuleEntry(block=1, block_rule=1), 0)
    assert kernel.judge(b"/etc/shadow", ruleset=2, patterns=4) == (RuleEntry(), 0)  # another ruleset's


def test_kernel_walk_fails_closed_at_the_bound(kernel: KernelMatcher) -> None:
    """Once the name's steps run out, Block and Audit patterns count as matched, not Allow ones; the name says so."""
    write_patterns(
        kernel,
        3,
        (COSTLY_PATTERN, RuleEntry(allow=1, allow_rule=1)),  # spends the whole bound on the costly name
        ("/tmp/bound/x*", RuleEntry(block=1, block_rule=2)),  # would not match
        ("/tmp/**", RuleEntry(audit=1, allow=1, audit_rule=3, allow_rule=3)),  # would match
    )
    unfinished = RuleEntry(block=1, audit=1, block_rule=2, audit_rule=3)
    assert kernel.judge(COSTLY_MATCHING.encode(), ruleset=3, patterns=3) == (unfinished, bpf_types.NAME_PATTERN_BOUND)
    cheap = RuleEntry(audit=1, allow=1, audit_rule=3, allow_rule=3)
    assert kernel.judge(b"/tmp/bound/y", ruleset=3, patterns=3) == (cheap, 0)


def test_kernel_walk_stops_at_the_most_a_ruleset_holds(kernel: KernelMatcher) -> None:
    """A count past PATTERNS_MAX is cut to it (the agent never sends one), and a missing index is skipped."""
    never = ("/never", RuleEntry(block=1, block_rule=1))
    write_patterns(kernel, 4, *[never] * bpf_types.PATTERNS_MAX, ("/tmp/x", RuleEntry(block=1, block_rule=2)))
    assert kernel.judge(b"/tmp/x", ruleset=4, patterns=bpf_types.PATTERNS_MAX + 1) == (RuleEntry(), 0)
    assert kernel.judge(b"/tmp/x", ruleset=4, patterns=bpf_types.PATTERNS_MAX + 1000) == (RuleEntry(), 0)
    write_patterns(kernel, 5, ("/tmp/x", RuleEntry(block=1, block_rule=2)))
    assert kernel.judge(b"/tmp/x", ruleset=5, patterns=3) == (RuleEntry(block=1, block_rule=2), 0)
