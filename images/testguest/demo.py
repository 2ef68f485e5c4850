# SPDX-License-Identifier: Apache-2.0
"""The local demo: a Kata-like VM enforcing the KubeArmor policies in policies/.

Boots the test guest, starts a container in each pod of
images/testguest/manifests/pods.yaml, applies policies/ with
`kadapter local` exactly as an operator would, then runs apt and a harmless
command in each pod and prints what happened and the alert the host got.
Exits non-zero if anything did not behave as the policy says.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from images.testguest.containers import GuestContainers, PodContainer
from images.testguest.vm import GuestResult, TestGuest

REPO = Path(__file__).resolve().parents[2]
PODS = {
    "nginx-1": PodContainer("default", "nginx-1", "nginx"),
    "busybox-1": PodContainer("default", "busybox-1", "busybox"),
}


def say(text: str) -> None:
    """Print one line of the demo's story."""
    print(text, flush=True)


def show(pod: str, argv: list[str], result: GuestResult) -> str:
    """Print a command's outcome in one line and return it: 'ran' or 'denied'."""
    outcome = (
        "ran" if result.returncode == 0 else "denied" if "permission denied" in result.stderr.lower() else "failed"
    )
    output = (result.stdout or result.stderr).strip().splitlines()
    say(f"  [{pod}] $ {' '.join(argv):52} -> {outcome:6} {output[0] if output else ''}")
    return outcome


EXPECTED = {
    ("nginx-1", "apt"): "denied",
    ("nginx-1", "escape"): "denied",
    ("nginx-1", "ls"): "ran",
    ("busybox-1", "apt"): "ran",
    ("guest root", "apt"): "ran",
}


def scenario(guest: TestGuest, containers: GuestContainers) -> dict[tuple[str, str], str]:
    """Start the pods' containers, apply policies/ as an operator would, and return what each workload did."""
    for pod, owner in PODS.items():
        containers.start(f"{pod}-ctr", owner)
        say(f"started container {owner.name!r} of Kata pod default/{pod} (runc, prestart hook kadapter-hook)")

    agent = ["--agent", f"tcp://{guest.agent_target}", "--tls-dir", "build/tls/adapter"]  # mutual TLS (make)
    say("\n$ kadapter local --policies policies --manifests images/testguest/manifests " + " ".join(agent))
    applied = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "local", "--policies", "policies",
         "--manifests", "images/testguest/manifests", *agent],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    say(applied.stdout.rstrip() or applied.stderr.rstrip())
    if applied.returncode != 0:
        return {("kadapter local", ""): "failed"}

    alerts: queue.Queue[str] = queue.Queue()
    follower = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "alerts", *agent, "--count", "1"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    threading.Thread(target=lambda: alerts.put(follower.stdout.read()), daemon=True).start()
    guest.run(["sleep", "3"])

    say("\nworkloads:")
    apt, ls = ["/usr/bin/apt", "--version"], ["/bin/ls", "/usr/bin/apt"]
    escape = ["unshare", "-U", "-r", "-m", "chroot", "/usr", "/bin/apt", "--version"]
    outcomes = {
        ("nginx-1", "apt"): show("nginx-1", apt, containers.exec("nginx-1-ctr", apt)),
        ("nginx-1", "escape"): show("nginx-1", escape, containers.exec("nginx-1-ctr", escape)),
        ("nginx-1", "ls"): show("nginx-1", ls, containers.exec("nginx-1-ctr", ls)),
        ("busybox-1", "apt"): show("busybox-1", apt, containers.exec("busybox-1-ctr", apt)),
        ("guest root", "apt"): show("guest root", apt, guest.run(apt)),
    }
    try:
        say("\nalert received on the host:\n  " + alerts.get(timeout=60).strip())
    except queue.Empty:
        say("\nno alert reached the host")
        outcomes["alert", ""] = "missing"
    follower.kill()
    return outcomes


def main() -> int:
    """Run the demo; return 0 when enforcement matched the policy."""
    say("booting the Kata-like guest (Debian BTF kernel, BPF-LSM, QEMU TCG)...")
    started = time.monotonic()
    with TestGuest(
        repo=REPO, image_dir=REPO / "build" / "testguest", console_log=REPO / "build" / "demo-console.log"
    ) as guest:
        lsm = guest.run(["cat", "/sys/kernel/security/lsm"]).stdout
        say(f"guest up in {time.monotonic() - started:.0f} s; kernel LSMs: {lsm}")
        outcomes = scenario(guest, GuestContainers(guest))
    ok = outcomes == EXPECTED
    say("\ndemo " + ("passed: apt is blocked only where the policy selects it" if ok else f"FAILED: {outcomes}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
