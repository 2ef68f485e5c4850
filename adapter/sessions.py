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
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc
from tenacity import Retrying, retry_if_exception_type, wait_exponential, wait_random

from adapter.discovery import SandboxId
from adapter.exporter import RPC_TIMEOUT, AgentClient
from adapter.metrics import Metrics
from adapter.transport import AgentAddress
from kadapter_api import agent_pb2

CHECK_INTERVAL: Final = 10.0  # seconds between asking an agent whether it still holds its set
BACKOFF: Final = 0.2  # seconds before the first retry; it doubles at each failure in a row
BACKOFF_MAX: Final = 30.0  # seconds: a VM that is gone is tried at most this often
STOP_TIMEOUT: Final = 5.0  # seconds a worker may take to stop; closing its channel ends a call at once

_NOT_REACHED: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_log = logging.getLogger(__name__)
T = TypeVar("T")


class SessionState(enum.Enum):
    """Where a session stands with its agent."""

    CONNECTING = "connecting"  # the agent has not answered yet
    PENDING = "pending"  # the agent answered before; a set it has not confirmed is on its way
    APPLIED = "applied"  # the agent confirmed the desired generation at the last push or check
    RETRYING = "retrying"  # the agent answered with an error; retried with back-off
    UNREACHABLE = "unreachable"  # the agent did not answer (unavailable, timed out); retried with back-off
    REFUSED = "refused"  # the agent refused the set as invalid; nothing is sent until the desire changes


@dataclass(frozen=True)
class SessionSettings:
    """How sessions pace their calls (seconds); tests shorten them."""

    check_interval: float = CHECK_INTERVAL
    backoff: float = BACKOFF
    backoff_max: float = BACKOFF_MAX
    rpc_timeout: float = RPC_TIMEOUT


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
    ) -> None:
        self._settings = settings
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
        return AgentClient(self._status.agent, retry_for=0, rpc_timeout=self._settings.rpc_timeout)

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
        """Bring the agent to the desired generation: push it, unless the agent says it still holds it."""
        with self._lock:
            generation, confirmed = self._desired.generation, self._status.applied_generation
            if generation == self._refused:
                return
        if confirmed == generation:
            if self._holds(generation):
                return
            self._metrics.resyncs.inc()
            _log.info(
                "sandbox %s: agent no longer holds generation %d, pushing again",
                self._status.sandbox,
                generation,
                extra=self._fields("resync", generation=generation),
            )
        self._push()

    def _holds(self, generation: int) -> bool:
        """Ask the agent which generation it holds for the pod, and tell whether it is this one."""
        status = self._call("status", AgentClient.status)
        with self._lock:
            pod = next((item for item in status.pods if item.pod == self._desired.pod), None)
            reported = pod.generation if pod is not None else None
            self._set(
                state=self._answered(reported),
                applied_generation=reported,
                policies=tuple(pod.policies) if pod is not None else (),
                last_error=None,
            )
        return reported == generation

    def _push(self) -> None:
        """Send the latest desire; a refusal as invalid is remembered rather than retried."""
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
            return
        latency = time.monotonic() - started
        with self._lock:
            if self._closed:
                return
            self._metrics.pushes.labels(outcome="applied").inc()
            self._metrics.push_latency.observe(latency)
            self._set(
                state=self._answered(response.generation),
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
                self._client.close()
                self._client = self._open()

    def _answered(self, confirmed: int | None) -> SessionState:
        """Return the state after the agent answered that it holds the confirmed generation (lock held)."""
        return SessionState.APPLIED if confirmed == self._desired.generation else SessionState.PENDING

    def _set(self, **changes: Any) -> None:
        """Change the status (lock held), moving the session in the state gauge; nothing once closed."""
        if self._closed:
            return
        before, self._status = self._status, dataclasses.replace(self._status, **changes)
        after = self._status
        if after.state is not before.state:
            self._metrics.sessions.labels(state=before.state.value).dec()
            self._metrics.sessions.labels(state=after.state.value).inc()
            _log.info(
                "sandbox %s (pod %s, agent %s): %s -> %s, generation %d desired, %s applied, error %s",
                after.sandbox,
                after.pod,
                after.agent,
                before.state.value,
                after.state.value,
                after.desired_generation,
                after.applied_generation,
                after.last_error,
                extra=self._fields(
                    "state",
                    previous=before.state.value,
                    state=after.state.value,
                    desired_generation=after.desired_generation,
                    applied_generation=after.applied_generation,
                    error=after.last_error,
                ),
            )

    def _fields(self, event: str, **more: object) -> dict[str, object]:
        """Return a log record's structured fields: what happened, to which sandbox, pod and agent, and more."""
        status = self._status
        return {"event": event, "sandbox": status.sandbox, "pod": status.pod, "agent": str(status.agent), **more}


class SessionPool:
    """The Exporter's sessions, one per Kata sandbox; every method may be called from any thread."""

    def __init__(self, *, settings: SessionSettings | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings if settings is not None else SessionSettings()
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.declare_states(state.value for state in SessionState)
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
            self._sessions[sandbox] = _Session(sandbox, address, request, settings=self.settings, metrics=self.metrics)
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
