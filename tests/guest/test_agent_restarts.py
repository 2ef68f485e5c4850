"""Enforcement outlives the agent: kill -9 it while a container keeps trying a blocked program.

The agent pins its programs, links and maps in the guest's bpffs, so they
stay attached with it dead; the next agent reuses the maps, takes over the
running containers from its saved state and rewrites their rules, without
a moment in which a registered container is unenforced.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.credentials import ADAPTER_DIR
from tests.guest.support import PolicyApplier, assert_denied, kadapter, nginx_policy

pytestmark = pytest.mark.guest

BLOCK = """\
  process:
    matchPaths:
    - path: {path}
  action: Block
"""
# Inside the container: try id every few milliseconds for `seconds`, then record tries and successes.
TRY_ID = textwrap.dedent("""\
    import subprocess, sys, time
    tries = ran = 0
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        tries += 1
        try:
            ran += subprocess.run(["/usr/bin/id", "-u"], capture_output=True).returncode == 0
        except PermissionError:
            pass
        time.sleep(0.005)
    open("/tmp/restart-loop", "w").write(f"{tries} {ran}")
""")


def restart_agent(guest: TestGuest) -> None:
    """Start a new agent the way the guest started the first one."""
    started = guest.run([str(guest.repo / "images/testguest/start-agent.sh"), str(guest.repo)])
    assert started.returncode == 0, started


def test_a_killed_agent_leaves_enforcement_in_place_and_the_next_takes_over(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Zero runs of a blocked id across kill -9 and restart; the new agent reports and re-enforces the container."""
    policies.apply(nginx_policy("restart-no-id", BLOCK.format(path="/usr/bin/id")))
    nginx = pods["nginx-1"]
    containers.exec(nginx, ["/usr/bin/python3", "-c", "open('/tmp/try-id.py', 'w').write(" + repr(TRY_ID) + ")"])
    loop = "rm -f /tmp/restart-loop; nohup /usr/bin/python3 /tmp/try-id.py 45 >/dev/null 2>&1 &"
    assert containers.shell(nginx, loop).returncode == 0
    guest.run(["sleep", "3"])
    assert guest.run(["pkill", "-9", "-f", "[k]adapter-agent"]).returncode == 0
    guest.run(["sleep", "5"])  # no agent at all for a while
    assert_denied(containers.exec(nginx, ["/usr/bin/id", "-u"]), "id with the agent dead")
    restart_agent(guest)
    for _ in range(120):
        result = containers.shell(nginx, "cat /tmp/restart-loop 2>/dev/null")
        if result.stdout:
            break
        guest.run(["sleep", "1"])
    tries, ran = map(int, result.stdout.split())
    assert (ran, tries > 100) == (0, True), result

    status = kadapter("status", "--agent", f"tcp://{guest.agent_target}", "--tls-dir", str(ADAPTER_DIR))
    assert status.returncode == 0, status.stderr
    reported = json.loads(status.stdout)
    (container,) = [c for c in reported["containers"] if c["id"] == nginx]
    assert container["process_rules"] >= 1
    (pod,) = [p for p in reported["pods"] if p["pod"]["name"] == "nginx-1"]
    assert pod["policies"] == ["restart-no-id"]
    # Every container still running is reported, each pod's workload containers on their pod's generation.
    running = set(containers.running())
    assert running <= {c["id"] for c in reported["containers"]}, reported
    generations = {(p["pod"]["namespace"], p["pod"]["name"]): int(p.get("generation", 0)) for p in reported["pods"]}
    for reported_container in reported["containers"]:
        if reported_container["id"] in running and not reported_container.get("sandbox"):
            own = (reported_container["pod"]["namespace"], reported_container["pod"]["name"])
            assert int(reported_container.get("generation", 0)) == generations[own], reported_container

    # The new agent changes what the taken-over container enforces, and the old rules are gone.
    policies.apply(nginx_policy("restart-no-whoami", BLOCK.format(path="/usr/bin/whoami")))
    assert containers.exec(nginx, ["/usr/bin/id", "-u"]).stdout.strip() == "0"
    assert_denied(containers.exec(nginx, ["/usr/bin/whoami"]), "whoami under the new agent's policy")
