"""Kadapter's Kata guest image (images/guest/build.sh), booted as a Kata VM boots it.

The disk is the guest's root on virtio-blk (no 9p share of the host), systemd starts
kata-containers.target, the agent comes up from its unit, and containers get the hook
kata-agent would find under guest_hook_path. The image is the test variant: the
production one plus runc, the command service and the test credentials.
"""

from __future__ import annotations

import pytest

from images.testguest import demo
from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.guest.support import GUEST_IMAGE, Boot, assert_denied

HOOK_PATH = "/usr/share/oci/hooks"  # guest_hook_path in deploy/kata/50-kadapter.toml

pytestmark = pytest.mark.parametrize("guest", [Boot(root_disk=GUEST_IMAGE)], indirect=True, ids=["guest-image"])


def test_the_image_is_the_root_and_the_agent_starts_from_its_unit(guest: TestGuest) -> None:
    """Root is the disk's partition, nothing comes from the host, and systemd runs the agent for the target."""
    assert guest.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "/"]).stdout.split() == ["/dev/vda1", "ext4"]
    assert "9p" not in guest.run(["cat", "/proc/mounts"]).stdout
    assert guest.run(["systemctl", "is-active", "kata-containers.target"]).stdout.strip() == "active"
    assert guest.run(["systemctl", "is-active", "kadapter-agent.service"]).stdout.strip() == "active"
    wanted_by = guest.run(["systemctl", "show", "--property=WantedBy", "kadapter-agent.service"]).stdout
    assert "kata-containers.target" in wanted_by


@pytest.fixture(scope="module")
def walking_skeleton(guest: TestGuest) -> dict[tuple[str, str], str]:
    """Run the demo's scenario with the hooks kata-agent would find under guest_hook_path; return what ran."""
    hooks = {}
    for kind in ("prestart", "poststop"):  # kata-agent runs the regular executable files of each directory
        listed = guest.run(["find", f"{HOOK_PATH}/{kind}", "-type", "f", "-perm", "-u+x"]).stdout.split()
        assert len(listed) == 1, f"{HOOK_PATH}/{kind}: {listed}"
        hooks[kind] = listed[0]
    return demo.scenario(guest, GuestContainers(guest, hooks=hooks))


def test_the_walking_skeleton_scenario_passes(walking_skeleton: dict[tuple[str, str], str]) -> None:
    """policies/ blocks apt in the pod it selects, escapes included, and nowhere else; the alert reaches the host."""
    assert walking_skeleton == demo.EXPECTED


def test_an_agent_killed_is_restarted_by_systemd_and_keeps_enforcing(
    guest: TestGuest, walking_skeleton: dict[tuple[str, str], str]
) -> None:
    """The unit restarts the agent; the pinned programs kept the policy in force meanwhile."""
    before = guest.run(["systemctl", "show", "--property=MainPID", "--value", "kadapter-agent.service"]).stdout
    guest.run(["systemctl", "kill", "--signal=SIGKILL", "kadapter-agent.service"])
    apt = ["/usr/bin/apt", "--version"]
    assert_denied(GuestContainers(guest).exec("nginx-1-ctr", apt), "apt while the agent is down")
    restarted = guest.run(
        ["sh", "-c", "for i in $(seq 100); do systemctl -q is-active kadapter-agent && exit 0; sleep 0.2; done; exit 1"]
    )
    assert restarted.returncode == 0
    after = guest.run(["systemctl", "show", "--property=MainPID", "--value", "kadapter-agent.service"]).stdout
    assert after.strip() not in ("0", before.strip())
    assert_denied(GuestContainers(guest).exec("nginx-1-ctr", apt), "apt under the restarted agent")
