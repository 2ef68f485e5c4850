# SPDX-License-Identifier: Apache-2.0
"""What Kadapter's BPF-LSM programs cost on exec, open and socket, measured side by side in one guest boot.

Method: the test guest boots under QEMU with -icount (the guest clock
advances one nanosecond per emulated instruction, so a guest-side timer
counts instructions and runs repeat within a fraction of a percent).
bench/lsm_bench.c, a static program copied into the container's writable
rootfs, times fork+exec+wait of a static no-op, open()+close() of a file
and socket()+close() of a UDP socket from inside a pod-like container
(runc, default capabilities, overlay rootfs). States, in one boot:

1. programs loaded, container not targeted (its hook never registered it);
2. container targeted with N rules of every kind, for each N (default 1,
   100 and 10,000): N process rules and N file rules by path, and N
   network and N capabilities rules (one plain, the others each for
   another source executable, since there are only so many protocols and
   capabilities). None names what the loop does, so every call is looked
   up and let through: the cost of judging, not of refusing;
3. no BPF program (the agent killed and its pinned links removed, so the
   programs detach), the baseline.

Each state runs each measurement three times and keeps the median. The
time `kadapter local` takes to apply each policy (host wall clock: host
parsing, gRPC, and the emulated guest compiling the rules and writing the
maps) is reported too; it compares rule counts within one run, not with
real hardware. The table goes to stdout and to build/bench/overhead.md.

usage: python -m bench.overhead [--rules N ...] [--exec-iterations N] [--open-iterations N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from images.testguest.containers import GuestContainers, PodContainer
from images.testguest.vm import TestGuest
from tests.credentials import ADAPTER_DIR

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "build" / "bench"
POD = PodContainer("default", "bench-1", "bench")
RUNS = 3
MANIFESTS = """\
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: kata
handler: kata-qemu
---
apiVersion: v1
kind: Pod
metadata:
  name: bench-1
  namespace: default
  labels:
    app: bench
spec:
  runtimeClassName: kata
  containers:
  - name: bench
    image: debian:12
"""


def policy(rule_count: int) -> str:
    """Return a KubeArmorPolicy for the bench pod with rule_count rules of every kind, none about the loop."""
    numbers = range(rule_count)
    sources = ["", *(f"      fromSource:\n      - path: /opt/bench/source-{n:05d}\n" for n in numbers[1:])]
    process = "".join(f"    - path: /opt/bench/tool-{n:05d}\n" for n in numbers)
    files = "".join(f"    - path: /opt/bench/file-{n:05d}\n" for n in numbers)
    network = "".join(f"    - protocol: tcp\n{source}" for source in sources)
    capabilities = "".join(f"    - capability: sys_module\n{source}" for source in sources)
    return (
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\n"
        "metadata:\n  name: bench\n  namespace: default\n"
        "spec:\n  selector:\n    matchLabels:\n      app: bench\n"
        f"  process:\n    matchPaths:\n{process}"
        f"  file:\n    matchPaths:\n{files}"
        f"  network:\n    matchProtocols:\n{network}"
        f"  capabilities:\n    matchCapabilities:\n{capabilities}"
        "  action: Block\n"
    )


def build_programs() -> None:
    """Compile the timing loop and the no-op it execs, both static."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name in ("lsm_bench", "noop"):
        subprocess.run(
            ["gcc", "-O2", "-static", "-Wall", "-Werror", "-o", str(OUTPUT / name), str(REPO / "bench" / f"{name}.c")],
            check=True,
        )


def apply(guest: TestGuest, work: Path, rule_count: int) -> float:
    """Apply a policy of rule_count rules to the bench pod with `kadapter local`; return the seconds it took."""
    (work / "policies" / "bench.yaml").write_text(policy(rule_count))
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "local", "--policies", str(work / "policies"),
         "--manifests", str(work / "manifests"), "--agent", f"tcp://{guest.agent_target}", "--rpc-timeout", "900",
         "--tls-dir", str(ADAPTER_DIR)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"kadapter local failed: {done.stderr}")
    return time.monotonic() - start


MODES = (("exec", "/tmp/noop"), ("open", "/tmp/file"), ("socket", "-"))


def measure(containers: GuestContainers, container: str, iterations: dict[str, int]) -> dict[str, float]:
    """Return the median ns per call of each mode in one container."""
    results = {}
    for mode, target in MODES:
        samples = []
        for _ in range(RUNS):
            done = containers.exec(container, ["/tmp/lsm_bench", mode, str(iterations[mode]), target])
            if done.returncode != 0:
                raise RuntimeError(f"{mode} benchmark failed in {container}: {done}")
            samples.append(float(done.stdout.split()[2]))
        results[mode] = statistics.median(samples)
    return results


def main(argv: list[str] | None = None) -> int:
    """Boot, measure every state, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--exec-iterations", type=int, default=300)
    parser.add_argument("--open-iterations", type=int, default=20_000)
    args = parser.parse_args(argv)
    build_programs()
    iterations = {"exec": args.exec_iterations, "open": args.open_iterations, "socket": args.open_iterations}
    with (
        tempfile.TemporaryDirectory() as scratch,
        TestGuest(
            repo=REPO, image_dir=REPO / "build" / "testguest", console_log=OUTPUT / "console.log", icount=True
        ) as guest,
    ):
        work = Path(scratch)
        (work / "policies").mkdir()
        (work / "manifests").mkdir()
        (work / "manifests" / "pods.yaml").write_text(MANIFESTS)
        containers = GuestContainers(guest, hook_timeout=60)  # instruction counting slows the guest about 2x
        containers.start("bench-untargeted", POD, registered=False)
        containers.start("bench-targeted", POD)
        for container in ("bench-untargeted", "bench-targeted"):
            copy = f"cp {OUTPUT}/lsm_bench {OUTPUT}/noop /tmp/ && echo data >/tmp/file"
            if containers.shell(container, copy).returncode != 0:
                raise RuntimeError(f"cannot copy the benchmark into {container}")
        rows = {"programs loaded, container not targeted": measure(containers, "bench-untargeted", iterations)}
        applied = {}
        for count in args.rules:
            state = f"targeted, {count:,} rule{'' if count == 1 else 's'} of each kind"
            applied[state] = apply(guest, work, count)
            rows[state] = measure(containers, "bench-targeted", iterations)
        guest.run(["sh", "-c", "pkill -f [k]adapter-agent; rm -rf /sys/fs/bpf/kadapter; sleep 2"])
        baseline = measure(containers, "bench-targeted", iterations)
    table = [
        "| state | fork+exec+wait | open()+close() | socket()+close() | applying the policy |",
        "|---|---|---|---|---|",
        "| no BPF program (agent killed) | "
        + " | ".join(f"{baseline[mode] / 1000:.2f} k" for mode, _ in MODES)
        + " | - |",
    ]
    for state, costs in rows.items():
        cells = [f"{costs[mode] / 1000:.2f} k ({costs[mode] / baseline[mode]:.3f}x)" for mode, _ in MODES]
        cells.append(f"{applied[state]:.1f} s" if state in applied else "-")
        table.append(f"| {state} | " + " | ".join(cells) + " |")
    text = "\n".join(table) + "\n"
    (OUTPUT / "overhead.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
