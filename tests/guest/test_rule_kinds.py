"""Every rule kind under every action and posture, in a real container in the guest kernel.

One table row per kind: a policy section naming one operation (the
target), a command doing it, and a command doing another operation of the
same kind that no rule names. Each row runs as Block, Audit, and Allow
under both postures, and the alert (or its absence) is checked field by
field. Commands print "ok" only when the operation succeeded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import GuestResult, TestGuest
from kadapter_api import agent_pb2
from tests.guest.support import NGINX, PolicyApplier, alert_for, alert_stream, nginx_policy, no_alert_for

pytestmark = pytest.mark.guest


@dataclass(frozen=True)
class RuleKind:
    """One row of the table."""

    name: str
    section: str  # spec.<section> naming the target, with {action}
    keep_shell: str  # Allow entries appended in allow-list mode so the test's shell keeps working
    target: str
    target_resource: str
    other: str
    other_resource: str
    operation: str
    data: str
    refusal: str  # what the denied program prints

    def policy(self, action: str, *, name: str) -> str:
        """Return a KubeArmorPolicy for the nginx pod with this kind's target rule under `action`."""
        section = self.section.format(action=action)
        if action == "Allow":
            section += self.keep_shell
        verdict = f'  severity: 6\n  tags: ["kinds", "{self.name}"]\n  message: "{self.name} under {action}"\n'
        return nginx_policy(name, verdict + section)


PYTHON_SOCKET = "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.{kind}); print(\"ok\")'"
KINDS = [
    RuleKind(
        name="process",
        section="  process:\n    matchPaths:\n    - path: /usr/bin/id\n      action: {action}\n",
        keep_shell="    - path: /usr/bin/dash\n      action: Allow\n",
        target="/usr/bin/id -u && echo ok",
        target_resource="/usr/bin/id",
        other="/usr/bin/whoami && echo ok",
        other_resource="/usr/bin/whoami",
        operation="Process",
        data="exec",
        refusal="Permission denied",
    ),
    RuleKind(
        name="file",
        section="  file:\n    matchPaths:\n    - path: /etc/hostname\n      action: {action}\n",
        keep_shell="    matchDirectories:\n    - dir: /usr/\n      recursive: true\n      action: Allow\n",
        target="cat /etc/hostname && echo ok",
        target_resource="/etc/hostname",
        other="cat /etc/debian_version && echo ok",
        other_resource="/etc/debian_version",
        operation="File",
        data="open for read",
        refusal="Permission denied",
    ),
    RuleKind(
        name="network",
        section="  network:\n    matchProtocols:\n    - protocol: udp\n      action: {action}\n",
        keep_shell="",
        target=PYTHON_SOCKET.format(kind="SOCK_DGRAM"),
        target_resource="domain=AF_INET type=SOCK_DGRAM protocol=0",
        other=PYTHON_SOCKET.format(kind="SOCK_STREAM"),
        other_resource="domain=AF_INET type=SOCK_STREAM protocol=0",
        operation="Network",
        data="socket",
        refusal="Permission denied",
    ),
    RuleKind(
        name="capabilities",
        section="  capabilities:\n    matchCapabilities:\n    - capability: chown\n      action: {action}\n",
        keep_shell="",
        target="rm -f /tmp/kinds-chown && touch /tmp/kinds-chown && chown 1 /tmp/kinds-chown && echo ok",
        target_resource="CAP_CHOWN",
        other="rm -f /tmp/kinds-null && mknod /tmp/kinds-null c 1 3 && echo ok",
        other_resource="CAP_MKNOD",
        operation="Capabilities",
        data="capable",
        refusal="Operation not permitted",
    ),
]
KIND_PARAMS = [pytest.param(kind, id=kind.name) for kind in KINDS]


def assert_succeeded(result: GuestResult, what: str) -> None:
    """Check that the operation went through."""
    assert "ok" in result.stdout.split(), f"{what} was refused: {result}"


def assert_refused(result: GuestResult, kind: RuleKind, what: str) -> None:
    """Check that the kernel refused the operation, with the error the kind's hook returns."""
    assert "ok" not in result.stdout.split(), f"{what} went through: {result}"
    assert kind.refusal in result.stderr, f"{what}: {result}"


def check_alert(
    alert: agent_pb2.Alert, kind: RuleKind, resource: str, *, action: str, policy: str, blocked: bool
) -> None:
    """Check an alert field by field against what the kernel did and the policy that decided."""
    assert (alert.namespace_name, alert.pod_name, alert.container_name) == ("default", "nginx-1", "nginx")
    assert (alert.operation, alert.resource, alert.enforcer) == (kind.operation, resource, "BPFLSM")
    assert alert.data.startswith(kind.data), alert
    assert alert.action == {"Block": agent_pb2.ACTION_BLOCK, "Audit": agent_pb2.ACTION_AUDIT}[action]
    assert alert.result == (kind.refusal if blocked else "Passed")
    assert alert.policy_name == policy
    if policy != "DefaultPosture":
        assert (alert.severity, list(alert.tags), alert.message) == (
            6,
            ["kinds", kind.name],
            f"{kind.name} under {action}",
        )
    assert alert.process_name.startswith("/usr/bin/") and alert.pid > 0


@pytest.fixture(scope="module")
def kinds_container(containers: GuestContainers) -> str:
    """Start a container of the nginx pod for this module, so its files never meet other modules' tests."""
    containers.start("nginx-kinds", NGINX)
    return "nginx-kinds"


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_block_refuses_the_target_only(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, kinds_container: str, kind: RuleKind
) -> None:
    """Block: the named operation is refused and reported; another of the same kind goes through."""
    policies.apply(kind.policy("Block", name=f"block-{kind.name}"))
    with alert_stream(guest) as alerts:
        assert_refused(containers.shell(kinds_container, kind.target), kind, kind.target)
        alert = alert_for(alerts, kind.target_resource)
        assert_succeeded(containers.shell(kinds_container, kind.other), kind.other)
        no_alert_for(alerts, kind.other_resource)
    check_alert(alert, kind, kind.target_resource, action="Block", policy=f"block-{kind.name}", blocked=True)


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_audit_reports_and_lets_through(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, kinds_container: str, kind: RuleKind
) -> None:
    """Audit: the named operation goes through and is reported, decided in the kernel."""
    policies.apply(kind.policy("Audit", name=f"audit-{kind.name}"))
    with alert_stream(guest) as alerts:
        assert_succeeded(containers.shell(kinds_container, kind.target), kind.target)
        alert = alert_for(alerts, kind.target_resource)
        assert_succeeded(containers.shell(kinds_container, kind.other), kind.other)
        no_alert_for(alerts, kind.other_resource)
    check_alert(alert, kind, kind.target_resource, action="Audit", policy=f"audit-{kind.name}", blocked=False)


@pytest.mark.parametrize("posture", ["block", "audit"])
@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_allow_turns_the_kind_into_an_allow_list(
    policies: PolicyApplier,
    guest: TestGuest,
    containers: GuestContainers,
    kinds_container: str,
    kind: RuleKind,
    posture: str,
) -> None:
    """Allow: the named operation goes through unreported; any other of the kind gets the posture."""
    policies.apply(kind.policy("Allow", name=f"allow-{kind.name}"), default_posture=posture)
    with alert_stream(guest) as alerts:
        assert_succeeded(containers.shell(kinds_container, kind.target), kind.target)
        other = containers.shell(kinds_container, kind.other)
        alert = alert_for(alerts, kind.other_resource)
        no_alert_for(alerts, kind.target_resource, wait=1)
    if posture == "block":
        assert_refused(other, kind, kind.other)
    else:
        assert_succeeded(other, kind.other)
    action = "Block" if posture == "block" else "Audit"
    check_alert(alert, kind, kind.other_resource, action=action, policy="DefaultPosture", blocked=posture == "block")


BLOCK_LIST = nginx_policy(
    "block-list",
    """\
  process:
    matchPaths:
    - path: /usr/bin/whoami
  file:
    matchPaths:
    - path: /etc/debian_version
  action: Block
""",
)
ALLOW_LIST = nginx_policy(
    "allow-list",
    """\
  process:
    matchPaths:
    - path: /usr/bin/dash
    - path: /usr/bin/id
    - path: /usr/bin/cat
    - path: /usr/bin/date
  file:
    matchPaths:
    - path: /etc/hostname
    - path: /dev/null
    matchDirectories:
    - dir: /usr/
      recursive: true
    - dir: /tmp/
      recursive: true
  action: Allow
""",
)
# For about 40 s: id and reading /etc/hostname must always work; whoami and /etc/debian_version never.
SWITCH_LOOP = """\
end=$(( $(date +%s) + 40 ))
while [ "$(date +%s)" -lt "$end" ]; do
  /usr/bin/id -u >/dev/null 2>&1 && echo id-ok || echo id-REFUSED
  /usr/bin/whoami >/dev/null 2>&1 && echo whoami-RAN
  cat /etc/hostname >/dev/null 2>&1 && echo hostname-ok || echo hostname-REFUSED
  cat /etc/debian_version >/dev/null 2>&1 && echo debian-version-READ
done >/tmp/switch.log 2>&1
echo done
"""


def test_switching_between_block_list_and_allow_list_has_no_gap(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, kinds_container: str
) -> None:
    """Allow rules arrive and go again and again under a running loop: nothing allowed is refused, nothing else runs.

    The block-list policy blocks whoami and /etc/debian_version; the allow-list one lists what the loop needs and
    leaves both out. Each switch is one map update per container, so no exec or open falls between the two.
    """
    policies.apply(BLOCK_LIST)
    loop = threading.Thread(target=lambda: finished.append(containers.shell(kinds_container, SWITCH_LOOP)))
    finished: list[GuestResult] = []
    loop.start()
    switches = 0
    while loop.is_alive():
        policies.apply(ALLOW_LIST if switches % 2 == 0 else BLOCK_LIST)
        switches += 1
    loop.join()
    assert "done" in finished[0].stdout, finished
    log = containers.shell(kinds_container, "cat /tmp/switch.log").stdout.split()
    assert switches >= 4, f"only {switches} policy switches during the loop"
    assert log.count("id-ok") >= 20 and log.count("hostname-ok") >= 20, log
    assert {"id-REFUSED", "hostname-REFUSED", "whoami-RAN", "debian-version-READ"}.isdisjoint(log), log
