"""syscalls rules, audited from the guest kernel as a system call returns.

KubeArmor audits system calls and never blocks them; so does Kadapter. A
matchPaths rule names the file the call's path argument names, joined to
the working directory or the directory fd it is relative to; a fromSource
directory covers the executables in it (at any depth when recursive).
"""

from __future__ import annotations

import queue
import time

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from kadapter_api import agent_pb2
from tests.guest.support import PolicyApplier, alert_for, alert_stream, nginx_policy, no_alert_for

pytestmark = pytest.mark.guest

UNLINK_IN_HOME = """\
  severity: 6
  syscalls:
    matchPaths:
    - syscall: [unlink, unlinkat]
      path: /home/
      recursive: true
    message: a file under /home was removed
  action: Audit
"""


def syscall_alerts(alerts: queue.Queue[agent_pb2.Alert], *, until: str, timeout: float = 60) -> list[agent_pb2.Alert]:
    """Return every syscall alert up to the first from the executable `until`, and those of 3 s more."""
    seen: list[agent_pb2.Alert] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            alert = alerts.get(timeout=left)
        except queue.Empty:
            break
        if alert.operation != "Syscall":
            continue
        seen.append(alert)
        if alert.process_name == until and deadline - time.monotonic() > 3:
            deadline = time.monotonic() + 3
    assert any(alert.process_name == until for alert in seen), f"no syscall alert from {until} within {timeout} s"
    return seen


def test_a_path_rule_audits_the_file_a_call_names_however_it_is_named(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """unlink by a relative name and unlinkat through a directory fd are both audited under /home; the call runs."""
    policies.apply(nginx_policy("home-unlinks", UNLINK_IN_HOME))
    nginx = pods["nginx-1"]
    containers.shell(nginx, "mkdir -p /home/u/d /tmp/t && touch /home/u/d/f /home/u/g /tmp/t/f")
    with alert_stream(guest) as alerts:
        assert containers.shell(nginx, "cd /home/u && unlink d/f && test ! -e d/f").returncode == 0
        alert = alert_for(alerts, "/home/u/d/f")
        remove_by_fd = "import os; os.unlink('g', dir_fd=os.open('/home/u', os.O_RDONLY))"
        assert containers.exec(nginx, ["/usr/bin/python3", "-c", remove_by_fd]).returncode == 0
        by_fd = alert_for(alerts, "/home/u/g")
        assert containers.shell(nginx, "unlink /home/u/missing").returncode != 0
        missing = alert_for(alerts, "/home/u/missing")
        assert containers.shell(nginx, "unlink /tmp/t/f").returncode == 0
        no_alert_for(alerts, "/tmp/t/f")
    assert (alert.operation, alert.data, alert.action, alert.result) == (
        "Syscall", "syscall=SYS_UNLINK", agent_pb2.ACTION_AUDIT, "Passed"
    )  # fmt: skip
    assert (alert.policy_name, alert.severity, alert.message) == ("home-unlinks", 6, "a file under /home was removed")
    assert (alert.process_name, alert.pod_name, alert.container_name) == ("/usr/bin/unlink", "nginx-1", "nginx")
    assert (by_fd.data, by_fd.process_name) == ("syscall=SYS_UNLINKAT", "/usr/bin/python3.11")
    assert missing.result == "No such file or directory"


def test_a_block_action_still_only_audits(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """As in KubeArmor, a syscalls rule under a Block policy reports and lets the call run."""
    policies.apply(nginx_policy("home-unlinks-block", UNLINK_IN_HOME.replace("action: Audit", "action: Block")))
    nginx = pods["nginx-1"]
    with alert_stream(guest) as alerts:
        assert containers.shell(nginx, "mkdir -p /home/b && touch /home/b/f && unlink /home/b/f").returncode == 0
        assert alert_for(alerts, "/home/b/f").action == agent_pb2.ACTION_AUDIT


def test_match_syscalls_from_source_directories(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Calls by executables under /usr/ (recursive) are audited, by a copy elsewhere not; /usr/ alone covers neither."""
    body = """\
  syscalls:
    matchSyscalls:
    - syscall: [unlink]
      fromSource:
      - dir: /usr
        recursive: true
    - syscall: [mkdir]
      fromSource:
      - dir: /usr/
  action: Audit
"""
    policies.apply(nginx_policy("usr-unlinks", body))
    nginx = pods["nginx-1"]
    containers.shell(
        nginx, "mkdir -p /opt/bin && cp /usr/bin/unlink /opt/bin/unlink && touch /tmp/syscalls-a /tmp/syscalls-b"
    )
    with alert_stream(guest) as alerts:
        assert (
            containers.shell(
                nginx, "/opt/bin/unlink /tmp/syscalls-b && mkdir /tmp/syscalls-c && unlink /tmp/syscalls-a"
            ).returncode
            == 0
        )
        seen = syscall_alerts(alerts, until="/usr/bin/unlink")
    assert [(alert.process_name, alert.data, alert.resource) for alert in seen] == [
        ("/usr/bin/unlink", "syscall=SYS_UNLINK", "")
    ]
    assert seen[0].policy_name == "usr-unlinks"
