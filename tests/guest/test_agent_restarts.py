"""Enforcement outlives the agent: upgrade its BPF object, kill -9 it, while a container keeps trying a blocked program.

The agent pins its programs, links and maps in the guest's bpffs, so they
stay attached with it stopped or dead; the next agent reuses the maps,
takes over the running containers from its saved state and rewrites their
rules, attaching its own programs (from whichever build of the object it
was given) before it lets the previous ones go: never a moment in which a
registered container is unenforced. An agent given an object the kernel
refuses leaves the previous programs in force and says it cannot enforce.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.guest.support import PolicyApplier, agent_status, assert_denied, nginx_policy, start_agent

# The first program libbpf loads from the object (its sections' order), and what the verifier says of it made unsafe.
FIRST_PROGRAM = b"lsm/task_alloc"
UNSAFE_READ = bytes.fromhex("7920000000000000")  # r0 = *(u64 *)(r2 + 0), r2 never set
VERIFIER_REFUSAL = "R2 !read_ok"

pytestmark = pytest.mark.guest

BLOCK = """\
  process:
    matchPaths:
    - path: {path}
  action: Block
"""
# Inside the container: try id every few milliseconds until /tmp/stop-trying appears, then record tries and successes.
TRY_ID = textwrap.dedent("""\
    import os, subprocess, time
    tries = ran = 0
    while not os.path.exists("/tmp/stop-trying"):
        tries += 1
        try:
            ran += subprocess.run(["/usr/bin/id", "-u"], capture_output=True).returncode == 0
        except PermissionError:
            pass
        time.sleep(0.005)
    open("/tmp/restart-loop", "w").write(f"{tries} {ran}")
""")


def stop_agent(guest: TestGuest, signal: str) -> None:
    """Send the agent the signal (TERM as systemd stops it, KILL as a crash) and wait until it is gone."""
    assert guest.run(["pkill", f"-{signal}", "-f", "[k]adapter-agent"]).returncode == 0
    gone = guest.run(
        ["sh", "-c", "for i in $(seq 150); do pgrep -f '[k]adapter-agent' || exit 0; sleep 0.2; done; exit 1"]
    )
    assert gone.returncode == 0, gone


def start_trying_id(containers: GuestContainers, container: str) -> None:
    """Start TRY_ID in the container, in the background."""
    containers.exec(container, ["/usr/bin/python3", "-c", "open('/tmp/try-id.py', 'w').write(" + repr(TRY_ID) + ")"])
    loop = "rm -f /tmp/restart-loop /tmp/stop-trying; nohup /usr/bin/python3 /tmp/try-id.py >/dev/null 2>&1 &"
    assert containers.shell(container, loop).returncode == 0


def tries_of_id(guest: TestGuest, containers: GuestContainers, container: str) -> tuple[int, int]:
    """Stop TRY_ID; return how often it tried id and how often id ran."""
    assert containers.shell(container, "touch /tmp/stop-trying").returncode == 0
    for _ in range(60):
        result = containers.shell(container, "cat /tmp/restart-loop 2>/dev/null")
        if result.stdout:
            tries, ran = map(int, result.stdout.split())
            return tries, ran
        guest.run(["sleep", "1"])
    raise AssertionError(f"the loop in {container} never finished")


def attached_programs(guest: TestGuest) -> dict[int, str]:
    """Return the id and name of every program an attached BPF link holds, from the kernel (bpftool)."""
    links = guest.run(["bpftool", "--json", "link", "show"])
    programs = guest.run(["bpftool", "--json", "prog", "show"])
    assert links.returncode == programs.returncode == 0, (links, programs)
    names = {program["id"]: program.get("name", "") for program in json.loads(programs.stdout)}
    return {link["prog_id"]: names[link["prog_id"]] for link in json.loads(links.stdout)}


def swap_agent(guest: TestGuest, containers: GuestContainers, container: str, signal: str, bpf_object: Path) -> None:
    """Stop the agent with the signal and start one on bpf_object while the container tries id: it never runs.

    Afterwards the kernel holds the new agent's programs only: the same ones, each attached once, none of the
    previous ones left (they are freed), and the agent reports the object it loaded.
    """
    before = attached_programs(guest)
    start_trying_id(containers, container)
    guest.run(["sleep", "3"])
    stop_agent(guest, signal)
    guest.run(["sleep", "3"])  # no agent at all for a while
    assert_denied(containers.exec(container, ["/usr/bin/id", "-u"]), f"id with the agent stopped by SIG{signal}")
    start_agent(guest, "--bpf-object", str(bpf_object))
    tries, ran = tries_of_id(guest, containers, container)
    assert (ran, tries > 100) == (0, True)

    after = attached_programs(guest)
    assert sorted(after.values()) == sorted(before.values())
    assert not after.keys() & before.keys()
    left = guest.run(["bpftool", "--json", "prog", "show"])
    assert not {program["id"] for program in json.loads(left.stdout)} & before.keys()
    assert agent_status(guest)["bpf_object_sha256"] == hashlib.sha256(bpf_object.read_bytes()).hexdigest()


def build_variant_object(repo: Path, output: Path) -> Path:
    """Build the BPF object as another toolchain setting would (-mcpu=v2: other instructions, same maps)."""
    built = subprocess.run(
        ["make", "-s", "-C", str(repo / "bpf/lsm"), f"OUTPUT={output}", "EXTRA_CFLAGS=-mcpu=v2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return output / "kadapter.bpf.o"


def build_refused_object(shipped: Path, output: Path) -> Path:
    """Copy the object with its first program opening on a read through an unset register.

    The kernel's verifier refuses it as it refuses a build past its limits (a -mcpu=v3 build: E2BIG), only at
    once instead of after minutes of emulated verification; libbpf finds nothing wrong with it first.
    """
    elf = bytearray(shipped.read_bytes())
    (section_headers,) = struct.unpack_from("<Q", elf, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int]:
        name, _type, _flags, _address, offset = struct.unpack_from("<IIQQQ", elf, section_headers + index * entry_size)
        return name, offset

    names = section(names_index)[1]
    for index in range(count):
        name, offset = section(index)
        if elf[names + name : names + name + len(FIRST_PROGRAM) + 1] == FIRST_PROGRAM + b"\0":
            elf[offset : offset + len(UNSAFE_READ)] = UNSAFE_READ
            refused = output / "refused.bpf.o"
            refused.write_bytes(elf)
            return refused
    raise AssertionError(f"no section {FIRST_PROGRAM.decode()} in {shipped}")


def refuse_agent(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, container: str, refused: Path
) -> None:
    """Stop the agent and start one on an object the kernel refuses while the container tries id: it never runs.

    The previous programs stay attached, unchanged; the agent serves, says why it cannot enforce, and refuses
    policies, so the host shows the pod unprotected rather than enforced by rules it could not write.
    """
    before = attached_programs(guest)
    start_trying_id(containers, container)
    guest.run(["sleep", "3"])
    stop_agent(guest, "TERM")
    start_agent(guest, "--bpf-object", str(refused))
    assert VERIFIER_REFUSAL in guest.run(["cat", "/run/kadapter/agent.log"]).stdout
    (problem,) = agent_status(guest)["unprotected_because"]
    assert problem.startswith("the enforcer did not load") and "previous agent's programs stay attached" in problem
    no_whoami = nginx_policy("restart-no-whoami", BLOCK.format(path="/usr/bin/whoami"))
    applied = policies.apply(no_whoami, expect_success=False)
    assert applied.returncode != 0 and "cannot enforce" in applied.stdout + applied.stderr, applied
    assert attached_programs(guest) == before
    assert containers.exec(container, ["/usr/bin/whoami"]).stdout.strip() == "root"  # the refused set is not in force
    tries, ran = tries_of_id(guest, containers, container)
    assert (ran, tries > 100) == (0, True)


def test_upgraded_refused_then_killed_the_agent_never_leaves_a_container_unenforced(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str], tmp_path: Path
) -> None:
    """Upgrade to another build (SIGTERM), to one the kernel refuses, then kill -9 and restart on the shipped one.

    Zero runs of a blocked id throughout all three; the last agent reports and re-enforces every running container.
    """
    shipped = guest.repo / "bpf/lsm/.output/kadapter.bpf.o"
    variant = build_variant_object(guest.repo, tmp_path)
    assert variant.read_bytes() != shipped.read_bytes()
    policies.apply(nginx_policy("restart-no-id", BLOCK.format(path="/usr/bin/id")))
    nginx = pods["nginx-1"]
    assert agent_status(guest)["bpf_object_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()

    swap_agent(guest, containers, nginx, "TERM", variant)
    policies.apply(nginx_policy("restart-no-id", BLOCK.format(path="/usr/bin/id\n    - path: /usr/bin/uname")))
    assert_denied(containers.exec(nginx, ["/usr/bin/uname"]), "uname, blocked by the upgraded agent")

    refuse_agent(policies, guest, containers, nginx, build_refused_object(shipped, tmp_path))
    swap_agent(guest, containers, nginx, "KILL", shipped)
    reported = agent_status(guest)
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
