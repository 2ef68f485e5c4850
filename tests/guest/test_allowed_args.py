"""allowedArgs: process rules narrowed to an exec's arguments, judged in the guest kernel, and the ways around them."""

from __future__ import annotations

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import GuestResult, TestGuest
from kadapter_api import agent_pb2
from tests.guest.support import (
    DENIED,
    PolicyApplier,
    alert_for,
    alert_stream,
    assert_denied,
    no_alert_for,
    process_policy,
)

pytestmark = pytest.mark.guest


def narrowed(*paths: str, arguments: str) -> str:
    """Return matchPaths entries for these executables, each narrowed to the same allowedArgs."""
    return "".join(f"    - path: {path}\n      allowedArgs: [{arguments}]\n" for path in paths)


# ls may run with -l, -a or /tmp, in any order, and nothing else; /tmp/lister is a copy of it.
LS_ARGUMENTS = "-l, /tmp"
BLOCK_LS = process_policy(name="ls-args", rules=narrowed("/bin/ls", "/tmp/lister", arguments=LS_ARGUMENTS))

# Run /tmp/lister with one argument held in memory another process may rewrite, deterministically after the
# kernel copied it and before the LSM reads it: a write lease on /tmp/lister makes the exec's open wait until
# the lease holder (this script's parent) lets go, and the parent rewrites the argument first. Prints how the
# exec ended: "result=exit 0" (it ran), "result=denied" (EACCES), "result=killed" (SIGKILL).
CHANGED_ARGUMENT = """
import ctypes, fcntl, mmap, os, signal, sys
F_SETLEASE = 1024
first, then = sys.argv[1].encode(), sys.argv[2].encode()
shared = mmap.mmap(-1, 4096)  # MAP_SHARED: the child's argument is the parent's memory too
shared[: len(first) + 1] = first + b"\\0"
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})
lease = os.open("/tmp/lister", os.O_RDONLY)
fcntl.fcntl(lease, F_SETLEASE, fcntl.F_WRLCK)
child = os.fork()
if child == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.execve.argtypes = (ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p)
    name = ctypes.create_string_buffer(b"lister")
    argv = (ctypes.c_void_p * 3)(ctypes.addressof(name), ctypes.addressof(ctypes.c_char.from_buffer(shared)), None)
    libc.execve(b"/tmp/lister", argv, (ctypes.c_void_p * 1)(None))
    print("result=denied" if ctypes.get_errno() == 13 else f"result=errno {ctypes.get_errno()}", flush=True)
    os._exit(3)
signal.sigwait({signal.SIGIO})  # the child's exec has copied its arguments and waits on the lease
shared[: len(then) + 1] = then + b"\\0"
fcntl.fcntl(lease, F_SETLEASE, fcntl.F_UNLCK)
_, status = os.waitpid(child, 0)
if os.WIFSIGNALED(status):
    print("result=killed" if os.WTERMSIG(status) == signal.SIGKILL else f"result=signal {os.WTERMSIG(status)}")
elif os.waitstatus_to_exitcode(status) != 3:
    print(f"result=exit {os.waitstatus_to_exitcode(status)}")
"""


def _ran(result: GuestResult, what: str) -> None:
    assert result.returncode == 0 and DENIED.lower() not in result.stderr.lower(), f"{what}: {result}"


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("/bin/ls -l /tmp", id="both-arguments"),
        pytest.param("ls /tmp -l", id="any-order-through-PATH"),
        pytest.param("ln -sf /bin/ls /tmp/sym && /tmp/sym -l", id="symlink"),
        pytest.param("/usr/bin/env ls -l", id="through-env"),
        pytest.param(
            "/usr/bin/python3 -c \"import os; os.execve(os.open('/bin/ls', os.O_RDONLY), ['ls', '-l'], {})\"",
            id="execveat-of-an-fd",
        ),
    ],
)
def test_a_block_rule_lets_its_allowed_arguments_run(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """An exec whose every argument is in the rule's allowedArgs is not blocked, however the file is named."""
    policies.apply(BLOCK_LS)
    _ran(containers.shell(pods["nginx-1"], script), script)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("/bin/ls", id="no-arguments"),  # as in KubeArmor: a rule with allowedArgs needs arguments
        pytest.param("/bin/ls -a", id="another-argument"),
        pytest.param("/bin/ls -l /etc", id="one-argument-outside"),
        pytest.param("/bin/ls " + " ".join(["-l"] * 21), id="more-than-twenty"),
        pytest.param("ln -sf /bin/ls /tmp/sym && /tmp/sym -a", id="symlink"),
        pytest.param("cd /usr/bin && ./ls -a", id="relative-path"),
        pytest.param("exec 3</bin/ls && /proc/self/fd/3 -a", id="proc-self-fd"),
        pytest.param("/usr/bin/env ls -a", id="through-env"),
        pytest.param(
            "/usr/bin/python3 -c \"import os; os.execve(os.open('/bin/ls', os.O_RDONLY), ['ls', '-a'], {})\"",
            id="execveat-of-an-fd",
        ),
        pytest.param("printf '#!/bin/ls -l\\n' >/tmp/s && chmod +x /tmp/s && /tmp/s", id="as-script-interpreter"),
    ],
)
def test_a_block_rule_denies_every_other_exec_of_its_file(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """Missing, extra or other arguments, under any name for the file or through a loader or a script, are denied."""
    policies.apply(BLOCK_LS)
    assert_denied(containers.shell(pods["nginx-1"], script), script)


def test_the_dynamic_loader_meets_no_allowed_arguments(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """ld.so run as a program maps the file itself, with no exec to judge arguments of: the Block rule holds."""
    policies.apply(BLOCK_LS)
    via_loader = containers.exec(pods["nginx-1"], ["/lib64/ld-linux-x86-64.so.2", "/bin/ls", "-l"])
    assert via_loader.returncode != 0 and "failed to map segment" in via_loader.stderr, via_loader


def test_block_alerts_say_the_arguments_were_judged(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """A denied exec is reported by the narrowed rule; one its arguments lift is not reported at all."""
    policies.apply(BLOCK_LS)
    with alert_stream(guest) as alerts:
        _ran(containers.exec(pods["nginx-1"], ["/bin/ls", "-l"]), "ls -l")
        no_alert_for(alerts, "/usr/bin/ls")
        assert_denied(containers.exec(pods["nginx-1"], ["/bin/ls", "-a"]), "ls -a")
        alert = alert_for(alerts, "/usr/bin/ls")
    assert (alert.policy_name, alert.action, alert.result) == ("ls-args", agent_pb2.ACTION_BLOCK, DENIED)
    assert "arguments judged against allowedArgs" in alert.data, alert


def test_an_audit_rule_reports_only_the_execs_outside_its_arguments(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Audit with allowedArgs: every exec runs; those with other arguments are reported."""
    policies.apply(process_policy(name="ls-audit", rules=narrowed("/bin/ls", arguments="-l"), action="Audit"))
    with alert_stream(guest) as alerts:
        _ran(containers.exec(pods["nginx-1"], ["/bin/ls", "-l"]), "ls -l")
        no_alert_for(alerts, "/usr/bin/ls")
        _ran(containers.exec(pods["nginx-1"], ["/bin/ls", "-a"]), "ls -a")
        alert = alert_for(alerts, "/usr/bin/ls")
    assert (alert.policy_name, alert.action, alert.result) == ("ls-audit", agent_pb2.ACTION_AUDIT, "Passed")


def test_an_allow_rule_allows_only_its_arguments(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Allow with allowedArgs makes an allow list holding the file only with those arguments."""
    policies.apply(process_policy(name="only-ls-l", rules=narrowed("/bin/ls", arguments="-l"), action="Allow"))
    nginx = pods["nginx-1"]
    _ran(containers.exec(nginx, ["/bin/ls", "-l"]), "ls -l")
    assert_denied(containers.exec(nginx, ["/bin/ls", "-a"]), "ls -a")
    assert_denied(containers.exec(nginx, ["/bin/ls"]), "ls")
    assert_denied(containers.exec(nginx, ["/bin/cat", "/etc/hostname"]), "cat")


@pytest.mark.parametrize(
    ("first", "then", "ends"),
    [
        pytest.param("-l", "-l", "result=exit 0", id="allowed-throughout-runs"),
        pytest.param("-a", "-a", "result=denied", id="outside-throughout-is-denied"),
        pytest.param("-l", "-a", "result=denied", id="rewritten-to-outside-is-denied"),
        pytest.param("-a", "-l", "result=killed", id="rewritten-to-allowed-is-killed"),
    ],
)
def test_arguments_rewritten_during_the_exec_are_judged_as_the_kernel_copied_them(
    policies: PolicyApplier,
    guest: TestGuest,
    containers: GuestContainers,
    pods: dict[str, str],
    first: str,
    then: str,
    ends: str,
) -> None:
    """The kernel's copy of the arguments decides: memory rewritten after it was copied cannot lift the rule.

    The program passes `first`, and its parent rewrites it to `then` once the kernel has copied it and before
    the LSM reads the caller's memory. Passing -a and showing -l is caught when the exec commits, before the
    new program runs: it is killed, and the host gets a Block alert.
    """
    nginx = pods["nginx-1"]
    policies.apply(BLOCK_LS)
    copied = containers.shell(nginx, "cp /bin/ls /tmp/lister")
    assert copied.returncode == 0, copied
    with alert_stream(guest) as alerts:
        result = containers.exec(nginx, ["/usr/bin/python3", "-c", CHANGED_ARGUMENT, first, then])
        assert result.stdout.strip().splitlines()[-1:] == [ends], result
        if ends == "result=killed":
            alert = alert_for(alerts, "/tmp/lister")
            assert (alert.policy_name, alert.action) == ("ls-args", agent_pb2.ACTION_BLOCK)
            assert "arguments changed during the exec: killed" in alert.data, alert
