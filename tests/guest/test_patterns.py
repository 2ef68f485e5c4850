"""matchPatterns in the guest kernel: globs over a file's whole name, for exec and for open, however it is reached.

Process and file patterns under Block, Audit and Allow in a container of
the nginx pod of its own. A pattern is matched against the name the
kernel builds from the container's root (up to PATH_MAX), so symlinks,
bind mounts, chroot and relative paths meet it as they meet a path rule;
unlike a path rule it is not recorded by inode (a hard link made before
the policy escapes it, as one escapes a directory rule). The last tests
drive the matcher to its work bound and check that it fails closed.
tests/guest_agent/test_patterns.py holds the semantics and the algorithm.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import GuestResult, TestGuest
from kadapter_api import agent_pb2
from tests.guest.support import NGINX, PolicyApplier, alert_for, alert_stream, assert_denied, assert_ran
from tests.guest.test_file_network_escapes import FILE_ESCAPES, PASSWD_LINE
from tests.guest_agent.test_patterns import BOUND, MATCH, reference

pytestmark = pytest.mark.guest

CONTAINER = "nginx-patterns"
APT_PRINTS, ID_PRINTS = "apt 2", "GNU coreutils"  # what `--version` prints when the program really runs
DEEP_DIRS = "/".join(["d" * 99] * 30)  # 3,000 bytes of directories
DEEP_FILES = (("deep", "secret"), ("deep", "public"), ("open", "secret"))  # /tmp/{top}/{DEEP_DIRS}/{word}
SEGMENT = "a" * 250
BOUND_PATTERN = "/tmp/bound/**a*a*b"  # costly on names of several long segments, cheap on short ones


def policy(name: str, body: str) -> str:
    """Return a KubeArmorPolicy for the nginx pod with this spec body (sections indented by two spaces)."""
    return f"""\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: {name}
  namespace: default
spec:
  severity: 5
  tags: ["patterns"]
  message: "pattern policy {name}"
  selector:
    matchLabels:
      app: nginx
{body}"""


def patterns(section: str, *globs: str, action: str) -> str:
    """Return a spec section with one matchPatterns entry per glob, all under `action`."""
    entries = "".join(f"    - pattern: '{glob}'\n" for glob in globs)
    return f"  {section}:\n    matchPatterns:\n{entries}    action: {action}\n"


@pytest.fixture(scope="module")
def container(guest: TestGuest, containers: GuestContainers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a container of the nginx pod for this module; lift every policy when the module is done."""
    containers.start(CONTAINER, NGINX)
    yield CONTAINER
    PolicyApplier(guest, tmp_path_factory.mktemp("lift") / "policies").apply()
    containers.delete(CONTAINER)


def made(result: GuestResult) -> None:
    """Check that a setup script (run before its policy) printed "made"."""
    assert "made" in result.stdout, result


# --- file patterns ---------------------------------------------------------------------------------

BLOCK_SHADOW = policy("block-shadow-pattern", patterns("file", "/etc/*hado?", action="Block"))


@pytest.mark.parametrize("script", FILE_ESCAPES)
def test_file_pattern_blocks_shadow_however_it_is_reached(
    policies: PolicyApplier, containers: GuestContainers, container: str, script: str
) -> None:
    """'/etc/*hado?' denies /etc/shadow by every way the path-rule escapes try; /etc/passwd reads the same ways."""
    policies.apply(BLOCK_SHADOW)
    blocked = containers.shell(container, script.format(name="shadow"))
    assert "root:" not in blocked.stdout, f"read the blocked file: {blocked}"
    assert "Permission denied" in blocked.stderr, blocked
    other = containers.shell(container, script.format(name="passwd"))
    assert PASSWD_LINE in other.stdout, other


def test_file_pattern_alert_names_its_policy_and_every_name_it_matches(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """gshadow matches too ('*' takes the 'g') and is reported as the pattern's policy's; shadow- does not."""
    policies.apply(BLOCK_SHADOW)
    with alert_stream(guest) as alerts:
        assert_denied(containers.exec(container, ["/usr/bin/cat", "/etc/gshadow"]), "/etc/gshadow")
        alert = alert_for(alerts, "/etc/gshadow")
    assert (alert.policy_name, alert.severity, list(alert.tags)) == ("block-shadow-pattern", 5, ["patterns"])
    assert (alert.operation, alert.data, alert.result) == ("File", "open for read", "Permission denied")
    assert alert.action == agent_pb2.ACTION_BLOCK
    backup = containers.shell(
        container, "if [ -e /etc/shadow- ]; then cat /etc/shadow- >/dev/null && echo ok; else echo ok; fi"
    )
    assert "ok" in backup.stdout, backup


def test_read_only_file_pattern_refuses_writes_only(
    policies: PolicyApplier, containers: GuestContainers, container: str
) -> None:
    """readOnly on a pattern: what it matches reads as before; writing, truncating, removing, creating are refused."""
    policies.apply()
    made(
        containers.shell(
            container, "mkdir -p /tmp/ro && echo kept >/tmp/ro/a.log && echo kept >/tmp/ro/b.txt && echo made"
        )
    )
    body = "  file:\n    matchPatterns:\n    - pattern: /tmp/ro/*.log\n      readOnly: true\n    action: Block\n"
    policies.apply(policy("read-only-logs", body))
    assert containers.shell(container, "cat /tmp/ro/a.log").stdout.strip() == "kept"
    for write in (
        "echo more >>/tmp/ro/a.log",
        "truncate -s 0 /tmp/ro/a.log",
        "rm /tmp/ro/a.log",
        "touch /tmp/ro/new.log",
    ):
        result = containers.shell(container, f"{write} && echo changed")
        assert "changed" not in result.stdout and "Permission denied" in result.stderr, f"{write}: {result}"
    assert "changed" in containers.shell(container, "echo more >>/tmp/ro/b.txt && echo changed").stdout


def test_audit_pattern_reports_a_conf_file_deep_below_etc(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """'/**/*.conf' under Audit: a .conf four levels below /etc is read and reported as the pattern's policy's."""
    deep = "/etc/kadapter-patterns/a/b/c/deep.conf"
    policies.apply()
    made(containers.shell(container, f"mkdir -p {Path(deep).parent} && echo setting > {deep} && echo made"))
    policies.apply(policy("audit-conf", patterns("file", "/**/*.conf", action="Audit")))
    with alert_stream(guest) as alerts:
        read = containers.exec(container, ["/usr/bin/cat", deep])
        alert = alert_for(alerts, deep)
    assert read.returncode == 0 and read.stdout.strip() == "setting", read
    assert (alert.policy_name, alert.action, alert.result) == ("audit-conf", agent_pb2.ACTION_AUDIT, "Passed")
    assert (alert.pod_name, alert.container_name, alert.process_name) == ("nginx-1", "nginx", "/usr/bin/cat")


def test_allow_patterns_make_a_file_allow_list(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """Allow '/usr/**' and '/etc/host*': /etc/hostname and /etc/hosts open, /etc/debian_version gets the posture."""
    policies.apply(policy("allow-hosts", patterns("file", "/usr/**", "/etc/host*", action="Allow")))
    for allowed in ("/etc/hostname", "/etc/hosts"):
        result = containers.exec(container, ["/usr/bin/cat", allowed])
        assert result.returncode == 0, f"{allowed}: {result}"
    with alert_stream(guest) as alerts:
        assert_denied(containers.exec(container, ["/usr/bin/cat", "/etc/debian_version"]), "outside the allow list")
        alert = alert_for(alerts, "/etc/debian_version")
    assert (alert.policy_name, alert.action) == ("DefaultPosture", agent_pb2.ACTION_BLOCK)


def test_pattern_matches_the_whole_of_a_name_3000_bytes_long(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """'/tmp/deep/**' covers a file 3,000 bytes deep; '/tmp/deep/**/secret' tells two such files apart by their end."""
    secret, public, elsewhere = (f"/tmp/{top}/{DEEP_DIRS}/{word}" for top, word in DEEP_FILES)
    policies.apply()
    made(
        containers.shell(
            container,
            " && ".join(
                f"mkdir -p {Path(name).parent} && echo {Path(name).name} >{name}"
                for name in (secret, public, elsewhere)
            )
            + " && echo made",
        )
    )
    policies.apply(policy("deep-all", patterns("file", "/tmp/deep/**", action="Block")))
    assert_denied(containers.exec(container, ["/usr/bin/cat", secret]), "3,000 bytes deep")
    assert_denied(containers.shell(container, f"cd /tmp/deep/{DEEP_DIRS} && cat ./public"), "relative, from inside")
    assert containers.exec(container, ["/usr/bin/cat", elsewhere]).stdout.strip() == "secret"
    policies.apply(policy("deep-secret", patterns("file", "/tmp/deep/**/secret", action="Block")))
    with alert_stream(guest) as alerts:
        assert_denied(containers.exec(container, ["/usr/bin/cat", secret]), "the secret, told apart past byte 255")
        alert = alert_for(alerts, secret[:255])
    assert containers.exec(container, ["/usr/bin/cat", public]).stdout.strip() == "public"
    assert (alert.policy_name, alert.data) == ("deep-secret", "open for read, name cut to 255 bytes")


# --- process patterns ------------------------------------------------------------------------------

BLOCK_APT = policy("block-apt-pattern", patterns("process", "/usr/bin/apt*", action="Block"))


def refused_run(result: GuestResult, what: str) -> None:
    """Check that apt did not run: Permission denied, or the loader failing to map it."""
    assert APT_PRINTS not in result.stdout, f"{what} ran: {result}"
    if "failed to map segment" not in result.stderr:
        assert_denied(result, what)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("/usr/bin/{name} --version", id="plain"),
        pytest.param("ln -sf /usr/bin/{name} /tmp/pkg-{name} && /tmp/pkg-{name} --version", id="symlink"),
        pytest.param("cd /usr/lib/../bin && ./{name} --version", id="relative"),
        pytest.param("chroot /usr /bin/{name} --version", id="chroot"),
        pytest.param("unshare -U -r -m sh -c 'mount --bind /usr/bin /mnt && /mnt/{name} --version'", id="bind-mount"),
        pytest.param("/lib64/ld-linux-x86-64.so.2 /usr/bin/{name} --version", id="loader"),
    ],
)
def test_process_pattern_blocks_apt_and_apt_get_and_lets_id_run(
    policies: PolicyApplier, containers: GuestContainers, container: str, script: str
) -> None:
    """'/usr/bin/apt*' refuses apt and apt-get however they are run; id runs the same way."""
    policies.apply(BLOCK_APT)
    for name in ("apt", "apt-get"):
        refused_run(containers.shell(container, script.format(name=name)), f"{name}: {script}")
    assert_ran(containers.shell(container, script.format(name="id")), script, prints=ID_PRINTS)


def test_process_pattern_refuses_new_names_but_not_links_made_before(
    policies: PolicyApplier, containers: GuestContainers, container: str
) -> None:
    """A Block pattern refuses linking or renaming what it matches; a link made before the policy runs (names only)."""
    policies.apply()
    made(containers.shell(container, "ln -f /usr/bin/apt-get /tmp/early-apt-get && echo made"))
    policies.apply(BLOCK_APT)
    assert_denied(containers.shell(container, "ln -f /usr/bin/apt-get /tmp/late-apt-get"), "a new hard link")
    assert_denied(containers.shell(container, "mv /usr/bin/apt-cache /tmp/moved"), "a rename")
    assert_ran(containers.shell(container, "/tmp/early-apt-get --version"), "the earlier link", prints=APT_PRINTS)


def test_allow_patterns_make_a_process_allow_list(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """Allow 'da?h', 'i?' and 'c*t' in /usr/bin: the shell, id and cat run; whoami gets the posture and its alert."""
    policies.apply(
        policy("allow-few", patterns("process", "/usr/bin/da?h", "/usr/bin/i?", "/usr/bin/c*t", action="Allow"))
    )
    assert_ran(containers.shell(container, "/usr/bin/id --version"), "id", prints=ID_PRINTS)
    assert containers.shell(container, "cat /etc/hostname").returncode == 0
    with alert_stream(guest) as alerts:
        assert_denied(containers.shell(container, "/usr/bin/whoami"), "whoami, outside the allow list")
        alert = alert_for(alerts, "/usr/bin/whoami")
    assert (alert.policy_name, alert.operation, alert.data) == ("DefaultPosture", "Process", "exec")


# --- the work bound ----------------------------------------------------------------------------------


def bound_names() -> tuple[str, str, str]:
    """Return a costly name the glob does not match, a costly one it matches, and a cheap one it matches."""
    long_dirs = "/".join([SEGMENT] * 3)
    costly_other, costly_match, cheap_match = (
        f"/tmp/bound/{long_dirs}/b",
        f"/tmp/bound/{long_dirs}/aab",
        f"/tmp/bound/{SEGMENT}/aab",
    )
    glob, spent = BOUND_PATTERN.encode(), 2  # '/usr/**' fails at the second byte of each
    assert reference(glob, costly_other.encode(), steps=spent)[0] == BOUND
    assert reference(glob, costly_match.encode(), steps=spent)[0] == BOUND
    assert reference(glob, cheap_match.encode(), steps=spent)[0] == MATCH
    return costly_other, costly_match, cheap_match


def make_files(policies: PolicyApplier, containers: GuestContainers, container: str, *names: str) -> None:
    """Lift the policies, then create these files (holding "x"), with their directories."""
    policies.apply()
    made(
        containers.shell(
            container,
            " && ".join(f"mkdir -p {Path(name).parent} && echo x > {name}" for name in names) + " && echo made",
        )
    )


def test_a_block_pattern_left_unfinished_counts_as_matched(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """Past the work bound a Block pattern denies even a name it would not match, and the alert says so."""
    costly_other, _, cheap_match = bound_names()
    make_files(policies, containers, container, costly_other, cheap_match, "/tmp/bound/short")
    policies.apply(policy("bound-block", patterns("file", BOUND_PATTERN, action="Block")))
    assert containers.exec(container, ["/usr/bin/cat", "/tmp/bound/short"]).stdout.strip() == "x"
    assert_denied(containers.exec(container, ["/usr/bin/cat", cheap_match]), "a cheap match")
    with alert_stream(guest) as alerts:
        assert_denied(containers.exec(container, ["/usr/bin/cat", costly_other]), "an unfinished non-match")
        alert = alert_for(alerts, costly_other[:255])
    assert alert.policy_name == "bound-block"
    assert alert.data == "open for read, name cut to 255 bytes, patterns unfinished"


def test_an_allow_pattern_left_unfinished_does_not_allow(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str
) -> None:
    """Past the work bound an Allow pattern allows nothing, even a name it would match: the posture decides."""
    _, costly_match, cheap_match = bound_names()
    make_files(policies, containers, container, costly_match, cheap_match)
    policies.apply(policy("bound-allow", patterns("file", "/usr/**", BOUND_PATTERN, action="Allow")))
    assert containers.exec(container, ["/usr/bin/cat", cheap_match]).stdout.strip() == "x"
    with alert_stream(guest) as alerts:
        assert_denied(containers.exec(container, ["/usr/bin/cat", costly_match]), "an unfinished match")
        alert = alert_for(alerts, costly_match[:255])
    assert (alert.policy_name, alert.action) == ("DefaultPosture", agent_pb2.ACTION_BLOCK)
    assert alert.data.endswith("patterns unfinished")
