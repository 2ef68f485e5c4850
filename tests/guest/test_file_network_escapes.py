"""No way around a file or network rule: other names, mounts, roots, interpreters, spellings and mode changes.

The workload is the attacker. Each way of reaching a blocked file is tried
on /etc/shadow (a Block rule: denied) and on /etc/passwd (no rule: read),
in a container shaped like a pod's, in the guest kernel.
"""

from __future__ import annotations

import pytest

from images.testguest.containers import GuestContainers
from tests.guest.support import DENIED, PolicyApplier, assert_denied, nginx_policy

pytestmark = pytest.mark.guest

PASSWD_LINE = "root:x:0:0"


def file_policy(name: str, body: str, *, extra: str = "") -> str:
    """Return a KubeArmorPolicy for the nginx pod with this spec.file body."""
    return nginx_policy(name, f"  file:\n{body}{extra}")


BLOCK_SHADOW = file_policy("block-shadow", "    matchPaths:\n    - path: /etc/shadow\n      action: Block\n")

# Each reads /etc/{name} some other way; {name} is shadow (blocked) or passwd (no rule).
FILE_ESCAPES = [
    pytest.param("cat /etc/{name}", id="plain"),
    pytest.param("cd /etc && cat ./{name}", id="relative"),
    pytest.param("cat /usr/../etc/{name}", id="dot-dot"),
    pytest.param("ln -sf /etc/{name} /tmp/sym-{name} && cat /tmp/sym-{name}", id="symlink"),
    pytest.param("ln -f /etc/{name} /tmp/hard-{name} && cat /tmp/hard-{name}", id="hard-link"),
    pytest.param("cat /proc/1/root/etc/{name}", id="proc-pid-root"),
    pytest.param(
        "python3 -c \"import os; fd = os.open('/etc/{name}', os.O_PATH); print(open(f'/proc/self/fd/{{fd}}').read())\"",
        id="proc-self-fd",
    ),
    pytest.param("unshare -U -r -m sh -c 'mount --bind /etc /mnt && cat /mnt/{name}'", id="bind-mount"),
    pytest.param("unshare -U -r -m -p -f -n -u -i cat /etc/{name}", id="new-namespaces"),
    pytest.param("chroot / cat /etc/{name}", id="chroot"),
    pytest.param(
        "python3 -c \"import os; os.chroot('/etc'); os.chdir('/'); print(open('{name}').read())\"", id="chroot-into-etc"
    ),
    pytest.param("python3 -c \"print(open('/etc/{name}').read())\"", id="interpreter"),
]


@pytest.mark.parametrize("script", FILE_ESCAPES)
def test_file_escapes_cannot_read_the_blocked_file(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """Every way to the blocked file meets its Block rule; the same way to another file works."""
    policies.apply(BLOCK_SHADOW)
    blocked = containers.shell(pods["nginx-1"], script.format(name="shadow"))
    assert "root:" not in blocked.stdout, f"read the blocked file: {blocked}"
    assert DENIED in blocked.stderr, blocked
    other = containers.shell(pods["nginx-1"], script.format(name="passwd"))
    assert PASSWD_LINE in other.stdout, other


def test_hard_link_made_before_the_policy_still_leads_to_the_rule(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """A link made while nothing was blocked copies the file up; the rule recorded that file, so the link is denied."""
    policies.apply()
    nginx = pods["nginx-1"]
    made = containers.shell(nginx, "ln -f /etc/shadow /tmp/early-shadow && echo linked")
    assert "linked" in made.stdout, made
    policies.apply(BLOCK_SHADOW)
    assert_denied(containers.shell(nginx, "cat /tmp/early-shadow"), "pre-policy hard link")
    assert_denied(containers.shell(nginx, "mv /tmp/early-shadow /tmp/renamed-shadow"), "renaming the link")


def test_directory_rule_covers_a_file_3000_bytes_deep(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """A recursive directory rule matches at any depth, however long the real path is."""
    policies.apply()
    nginx = pods["nginx-1"]
    deep = "/".join(["d" * 99] * 30)  # 3,000 bytes of directories
    made = containers.shell(
        nginx,
        f"for top in /tmp/vault /tmp/open; do mkdir -p $top/{deep} && echo secret > $top/{deep}/f; done && echo made",
    )
    assert "made" in made.stdout, made
    body = "    matchDirectories:\n    - dir: /tmp/vault/\n      recursive: true\n      action: Block\n"
    policies.apply(file_policy("block-vault", body))
    assert_denied(containers.shell(nginx, f"cat /tmp/vault/{deep}/f"), "file 3,000 bytes deep")
    assert_denied(containers.shell(nginx, f"cd /tmp/vault/{deep} && cat ./f"), "relative, from deep inside")
    assert "secret" in containers.shell(nginx, f"cat /tmp/open/{deep}/f").stdout


READ_ONLY = "    matchPaths:\n    - path: /tmp/ro-file\n      readOnly: true\n      action: {action}\n"
# Each changes /tmp/ro-file without opening it for write, or by opening it for write; each prints "changed".
WRITES = [
    "echo more >> /tmp/ro-file",
    ": > /tmp/ro-file",
    "truncate -s 0 /tmp/ro-file",
    "rm /tmp/ro-file",
    "echo other > /tmp/ro-other && mv /tmp/ro-other /tmp/ro-file",
    "echo other > /tmp/ro-other && ln -f /tmp/ro-other /tmp/ro-file",
    "mv /tmp/ro-file /tmp/ro-moved",
    "python3 -c \"import os; os.open('/tmp/ro-file', os.O_WRONLY)\"",
]


def test_read_only_block_refuses_every_way_of_writing(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Block with readOnly: the file is read as before; appending, truncating, replacing or removing it is refused."""
    nginx = pods["nginx-1"]
    policies.apply()
    assert "made" in containers.shell(nginx, "echo kept > /tmp/ro-file && echo made").stdout
    policies.apply(file_policy("read-only", READ_ONLY.format(action="Block")))
    for write in WRITES:
        result = containers.shell(nginx, f"{write} && echo changed")
        assert "changed" not in result.stdout and DENIED in result.stderr, f"{write}: {result}"
    assert containers.shell(nginx, "cat /tmp/ro-file").stdout.strip() == "kept"


def test_read_only_allow_allows_reading_only(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Allow with readOnly in allow-list mode: reading passes, writing gets the (block) posture."""
    nginx = pods["nginx-1"]
    policies.apply()
    assert "made" in containers.shell(nginx, "echo kept > /tmp/ro-file && echo made").stdout
    usr = "    matchDirectories:\n    - dir: /usr/\n      recursive: true\n      action: Allow\n"
    policies.apply(file_policy("read-only-allow", READ_ONLY.format(action="Allow"), extra=usr))
    assert containers.shell(nginx, "cat /tmp/ro-file").stdout.strip() == "kept"
    assert_denied(containers.shell(nginx, "echo more >> /tmp/ro-file"), "writing a read-only allowed file")


def test_owner_only_lets_the_owner_alone_read(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Block with ownerOnly: root (not the owner) is refused even with CAP_DAC_OVERRIDE; the owner reads."""
    nginx = pods["nginx-1"]
    policies.apply()
    made = containers.shell(nginx, "echo mine > /tmp/owned && chown 1000:1000 /tmp/owned && echo made")
    assert "made" in made.stdout, made
    body = "    matchPaths:\n    - path: /tmp/owned\n      ownerOnly: true\n      action: Block\n"
    policies.apply(file_policy("owner-only", body))
    assert_denied(containers.shell(nginx, "cat /tmp/owned"), "root reading another user's file")
    as_owner = containers.shell(nginx, "setpriv --reuid=1000 --regid=1000 --clear-groups cat /tmp/owned")
    assert as_owner.stdout.strip() == "mine", as_owner


def network_policy(protocol: str) -> str:
    """Return a KubeArmorPolicy blocking one protocol name for the nginx pod."""
    return nginx_policy(
        f"block-{protocol}", f"  network:\n    matchProtocols:\n    - protocol: {protocol}\n  action: Block\n"
    )


# Prints one word per "family,type,protocol" argument: "ok" or the errno name. Types may be or'ed with "|".
SOCKETS = """\
import errno, functools, operator, socket, sys
def number(text):
    return functools.reduce(operator.or_, (getattr(socket, p) if p.isidentifier() else int(p) for p in text.split("|")))
for spec in sys.argv[1:]:
    try:
        socket.socket(*map(number, spec.split(","))).close()
        print("ok")
    except OSError as error:
        print(errno.errorcode[error.errno])
"""


@pytest.mark.parametrize(
    ("protocol", "denied", "allowed"),
    [
        pytest.param(
            "tcp",
            [
                "AF_INET,SOCK_STREAM,0",
                "AF_INET,SOCK_STREAM,6",
                "AF_INET6,SOCK_STREAM,0",
                "AF_INET,SOCK_STREAM,262",
                "AF_INET,SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC,0",
            ],
            ["AF_INET,SOCK_DGRAM,0", "AF_UNIX,SOCK_STREAM,0"],
            id="tcp",
        ),
        pytest.param(
            "raw",
            # 10 is SOCK_PACKET, the old way to a packet socket (Python has no name for it)
            ["AF_INET,SOCK_RAW,1", "AF_INET6,SOCK_RAW,58", "AF_PACKET,SOCK_RAW,0", "AF_INET,10,768"],
            ["AF_INET,SOCK_DGRAM,0", "AF_INET,SOCK_STREAM,0"],
            id="raw",
        ),
        pytest.param(
            "icmp",
            ["AF_INET,SOCK_RAW,1"],
            ["AF_INET6,SOCK_RAW,58", "AF_INET,SOCK_RAW,6"],
            id="icmp",
        ),
    ],
)
def test_every_spelling_of_a_protocol_meets_its_rule(
    policies: PolicyApplier,
    containers: GuestContainers,
    pods: dict[str, str],
    protocol: str,
    denied: list[str],
    allowed: list[str],
) -> None:
    """Protocol 0 or its number, IPv4 or IPv6, flags, raw and packet sockets: one socket, one rule.

    Every spelling is first created with no policy, so a refusal seen later is the rule's.
    """
    nginx, specs = pods["nginx-1"], [*denied, *allowed]
    policies.apply()
    baseline = containers.exec(nginx, ["/usr/bin/python3", "-c", SOCKETS, *specs]).stdout.split()
    assert baseline == ["ok"] * len(specs), dict(zip(specs, baseline, strict=False))
    policies.apply(network_policy(protocol))
    seen = dict(
        zip(specs, containers.exec(nginx, ["/usr/bin/python3", "-c", SOCKETS, *specs]).stdout.split(), strict=True)
    )
    assert [seen[spec] for spec in denied] == ["EACCES"] * len(denied), seen
    assert [seen[spec] for spec in allowed] == ["ok"] * len(allowed), seen
