# SPDX-License-Identifier: Apache-2.0
"""The Exporter's sessions: one worker per Kata sandbox keeps its agent holding the pod's desired set.

The Manager decides each Kata pod's full policy set and its generation, and
adapter/exporter.py's ``apply_request`` turns that into the wire message;
this module delivers it and keeps it delivered. Each sandbox has a thread
of its own, so an agent that hangs or a VM that is gone costs only its own
session. A session sends only the latest desire (a newer one replaces one
still waiting; an older one is ignored), retries failed calls with a
capped exponential back-off, and then asks the agent at an interval which
generation it holds, pushing again when it no longer holds the desired one
(agent restarted, VM rebooted). A set the agent refuses as invalid is not
sent again until the desire changes. Counts go to adapter/metrics.py.

An accepted push is not enough to call a pod enforced: the agent may hold
the set while none of the pod's containers enforces it (their annotations
name another pod, they have not started) or while the guest kernel runs
without BPF LSM. So every push is followed by GetStatus, and a session is
applied only when the agent's answer shows each of the pod's running
containers enforcing the desired generation in a kernel that enforces.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc
from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_random

from adapter.agent_channels import SharedChannels
from adapter.discovery import SandboxId
from adapter.exporter import RPC_TIMEOUT, AgentClient
from adapter.metrics import Metrics
from adapter.transport import AgentAddress
from kadapter_api import agent_pb2
from kadapter_api.channel_security import Identity

CHECK_INTERVAL: Final = 10.0  # seconds between asking an agent whether it still holds its set
BACKOFF: Final = 0.2  # seconds before the first retry; it doubles at each failure in a row
BACKOFF_MAX: Final = 30.0  # seconds: a VM that is gone is tried at most this often
STOP_TIMEOUT: Final = 5.0  # seconds a worker may take to stop; closing its channel ends a call at once

_NOT_REACHED: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_log = logging.getLogger(__name__)
T = TypeVar("T")


class SessionState(enum.Enum):
    """Where a session stands with its agent; only APPLIED means the pod is enforced."""

    CONNECTING = "connecting"  # the agent has not answered yet
    PENDING = "pending"  # the agent answered before; a set it has not confirmed is on its way
    APPLIED = "applied"  # at the last check, every running container of the pod enforced the desired generation
    NO_CONTAINERS = "no-containers"  # the agent holds the set but knows no container of the pod (not started yet,
    # or registered under another pod's name)
    PARTIAL = "partial"  # some of the pod's containers still enforce another generation
    UNPROTECTED = "unprotected"  # the guest kernel has no BPF LSM: nothing in the VM is enforced, whatever it holds
    RETRYING = "retrying"  # the agent answered with an error; retried with back-off
    UNREACHABLE = "unreachable"  # the agent did not answer (unavailable, timed out); retried with back-off
    REFUSED = "refused"  # the agent refused the set as invalid; nothing is sent until the desire changes


@dataclass(frozen=True)
class SessionSettings:
    """How sessions reach agents (the adapter's credentials) and pace their calls (seconds; tests shorten them)."""

    identity: Identity | None = None  # None: agents on private Unix sockets only (tests)
    check_interval: float = CHECK_INTERVAL
    backoff: float = BACKOFF
    backoff_max: float = BACKOFF_MAX
    rpc_timeout: float = RPC_TIMEOUT


@dataclass(frozen=True)
class Unregistered:
    """A container of the VM whose registration never completed, as the agent saw it executing."""

    pid_ns: int
    mnt_ns: int
    executable: str  # the last program it ran, named within its own mounts
    execs: int  # reported so far (the guest kernel rate-limits reports)
    refused: bool  # the agent runs fail-closed: none of them ran

    @classmethod
    def of(cls, item: agent_pb2.UnregisteredContainer) -> Unregistered:
        """Copy the agent's report of one container."""
        return cls(item.pid_ns, item.mnt_ns, item.executable, item.execs, item.refused)


@dataclass(frozen=True)
class Guest:
    """What the agent last said of its whole VM, whichever pod asks: it holds for every pod of the sandbox."""

    bpf_lsm_active: bool  # false: the guest kernel enforces nothing (no "bpf" in its LSM list)
    fail_closed: bool  # execs in unregistered containers are refused
    kernel_release: str
    unregistered: tuple[Unregistered, ...]
    unprotected_because: tuple[str, ...] = ()  # the agent's self-check: why nothing in the VM is enforced

    @classmethod
    def of(cls, status: agent_pb2.AgentStatus) -> Guest:
        """Copy the VM-wide part of an agent's status."""
        return cls(
            bpf_lsm_active=status.bpf_lsm_active,
            fail_closed=status.fail_closed,
            kernel_release=status.kernel_release,
            unregistered=tuple(Unregistered.of(item) for item in status.unregistered),
            unprotected_because=tuple(status.unprotected_because),
        )

    @property
    def protected(self) -> bool:
        """Tell whether the VM can enforce anything: the BPF LSM runs and the agent's self-check passed."""
        return self.bpf_lsm_active and not self.unprotected_because

    @property
    def why_unprotected(self) -> str:
        """Say why the VM enforces nothing, in the agent's words when it gave any."""
        return "; ".join(self.unprotected_because) or 'no "bpf" in the guest kernel\'s LSM list'


@dataclass(frozen=True)
class SessionStatus:
    """One session as `kadapter status` and the metrics see it."""

    sandbox: SandboxId
    pod: str  # namespace/name
    pod_uid: str
    agent: AgentAddress
    state: SessionState
    desired_generation: int
    applied_generation: int | None  # as the agent last confirmed it; None: it holds nothing for the pod
    policies: tuple[str, ...]  # the policy names the agent last confirmed for the pod
    containers: tuple[str, ...]  # the pod's running containers (the sandbox's pause container aside), last check
    stale_containers: tuple[str, ...]  # those enforcing another generation, or registered for another pod uid
    guest: Guest | None  # None until the agent answered a GetStatus
    last_error: str | None  # of the last failed call; None once a call succeeds
    last_push_latency: float | None  # seconds, of the last ApplyPolicies call the agent accepted
    pushes: int  # ApplyPolicies calls made
    failures: int  # calls (ApplyPolicies or GetStatus) that failed


class _Session:
    """One sandbox's agent, served by a worker thread of its own."""

    def __init__(
        self,
        sandbox: SandboxId,
        address: AgentAddress,
        request: agent_pb2.ApplyPoliciesRequest,
        *,
        settings: SessionSettings,
        metrics: Metrics,
        channels: SharedChannels,
    ) -> None:
        self._settings = settings
        self._channels = channels
        self._metrics = metrics
        self._lock = threading.Condition()
        self._desired = request
        self._refused: int | None = None  # the generation the agent refused as invalid
        self._woken = False
        self._closed = False
        self._status = SessionStatus(
            sandbox=sandbox,
            pod=f"{request.pod.namespace}/{request.pod.name}",
            pod_uid=request.pod.uid,
            agent=address,
            state=SessionState.CONNECTING,
            desired_generation=request.generation,
            applied_generation=None,
            policies=(),
            containers=(),
            stale_containers=(),
            guest=None,
            last_error=None,
            last_push_latency=None,
            pushes=0,
            failures=0,
        )
        self._client = self._open()
        metrics.sessions.labels(state=SessionState.CONNECTING.value).inc()
        self._thread = threading.Thread(target=self._run, name=f"kadapter-session-{sandbox}", daemon=True)
        self._thread.start()

    @property
    def status(self) -> SessionStatus:
        """Return the session's status now."""
        with self._lock:
            return self._status

    def desire(self, request: agent_pb2.ApplyPoliciesRequest) -> None:
        """Make request the set to hold, unless the session already has this generation or a newer one."""
        with self._lock:
            if request.generation <= self._desired.generation:
                return
            self._desired = request
            state = self._status.state
            unconfirmed = SessionState.PENDING if state in (SessionState.APPLIED, SessionState.REFUSED) else state
            self._set(desired_generation=request.generation, state=unconfirmed)
            self._woken = True
            self._lock.notify_all()

    def close(self) -> None:
        """Stop the worker, ending any call in flight at once, and leave the state gauge."""
        with self._lock:
            self._metrics.sessions.labels(state=self._status.state.value).dec()
            self._closed = True
            self._lock.notify_all()
            client = self._client
        client.close()
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            _log.warning("sandbox %s: session worker still running after %.0f s", self._status.sandbox, STOP_TIMEOUT)

    def _open(self) -> AgentClient:
        """Open a channel whose calls are tried once: the session retries, between calls it can interrupt."""
        return AgentClient(
            self._status.agent,
            channels=self._channels,
            retry_for=0,
            rpc_timeout=self._settings.rpc_timeout,
        )

    def _run(self) -> None:
        """Reconcile until closed: retry failed calls with back-off, and check again after each interval."""
        retrying = Retrying(
            retry=retry_if_exception_type(grpc.RpcError),
            # The jitter keeps sessions that failed together (a node-wide hiccup) from retrying in step.
            wait=wait_exponential(multiplier=self._settings.backoff, max=self._settings.backoff_max)
            + wait_random(0, self._settings.backoff),
            stop=lambda _: self._closed,
            sleep=self._pause,
            reraise=True,
        )
        try:
            while not self._closed:
                retrying(self._reconcile)
                self._pause(self._idle())
        except (grpc.RpcError, ValueError):  # a call cut short by close(), or begun on the channel it closed
            if not self._closed:
                raise

    def _idle(self) -> float | None:
        """Return how long to wait before the next check: indefinitely (until a new desire) once refused."""
        with self._lock:
            return None if self._refused == self._desired.generation else self._settings.check_interval

    def _pause(self, seconds: float | None) -> None:
        """Wait for seconds (None: indefinitely), or less when a new desire arrives or the session closes."""
        with self._lock:
            self._lock.wait_for(lambda: self._woken or self._closed, timeout=seconds)
            self._woken = False

    def _reconcile(self) -> None:
        """Bring the agent to the desired generation: push it, unless the agent says it still holds it.

        After a push the agent is asked at once what its containers enforce: the push's answer says what the
        agent holds, not what the kernel enforces.
        """
        with self._lock:
            generation, confirmed = self._desired.generation, self._status.applied_generation
            if generation == self._refused:
                return
        if confirmed == generation:
            if self._check() == generation:
                return
            self._metrics.resyncs.inc()
            _log.info(
                "sandbox %s: agent no longer holds generation %d, pushing again",
                self._status.sandbox,
                generation,
                extra=self._fields("resync", generation=generation),
            )
        if self._push():
            self._check()

    def _check(self) -> int | None:
        """Ask the agent what it holds for the pod and what the pod's containers enforce; return the generation held."""
        status = self._call("status", AgentClient.status)
        with self._lock:
            desired = self._desired
            pod = next((item for item in status.pods if item.pod == desired.pod), None)
            held = pod.generation if pod is not None else None
            containers = pod_containers(status, desired.pod)
            names = tuple(container.name for container in containers)
            stale = tuple(container.name for container in containers if not _enforces(container, desired))
            guest = Guest.of(status)
            self._set(
                state=verdict(desired.generation, held, guest, containers=names, stale=stale),
                applied_generation=held,
                policies=tuple(pod.policies) if pod is not None else (),
                containers=names,
                stale_containers=stale,
                guest=guest,
                last_error=None,
            )
        return held

    def _push(self) -> bool:
        """Send the latest desire and tell whether the agent took it; a refusal as invalid is remembered, not retried.

        The state is left to the check that follows: the agent holding the set says nothing of its containers.
        """
        with self._lock:
            request = self._desired
        started = time.monotonic()
        try:
            response = self._call("apply", lambda client: client.apply(request))
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.INVALID_ARGUMENT:
                raise
            with self._lock:
                self._refused = request.generation
            return False
        latency = time.monotonic() - started
        with self._lock:
            if self._closed:
                return False
            self._metrics.pushes.labels(outcome="applied").inc()
            self._metrics.push_latency.observe(latency)
            self._set(
                applied_generation=response.generation,
                policies=tuple(policy.name for policy in request.policies),
                last_error=None,
                last_push_latency=latency,
                pushes=self._status.pushes + 1,
            )
            _log.info(
                "sandbox %s (pod %s): agent applied generation %d, %d policies, in %.3f s",
                self._status.sandbox,
                self._status.pod,
                response.generation,
                len(request.policies),
                latency,
                extra=self._fields(
                    "push",
                    generation=response.generation,
                    policies=list(self._status.policies),
                    latency_seconds=round(latency, 6),
                ),
            )
        return True

    def _call(self, operation: str, call: Callable[[AgentClient], T]) -> T:
        """Make one call to the agent; on failure, record it and raise."""
        with self._lock:
            client = self._client
        try:
            return call(client)
        except grpc.RpcError as error:
            self._failed(operation, error)
            raise

    def _failed(self, operation: str, error: grpc.RpcError) -> None:
        """Record a failed call, and reopen the channel when the agent was not reached.

        A fresh channel dials at the next call; the old one would wait out gRPC's own reconnect
        back-off (up to two minutes), long after a rebooted VM is back.
        """
        code = error.code()
        with self._lock:
            if self._closed:
                return
            self._metrics.failures.labels(operation=operation, code=code.name).inc()
            if code is grpc.StatusCode.INVALID_ARGUMENT and operation == "apply":
                state = SessionState.REFUSED
            else:
                state = SessionState.UNREACHABLE if code in _NOT_REACHED else SessionState.RETRYING
            if operation == "apply":
                self._metrics.pushes.labels(outcome="refused" if state is SessionState.REFUSED else "failed").inc()
            self._set(
                state=state,
                last_error=f"{code.name}: {error.details()}",
                failures=self._status.failures + 1,
                pushes=self._status.pushes + int(operation == "apply"),
            )
            _log.warning(
                "sandbox %s (pod %s): %s failed: %s",
                self._status.sandbox,
                self._status.pod,
                operation,
                self._status.last_error,
                extra=self._fields("failure", operation=operation, code=code.name, generation=self._desired.generation),
            )
            if code is grpc.StatusCode.UNAVAILABLE:
                self._client.close(broken=True)
                self._client = self._open()

    def _set(self, **changes: Any) -> None:
        """Change the status (lock held), moving the session in the state gauge and logging what changed.

        Nothing changes once closed.
        """
        if self._closed:
            return
        before, self._status = self._status, dataclasses.replace(self._status, **changes)
        after = self._status
        if after.state is not before.state:
            self._metrics.sessions.labels(state=before.state.value).dec()
            self._metrics.sessions.labels(state=after.state.value).inc()
            self._log_state(before.state)
        if after.guest is not None and after.guest != before.guest:
            self._log_guest(after.guest, before.guest)

    def _log_state(self, previous: SessionState) -> None:
        """Log a state change (lock held); as a warning when the pod is not enforced although its agent answers."""
        status = self._status
        _log.log(
            logging.WARNING if status.state in _NOT_ENFORCED else logging.INFO,
            "sandbox %s (pod %s, agent %s): %s -> %s, generation %d desired, %s applied, stale containers %s, error %s",
            status.sandbox,
            status.pod,
            status.agent,
            previous.value,
            status.state.value,
            status.desired_generation,
            status.applied_generation,
            ",".join(status.stale_containers) or "none",
            status.last_error,
            extra=self._fields(
                "state",
                previous=previous.value,
                state=status.state.value,
                desired_generation=status.desired_generation,
                applied_generation=status.applied_generation,
                containers=list(status.containers),
                stale_containers=list(status.stale_containers),
                error=status.last_error,
            ),
        )

    def _log_guest(self, guest: Guest, before: Guest | None) -> None:
        """Raise the alarm (lock held) when the VM turns out to enforce nothing, or to run unregistered containers."""
        if not guest.protected and (before is None or before.protected):
            _log.error(
                "sandbox %s (pod %s): UNPROTECTED: nothing in the VM is enforced (guest kernel %s): %s",
                self._status.sandbox,
                self._status.pod,
                guest.kernel_release or "(unnamed)",
                guest.why_unprotected,
                extra=self._fields("unprotected", kernel_release=guest.kernel_release, reason=guest.why_unprotected),
            )
        known = set() if before is None else {(item.pid_ns, item.mnt_ns) for item in before.unregistered}
        new = [item for item in guest.unregistered if (item.pid_ns, item.mnt_ns) not in known]
        if new:
            _log.warning(
                "sandbox %s (pod %s): %d container(s) the agent never registered, %s: %s",
                self._status.sandbox,
                self._status.pod,
                len(new),
                "refused (fail-closed)" if guest.fail_closed else "running unprotected (fail-open)",
                ", ".join(item.executable for item in new),
                extra=self._fields(
                    "unregistered",
                    fail_closed=guest.fail_closed,
                    unregistered=[dataclasses.asdict(item) for item in new],
                ),
            )

    def _fields(self, event: str, **more: object) -> dict[str, object]:
        """Return a log record's structured fields: what happened, to which sandbox, pod and agent, and more."""
        status = self._status
        return {"event": event, "sandbox": status.sandbox, "pod": status.pod, "agent": str(status.agent), **more}


_NOT_ENFORCED: Final = frozenset({SessionState.NO_CONTAINERS, SessionState.PARTIAL, SessionState.UNPROTECTED})


def pod_containers(status: agent_pb2.AgentStatus, pod: agent_pb2.PodRef) -> list[agent_pb2.ContainerStatus]:
    """Return the pod's running containers as the agent reports them, its pause container aside.

    They are matched by namespace and name, as the agent binds a pod's set to containers (from their CRI
    annotations): a container registered under another name enforces another pod's set, if any.
    """
    return [
        container
        for container in status.containers
        if not container.sandbox and (container.pod.namespace, container.pod.name) == (pod.namespace, pod.name)
    ]


def _enforces(container: agent_pb2.ContainerStatus, desired: agent_pb2.ApplyRequest) -> bool:
    """Tell whether a container of the pod enforces the desired set: the generation, and the pod's uid.

    The uid is the one the container's CRI annotations gave the agent: another one is another incarnation of
    the pod, whatever it enforces.
    """
    same_pod = not container.pod.uid or not desired.pod.uid or container.pod.uid == desired.pod.uid
    return same_pod and container.generation == desired.generation


def verdict(
    desired: int, held: int | None, guest: Guest, *, containers: Sequence[str], stale: Sequence[str]
) -> SessionState:
    """Decide what an agent's answer means for the pod: applied only when the kernel and every container agree.

    held is the generation the agent holds for the pod (None: none); containers are the pod's running ones,
    stale those of them enforcing another generation than desired.
    """
    if not guest.protected:
        return SessionState.UNPROTECTED
    if held != desired:
        return SessionState.PENDING
    if not containers:
        return SessionState.NO_CONTAINERS
    if stale:
        return SessionState.PARTIAL
    return SessionState.APPLIED


class SessionPool:
    """The Exporter's sessions, one per Kata sandbox; every method may be called from any thread."""

    def __init__(
        self,
        *,
        settings: SessionSettings | None = None,
        metrics: Metrics | None = None,
        channels: SharedChannels | None = None,
    ) -> None:
        """Serve sessions over channels (those of the alert streams too), or channels of the pool's own."""
        self.settings = settings if settings is not None else SessionSettings()
        self._channels = channels if channels is not None else SharedChannels(self.settings.identity)
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.declare_states(state.value for state in SessionState)
        self.metrics.unprotected_sandboxes.set_function(self._unprotected)
        self.metrics.unregistered_containers.set_function(self._unregistered)
        self._sessions: dict[SandboxId, _Session] = {}
        self._lock = threading.Lock()
        self._closed = False

    def desire(self, sandbox: SandboxId, address: AgentAddress, request: agent_pb2.ApplyPoliciesRequest) -> None:
        """Have the sandbox's agent hold request, the pod's full set; a generation older than the last is ignored.

        A new sandbox gets a session; a sandbox whose agent moved to another address gets a fresh one.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the session pool is closed")
            current = self._sessions.get(sandbox)
            if current is not None and current.status.agent == address:
                current.desire(request)
                return
            self._sessions[sandbox] = _Session(
                sandbox, address, request, settings=self.settings, metrics=self.metrics, channels=self._channels
            )
        if current is not None:
            current.close()

    def drop(self, sandbox: SandboxId) -> None:
        """End the sandbox's session (its pod is gone): once this returns, no new call reaches its agent."""
        with self._lock:
            session = self._sessions.pop(sandbox, None)
        if session is not None:
            session.close()

    def snapshot(self) -> list[SessionStatus]:
        """Return every session's status, by sandbox id."""
        with self._lock:
            sessions = list(self._sessions.values())
        return sorted((session.status for session in sessions), key=lambda status: status.sandbox)

    def _unprotected(self) -> int:
        """Count the sandboxes whose agent last said the guest kernel enforces nothing (computed at each scrape)."""
        return sum(1 for status in self.snapshot() if status.guest is not None and not status.guest.protected)

    def _unregistered(self) -> int:
        """Count the containers the agents last reported they never registered (computed at each scrape)."""
        return sum(len(status.guest.unregistered) for status in self.snapshot() if status.guest is not None)

    def close(self) -> None:
        """End every session; the pool takes no new desire."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
