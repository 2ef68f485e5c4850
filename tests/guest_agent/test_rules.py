"""What the agent decides to write into the kernel for one container, before any kernel is involved."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from guest_agent import container_fs
from guest_agent.bpf_types import (
    ACTION_ALLOW,
    ACTION_BLOCK,
    NETWORK_PROTOCOLS,
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
from guest_agent.rules import (
    CompiledRules,
    DirEntry,
    InvalidPolicyError,
    KindRules,
    RuleEntry,
    check_policies,
    compile_rules,
)
from kadapter_api import agent_pb2


def policy(name: str, *rules: tuple[str, int], containers: tuple[str, ...] = ()) -> agent_pb2.Policy:
    """Build a wire policy with (path, action) process rules."""
    return agent_pb2.Policy(
        name=name,
        namespace="default",
        containers=containers,
        process_rules=[agent_pb2.PathRule(path=p, action=a, severity=3) for p, a in rules],
    )


def process(compiled: CompiledRules) -> KindRules:
    """Return the process rules of a compiled table."""
    return compiled.kinds[Kind.PROCESS]


def view_of(root: Path) -> ContainerView:
    """See a directory of this machine as a container's root."""
    return ContainerView(root, Path("/proc/self/mountinfo"))


@pytest.fixture
def merged_usr(tmp_path: Path) -> Path:
    """Lay out a rootfs like Debian's: /bin -> usr/bin, /bin/sh -> dash."""
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    for name in ("ls", "dash", "apt"):
        (tmp_path / "usr" / "bin" / name).touch()
    os.symlink("usr/bin", tmp_path / "bin")
    os.symlink("dash", tmp_path / "usr" / "bin" / "sh")
    os.symlink("/etc/../usr/bin/apt", tmp_path / "usr" / "bin" / "apt-abs")
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    return tmp_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/bin/ls", "/usr/bin/ls", id="merged-usr-dir"),
        pytest.param("/bin/sh", "/usr/bin/dash", id="two-links"),
        pytest.param("/usr/bin/apt-abs", "/usr/bin/apt", id="absolute-target-stays-in-root"),
        pytest.param("/usr/bin/apt", "/usr/bin/apt", id="plain-file"),
        pytest.param("/opt/tool", "/opt/tool", id="missing-kept"),
        pytest.param("/loop-a", None, id="loop"),
    ],
)
def test_resolve_in_root(merged_usr: Path, path: str, expected: str | None) -> None:
    """Symlinks resolve inside the container's rootfs, never on the agent's own root."""
    assert view_of(merged_usr).resolve(path) == expected


def test_absolute_symlink_cannot_escape_the_rootfs(tmp_path: Path) -> None:
    """A link to /etc resolves to the rootfs's /etc, however many .. it uses."""
    os.symlink("/../../../../etc/passwd", tmp_path / "escape")
    assert view_of(tmp_path).resolve("/escape") == "/etc/passwd"
    assert not (tmp_path / "etc").exists()


def test_rules_match_both_the_written_and_the_resolved_path(merged_usr: Path) -> None:
    """Blocking /bin/sh also blocks the file the kernel will see executed."""
    compiled = compile_rules(
        [policy("p", ("/bin/sh", agent_pb2.ACTION_BLOCK))],
        container_name="c",
        postures={},
        view=view_of(merged_usr),
    )
    assert set(process(compiled).names) == {"/bin/sh", "/usr/bin/dash"}
    assert process(compiled).names["/usr/bin/dash"] == RuleEntry(block=1, block_rule=1)


def test_policies_on_the_same_path_merge_their_actions() -> None:
    """Block, Audit and Allow on one path keep each rule id, so alerts name the right policy."""
    compiled = compile_rules(
        [
            policy("audit", ("/usr/bin/apt", agent_pb2.ACTION_AUDIT)),
            policy("block", ("/usr/bin/apt", agent_pb2.ACTION_BLOCK)),
            policy("allow", ("/usr/bin/apt", agent_pb2.ACTION_ALLOW)),
        ],
        container_name="c",
        postures={},
        view=None,
    )
    assert process(compiled).names == {
        "/usr/bin/apt": RuleEntry(block=1, audit=1, allow=1, audit_rule=1, block_rule=2, allow_rule=3)
    }
    assert [compiled.rule(n).policy_name for n in (1, 2, 3)] == ["audit", "block", "allow"]
    assert compiled.rule(0) is None
    assert process(compiled).allowlist


def test_container_names_narrow_a_policy() -> None:
    """A policy limited to container "web" gives container "sidecar" nothing."""
    policies = [policy("p", ("/usr/bin/apt", agent_pb2.ACTION_BLOCK), containers=("web",))]
    web = compile_rules(policies, container_name="web", postures={}, view=None)
    sidecar = compile_rules(policies, container_name="sidecar", postures={}, view=None)
    assert list(process(web).names) == ["/usr/bin/apt"]
    assert not process(sidecar).names and not process(sidecar).allowlist


@pytest.mark.parametrize(("posture", "audit"), [(agent_pb2.POSTURE_BLOCK, False), (agent_pb2.POSTURE_AUDIT, True)])
def test_posture_is_carried(posture: int, audit: bool) -> None:
    """The pod's posture decides whether unmatched execs in allow-list mode are blocked or audited."""
    compiled = compile_rules(
        [policy("p", ("/bin/ls", agent_pb2.ACTION_ALLOW))],
        container_name="c",
        postures={Kind.PROCESS: posture},
        view=None,
    )
    assert process(compiled).allowlist and process(compiled).posture_audit is audit


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        pytest.param([("usr/bin/apt", agent_pb2.ACTION_BLOCK)], "not absolute", id="relative"),
        pytest.param([("/usr/../bin/apt", agent_pb2.ACTION_BLOCK)], "normalised", id="dot-dot"),
        pytest.param([("/usr//bin/apt", agent_pb2.ACTION_BLOCK)], "normalised", id="double-slash"),
        pytest.param([("/" + "a" * 255, agent_pb2.ACTION_BLOCK)], "255 bytes", id="too-long"),
        pytest.param([("/usr/bin/a\0pt", agent_pb2.ACTION_BLOCK)], "NUL", id="nul"),
        pytest.param([("/usr/bin/apt", agent_pb2.ACTION_UNSPECIFIED)], "unspecified", id="no-action"),
    ],
)
def test_agent_refuses_malformed_rules(rules: list[tuple[str, int]], message: str) -> None:
    """The agent validates what the host sends; the error names the field."""
    with pytest.raises(InvalidPolicyError, match=message) as error:
        check_policies([policy("ok", ("/bin/ls", agent_pb2.ACTION_BLOCK)), policy("bad", *rules)])
    assert str(error.value).startswith("policies[1].process_rules[0]")


def test_agent_refuses_duplicate_policy_names() -> None:
    """Two policies with one name would make alerts ambiguous."""
    with pytest.raises(InvalidPolicyError, match="twice"):
        check_policies([policy("p"), policy("p")])


def test_identity_is_the_kernel_dev_t_and_inode(tmp_path: Path) -> None:
    """On a plain file system a file has one identity: major << 20 | minor of its device, and its inode."""
    (tmp_path / "tool").write_bytes(b"\x7fELF")
    status = os.stat(tmp_path / "tool")
    expected = FileIdentity(os.major(status.st_dev) << 20 | os.minor(status.st_dev), status.st_ino)
    assert view_of(tmp_path).identities("/tool") == (expected,)


def test_hard_links_share_the_rule_by_identity(tmp_path: Path) -> None:
    """Blocking /usr/bin/apt records its inode, so a hard link under any other name matches the same rule."""
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "apt").write_bytes(b"\x7fELF")
    os.link(tmp_path / "usr" / "bin" / "apt", tmp_path / "pkg")
    compiled = compile_rules(
        [policy("p", ("/usr/bin/apt", agent_pb2.ACTION_BLOCK))],
        container_name="c",
        postures={},
        view=view_of(tmp_path),
    )
    (link_identity,) = view_of(tmp_path).identities("/pkg")
    assert process(compiled).inodes == {link_identity: RuleEntry(block=1, block_rule=1)}


def test_many_files_are_identified_with_one_read_of_the_maps_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of file rules must not read /proc/self/maps once per file; batching must not change any identity."""
    names = [f"/tool{index}" for index in range(1500)]
    for name in names:
        (tmp_path / name.lstrip("/")).write_bytes(name.encode())
    one_at_a_time = {name: view_of(tmp_path).identities(name) for name in names[:50]}
    reads = []
    real_read = container_fs._mapped_identities
    monkeypatch.setattr(container_fs, "_mapped_identities", lambda addresses: reads.append(1) or real_read(addresses))
    view = view_of(tmp_path)
    view.read_identities([*names, *names[:10]])
    assert len(reads) == 2  # 1500 files in batches of 1024
    assert {name: view.identities(name) for name in names[:50]} == one_at_a_time
    assert all(len(view.identities(name)) == 1 for name in names)
    assert len(reads) == 2  # identities() answered from what was read


def test_missing_files_and_devices_are_identified_without_being_opened(tmp_path: Path) -> None:
    """A rule for a file not there yet has no identity; a device or FIFO is named, never opened for reading."""
    os.mkfifo(tmp_path / "fifo")
    assert view_of(tmp_path).identities("/absent") == ()
    assert len(view_of(tmp_path).identities("/fifo")) == 1  # would block forever if opened O_RDONLY


def test_fileless_preset_compiles_to_flags_with_the_blocking_rule_named() -> None:
    """filelessExec from two policies: Block wins, its rule id names the policy in alerts."""
    preset = agent_pb2.PRESET_FILELESS_EXEC
    policies = [
        agent_pb2.Policy(name="audit", presets=[agent_pb2.PresetRule(preset=preset, action=agent_pb2.ACTION_AUDIT)]),
        agent_pb2.Policy(name="block", presets=[agent_pb2.PresetRule(preset=preset, action=agent_pb2.ACTION_BLOCK)]),
    ]
    check_policies(policies)
    compiled = compile_rules(policies, container_name="c", postures={}, view=None)
    assert compiled.preset_bits == preset_bits(Preset.FILELESS_EXEC, block=True, audit=True) == 0b11
    assert compiled.rule(compiled.preset_rule(Preset.FILELESS_EXEC)).policy_name == "block"
    assert not process(compiled).allowlist and not process(compiled).names


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        pytest.param(agent_pb2.PresetRule(action=agent_pb2.ACTION_BLOCK), "preset: not one", id="unspecified"),
        pytest.param(
            agent_pb2.PresetRule(preset=agent_pb2.PRESET_FILELESS_EXEC, action=agent_pb2.ACTION_ALLOW),
            "Block or Audit",
            id="allow",
        ),
    ],
)
def test_agent_refuses_malformed_presets(preset: agent_pb2.PresetRule, message: str) -> None:
    """A preset the agent cannot enforce as sent is refused with its field named."""
    with pytest.raises(InvalidPolicyError, match=message) as error:
        check_policies([agent_pb2.Policy(name="p", presets=[preset])])
    assert str(error.value).startswith("policies[0].presets[0]")


def test_recursive_is_for_directories_only() -> None:
    """A file rule marked recursive is a malformed message, refused with its field named."""
    rule = agent_pb2.PathRule(path="/usr/bin/apt", action=agent_pb2.ACTION_BLOCK, recursive=True)
    with pytest.raises(InvalidPolicyError, match=r"policies\[0\]\.process_rules\[0\]\.recursive"):
        check_policies([agent_pb2.Policy(name="p", process_rules=[rule])])


def test_directory_rules_split_by_depth_and_follow_symlinks(merged_usr: Path) -> None:
    """/bin/ (a link to usr/bin) covers /usr/bin/ too; recursive rules apply at any depth, others to direct children."""
    rules = [
        agent_pb2.PathRule(path="/bin/", action=agent_pb2.ACTION_BLOCK),
        agent_pb2.PathRule(path="/opt/", action=agent_pb2.ACTION_AUDIT, recursive=True),
    ]
    policies = [agent_pb2.Policy(name="p", process_rules=rules)]
    check_policies(policies)
    compiled = compile_rules(policies, container_name="c", postures={}, view=view_of(merged_usr))
    block = RuleEntry(block=1, block_rule=1)
    assert process(compiled).dirs == {
        "/bin/": DirEntry(direct=block),
        "/usr/bin/": DirEntry(direct=block),
        "/opt/": DirEntry(any_depth=RuleEntry(audit=1, audit_rule=2)),
    }
    assert not process(compiled).names and not process(compiled).allowlist


def test_execname_rules_are_keyed_by_file_name() -> None:
    """An execname rule goes into the table under the bare name, which no path (always '/...') can equal."""
    rule = agent_pb2.PathRule(execname="apt", action=agent_pb2.ACTION_BLOCK)
    policies = [agent_pb2.Policy(name="p", process_rules=[rule])]
    check_policies(policies)
    compiled = compile_rules(policies, container_name="c", postures={}, view=None)
    assert process(compiled).names == {"apt": RuleEntry(block=1, block_rule=1)}
    assert process(compiled).has_execnames


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(agent_pb2.PathRule(execname="bin/apt", action=agent_pb2.ACTION_BLOCK), id="slash"),
        pytest.param(agent_pb2.PathRule(execname="..", action=agent_pb2.ACTION_BLOCK), id="dot-dot"),
        pytest.param(agent_pb2.PathRule(execname="apt", path="/usr/bin/apt", action=agent_pb2.ACTION_BLOCK), id="both"),
    ],
)
def test_agent_refuses_malformed_execnames(rule: agent_pb2.PathRule) -> None:
    """An execname must be a plain file name, alone in its rule."""
    with pytest.raises(InvalidPolicyError, match=r"policies\[0\]\.process_rules\[0\]"):
        check_policies([agent_pb2.Policy(name="p", process_rules=[rule])])


def test_each_kind_gets_its_own_table_allow_list_and_posture() -> None:
    """An Allow rule turns only its own kind into an allow list; each kind carries the posture it was sent."""
    policies = [
        agent_pb2.Policy(
            name="p",
            process_rules=[agent_pb2.PathRule(path="/usr/bin/apt", action=agent_pb2.ACTION_BLOCK)],
            file_rules=[agent_pb2.PathRule(path="/etc/hostname", action=agent_pb2.ACTION_ALLOW)],
            network_rules=[agent_pb2.NetworkRule(protocol="udp", action=agent_pb2.ACTION_AUDIT)],
            capability_rules=[agent_pb2.CapabilityRule(capability="net_raw", action=agent_pb2.ACTION_ALLOW)],
            syscall_rules=[agent_pb2.SyscallRule(syscall="unlink", action=agent_pb2.ACTION_AUDIT)],
            dns_rules=[agent_pb2.DnsRule(domain="example.com", action=agent_pb2.ACTION_ALLOW)],
        )
    ]
    check_policies(policies)
    postures = {
        Kind.FILE: agent_pb2.POSTURE_AUDIT,
        Kind.CAPABILITIES: agent_pb2.POSTURE_BLOCK,
        Kind.DNS: agent_pb2.POSTURE_AUDIT,
    }
    compiled = compile_rules(policies, container_name="c", postures=postures, view=None)
    kinds = compiled.kinds
    assert process(compiled).names == {"/usr/bin/apt": RuleEntry(block=1, block_rule=1)}
    assert kinds[Kind.FILE].names == {"/etc/hostname": RuleEntry(allow=1, allow_rule=2)}
    assert kinds[Kind.NETWORK].ids == {NETWORK_PROTOCOLS["udp"]: RuleEntry(audit=1, audit_rule=3)}
    assert kinds[Kind.CAPABILITIES].ids == {13: RuleEntry(allow=1, allow_rule=4)}  # CAP_NET_RAW
    assert kinds[Kind.SYSCALLS].ids == {87: RuleEntry(audit=1, audit_rule=5)}  # x86_64 unlink
    assert kinds[Kind.DNS].names == {"example.com": RuleEntry(allow=1, allow_rule=6)}
    assert [kinds[kind].allowlist for kind in Kind] == [False, True, False, True, False, True]
    assert [kinds[kind].posture_audit for kind in Kind] == [False, True, False, False, False, True]
    assert all(compiled.active(kind) for kind in Kind)


def test_read_only_and_owner_only_are_variants_of_one_entry() -> None:
    """Rules on one file with different qualifiers keep a bit each: the kernel tells which one an access leaves."""
    rules = [
        agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_BLOCK),
        agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_BLOCK, read_only=True),
        agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_BLOCK, owner_only=True),
        agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_ALLOW, read_only=True, owner_only=True),
    ]
    policies = [agent_pb2.Policy(name="p", file_rules=rules)]
    check_policies(policies)
    compiled = compile_rules(policies, container_name="c", postures={}, view=None)
    plain, read_only, owner_only = 1, 1 << VARIANT_READ_ONLY, 1 << VARIANT_OWNER_ONLY
    both = 1 << (VARIANT_READ_ONLY | VARIANT_OWNER_ONLY)
    assert compiled.kinds[Kind.FILE].names["/etc/passwd"] == RuleEntry(
        block=plain | read_only | owner_only, allow=both, block_rule=1, allow_rule=4
    )


def test_a_kind_without_rules_is_not_judged() -> None:
    """Only kinds with rules (or the process kind with a preset) get a ruleset: the others cost one lookup."""
    preset = agent_pb2.PresetRule(preset=agent_pb2.PRESET_FILELESS_EXEC, action=agent_pb2.ACTION_BLOCK)
    compiled = compile_rules([agent_pb2.Policy(name="p", presets=[preset])], container_name="c", postures={}, view=None)
    assert [compiled.active(kind) for kind in Kind] == [True, False, False, False, False, False]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        pytest.param(
            agent_pb2.Policy(name="p", file_rules=[agent_pb2.PathRule(execname="apt", action=agent_pb2.ACTION_BLOCK)]),
            r"file_rules\[0\]\.execname: only process rules",
            id="file-execname",
        ),
        pytest.param(
            agent_pb2.Policy(
                name="p",
                process_rules=[agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK, read_only=True)],
            ),
            r"process_rules\[0\]\.read_only: only file rules",
            id="process-read-only",
        ),
        pytest.param(
            agent_pb2.Policy(
                name="p", network_rules=[agent_pb2.NetworkRule(protocol="TCP", action=agent_pb2.ACTION_BLOCK)]
            ),
            r"network_rules\[0\]\.protocol: 'TCP' is unknown",
            id="protocol-case",
        ),
        pytest.param(
            agent_pb2.Policy(
                name="p",
                capability_rules=[agent_pb2.CapabilityRule(capability="cap_chown", action=agent_pb2.ACTION_BLOCK)],
            ),
            r"capability_rules\[0\]\.capability: 'cap_chown' is unknown",
            id="capability-prefix",
        ),
        pytest.param(
            agent_pb2.Policy(name="p", network_rules=[agent_pb2.NetworkRule(protocol="udp")]),
            r"network_rules\[0\]\.action: unspecified",
            id="no-action",
        ),
    ],
)
def test_agent_refuses_malformed_rules_of_every_kind(policy: agent_pb2.Policy, message: str) -> None:
    """What the host must have normalised (lower case, no cap_ prefix, an action) is checked again here."""
    with pytest.raises(InvalidPolicyError, match=message):
        check_policies([policy])


def test_protocol_numbers_match_the_kernel_side() -> None:
    """The agent's protocol ids are the KADAPTER_NET_* values the BPF programs look up."""
    header = (Path(__file__).resolve().parents[2] / "bpf" / "lsm" / "kadapter.h").read_text()
    defined = {name.lower(): int(value) for name, value in re.findall(r"#define KADAPTER_NET_(\w+) (\d+)", header)}
    assert defined == NETWORK_PROTOCOLS


def test_capability_numbers_match_the_kernel_headers() -> None:
    """The agent's capability numbers are the uapi header's (libc6-dev brings it, for the benchmark's programs)."""
    header = Path("/usr/include/linux/capability.h").read_text()
    defined = {name.lower(): int(value) for name, value in re.findall(r"#define CAP_(\w+)\s+(\d+)\n", header)}
    assert {name: defined[name] for name in CAPABILITIES} == CAPABILITIES
    assert set(defined) - set(CAPABILITIES) <= {"last_cap"}


def test_from_source_rules_get_a_table_per_source_under_each_of_its_names(merged_usr: Path) -> None:
    """A rule with sources goes to each source's table (named as written and resolved), not the kind's own."""
    rules = [
        agent_pb2.PathRule(path="/usr/bin/apt", action=agent_pb2.ACTION_BLOCK, from_source=["/bin/sh"]),
        agent_pb2.PathRule(path="/usr/bin/ls", action=agent_pb2.ACTION_ALLOW, from_source=["/usr/bin/dash"]),
        agent_pb2.PathRule(path="/usr/bin/id", action=agent_pb2.ACTION_AUDIT),
    ]
    policies = [agent_pb2.Policy(name="p", process_rules=rules)]
    check_policies(policies)
    compiled = compile_rules(policies, container_name="c", postures={}, view=view_of(merged_usr))
    table = process(compiled)
    assert set(table.names) == {"/usr/bin/id"} and not table.allowlist
    assert table.source_names == {"/bin/sh": "/usr/bin/dash", "/usr/bin/dash": "/usr/bin/dash"}
    (dash,) = table.sources.values()
    assert dash.names["/usr/bin/apt"] == RuleEntry(block=1, block_rule=1)
    assert dash.names["/usr/bin/ls"] == RuleEntry(allow=1, allow_rule=2)
    assert dash.allowlist  # an allow list for processes running dash only


def test_agent_refuses_a_source_that_is_not_an_executable_path() -> None:
    """fromSource names an executable: absolute, not a directory."""
    rule = agent_pb2.NetworkRule(protocol="tcp", action=agent_pb2.ACTION_BLOCK, from_source=["usr/bin/curl"])
    with pytest.raises(InvalidPolicyError, match=r"network_rules\[0\]\.from_source\[0\]"):
        check_policies([agent_pb2.Policy(name="p", network_rules=[rule])])


def test_each_preset_turns_on_the_enforcer_whose_hooks_judge_it() -> None:
    """anonymousMapExec is judged by the process hooks, protectEnv and protectProc by file_open."""
    cases = {
        agent_pb2.PRESET_ANONYMOUS_MAP_EXEC: (Preset.ANON_MAP_EXEC, Kind.PROCESS),
        agent_pb2.PRESET_PROTECT_ENV: (Preset.PROTECT_ENV, Kind.FILE),
        agent_pb2.PRESET_PROTECT_PROC: (Preset.PROTECT_PROC, Kind.FILE),
    }
    for wire, (preset, kind) in cases.items():
        policy = agent_pb2.Policy(name="p", presets=[agent_pb2.PresetRule(preset=wire, action=agent_pb2.ACTION_AUDIT)])
        check_policies([policy])
        compiled = compile_rules([policy], container_name="c", postures={}, view=None)
        assert [compiled.active(each) for each in Kind] == [each is kind for each in Kind]
        assert compiled.preset_bits == 2 << 2 * preset and compiled.preset_rule(preset) == 1


def test_patterns_merge_per_glob_with_their_variants_and_make_an_allow_list() -> None:
    """Rules with one glob share an entry (a variant bit each); an Allow pattern makes the kind an allow list."""
    rules = [
        agent_pb2.PathRule(pattern="/etc/*hado?", action=agent_pb2.ACTION_BLOCK),
        agent_pb2.PathRule(pattern="/etc/*hado?", action=agent_pb2.ACTION_AUDIT, read_only=True),
        agent_pb2.PathRule(pattern="/usr/**", action=agent_pb2.ACTION_ALLOW, owner_only=True),
        agent_pb2.PathRule(path="/etc/hostname", action=agent_pb2.ACTION_BLOCK),
    ]
    policies = [agent_pb2.Policy(name="p", file_rules=rules)]
    check_policies(policies)
    table = compile_rules(policies, container_name="c", postures={}, view=None).kinds[Kind.FILE]
    assert table.patterns == {
        "/etc/*hado?": RuleEntry(block=1, audit=1 << VARIANT_READ_ONLY, block_rule=1, audit_rule=2),
        "/usr/**": RuleEntry(allow=1 << VARIANT_OWNER_ONLY, allow_rule=3),
    }
    assert list(table.patterns) == ["/etc/*hado?", "/usr/**"]  # the kernel's indexes, in the policies' order
    assert set(table.names) == {"/etc/hostname"} and not table.dirs
    assert table.allowlist and table.size == 3


def test_runs_of_stars_become_the_double_star_the_kernel_matches() -> None:
    """'***' means what '**' does (AppArmor): both are written as '**' and share an entry."""
    rules = [
        agent_pb2.PathRule(pattern="/usr/bin/apt*", action=agent_pb2.ACTION_BLOCK),
        agent_pb2.PathRule(pattern="/***/*.conf", action=agent_pb2.ACTION_AUDIT),
        agent_pb2.PathRule(pattern="/**/*.conf", action=agent_pb2.ACTION_BLOCK),
    ]
    policies = [agent_pb2.Policy(name="p", process_rules=rules)]
    check_policies(policies)
    table = process(compile_rules(policies, container_name="c", postures={}, view=None))
    assert table.patterns == {
        "/usr/bin/apt*": RuleEntry(block=1, block_rule=1),
        "/**/*.conf": RuleEntry(block=1, audit=1, audit_rule=2, block_rule=3),
    }
    assert not table.names and not table.allowlist


def test_pattern_rules_with_sources_go_to_each_source_table(merged_usr: Path) -> None:
    """The host never sends one (the schema has no fromSource there), but the agent treats it as a path rule's."""
    rule = agent_pb2.PathRule(pattern="/tmp/*", action=agent_pb2.ACTION_BLOCK, from_source=["/bin/sh"])
    policies = [agent_pb2.Policy(name="p", file_rules=[rule])]
    check_policies(policies)
    table = compile_rules(policies, container_name="c", postures={}, view=view_of(merged_usr)).kinds[Kind.FILE]
    assert not table.patterns
    assert table.sources["/usr/bin/dash"].patterns == {"/tmp/*": RuleEntry(block=1, block_rule=1)}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(agent_pb2.PathRule(pattern="tmp/*"), r"\.pattern: 'tmp/\*' does not start", id="relative"),
        pytest.param(agent_pb2.PathRule(pattern="/tmp/*/"), r"\.pattern: .* ends with one", id="directory"),
        pytest.param(agent_pb2.PathRule(pattern="/etc/[ab]"), r"\.pattern: .* uses one of", id="class"),
        pytest.param(agent_pb2.PathRule(pattern="/etc/{a,b}"), r"\.pattern: .* uses one of", id="alternation"),
        pytest.param(agent_pb2.PathRule(pattern="/etc/\\*"), r"\.pattern: .* uses one of", id="escape"),
        pytest.param(agent_pb2.PathRule(pattern="/" + "*" * 255), r"\.pattern: longer than 255", id="too-long"),
        pytest.param(agent_pb2.PathRule(pattern="/tmp/a\0*"), r"\.pattern: .* NUL", id="nul"),
        pytest.param(agent_pb2.PathRule(pattern="/tmp//*"), r"\.pattern: .* not normalised", id="double-slash"),
        pytest.param(agent_pb2.PathRule(pattern="/tmp/../*"), r"\.pattern: .* not normalised", id="dot-dot"),
        pytest.param(agent_pb2.PathRule(pattern="/tmp/*", path="/tmp/x"), r": a pattern rule has no path", id="path"),
        pytest.param(agent_pb2.PathRule(pattern="/tmp/*", recursive=True), r": a pattern rule", id="recursive"),
    ],
)
def test_agent_refuses_malformed_patterns(rule: agent_pb2.PathRule, message: str) -> None:
    """A pattern the kernel would not match as written is refused, with its field named."""
    rule.action = agent_pb2.ACTION_BLOCK
    with pytest.raises(InvalidPolicyError, match=r"^policies\[0\]\.file_rules\[0\]" + message):
        check_policies([agent_pb2.Policy(name="p", file_rules=[rule])])


def test_agent_refuses_more_patterns_than_the_kernel_holds() -> None:
    """PATTERNS_MAX distinct patterns of a kind are accepted, one more is refused; repeats do not count."""
    rules = [agent_pb2.PathRule(pattern=f"/tmp/{n}*", action=agent_pb2.ACTION_BLOCK) for n in range(PATTERNS_MAX)]
    policies = [agent_pb2.Policy(name="a", file_rules=rules), agent_pb2.Policy(name="b", file_rules=rules)]
    check_policies(policies)
    extra = agent_pb2.PathRule(pattern="/tmp/extra*", action=agent_pb2.ACTION_BLOCK)
    policies.append(agent_pb2.Policy(name="c", file_rules=[extra], process_rules=rules))
    with pytest.raises(InvalidPolicyError, match=rf"^policies: {PATTERNS_MAX + 1} distinct patterns in file_rules"):
        check_policies(policies)


def audit_syscall(name: str, **fields: object) -> agent_pb2.SyscallRule:
    """Return a syscalls rule, audited as they all are."""
    return agent_pb2.SyscallRule(syscall=name, action=agent_pb2.ACTION_AUDIT, **fields)


def syscall_table(*rules: agent_pb2.SyscallRule) -> KindRules:
    """Check and compile syscalls rules for one container."""
    policies = [agent_pb2.Policy(name="p", syscall_rules=rules)]
    check_policies(policies)
    return compile_rules(policies, container_name="c", postures={}, view=None).kinds[Kind.SYSCALLS]


def test_syscall_path_rules_go_to_a_scope_of_their_call() -> None:
    """A matchPaths rule is found under its call's number: a file by name, a directory by itself and what it holds."""
    table = syscall_table(
        audit_syscall("unlink", path="/home/", recursive=True), audit_syscall("rmdir", path="/srv/data/")
    )
    audit = RuleEntry(audit=1, audit_rule=1)
    unlink, rmdir = table.scopes[87], table.scopes[84]
    assert (unlink.names, unlink.dirs) == ({"/home": audit}, {"/home/": DirEntry(any_depth=audit)})
    rmdir_audit = RuleEntry(audit=1, audit_rule=2)
    assert (rmdir.names, rmdir.dirs) == ({"/srv/data": rmdir_audit}, {"/srv/data/": DirEntry(direct=rmdir_audit)})
    assert not table.ids


def test_source_directories_carry_the_rules_of_every_directory_covering_them() -> None:
    """The kernel enters only the most specific source, so each holds what the wider ones say too."""
    table = syscall_table(
        audit_syscall("unlink", from_source_dirs=[agent_pb2.SourceDirectory(dir="/usr/", recursive=True)]),
        audit_syscall("mkdir", from_source_dirs=[agent_pb2.SourceDirectory(dir="/usr/bin/")]),
        audit_syscall("rmdir", from_source=["/usr/bin/rmdir"]),
    )
    sources = table.sources
    assert table.source_dirs == {"/usr/": ("\0/usr/**", None), "/usr/bin/": (None, "\0/usr/bin/*")}
    assert set(sources["\0/usr/**"].ids) == {87}
    assert set(sources["\0/usr/bin/*"].ids) == {87, 83}
    assert set(sources["/usr/bin/rmdir"].ids) == {87, 83, 84}
    assert table.source_names == {"/usr/bin/rmdir": "/usr/bin/rmdir"}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(audit_syscall("unlink"), "", id="valid"),
        pytest.param(agent_pb2.SyscallRule(syscall="unlink", action=agent_pb2.ACTION_BLOCK), "audited", id="block"),
        pytest.param(audit_syscall("frobnicate"), "unknown", id="unknown-call"),
        pytest.param(audit_syscall("read", path="/etc/passwd"), "takes no path", id="call-without-path"),
        pytest.param(audit_syscall("unlink", path="etc/passwd"), "not absolute", id="relative-path"),
        pytest.param(audit_syscall("unlink", recursive=True), "without a path", id="recursive-without-path"),
        pytest.param(
            audit_syscall("unlink", from_source_dirs=[agent_pb2.SourceDirectory(dir="/usr")]),
            "from_source_dirs[0].dir: '/usr' does not end in '/'",
            id="source-dir-without-slash",
        ),
    ],
)
def test_malformed_syscall_rules_are_refused(rule: agent_pb2.SyscallRule, message: str) -> None:
    """The agent refuses a syscalls rule the host should never send, naming the field."""
    policies = [agent_pb2.Policy(name="p", syscall_rules=[rule])]
    if not message:
        check_policies(policies)
        return
    with pytest.raises(InvalidPolicyError, match=r"policies\[0\]\.syscall_rules\[0\]") as caught:
        check_policies(policies)
    assert message in str(caught.value)


def test_pts_false_is_a_variant_of_its_entry_for_path_and_network_rules() -> None:
    """KubeArmor's pts: false gets its own variant bit beside readOnly and ownerOnly; the kernel checks the terminal."""
    policies = [
        agent_pb2.Policy(
            name="p",
            file_rules=[
                agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_BLOCK, read_only=True, no_terminal=True)
            ],
            network_rules=[agent_pb2.NetworkRule(protocol="raw", action=agent_pb2.ACTION_ALLOW, no_terminal=True)],
        )
    ]
    check_policies(policies)
    kinds = compile_rules(policies, container_name="c", postures={}, view=None).kinds
    assert kinds[Kind.FILE].names["/etc/passwd"].block == 1 << (VARIANT_READ_ONLY | VARIANT_NO_TERMINAL)
    assert kinds[Kind.NETWORK].ids[NETWORK_PROTOCOLS["raw"]].allow == 1 << VARIANT_NO_TERMINAL


def test_the_exec_preset_is_judged_by_the_process_enforcer() -> None:
    """The exec preset needs the process kind's hooks even with no process rule."""
    preset = agent_pb2.PresetRule(preset=agent_pb2.PRESET_EXEC, action=agent_pb2.ACTION_AUDIT)
    compiled = compile_rules([agent_pb2.Policy(name="p", presets=[preset])], container_name="c", postures={}, view=None)
    assert [compiled.active(kind) for kind in Kind] == [True, False, False, False, False, False]
    assert compiled.preset_bits == preset_bits(Preset.EXEC, block=False, audit=True)
    assert compiled.preset_rule(Preset.EXEC) == 1


def test_allowed_args_narrow_their_action_and_are_listed_under_the_rule(merged_usr: Path) -> None:
    """A rule with allowedArgs marks its action narrowed in every entry of its file, and lists each argument."""
    block, allow = agent_pb2.ACTION_BLOCK, agent_pb2.ACTION_ALLOW
    rules = [
        agent_pb2.PathRule(path="/bin/ls", action=block, allowed_args=["-l", "/tmp"]),
        agent_pb2.PathRule(execname="apt", action=allow, allowed_args=["--version"]),
        agent_pb2.PathRule(path="/usr/bin/dash", action=block, allowed_args=["-c"], from_source=["/bin/ls"]),
    ]
    policies = [agent_pb2.Policy(name="p", process_rules=rules)]
    check_policies(policies)
    table = process(compile_rules(policies, container_name="c", postures={}, view=view_of(merged_usr)))
    narrowed_block = RuleEntry(block=1, block_rule=1, args=ACTION_BLOCK)
    assert table.names["/bin/ls"] == table.names["/usr/bin/ls"] == narrowed_block
    assert set(table.inodes.values()) == {narrowed_block}
    assert table.names["apt"] == RuleEntry(allow=1, allow_rule=2, args=ACTION_ALLOW)
    assert table.allowed_args == {(1, "-l"), (1, "/tmp"), (2, "--version")}
    (source,) = table.sources.values()  # a source's rules have their arguments under its own ruleset
    assert source.allowed_args == {(3, "-c")}
    assert table.size == len(table.names) + len(table.inodes) + len(table.source_names) + 3 + source.size


@pytest.mark.parametrize(
    ("second", "narrowed"),
    [
        pytest.param(agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK), 0, id="plain-block-wins"),
        pytest.param(
            agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK, allowed_args=["-a"]),
            0,
            id="two-argument-sets-block-always",
        ),
        pytest.param(
            agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_AUDIT),
            ACTION_BLOCK,
            id="another-action-keeps-it",
        ),
    ],
)
def test_merged_block_rules_stay_narrowed_only_by_one_rule(second: agent_pb2.PathRule, narrowed: int) -> None:
    """The kernel checks one rule's arguments per action: merging Block rules fails closed (blocks more)."""
    first = agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK, allowed_args=["-l"])
    policies = [agent_pb2.Policy(name="p", process_rules=[first, second])]
    entry = process(compile_rules(policies, container_name="c", postures={}, view=None)).names["/bin/ls"]
    assert (entry.block, entry.block_rule, entry.args & ACTION_BLOCK) == (1, 1, narrowed)


@pytest.mark.parametrize(
    ("second_args", "narrowed"),
    [pytest.param([], 0, id="plain-allow-wins"), pytest.param(["-a"], ACTION_ALLOW, id="first-set-checked")],
)
def test_merged_allow_rules_stay_narrowed_if_both_are(second_args: list[str], narrowed: int) -> None:
    """Two narrowed Allow rules check the first one's set (allowing less, never more); a plain one allows always."""
    allow = agent_pb2.ACTION_ALLOW
    rules = [
        agent_pb2.PathRule(path="/bin/ls", action=allow, allowed_args=["-l"]),
        agent_pb2.PathRule(path="/bin/ls", action=allow, allowed_args=second_args),
    ]
    entry = process(
        compile_rules([agent_pb2.Policy(name="p", process_rules=rules)], container_name="c", postures={}, view=None)
    ).names["/bin/ls"]
    assert (entry.allow_rule, entry.args) == (1, narrowed)


@pytest.mark.parametrize(
    ("section", "rule", "message"),
    [
        pytest.param(
            "file_rules",
            agent_pb2.PathRule(path="/etc/passwd", action=agent_pb2.ACTION_BLOCK, allowed_args=["-l"]),
            r"file_rules\[0\]\.allowed_args: only process rules",
            id="file-rule",
        ),
        pytest.param(
            "process_rules",
            agent_pb2.PathRule(path="/sbin/", action=agent_pb2.ACTION_BLOCK, allowed_args=["-l"]),
            r"process_rules\[0\]\.allowed_args: only process rules for a file",
            id="directory",
        ),
        pytest.param(
            "process_rules",
            agent_pb2.PathRule(pattern="/bin/*", action=agent_pb2.ACTION_BLOCK, allowed_args=["-l"]),
            r"process_rules\[0\]\.allowed_args: only process rules for a file",
            id="pattern",
        ),
        pytest.param(
            "process_rules",
            agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK, allowed_args=["-l"] * 21),
            r"process_rules\[0\]\.allowed_args: 21 arguments; at most 20",
            id="too-many",
        ),
        pytest.param(
            "process_rules",
            agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK, allowed_args=["-l", "x" * 255]),
            r"process_rules\[0\]\.allowed_args\[1\]: .* longer than 254 bytes",
            id="too-long",
        ),
        pytest.param(
            "process_rules",
            agent_pb2.PathRule(path="/bin/ls", action=agent_pb2.ACTION_BLOCK, allowed_args=[""]),
            r"process_rules\[0\]\.allowed_args\[0\]: '' is empty",
            id="empty",
        ),
    ],
)
def test_agent_refuses_allowed_args_the_kernel_cannot_judge(
    section: str, rule: agent_pb2.PathRule, message: str
) -> None:
    """allowedArgs belong to process rules for one file or execname, at most 20 arguments of 1 to 254 bytes."""
    with pytest.raises(InvalidPolicyError, match=message):
        check_policies([agent_pb2.Policy(name="p", **{section: [rule]})])


def dns_policy(*rules: agent_pb2.DnsRule) -> list[agent_pb2.Policy]:
    """Build a checked wire policy of DNS rules."""
    policies = [agent_pb2.Policy(name="dns", dns_rules=rules)]
    check_policies(policies)
    return policies


def test_a_domain_is_written_with_the_containers_search_domains(tmp_path: Path) -> None:
    """Resolvers ask for a name followed by each search domain first; the rule covers those names too."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "resolv.conf").write_text(
        "nameserver 10.0.0.10\nsearch old.example\nsearch Team.svc.cluster.local. svc.cluster.local\noptions ndots:5\n"
    )
    block_rule = agent_pb2.DnsRule(domain="example.com", action=agent_pb2.ACTION_BLOCK)
    compiled = compile_rules(dns_policy(block_rule), container_name="c", postures={}, view=view_of(tmp_path))
    entry = RuleEntry(block=1, block_rule=1)
    assert compiled.kinds[Kind.DNS].names == {
        "example.com": entry,
        "example.com.team.svc.cluster.local": entry,
        "example.com.svc.cluster.local": entry,
    }
    assert compiled.kinds[Kind.DNS].blocks and not compiled.kinds[Kind.DNS].allowlist


def test_a_resolv_conf_that_is_not_a_regular_file_is_not_read(tmp_path: Path) -> None:
    """The container owns its resolv.conf: a FIFO there must not hang the agent, a symlink stays inside."""
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc" / "resolv.conf")
    assert view_of(tmp_path).search_domains() == ()
    os.unlink(tmp_path / "etc" / "resolv.conf")
    (tmp_path / "etc" / "resolv.conf").symlink_to("/run/resolv.conf")  # resolved inside the container's root
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "resolv.conf").write_text("search inside.example\n")
    assert view_of(tmp_path).search_domains() == ("inside.example",)


def test_an_allowed_domain_from_one_source_makes_an_allow_list_for_it_alone() -> None:
    """fromSource DNS rules go to the source's table: only that executable's queries meet its allow list."""
    rule = agent_pb2.DnsRule(domain="api.example.com", action=agent_pb2.ACTION_ALLOW, from_source=["/usr/bin/curl"])
    compiled = compile_rules(dns_policy(rule), container_name="c", postures={}, view=None)
    table = compiled.kinds[Kind.DNS]
    assert table.names == {} and not table.allowlist
    assert table.sources["/usr/bin/curl"].names == {"api.example.com": RuleEntry(allow=1, allow_rule=1)}
    assert table.sources["/usr/bin/curl"].allowlist and not table.blocks


@pytest.mark.parametrize(
    "domain",
    ["", "Example.com", "example.com.", ".example.com", "a..b", "*.example.com", "ex ample.com", "x" * 64 + ".io"],
)
def test_the_agent_refuses_a_domain_the_kernel_could_not_compare(domain: str) -> None:
    """The host sends domains in lower case without end dots; anything else never matches a query, so it is refused."""
    policy = agent_pb2.Policy(name="p", dns_rules=[agent_pb2.DnsRule(domain=domain, action=agent_pb2.ACTION_BLOCK)])
    with pytest.raises(InvalidPolicyError, match=r"policies\[0\]\.dns_rules\[0\]\.domain: .* is not a DNS name"):
        check_policies([policy])
