# SPDX-License-Identifier: Apache-2.0
"""The agent's state: desired policies per pod, live containers, and what binds them.

Two things change it: the host applying a pod's policy set (gRPC) and
kata-agent creating or removing a container (the hook, via the Listener).
Either way every affected container is recompiled and handed to the
Enforcer, so a container registered after a policy arrived is covered
before its first exec, and one registered before gets the policy when it
arrives.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from guest_agent import bpf_types
from guest_agent.alerts import AlertHub
from guest_agent.bpf_types import Kind
from guest_agent.capabilities import CAPABILITY_NAMES
from guest_agent.container_fs import ContainerView
from guest_agent.enforcer import Enforcer
from guest_agent.registration import namespace_ids
from guest_agent.rules import CompiledRules, ContainerKey, InvalidPolicyError, check_policies, compile_rules
from guest_agent.self_check import bpf_lsm_active, kernel_problems
from guest_agent.state import SavedContainer, StateStore
from kadapter_api import agent_pb2
from kadapter_api.syscalls import NUMBERS as SYSCALL_NUMBERS

log = logging.getLogger(__name__)

RULESETS_REMEMBERED = 1024  # alerts in flight may name a ruleset already replaced
UNREGISTERED_REMEMBERED = 256  # unregistered containers reported in status
# Seconds an unregistered container stays in the status once nothing runs in its pid namespace: a fail-closed
# agent's refusals kill the container at once, and the host must still get to see them.
UNREGISTERED_KEPT_FOR = 600.0
UNREGISTERED_POLICY = "UnregisteredContainer"
UNREGISTERED_MESSAGE = "exec in a container the agent never registered (its hook failed, timed out or found no agent)"

# What each kernel operation is called in an alert: (Operation, Data).
_OPERATIONS = {
    bpf_types.OP_EXEC: ("Process", "exec"),
    bpf_types.OP_MMAP: ("Process", "mmap PROT_EXEC"),
    bpf_types.OP_MPROTECT: ("Process", "mprotect PROT_EXEC"),
    bpf_types.OP_OPEN: ("File", "open"),
    bpf_types.OP_CREATE: ("File", "create"),
    bpf_types.OP_UNLINK: ("File", "unlink"),
    bpf_types.OP_TRUNCATE: ("File", "truncate"),
    bpf_types.OP_LINK: ("File", "link"),
    bpf_types.OP_RENAME: ("File", "rename"),
    bpf_types.OP_SOCKET: ("Network", "socket"),
    bpf_types.OP_CAPABLE: ("Capabilities", "capable"),
    bpf_types.OP_SYSCALL: ("Syscall", "syscall"),
    bpf_types.OP_DNS_QUERY: ("Network", "lsm=SOCKET_SENDMSG"),
}
_SYSCALL_NAMES = {number: name for name, number in SYSCALL_NUMBERS.items()}
# The posture each kind follows (KubeArmor: process rules follow the file posture).
_POSTURE_FIELDS = {
    Kind.PROCESS: "file_posture",
    Kind.FILE: "file_posture",
    Kind.NETWORK: "network_posture",
    Kind.DNS: "network_posture",
    Kind.CAPABILITIES: "capabilities_posture",
}


class StaleGenerationError(ValueError):
    """The host sent an older generation than the one in force."""


@dataclass(frozen=True)
class PodKey:
    """A pod as both sides can name it: namespace and name (local manifests carry no uid to compare)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Container:
    """A container of a pod, as the hook registered it."""

    id: str
    name: str
    pod: PodKey
    pod_uid: str
    key: ContainerKey
    rootfs: Path | None
    pid: int
    sandbox: bool = False  # the pause container: registered (so fail-closed lets it run), never given rules


@dataclass
class UnregisteredSighting:
    """What the kernel reported about one container the hook never registered."""

    executable: str
    execs: int = 0
    refused: bool = False
    last_seen: float = 0.0  # time.monotonic() of the last report


def container_key(pid: int, proc: Path = Path("/proc")) -> ContainerKey:
    """Return the kernel's name for the container a process is the init of: its pid and mount namespace ids."""
    return ContainerKey(*namespace_ids(pid, proc))


def live_pid_namespaces(proc: Path = Path("/proc")) -> set[int]:
    """Return the pid namespace ids some process of the guest lives in (one pass over /proc)."""
    alive = set()
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # it exited while we looked
                alive.add(os.stat(entry / "ns" / "pid").st_ino)
    return alive


def _still_running(container: SavedContainer) -> bool:
    """Tell whether a saved container's init still runs in the namespaces it was registered with."""
    try:
        return container_key(container.pid) == ContainerKey(container.pid_ns, container.mnt_ns)
    except OSError:
        return False


class Agent:
    """Keep the kernel's maps equal to desired policies times live containers."""

    def __init__(
        self, enforcer: Enforcer, alerts: AlertHub, *, store: StateStore | None = None, max_rules: int | None = None
    ) -> None:
        """Start with no pods and no containers; save every change to store, for the next agent.

        max_rules: the entries each rule table holds; a pod's set with more rules can never fit.
        """
        self._enforcer = enforcer
        self._max_rules = max_rules
        self._alerts = alerts
        self._store = store
        self._pods: dict[PodKey, agent_pb2.ApplyPoliciesRequest] = {}
        self._containers: dict[str, Container] = {}
        self._compiled: dict[str, CompiledRules] = {}
        self._rulesets: OrderedDict[int, tuple[Container, CompiledRules]] = OrderedDict()
        self._generations: dict[str, int] = {}  # container id -> the generation of the set it enforces
        self._unregistered: OrderedDict[ContainerKey, UnregisteredSighting] = OrderedDict()
        self._lock = threading.RLock()

    def register(self, container: Container) -> int:
        """Start enforcing the pod's policies on a new container; return its rule count.

        This is on the hook's path, with kata-agent's timeout running, so the slow part (compiling, which
        reads the container's files for each path rule) runs outside the lock: another pod's large set
        being applied meanwhile delays only the map writes. If the pod's set changes while compiling, the
        container is compiled again against the new one.
        """
        while True:
            with self._lock:
                request = self._pods.get(container.pod)
            compiled = self._compile(container, request)
            with self._lock:
                if self._pods.get(container.pod) is not request:
                    continue  # a newer set arrived meanwhile
                self._containers[container.id] = container
                self._unregistered.pop(container.key, None)
                try:
                    self._commit(container, request, compiled)
                except Exception:
                    del self._containers[container.id]
                    raise
                self._save()
                return compiled.size

    def unregister(self, container_id: str) -> bool:
        """Drop a stopped container's kernel state; return False if it was unknown."""
        with self._lock:
            container = self._containers.pop(container_id, None)
            if container is None:
                return False
            self._compiled.pop(container_id, None)
            self._generations.pop(container_id, None)
            self._enforcer.release(container.id)
            self._save()
            return True

    def apply(self, request: agent_pb2.ApplyPoliciesRequest) -> agent_pb2.ApplyPoliciesResponse:
        """Make a pod's desired policy set the one in force, for all its containers or none."""
        if not (request.pod.namespace and request.pod.name):
            raise InvalidPolicyError("pod: namespace and name are required")  # else unannotated containers match
        check_policies(request.policies)
        rules = sum(_rule_count(policy) for policy in request.policies)
        if self._max_rules is not None and rules > self._max_rules:
            raise InvalidPolicyError(
                f"policies: {rules} rules, more than the {self._max_rules} entries each of this agent's rule tables "
                "holds (kadapter-agent --max-rules)"
            )
        pod = PodKey(request.pod.namespace, request.pod.name)
        with self._lock:
            current = self._check_generation(pod, request)
            targets = [c for c in self._containers.values() if c.pod == pod]
            if current == request:
                return agent_pb2.ApplyPoliciesResponse(generation=request.generation, containers_enforced=len(targets))
        compiled = {container.id: self._compile(container, request) for container in targets}  # outside the lock
        with self._lock:
            current = self._check_generation(pod, request)  # again: another set may have been applied meanwhile
            targets = [c for c in self._containers.values() if c.pod == pod]  # and containers come and go
            done: list[Container] = []
            try:
                for container in targets:
                    rules = compiled.get(container.id) or self._compile(container, request)
                    self._commit(container, request, rules)
                    done.append(container)
            except Exception:
                for container in done:
                    self._commit(container, current, self._compile(container, current))
                raise
            self._pods[pod] = request
            self._save()
            log.info(
                "pod %s/%s: generation %d, %d policies, %d containers",
                pod.namespace, pod.name, request.generation, len(request.policies), len(targets),
            )  # fmt: skip
            return agent_pb2.ApplyPoliciesResponse(generation=request.generation, containers_enforced=len(targets))

    def restore(self) -> tuple[int, int]:
        """Take over what the previous agent left: its pods' sets and its running containers.

        Each running container keeps the rules the kernel holds until its new ones are written;
        then the previous agent's leftovers are deleted. Return (containers taken over, gone).
        """
        if self._store is None:
            return 0, 0
        saved = self._store.load()
        gone, failed = 0, False
        with self._lock:
            for request in saved.pods:
                self._pods[PodKey(request.pod.namespace, request.pod.name)] = request
            for entry in saved.containers:
                key = ContainerKey(entry.pid_ns, entry.mnt_ns)
                if not _still_running(entry):
                    self._enforcer.forget(kernel_id=entry.kernel_id, key=key)
                    gone += 1
                    continue
                container = Container(
                    id=entry.id,
                    name=entry.name,
                    pod=PodKey(entry.namespace, entry.pod),
                    pod_uid=entry.pod_uid,
                    key=key,
                    rootfs=Path(entry.rootfs) if entry.rootfs else None,
                    pid=entry.pid,
                    sandbox=entry.sandbox,
                )
                self._enforcer.adopt(container.id, kernel_id=entry.kernel_id, key=key)
                self._containers[container.id] = container
                request = self._pods.get(container.pod)
                try:
                    self._commit(container, request, self._compile(container, request))
                except Exception:
                    # Its rules are still the previous agent's, which no ruleset id here names.
                    log.exception("container %s: cannot rewrite its rules; it keeps those in force", container.id)
                    failed = True
            if not failed:
                self._enforcer.collect_garbage()
            self._save()
            return len(self._containers), gone

    def _save(self) -> None:
        """Save containers and pods for the next agent (called with the lock held, after every change)."""
        if self._store is None:
            return
        containers = [
            SavedContainer(
                id=container.id,
                name=container.name,
                namespace=container.pod.namespace,
                pod=container.pod.name,
                pod_uid=container.pod_uid,
                pid_ns=container.key.pid_ns,
                mnt_ns=container.key.mnt_ns,
                rootfs=str(container.rootfs) if container.rootfs else None,
                pid=container.pid,
                kernel_id=self._enforcer.kernel_id(container.id),
                sandbox=container.sandbox,
            )
            for container in self._containers.values()
        ]
        self._store.save(containers, self._pods.values())

    def _check_generation(
        self, pod: PodKey, request: agent_pb2.ApplyPoliciesRequest
    ) -> agent_pb2.ApplyPoliciesRequest | None:
        """Return the pod's set in force, refusing a request older than it (called with the lock held)."""
        current = self._pods.get(pod)
        if current and request.generation < current.generation:
            raise StaleGenerationError(f"generation {request.generation} is older than {current.generation}")
        return current

    @staticmethod
    def _compile(container: Container, request: agent_pb2.ApplyPoliciesRequest | None) -> CompiledRules:
        """Compile a pod's set for one container, reading its files; touches no shared state (no lock needed)."""
        if container.sandbox:
            request = None  # a pod's policies are for its workload, not for the pause process
        return compile_rules(
            request.policies if request else (),
            container_name=container.name,
            postures={
                kind: getattr(request, name) if request else agent_pb2.POSTURE_BLOCK
                for kind, name in _POSTURE_FIELDS.items()
            },
            view=ContainerView.of_process(container.pid, container.rootfs),
        )

    def _commit(
        self, container: Container, request: agent_pb2.ApplyPoliciesRequest | None, compiled: CompiledRules
    ) -> None:
        """Write a container's compiled rules to the kernel and remember them (called with the lock held)."""
        rulesets = self._enforcer.enforce(container.id, compiled, key=container.key, init_pid=container.pid)
        self._compiled[container.id] = compiled
        self._generations[container.id] = request.generation if request and not container.sandbox else 0
        for ruleset in rulesets:
            self._rulesets[ruleset] = (container, compiled)
        while len(self._rulesets) > RULESETS_REMEMBERED:
            self._rulesets.popitem(last=False)

    def on_event(self, event: bpf_types.AlertEvent) -> None:
        """Turn a kernel event into an alert naming pod, container and policy."""
        with self._lock:
            container, compiled = self._rulesets.get(event.ruleset, (None, None))
            if event.name_flags & bpf_types.NAME_UNREGISTERED:
                self._note_unregistered(event)
        rule = compiled.rule(event.rule) if compiled else None
        operation, data = _OPERATIONS.get(event.operation, ("Process", "unknown"))
        alert = agent_pb2.Alert(
            timestamp_ns=event.timestamp_ns,
            pid=event.pid,
            ppid=event.ppid,
            uid=event.uid,
            process_name=(event.process or event.comm).decode(errors="replace"),
            parent_process_name=event.parent_process.decode(errors="replace"),
            operation=operation,
            data=_data(event, data),
            resource=_resource(event),
            action=agent_pb2.ACTION_BLOCK if event.action == bpf_types.ACTION_BLOCK else agent_pb2.ACTION_AUDIT,
            result=_result(event),
            enforcer="BPFLSM",
            policy_name=rule.policy_name if rule else "DefaultPosture",
        )
        if rule:
            alert.severity, alert.message = rule.severity, rule.message
            alert.tags.extend(rule.tags)
        elif event.name_flags & bpf_types.NAME_UNREGISTERED:
            alert.policy_name, alert.message = UNREGISTERED_POLICY, UNREGISTERED_MESSAGE
        if container:
            alert.namespace_name, alert.pod_name = container.pod.namespace, container.pod.name
            alert.container_id, alert.container_name = container.id, container.name
        self._alerts.publish(alert)

    def _note_unregistered(self, event: bpf_types.AlertEvent) -> None:
        """Remember an unregistered container the kernel reported (the oldest forgotten past a bound)."""
        key = ContainerKey(pid_ns=event.args[0], mnt_ns=event.args[1])
        seen = self._unregistered.setdefault(key, UnregisteredSighting(executable=""))
        seen.executable = event.path.decode(errors="replace")
        seen.execs += 1
        seen.refused = event.action == bpf_types.ACTION_BLOCK
        seen.last_seen = time.monotonic()
        self._unregistered.move_to_end(key)
        while len(self._unregistered) > UNREGISTERED_REMEMBERED:
            self._unregistered.popitem(last=False)

    def status(self) -> agent_pb2.AgentStatus:
        """Report desired pods and live containers with what the maps hold for each."""
        with self._lock:
            if self._unregistered:  # a container stopped long enough ago is no longer one to worry about
                alive, now = live_pid_namespaces(), time.monotonic()
                for key, seen in list(self._unregistered.items()):
                    if key.pid_ns not in alive and now - seen.last_seen > UNREGISTERED_KEPT_FOR:
                        del self._unregistered[key]
            reply = agent_pb2.AgentStatus(
                bpf_lsm_active=bpf_lsm_active(),
                kernel_release=os.uname().release,
                unprotected_because=kernel_problems(),
                alerts_dropped=self._alerts.dropped,
                fail_closed=self._enforcer.fail_closed,
                bpf_object_sha256=self._enforcer.object_sha256,
            )
            for key, seen in self._unregistered.items():
                reply.unregistered.add(
                    pid_ns=key.pid_ns,
                    mnt_ns=key.mnt_ns,
                    executable=seen.executable,
                    execs=seen.execs,
                    refused=seen.refused,
                )
            for pod in sorted(self._pods, key=lambda key: (key.namespace, key.name)):
                desired = self._pods[pod]
                reply.pods.add(
                    pod=desired.pod, generation=desired.generation, policies=[p.name for p in desired.policies]
                )
            for container in self._containers.values():
                reply.containers.add(
                    id=container.id,
                    name=container.name,
                    pod=agent_pb2.PodRef(
                        namespace=container.pod.namespace, name=container.pod.name, uid=container.pod_uid
                    ),
                    pid_ns=container.key.pid_ns,
                    mnt_ns=container.key.mnt_ns,
                    alerts_dropped=self._enforcer.alerts_dropped(container.id),
                    generation=self._generations[container.id],
                    sandbox=container.sandbox,
                    **_rule_counts(self._compiled[container.id]),
                )
            return reply


def _rule_count(policy: agent_pb2.Policy) -> int:
    """Count a policy's rules of every kind, presets included."""
    lists = (
        policy.process_rules, policy.file_rules, policy.network_rules, policy.capability_rules,
        policy.syscall_rules, policy.dns_rules, policy.presets,
    )  # fmt: skip
    return sum(len(rules) for rules in lists)


def _rule_counts(compiled: CompiledRules) -> dict[str, int | bool]:
    """Report each kind's map entries and allow-list mode, as ContainerStatus names them."""
    kinds = compiled.kinds
    return {
        "process_rules": kinds[Kind.PROCESS].size,
        "process_allowlist": kinds[Kind.PROCESS].allowlist,
        "file_rules": kinds[Kind.FILE].size,
        "file_allowlist": kinds[Kind.FILE].allowlist,
        "network_rules": kinds[Kind.NETWORK].size,
        "network_allowlist": kinds[Kind.NETWORK].allowlist,
        "capability_rules": kinds[Kind.CAPABILITIES].size,
        "capabilities_allowlist": kinds[Kind.CAPABILITIES].allowlist,
        "syscall_rules": kinds[Kind.SYSCALLS].size,
        "dns_rules": kinds[Kind.DNS].size,
        "dns_allowlist": kinds[Kind.DNS].allowlist,
    }


def _resource(event: bpf_types.AlertEvent) -> str:
    """Name what the operation was about: a file, a socket or a capability."""
    if event.operation == bpf_types.OP_SOCKET:
        family, kind, protocol = event.args
        return f"domain={_enum_name(socket.AddressFamily, family)} type={_enum_name(socket.SocketKind, kind)} " \
            f"protocol={protocol}"  # fmt: skip
    if event.operation == bpf_types.OP_CAPABLE:
        return "CAP_" + CAPABILITY_NAMES.get(event.args[0], str(event.args[0])).upper()
    return event.path.decode(errors="replace")


def _result(event: bpf_types.AlertEvent) -> str:
    """Say how the operation ended: denied, or for a system call what it returned."""
    returned = ctypes.c_int32(event.args[1]).value if event.operation == bpf_types.OP_SYSCALL else event.retval
    return os.strerror(-returned) if returned < 0 else "Passed"


def _enum_name(kind: type[enum.IntEnum], value: int) -> str:
    try:
        return kind(value).name
    except ValueError:
        return str(value)


def _operation_data(event: bpf_types.AlertEvent, data: str) -> str:
    """Say what was attempted: the operation, with what it was about where the resource does not say it."""
    if event.operation == bpf_types.OP_OPEN:
        return data + (" for write" if event.access & bpf_types.ACCESS_WRITE else " for read")
    if event.operation == bpf_types.OP_SYSCALL:
        return f"syscall=SYS_{_SYSCALL_NAMES.get(event.args[0], str(event.args[0])).upper()}"
    if event.operation == bpf_types.OP_DNS_QUERY:
        unread = ", not read as one query" if event.name_flags & bpf_types.NAME_DNS_UNREAD else ""
        return f"{data} domain={event.path.decode(errors='replace')}{unread}"
    return data


def _data(event: bpf_types.AlertEvent, data: str) -> str:
    """Say what was attempted, with what the kernel noted about the file's name."""
    data = _operation_data(event, data)
    if event.name_flags & bpf_types.NAME_FILELESS:
        data += ", fileless"
    if event.name_flags & bpf_types.NAME_OUTSIDE:
        data += ", outside the container's root"
    if event.name_flags & bpf_types.NAME_LONG:
        data += ", name cut to 255 bytes"
    if event.name_flags & bpf_types.NAME_ANONYMOUS:
        data += ", anonymous memory"
    if event.access & bpf_types.ACCESS_TERMINAL:
        data += ", from a terminal"
    if event.name_flags & bpf_types.NAME_UNREGISTERED:
        data += f", in a container never registered (pid ns {event.args[0]}, mnt ns {event.args[1]})"
    if event.name_flags & bpf_types.NAME_OTHER_PROCESS:
        data += ", another process's /proc file"
    if event.name_flags & bpf_types.NAME_PATTERN_BOUND:
        data += ", patterns unfinished"  # the kernel's work bound ran out: Block and Audit patterns counted as matched
    if event.name_flags & bpf_types.NAME_ARGS_CHANGED:
        data += ", arguments changed during the exec" + (": killed" if event.action == bpf_types.ACTION_BLOCK else "")
    elif event.name_flags & bpf_types.NAME_ARGS:
        data += ", arguments judged against allowedArgs"
    return data
