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
from tests.guest.support import (
    NGINX,
    PolicyApplier,
    agent_status,
    alert_stream,
    assert_denied,
    nginx_policy,
    start_agent,
)

pytestmark = pytest.mark.guest

STRAY = PodContainer("default", "stray-1", "stray")


def restart_agent(guest: TestGuest, *options: str) -> None:
    """Replace the running agent with one started with these options (it takes over the containers)."""
    guest.run(["pkill", "-9", "-f", "[k]adapter-agent"])
    start_agent(guest, *options)


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


BLOCK_ID = "  process:\n    matchPaths:\n    - path: /usr/bin/id\n  action: Block\n"


def like_kata_agent(guest: TestGuest) -> GuestContainers:
    """Drive containers whose hook's failure is ignored, as kata-agent ignores it (runc alone would stop them)."""
    script = str(guest.repo / "images" / "testguest" / "hook-like-kata-agent.sh")
    return GuestContainers(guest, hooks={"prestart": script, "poststop": script})


def test_a_fail_closed_agent_lets_no_unregistered_container_run_even_while_it_is_down(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """With --fail-closed a container never registered cannot start; registered ones run; status says so.

    Then, with the agent killed, a new nginx container whose hook finds no agent cannot run its init either.
    The agent back reports that refusal (kept in the pinned ring buffer), and the container started again,
    as the kubelet restarts it, is registered and runs under its pod's policy.
    """
    policies.apply(nginx_policy("late-no-id", BLOCK_ID))
    restart_agent(guest, "--fail-closed")
    try:
        with pytest.raises(RuntimeError, match=r"ermission denied|is not running"):  # its init's exec refused
            containers.start("stray-closed", STRAY, registered=False)
        assert containers.exec(pods["nginx-1"], ["/bin/cat", "/etc/hostname"]).returncode == 0
        status = agent_status(guest)
        assert status["fail_closed"] is True
        # /bin is a link to /usr/bin in the guest: the kernel names the file itself.
        assert any(u.get("refused") and u["executable"] == "/usr/bin/sleep" for u in status["unregistered"]), status

        assert guest.run(["pkill", "-9", "-f", "[k]adapter-agent"]).returncode == 0
        with pytest.raises(RuntimeError, match=r"ermission denied|is not running"):
            like_kata_agent(guest).start("nginx-late", NGINX)
        guest.run(["sh", "-c", "runc --root /run/runc delete -f nginx-late; umount /run/bundles/nginx-late/rootfs"])
        assert_denied(containers.exec(pods["nginx-1"], ["/usr/bin/id"]), "id in the registered container")
        restart_agent(guest, "--fail-closed")
        status = agent_status(guest)  # a new agent: only what the kernel reported while none ran
        assert any(u.get("refused") and u["executable"] == "/usr/bin/sleep" for u in status["unregistered"]), status
        like_kata_agent(guest).start("nginx-late", NGINX)
        assert_denied(containers.exec("nginx-late", ["/usr/bin/id"]), "id in the restarted container")
        assert containers.exec("nginx-late", ["/bin/cat", "/etc/hostname"]).returncode == 0
        (late,) = [c for c in agent_status(guest)["containers"] if c["id"] == "nginx-late"]
        assert late["process_rules"] >= 1, late
    finally:
        guest.run(["sh", "-c", "runc --root /run/runc delete -f stray-closed; umount /run/bundles/stray-closed/rootfs"])
        containers.delete("nginx-late")
        restart_agent(guest)


def test_a_container_started_while_the_agent_is_down_is_enforced_once_it_is_back(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Fail-open, agent down: a new nginx container starts and runs unprotected, its hook's failure ignored.

    The hook left its registration pending; the next agent registers the container from it at start, with
    no restart of the container, and the pod's policy holds in it.
    """
    policies.apply(nginx_policy("down-no-id", BLOCK_ID))
    try:
        assert guest.run(["pkill", "-9", "-f", "[k]adapter-agent"]).returncode == 0
        like_kata_agent(guest).start("nginx-down", NGINX)
        assert containers.exec("nginx-down", ["/usr/bin/id", "-u"]).stdout.strip() == "0"  # unprotected meanwhile
        restart_agent(guest)
        assert_denied(containers.exec("nginx-down", ["/usr/bin/id"]), "id once the agent is back")
        status = agent_status(guest)
        (down,) = [c for c in status["containers"] if c["id"] == "nginx-down"]
        (pod,) = [p for p in status["pods"] if p["pod"]["name"] == "nginx-1"]
        assert down["process_rules"] >= 1 and down["generation"] == pod["generation"], (down, pod)
    finally:
        containers.delete("nginx-down")
