# SPDX-License-Identifier: Apache-2.0
"""What Kadapter's BPF-LSM programs cost on exec and on open, measured side by side in one guest boot.

Method: the test guest boots under QEMU with -icount (the guest clock
advances one nanosecond per emulated instruction, so a guest-side timer
counts instructions and runs repeat within a fraction of a percent).
bench/lsm_bench.c, a static program copied into the container's writable
rootfs, times fork+exec+wait of a static no-op and open()+close() of a
file from inside a pod-like container (runc, default capabilities,
overlay rootfs). Four states, in one boot:

1. programs loaded, container not targeted (its hook never registered it);
2. container targeted, one process rule;
3. container targeted, N process rules (default 10,000);
4. no BPF program (the agent killed: its links detach), the baseline.

Each state runs the measurement three times and keeps the median. The
table goes to stdout and to build/bench/overhead.md.

usage: python -m bench.overhead [--rules N] [--exec-iterations N] [--open-iterations N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from images.testguest.containers import GuestContainers, PodContainer
from images.testguest.vm import TestGuest

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
    """Return a KubeArmorPolicy for the bench pod with rule_count process rules (apt first)."""
    paths = ["/usr/bin/apt", *(f"/opt/bench/tool-{number:05d}" for number in range(1, rule_count))]
    rules = "".join(f"    - path: {path}\n" for path in paths)
    return (
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\n"
        "metadata:\n  name: bench\n  namespace: default\n"
        "spec:\n  selector:\n    matchLabels:\n      app: bench\n"
        f"  process:\n    matchPaths:\n{rules}  action: Block\n"
    )


def build_programs() -> None:
    """Compile the timing loop and the no-op it execs, both static."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name in ("lsm_bench", "noop"):
        subprocess.run(
            ["gcc", "-O2", "-static", "-Wall", "-Werror", "-o", str(OUTPUT / name), str(REPO / "bench" / f"{name}.c")],
            check=True,
        )


def apply(guest: TestGuest, work: Path, rule_count: int) -> None:
    """Apply a policy of rule_count rules to the bench pod with `kadapter local`, as an operator would."""
    (work / "policies" / "bench.yaml").write_text(policy(rule_count))
    done = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "local", "--policies", str(work / "policies"),
         "--manifests", str(work / "manifests"), "--agent", f"tcp://{guest.agent_target}"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"kadapter local failed: {done.stderr}")


def measure(
    containers: GuestContainers, container: str, *, exec_iterations: int, open_iterations: int
) -> tuple[float, float]:
    """Return the median ns per fork+exec and per open()+close() in one container."""
    results = []
    for mode, iterations, target in (("exec", exec_iterations, "/tmp/noop"), ("open", open_iterations, "/tmp/file")):
        samples = []
        for _ in range(RUNS):
            done = containers.exec(container, ["/tmp/lsm_bench", mode, str(iterations), target])
            if done.returncode != 0:
                raise RuntimeError(f"{mode} benchmark failed in {container}: {done}")
            samples.append(float(done.stdout.split()[2]))
        results.append(statistics.median(samples))
    return results[0], results[1]


def main(argv: list[str] | None = None) -> int:
    """Boot, measure the four states, print and save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--exec-iterations", type=int, default=300)
    parser.add_argument("--open-iterations", type=int, default=20_000)
    args = parser.parse_args(argv)
    build_programs()
    counts = {"exec_iterations": args.exec_iterations, "open_iterations": args.open_iterations}
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
        rows = {"programs loaded, container not targeted": measure(containers, "bench-untargeted", **counts)}
        apply(guest, work, 1)
        rows["targeted, 1 process rule"] = measure(containers, "bench-targeted", **counts)
        apply(guest, work, args.rules)
        rows[f"targeted, {args.rules:,} process rules"] = measure(containers, "bench-targeted", **counts)
        guest.run(["sh", "-c", "pkill -f [k]adapter-agent; sleep 2"])
        baseline = measure(containers, "bench-targeted", **counts)
    table = [
        "| state | fork+exec+wait | open()+close() |",
        "|---|---|---|",
        f"| no BPF program (agent killed) | {baseline[0] / 1000:.1f} k | {baseline[1] / 1000:.2f} k |",
    ]
    for state, (exec_ns, open_ns) in rows.items():
        table.append(
            f"| {state} | {exec_ns / 1000:.1f} k ({exec_ns / baseline[0]:.3f}x) "
            f"| {open_ns / 1000:.2f} k ({open_ns / baseline[1]:.3f}x) |"
        )
    text = "\n".join(table) + "\n"
    (OUTPUT / "overhead.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
