"""Rules about terminals, in a real container in the guest kernel: "pts: false" and the exec preset.

KubeArmor's "pts: false" narrows a Block rule to callers with a
controlling terminal and an Allow rule to callers without one. The exec
preset covers programs run from an interactive exec session (kubectl exec
-it): a process that entered the container through setns, or one it
created, with a terminal. Sessions without a terminal, as exec probes run,
are left alone. A terminal here is real: `script` gives runc a pty and
`runc exec -t` hands the container process its own as controlling terminal.
"""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from images.testguest.containers import RUNC, GuestContainers
from images.testguest.vm import GuestResult, TestGuest
from kadapter_api import agent_pb2
from tests.guest.support import PolicyApplier, alert_for, alert_stream, assert_denied, nginx_policy

pytestmark = pytest.mark.guest


def with_terminal(guest: TestGuest, container_id: str, args: list[str]) -> GuestResult:
    """Run a program through an interactive exec session: `runc exec -t` on a pseudo-terminal.

    The terminal echoes the end of script's empty input as "^@" and ends lines with CR LF; both are
    taken out of the output.
    """
    session = shlex.join([*RUNC, "exec", "-t", container_id, *args])
    result = guest.run(["script", "-qec", session, "/dev/null"])
    return dataclasses.replace(result, stdout=result.stdout.replace("^@", "").replace("\r", ""))


def test_pts_false_blocks_a_program_only_from_a_terminal(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """id runs from a session without a terminal; from an exec -t session, or under script inside, it is refused."""
    body = """\
  process:
    matchPaths:
    - path: /usr/bin/id
      pts: false
  action: Block
"""
    policies.apply(nginx_policy("no-id-on-terminals", body))
    nginx = pods["nginx-1"]
    assert containers.exec(nginx, ["/usr/bin/id", "-u"]).stdout.strip() == "0"
    on_terminal = with_terminal(guest, nginx, ["/usr/bin/id", "-u"])
    assert on_terminal.returncode != 0 and "0" not in on_terminal.stdout.split(), on_terminal
    assert_denied(containers.shell(nginx, "script -qec '/usr/bin/id -u' /dev/null"), "id on a pty made inside")


def test_pts_false_allows_only_callers_without_a_terminal(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """An Allow rule with pts: false admits raw ICMP sockets without a terminal only; TCP is off the allow list."""
    body = """\
  network:
    matchProtocols:
    - protocol: icmp
      pts: false
  action: Allow
"""
    policies.apply(nginx_policy("icmp-without-terminal", body))
    nginx = pods["nginx-1"]
    raw_icmp = "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('made')"
    tcp = "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM); print('made')"
    assert containers.exec(nginx, ["/usr/bin/python3", "-c", raw_icmp]).stdout.strip() == "made"
    assert "made" not in containers.exec(nginx, ["/usr/bin/python3", "-c", tcp]).stdout
    from_terminal = with_terminal(guest, nginx, ["/usr/bin/python3", "-c", raw_icmp])
    assert "PermissionError" in from_terminal.stdout and "made" not in from_terminal.stdout, from_terminal


def test_exec_preset_covers_interactive_sessions_only(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Blocked: anything run from an exec -t session; audited with its alert; sessions without a terminal run."""
    preset = """\
  presets:
  - name: exec
    action: {action}
  severity: 4
  message: interactive session
"""
    nginx = pods["nginx-1"]
    policies.apply(nginx_policy("no-shells", preset.format(action="Block")))
    assert containers.exec(nginx, ["/usr/bin/id", "-u"]).stdout.strip() == "0"
    for program in (["/usr/bin/id", "-u"], ["/bin/sh", "-c", "echo reached"]):
        blocked = with_terminal(guest, nginx, program)
        assert blocked.returncode != 0 and "reached" not in blocked.stdout, blocked
    policies.apply(nginx_policy("no-shells", preset.format(action="Audit")))
    with alert_stream(guest) as alerts:
        assert "0" in with_terminal(guest, nginx, ["/usr/bin/id", "-u"]).stdout.split()
        alert = alert_for(alerts, "/usr/bin/id")
    assert (alert.policy_name, alert.operation, alert.action, alert.result) == (
        "no-shells", "Process", agent_pb2.ACTION_AUDIT, "Passed"
    )  # fmt: skip
    assert (alert.severity, alert.message) == (4, "interactive session")
