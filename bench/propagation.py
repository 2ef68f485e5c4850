# SPDX-License-Identifier: Apache-2.0
"""The node daemon's propagation latency and footprint (issue 7's "Measure"), with the real `kadapter run`.

Method. Each scenario builds a node in miniature with tests/adapter/fakes.py's KataNode: the API server
double (tests/kube_api.py, the real list/watch protocol to the real `kubernetes` client), a CRI runtime
listing every sandbox of the node, and per Kata sandbox a shim monitor answering `hvsock://` and a VMM
socket doing the `CONNECT`/`OK` handshake, spliced to that sandbox's agent. Each agent is a process of
its own (bench/noop_agent.py): the real gRPC service and Agent, with an Enforcer that writes no maps.
Then `kadapter run` starts as a process with the DaemonSet's defaults (check every 10 s, index every 5 s).

- Latency: each round changes one policy through the API server double, naming a new executable in its
  process rules (a MODIFIED watch event), and stamps CLOCK_MONOTONIC just before the change is committed.
  Each agent stamps the same clock the moment its ApplyPolicies handler holds a set naming that
  executable. A round's latency runs until every selected agent holds the change; per-agent latency is
  each agent's own. Warm-up rounds are dropped; rounds are spaced by a random pause so that they do not
  fall in step with the daemon's periodic checks. Percentiles: statistics.quantiles, inclusive method.
- Footprint: from /proc/<pid>/stat (utime + stime) and /proc/<pid>/status (VmRSS; VmHWM, the peak) of
  the daemon process: at its first sync (its `synced` log record), over a steady period with nothing
  changing (RSS sampled every second), and per policy change over the latency rounds. Time to first
  sync is from the process's start (interpreter and imports included) and from its `start` log record.
- Contention: the machine's other work is estimated per scenario as /proc/stat's busy time minus the
  CPU of the benchmark's own processes (this one, the daemon, the agents), in cores.

Scenarios: one Kata pod; 50 Kata pods (one namespace, one policy selecting all); and a loaded node of
1,000 pods in 20 namespaces (50 of them Kata, each with its own sandbox and agent, the other 950 runc,
all listed by the CRI runtime) and 500 policies (480 namespaced ones, 24 per namespace on 10
five-replica apps, of every rule kind, and 20 cluster policies), where the change is to a cluster policy
selecting every namespace. The table goes to stdout and to build/bench/propagation.md.

usage: python -m bench.propagation [--quick] [--steady SECONDS] [--rounds-one N] [--rounds-many N]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.noop_agent import MARKER_PREFIX, READY
from tests.adapter.fakes import KataNode, pod_sandbox
from tests.adapter.objects import NODE, ksp, namespace, pod, runtime_class
from tests.credentials import ADAPTER_DIR, GUEST_DIR, adapter_identity

Body = dict[str, Any]
REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "build" / "bench" / "propagation.md"
STATE_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # agents save their state on tmpfs, as in a guest
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
AGENT_START_TIMEOUT = 60.0
SYNC_TIMEOUT = 120.0  # seconds from the daemon's start to its first sync and to every agent holding its first set
ACK_TIMEOUT = 30.0  # seconds a round may take before its missing agents are counted as missed
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
GOAL_ONE_MS, GOAL_MANY_MS, GOAL_RSS_MB = 100.0, 1000.0, 100.0


# --- Processes ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A process's CPU seconds so far and its resident memory (kB): now, at its peak, and now by kind."""

    cpu: float
    rss_kb: int
    hwm_kb: int
    anon_kb: int  # the process's own memory (heap, stacks)
    file_kb: int  # mapped files, shared libraries mostly: shared with any process mapping them


def usage(pid: int) -> Usage:
    """Read utime + stime, VmRSS, VmHWM, RssAnon and RssFile from /proc."""
    return Usage(cpu_seconds(pid), *(_status_kb(pid, key) for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")))


def cpu_seconds(pid: int) -> float:
    """Return a process's utime + stime (all its threads) in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # fields 14 and 15 of proc(5), counted from 3


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def machine_busy() -> float:
    """Return the CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICK


class Acks:
    """Every agent's stamps as their lines arrive: per marker, the first moment each sandbox held it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held: dict[str, dict[str, int]] = {}
        self._first: dict[str, int] = {}

    def record(self, sandbox: str, line: str) -> None:
        """Take one agent's line (a JSON stamp)."""
        stamp = json.loads(line)
        with self._changed:
            self._first.setdefault(sandbox, stamp["t"])
            for marker in stamp["markers"]:
                self._held.setdefault(marker, {}).setdefault(sandbox, stamp["t"])
            self._changed.notify_all()

    def wait(self, marker: str, sandboxes: list[str], timeout: float) -> dict[str, int]:
        """Return when each sandbox first held the marker, once all did or timeout passed (then fewer)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._held.get(marker, {})) >= len(sandboxes), timeout)
            held = self._held.get(marker, {})
            return {sandbox: held[sandbox] for sandbox in sandboxes if sandbox in held}

    def first(self, sandboxes: list[str], timeout: float) -> dict[str, int]:
        """Return when each sandbox's agent first accepted a set, once all did or timeout passed."""
        with self._changed:
            self._changed.wait_for(lambda: all(sandbox in self._first for sandbox in sandboxes), timeout)
            return {sandbox: self._first[sandbox] for sandbox in sandboxes if sandbox in self._first}


@dataclass
class AgentProcess:
    """One sandbox's agent (bench/noop_agent.py); its stdout feeds the stamps."""

    sandbox: str
    socket: Path
    process: subprocess.Popen[str]
    ready: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, sandbox: str, stored: Body, directory: Path, state_root: Path, acks: Acks) -> AgentProcess:
        """Start the agent of a pod's sandbox, its gRPC socket under directory."""
        metadata = stored["metadata"]
        socket = directory / "guests" / sandbox / "grpc.sock"
        argv = [
            sys.executable, "-m", "bench.noop_agent", "--socket", str(socket),
            "--state-dir", str(state_root / sandbox), "--tls-dir", str(GUEST_DIR), "--namespace", metadata["namespace"],
            "--pod", metadata["name"], "--uid", metadata["uid"], "--container", stored["spec"]["containers"][0]["name"],
        ]  # fmt: skip
        process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        agent = cls(sandbox, socket, process)
        threading.Thread(target=agent._read, args=(acks,), daemon=True).start()
        return agent

    def _read(self, acks: Acks) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == READY:
                self.ready.set()
            else:
                acks.record(self.sandbox, line)

    def close(self) -> None:
        """Close its stdin, which ends it."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class DaemonProcess:
    """`kadapter run` as the DaemonSet runs it, pointed at the node in miniature; its log records as they come."""

    def __init__(self, node: KataNode) -> None:
        kubeconfig = node.api.write_kubeconfig(node.directory / "kubeconfig")
        argv = [
            sys.executable, "-m", "adapter.cli", "run", "--kubeconfig", str(kubeconfig),
            "--cri-socket", str(node.cri_socket),
            *(option for root in node.monitor_roots for option in ("--shim-monitor-root", str(root))),
            "--metrics-address", "127.0.0.1:0", "--tls-dir", str(ADAPTER_DIR),
        ]  # fmt: skip
        env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
        self._changed = threading.Condition()
        self.events: dict[str, tuple[int, dict[str, Any]]] = {}  # first record of each event, and when it came
        self.counts: Counter[str] = Counter()
        self.tail: deque[str] = deque(maxlen=20)
        self.started = time.monotonic_ns()
        self.process = subprocess.Popen(
            argv, cwd=REPO, env={**env, "NODE_NAME": NODE}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Keep reading its log (a full pipe would stall the daemon), noting each event's first record."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            now = time.monotonic_ns()
            self.tail.append(line.rstrip())
            try:
                record = json.loads(line)
            except ValueError:
                continue
            event = record.get("event", "")
            with self._changed:
                self.counts[event] += 1
                self.events.setdefault(event, (now, record))
                self._changed.notify_all()

    def wait_for(self, event: str, timeout: float) -> tuple[int, dict[str, Any]]:
        """Return when the first record of an event came, and the record; fail past timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: event in self.events or self.process.poll() is not None, timeout):
                raise TimeoutError(f"no {event!r} log record within {timeout} s:\n" + "\n".join(self.tail))
            if event not in self.events:
                raise RuntimeError(f"kadapter run exited {self.process.returncode}:\n" + "\n".join(self.tail))
            return self.events[event]

    def status(self) -> dict[str, Any]:
        """Return the daemon's /status."""
        address = self.wait_for("listening", SYNC_TIMEOUT)[1]["address"]
        with urllib.request.urlopen(f"http://{address}/status", timeout=10) as response:
            return json.load(response)

    def usage(self) -> Usage:
        """Return the daemon process's CPU and memory now."""
        return usage(self.process.pid)

    def stop(self) -> None:
        """SIGTERM, as the kubelet stops it."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- Scenarios ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What the node holds, which pods run in Kata sandboxes, which policy each round changes, and the pacing."""

    name: str
    objects: list[Body]  # created in order; the probe policy among them
    kata: list[tuple[str, str]]  # (namespace, name) of the pods that get a sandbox and an agent
    probe: tuple[str, str, str | None]  # (kind, name, namespace) of the policy changed each round
    rounds: int
    warmup: int
    pause: float  # seconds between rounds, plus up to as much again at random


def probe_path(label: str) -> str:
    """Name the executable a round's change blocks; the agents report the set's names with this prefix."""
    return f"{MARKER_PREFIX}{label}"


def with_marker(policy: Body, label: str) -> Body:
    """Return the policy changed to block this round's executable."""
    changed = copy.deepcopy(policy)
    changed["spec"]["process"] = {"matchPaths": [{"path": probe_path(label)}]}
    annotations = changed["metadata"].get("annotations", {})
    if LAST_APPLIED in annotations:  # as `kubectl apply` of the changed file writes it
        written = json.loads(annotations[LAST_APPLIED])
        annotations[LAST_APPLIED] = json.dumps({**written, "spec": changed["spec"]}, separators=(",", ":"))
    return changed


def deployed(body: Body) -> Body:
    """Give a pod what a Deployment's pod carries (about 5 kB of JSON): the daemon keeps and parses every one.

    tests/adapter/objects.py's pods hold only what selection reads; a real one also has its owner, its
    managedFields, a service-account volume, probes, env and a status, all of which the Watcher keeps and the
    Manager reads through, so a node's pods cost what real ones cost.
    """
    full = copy.deepcopy(body)
    metadata, name = full["metadata"], full["metadata"]["name"]
    owner = f"{metadata['labels'].get('app', name)}-7d4b9c8f6"
    metadata.update(
        generateName=f"{owner}-",
        labels={**metadata["labels"], "pod-template-hash": "7d4b9c8f6"},
        annotations={"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z", "prometheus.io/scrape": "true"},
        ownerReferences=[
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": f"rs-{owner}", "controller": True}
        ],
    )
    token = "kube-api-access-" + name[-5:]
    container = full["spec"]["containers"][0]
    container.update(
        ports=[{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        env=[{"name": f"SETTING_{index}", "value": f"value-{index}"} for index in range(10)],
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        volumeMounts=[{"name": token, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}],
        livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
        readinessProbe={"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        imagePullPolicy="IfNotPresent",
        terminationMessagePath="/dev/termination-log",
    )
    full["spec"].update(
        volumes=[{"name": token, "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {}}]}}],
        tolerations=[
            {
                "key": f"node.kubernetes.io/{taint}",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
            for taint in ("not-ready", "unreachable")
        ],
        serviceAccountName="default",
        restartPolicy="Always",
        dnsPolicy="ClusterFirst",
    )
    env = {f'k:{{"name":"{item["name"]}"}}': {".": {}, "f:name": {}, "f:value": {}} for item in container["env"]}
    spec_fields = {f"f:{key}": {} for key in full["spec"] if key != "containers"}
    spec_fields["f:containers"] = {
        f'k:{{"name":"{container["name"]}"}}': {**{f"f:{key}": {} for key in container}, "f:env": env}
    }
    metadata["managedFields"] = [
        _managed(
            "kube-controller-manager", {"f:metadata": {"f:generateName": {}, "f:labels": {}}, "f:spec": spec_fields}
        ),
        _managed("kubelet", {"f:status": {f"f:{key}": {} for key in ("conditions", "containerStatuses", "podIP")}}),
    ]
    full["status"].update(
        conditions=[
            {"type": kind, "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}
            for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        hostIP="10.0.0.4",
        podIP="10.244.1.17",
        startTime="2025-01-01T00:00:00Z",
        qosClass="Burstable",
        containerStatuses=[
            {
                "name": container["name"],
                "ready": True,
                "restartCount": 0,
                "image": "docker.io/library/nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:" + "0" * 64,
                "containerID": "containerd://" + "1" * 64,
                "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
            }
        ],
    )
    return full


def applied(policy: Body) -> Body:
    """Give a policy what `kubectl apply` adds: its whole text again in an annotation, and its managedFields."""
    full = copy.deepcopy(policy)
    text = json.dumps(policy, separators=(",", ":"))
    full["metadata"]["annotations"] = {LAST_APPLIED: text}
    full["metadata"]["managedFields"] = [_managed("kubectl-client-side-apply", {"f:spec": {}})]
    return full


def _managed(manager: str, fields: Body) -> Body:
    """Build one managedFields entry."""
    return {"manager": manager, "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:00Z",
            "fieldsType": "FieldsV1", "fieldsV1": fields}  # fmt: skip


def small(sandboxes: int, rounds: int, warmup: int, pause: float) -> Scenario:
    """N Kata pods in one namespace, one policy selecting them all: the propagation path and nothing else."""
    names = [f"nginx-{index:02d}" for index in range(sandboxes)]
    objects = [namespace("web"), applied(with_marker(ksp("probe"), "init")), *(deployed(pod(name)) for name in names)]
    return Scenario(
        name=f"{sandboxes} Kata sandbox{'es' if sandboxes > 1 else ''}",
        objects=objects,
        kata=[("web", name) for name in names],
        probe=("KubeArmorPolicy", "probe", "web"),
        rounds=rounds,
        warmup=warmup,
        pause=pause,
    )


def loaded(*, pods: int, policies: int, kata: int, rounds: int, warmup: int, pause: float) -> Scenario:
    """Build a busy node: pods of 5-replica apps in 20 namespaces, kata of them Kata, policies of every kind.

    Every pods/kata-th pod is a Kata pod, so the Kata pods spread over namespaces and apps; cluster policies
    are 1 in 25 (the change is to one selecting every namespace); namespaced ones spread evenly.
    """
    namespaces = [f"team-{index:02d}" for index in range(20)]
    per_namespace = pods // len(namespaces)
    every = pods // kata
    clusters = max(1, policies // 25)
    objects: list[Body] = [
        namespace(name, **({"kubearmor-file-posture": "audit"} if index % 4 == 0 else {}))
        for index, name in enumerate(namespaces)
    ]
    for index in range(policies - clusters):
        objects.append(applied(_namespaced_policy(index, namespaces[index % len(namespaces)])))
    for index in range(clusters - 1):
        selected = namespaces[index % 20 :: 7]
        objects.append(applied(_cluster_policy(f"cluster-{index:02d}", selected, f"/etc/cluster-{index}")))
    objects.append(applied(with_marker(_cluster_policy("probe", namespaces, "/etc/unused"), "init")))
    chosen = []
    for index in range(pods):
        where, number = namespaces[index // per_namespace], index % per_namespace
        labels = {"app": f"svc-{number // 5 % 10}", "tier": ("front", "back")[number % 2]}
        is_kata = index % every == 0 and len(chosen) < kata
        name = f"svc-{number // 5 % 10}-{number:02d}"
        objects.append(deployed(pod(name, namespace=where, labels=labels, runtime_class="kata" if is_kata else "runc")))
        if is_kata:
            chosen.append((where, name))
    return Scenario(
        name=f"{pods:,} pods ({len(chosen)} Kata), {policies} policies",
        objects=objects,
        kata=chosen,
        probe=("KubeArmorClusterPolicy", "probe", None),
        rounds=rounds,
        warmup=warmup,
        pause=pause,
    )


def _namespaced_policy(index: int, where: str) -> Body:
    """Build one of the loaded node's namespaced policies: its app, action and rule kind vary with index."""
    app = f"svc-{index // 20 % 10}"
    kinds: list[Body] = [
        {"process": {"matchPaths": [{"path": f"/usr/bin/tool-{index}"}, {"path": "/usr/bin/apt"}]}},
        {"file": {"matchDirectories": [{"dir": f"/etc/secret-{index}/", "recursive": True}]}},
        {"network": {"matchProtocols": [{"protocol": "raw"}, {"protocol": "icmp"}]}},
        {"capabilities": {"matchCapabilities": [{"capability": "net_raw"}, {"capability": "sys_ptrace"}]}},
        {"file": {"matchPaths": [{"path": f"/var/lib/data-{index}", "readOnly": True}]}},
    ]
    return {
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorPolicy",
        "metadata": {"name": f"policy-{index:03d}", "namespace": where},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "action": ("Block", "Audit")[index % 3 == 0],
            "severity": 1 + index % 10,
            "message": f"policy {index}",
            "tags": ["bench", f"group-{index % 7}"],
            **kinds[index % len(kinds)],
        },
    }


def _cluster_policy(name: str, namespaces: list[str], path: str) -> Body:
    """Build a cluster policy blocking a file in some namespaces."""
    expression = {"key": "namespace", "operator": "In", "values": namespaces}
    return {
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorClusterPolicy",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchExpressions": [expression]},
            "action": "Block",
            "file": {"matchPaths": [{"path": path}]},
        },
    }


# --- Measuring ------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one scenario measured (latencies in ms, memory in MB, CPU in seconds)."""

    scenario: Scenario
    sandboxes: int
    rounds: list[float] = field(default_factory=list)  # until every agent held the change
    per_agent: list[float] = field(default_factory=list)
    missed: int = 0  # agent acknowledgements that did not come within ACK_TIMEOUT
    to_sync: float = 0.0  # process start → synced
    start_to_sync: float = 0.0  # the daemon's start record → synced
    to_all_held: float = 0.0  # process start → every agent held its first set
    at_sync: Usage | None = None
    steady_rss: list[int] = field(default_factory=list)  # kB
    steady_cpu: float = 0.0  # CPU seconds per second over the steady period
    steady_seconds: float = 0.0
    cpu_per_change: float = 0.0  # seconds
    at_end: Usage | None = None
    states: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    log_records: int = 0
    other_cores: float = 0.0  # the machine's other work, averaged over the scenario
    bench_cores: float = 0.0  # this process (the doubles) and the agents, averaged over the scenario


@contextlib.contextmanager
def node_for(scenario: Scenario) -> Iterator[tuple[KataNode, list[Body]]]:
    """Yield a node holding the scenario's objects (as stored), with RuntimeClasses kata and runc."""
    with tempfile.TemporaryDirectory(prefix="kb-") as directory:
        node = KataNode(Path(directory))
        node.api.start()
        try:
            node.api.create(runtime_class("kata", "kata-clh"))
            node.api.create(runtime_class("runc", "runc"))
            yield node, [node.api.create(obj) for obj in scenario.objects]
        finally:
            node.close()


def start_sandboxes(
    node: KataNode, stored: list[Body], scenario: Scenario, *, state_root: Path, acks: Acks, stack: contextlib.ExitStack
) -> list[AgentProcess]:
    """Start an agent per Kata pod, then show each sandbox to the node; list every other pod's runc sandbox."""
    pods = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in stored if o["kind"] == "Pod"}
    agents = []
    for index, key in enumerate(scenario.kata):
        agent = AgentProcess.start(f"sb-{index:03d}", pods[key], node.directory, state_root, acks)
        stack.callback(agent.close)
        agents.append(agent)
    for agent, key in zip(agents, scenario.kata, strict=True):
        if not agent.ready.wait(AGENT_START_TIMEOUT):
            raise TimeoutError(f"agent {agent.sandbox} not serving within {AGENT_START_TIMEOUT} s")
        node.place(pods[key], agent.sandbox, agent.socket)
    kata = set(scenario.kata)
    runc = [
        pod_sandbox(f"sb-runc-{index:04d}", "runc", name=key[1], namespace=key[0], uid=body["metadata"]["uid"])
        for index, (key, body) in enumerate(pods.items())
        if key not in kata
    ]
    node.runtime.items = [*node.runtime.items, *runc]
    return agents


def run(scenario: Scenario, steady: float) -> Result:
    """Measure one scenario with a fresh node, fresh agents and a fresh daemon process."""
    acks = Acks()
    own = [os.getpid()]
    with (
        node_for(scenario) as (node, stored),
        tempfile.TemporaryDirectory(prefix="kadapter-bench-", dir=STATE_ROOT) as state_root,
        contextlib.ExitStack() as stack,
    ):
        agents = start_sandboxes(node, stored, scenario, state_root=Path(state_root), acks=acks, stack=stack)
        sandboxes = [agent.sandbox for agent in agents]
        own += [agent.process.pid for agent in agents]
        result = Result(scenario, len(agents))
        busy, ours, began = machine_busy(), sum(map(cpu_seconds, own)), time.monotonic()
        daemon = DaemonProcess(node)
        stack.callback(daemon.stop)
        _first_sync(daemon, acks, sandboxes, result)
        _steady(daemon, steady, result)
        _rounds(node, daemon, acks, sandboxes, result)
        report = daemon.status()
        result.states = dict(Counter(item["state"] for item in report["pods"]))
        result.refused = len(report["refused"])
        result.at_end = daemon.usage()
        wall = time.monotonic() - began
        bench = sum(map(cpu_seconds, own)) - ours
        result.bench_cores = bench / wall
        result.other_cores = max(0.0, machine_busy() - busy - bench - result.at_end.cpu) / wall
        result.log_records = sum(daemon.counts.values())
    return result


def _first_sync(daemon: DaemonProcess, acks: Acks, sandboxes: list[str], result: Result) -> None:
    """Time the first sync and every agent's first set; take the daemon's usage at its sync."""
    synced, _ = daemon.wait_for("synced", SYNC_TIMEOUT)
    result.at_sync = daemon.usage()
    started, _ = daemon.wait_for("start", SYNC_TIMEOUT)
    result.to_sync = (synced - daemon.started) / 1e9
    result.start_to_sync = (synced - started) / 1e9
    first = acks.first(sandboxes, SYNC_TIMEOUT)
    if len(first) < len(sandboxes):
        raise TimeoutError(f"{len(sandboxes) - len(first)} agent(s) got no set within {SYNC_TIMEOUT} s")
    result.to_all_held = (max(first.values()) - daemon.started) / 1e9
    deadline = time.monotonic() + SYNC_TIMEOUT
    while {item["state"] for item in daemon.status()["pods"]} - {"applied"} and time.monotonic() < deadline:
        time.sleep(0.5)  # every session confirmed (its follow-up GetStatus), so the steady period is steady


def _steady(daemon: DaemonProcess, seconds: float, result: Result) -> None:
    """Sample RSS every second and the CPU used while nothing changes."""
    time.sleep(2.0)
    before, began = daemon.usage().cpu, time.monotonic()
    while time.monotonic() - began < seconds:
        result.steady_rss.append(daemon.usage().rss_kb)
        time.sleep(1.0)
    result.steady_seconds = time.monotonic() - began
    result.steady_cpu = (daemon.usage().cpu - before) / result.steady_seconds


def _rounds(node: KataNode, daemon: DaemonProcess, acks: Acks, sandboxes: list[str], result: Result) -> None:
    """Change the probe policy round after round; time each until every agent holds it."""
    scenario = result.scenario
    kind, name, where = scenario.probe
    policy = node.api.get(kind, name, where)
    cpu = 0.0
    for index in range(scenario.warmup + scenario.rounds):
        if index == scenario.warmup:
            cpu = daemon.usage().cpu
        label = f"{index:04d}"
        changed = with_marker(policy, label)
        committed = time.monotonic_ns()
        policy = node.api.replace(changed)
        held = acks.wait(probe_path(label), sandboxes, ACK_TIMEOUT)
        if index >= scenario.warmup:
            latencies = [(stamp - committed) / 1e6 for stamp in held.values()]
            result.per_agent += latencies
            result.missed += len(sandboxes) - len(held)
            if len(held) == len(sandboxes):
                result.rounds.append(max(latencies))
        time.sleep(scenario.pause * (1 + random.random()))
    result.cpu_per_change = (daemon.usage().cpu - cpu) / max(1, scenario.rounds)


# --- Report ---------------------------------------------------------------------------------------------------------


def percentile(samples: list[float], which: int) -> float:
    """Return the which-th percentile (inclusive method: interpolated between the nearest samples)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[which - 1]


def _ms(value: float) -> str:
    return f"{value:,.1f} ms" if value < 1000 else f"{value / 1000:,.2f} s"


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def _verdict(value: float, goal: float | None) -> str:
    if goal is None:
        return "-"
    return f"≤ {_ms(goal)}: {'met' if value <= goal else 'MISSED'}"


def latency_rows(result: Result) -> list[str]:
    """Give a row for the rounds and, with several sandboxes, one for each agent's own latency."""
    goal = GOAL_ONE_MS if result.sandboxes == 1 else (GOAL_MANY_MS if result.sandboxes <= 50 else None)
    if result.scenario.probe[0] == "KubeArmorClusterPolicy":
        goal = None  # the issue sets no latency goal for the loaded node; reported for comparison
    rows = []
    series = [("until every agent holds it" if result.sandboxes > 1 else "per change", result.rounds)]
    if result.sandboxes > 1:
        series.append(("each agent", result.per_agent))
    for what, samples in series:
        if not samples:
            rows.append(f"| {result.scenario.name} | {what} | 0 | - | - | - | - |")
            continue
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        rows.append(
            f"| {result.scenario.name} | {what} | {len(samples):,} | {_ms(p50)} | {_ms(p99)} | {_ms(max(samples))} "
            f"| {_verdict(p99, goal if what != 'each agent' else None)} |"
        )
    return rows


def footprint_row(result: Result) -> str:
    """Give the daemon's time to sync, CPU and memory in one scenario."""
    assert result.at_sync is not None and result.at_end is not None
    steady = result.steady_rss or [result.at_end.rss_kb]
    peak = result.at_end.hwm_kb
    return (
        f"| {result.scenario.name} | {result.to_sync:.2f} s ({result.start_to_sync:.2f} s) "
        f"| {result.to_all_held:.2f} s | {result.at_sync.cpu:.2f} s | {_mb(result.at_sync.rss_kb)} "
        f"| {_mb(statistics.median(steady))} (max {_mb(max(steady))}) | {_mb(result.at_end.rss_kb)} "
        f"| {_mb(peak)}: {'met' if peak / 1024 <= GOAL_RSS_MB else 'MISSED'} "
        f"| {100 * result.steady_cpu:.2f} % | {1000 * result.cpu_per_change:.1f} ms |"
    )


def context_row(result: Result) -> str:
    """Give what else the numbers depend on: memory by kind, the sessions' states, the machine's other work."""
    assert result.at_end is not None
    states = ", ".join(f"{count} {state}" for state, count in sorted(result.states.items()))
    return (
        f"| {result.scenario.name} | {_mb(result.at_end.anon_kb)} + {_mb(result.at_end.file_kb)} | {states} "
        f"| {result.refused} | {result.missed} | {result.log_records:,} | {result.bench_cores:.2f} "
        f"| {result.other_cores:.2f} |"
    )


def render(results: list[Result], steady: float, started: str) -> str:
    """Write the whole report in markdown."""
    lines = [
        f"Node daemon propagation and footprint, {started}: {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}.",
        "",
        "| scenario | latency from the API change | samples | p50 | p99 | max | goal (p99) |",
        "|---|---|---|---|---|---|---|",
        *(row for result in results for row in latency_rows(result)),
        "",
        "| scenario | first sync from process start (from `start` record) | every agent holds its set "
        "| CPU to first sync | RSS at first sync | steady RSS, median | RSS at end | peak RSS (VmHWM), goal ≤ 100 MB "
        f"| steady CPU ({steady:.0f} s, of one core) | CPU per change |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(footprint_row(result) for result in results),
        "",
        "| scenario | RSS at end: own (anon) + mapped files | sessions at end | refused objects | missed acks "
        "| daemon log records | doubles and agents (cores) | other work on the machine (cores) |",
        "|---|---|---|---|---|---|---|---|",
        *(context_row(result) for result in results),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.propagation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds-one", type=int, default=200, help="changes timed with one sandbox")
    parser.add_argument("--rounds-many", type=int, default=50, help="changes timed with 50 sandboxes, and loaded")
    parser.add_argument("--sandboxes", type=int, default=50)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--kata-pods", type=int, default=50, help="of --pods, those with a Kata sandbox")
    parser.add_argument("--steady", type=float, default=60.0, help="seconds of the steady period")
    parser.add_argument("--quick", action="store_true", help="a fast run to check the script: few rounds, 5 s steady")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds_one, args.rounds_many, args.steady = 20, 5, 5.0
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    adapter_identity()  # the daemon's and the agents' credentials, written to build/tls unless make did
    scenarios = [
        small(1, args.rounds_one, warmup=5, pause=0.05),
        small(args.sandboxes, args.rounds_many, warmup=3, pause=0.5),
        loaded(
            pods=args.pods, policies=args.policies, kata=args.kata_pods, rounds=args.rounds_many, warmup=3, pause=0.5
        ),
    ]
    results = []
    for scenario in scenarios:
        print(f"measuring: {scenario.name}", file=sys.stderr, flush=True)
        results.append(run(scenario, args.steady))
    report = render(results, args.steady, started)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
