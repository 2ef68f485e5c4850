"""Containers whose hook never registered them: reported always, refused everything when the agent fails closed.

A container starts unregistered when its prestart hook fails, times out or
finds no agent (kata-agent starts it anyway). The kernel side knows a task
in a container's pid namespace that no registration tagged. By default it
is reported (status, an alert) and runs; with `kadapter-agent
--fail-closed` none of its execs run, so it cannot start at all.
"""

from __future__ import annotations

import json

import pytest

from images.testguest.containers import GuestContainers, PodContainer
from images.testguest.vm import TestGuest
from kadapter_api import agent_pb2
from tests.credentials import ADAPTER_DIR
from tests.guest.support import alert_stream, kadapter

pytestmark = pytest.mark.guest

STRAY = PodContainer("default", "stray-1", "stray")


def restart_agent(guest: TestGuest, *options: str) -> None:
    """Replace the running agent with one started with these options (it takes over the containers)."""
    guest.run(["pkill", "-9", "-f", "[k]adapter-agent"])
    started = guest.run([str(guest.repo / "images/testguest/start-agent.sh"), str(guest.repo), *options])
    assert started.returncode == 0, started


def agent_status(guest: TestGuest) -> dict:
    """Return the agent's status as JSON."""
    done = kadapter("status", "--agent", f"tcp://{guest.agent_target}", "--tls-dir", str(ADAPTER_DIR))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def init_namespaces(guest: TestGuest, container_id: str) -> tuple[int, int]:
    """Return the (pid ns, mnt ns) ids of a running container's init."""
    pid = json.loads(guest.run(["runc", "--root", "/run/runc", "state", container_id]).stdout)["pid"]
    found = guest.run(["stat", "-L", "-c", "%i", f"/proc/{pid}/ns/pid", f"/proc/{pid}/ns/mnt"]).stdout.split()
    return int(found[0]), int(found[1])


def test_an_unregistered_container_runs_and_is_reported_by_default(
    guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Fail-open (the default): it starts and runs id, and status and an alert name its namespaces."""
    with alert_stream(guest) as alerts:
        containers.start("stray-open", STRAY, registered=False)
        try:
            assert containers.exec("stray-open", ["/usr/bin/id", "-u"]).stdout.strip() == "0"
            pid_ns, mnt_ns = init_namespaces(guest, "stray-open")
            alert = alerts.get(timeout=60)
            while alert.policy_name != "UnregisteredContainer":
                alert = alerts.get(timeout=60)
            status = agent_status(guest)
        finally:
            containers.delete("stray-open")
    assert (alert.action, alert.result) == (agent_pb2.ACTION_AUDIT, "Passed")
    assert f"pid ns {pid_ns}, mnt ns {mnt_ns}" in alert.data
    seen = {(u["pid_ns"], u["mnt_ns"]): u for u in status["unregistered"]}
    assert (pid_ns, mnt_ns) in seen and not seen[pid_ns, mnt_ns].get("refused", False)
    assert not status.get("fail_closed", False)


def test_a_fail_closed_agent_lets_no_unregistered_container_run(
    guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """With --fail-closed the stray container cannot even start; registered ones run as before; status says so."""
    restart_agent(guest, "--fail-closed")
    try:
        with pytest.raises(RuntimeError, match=r"ermission denied|is not running"):  # its init's exec refused
            containers.start("stray-closed", STRAY, registered=False)
        assert containers.exec(pods["nginx-1"], ["/usr/bin/id", "-u"]).stdout.strip() == "0"
        status = agent_status(guest)
    finally:
        guest.run(["sh", "-c", "runc --root /run/runc delete -f stray-closed; umount /run/bundles/stray-closed/rootfs"])
        restart_agent(guest)
    assert status["fail_closed"] is True
    # /bin is a link to /usr/bin in the guest: the kernel names the file itself.
    assert any(u.get("refused") and u["executable"] == "/usr/bin/sleep" for u in status["unregistered"]), status
