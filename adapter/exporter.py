# SPDX-License-Identifier: Apache-2.0
"""The Exporter: sends each Kata pod's desired policy set to the agent in its VM.

It turns the Manager's decision (adapter/selection.py) into the wire
message of kadapter_api/agent.proto and delivers it with retries, because
an agent may still be starting when its pod appears. It and the channels
it calls over (adapter/agent_channels.py) are the only host-side code
that speaks gRPC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from adapter.agent_channels import SharedChannels
from adapter.pods import Pod, Postures
from adapter.policy import Action, MatchRule, PathRule, Preset, Rule, SyscallRule
from adapter.selection import PodPolicy
from adapter.transport import AgentAddress
from kadapter_api import agent_pb2, agent_pb2_grpc
from kadapter_api.channel_security import Identity

RPC_TIMEOUT = 30.0  # seconds; the guest may be a slow emulated VM
RETRY_FOR = 60.0  # seconds an agent may take to come up
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

T = TypeVar("T")

_ACTIONS = {
    Action.ALLOW: agent_pb2.ACTION_ALLOW,
    Action.AUDIT: agent_pb2.ACTION_AUDIT,
    Action.BLOCK: agent_pb2.ACTION_BLOCK,
}
_PRESETS = {
    Preset.FILELESS_EXEC: agent_pb2.PRESET_FILELESS_EXEC,
    Preset.ANONYMOUS_MAP_EXEC: agent_pb2.PRESET_ANONYMOUS_MAP_EXEC,
    Preset.PROTECT_ENV: agent_pb2.PRESET_PROTECT_ENV,
    Preset.PROTECT_PROC: agent_pb2.PRESET_PROTECT_PROC,
    Preset.EXEC: agent_pb2.PRESET_EXEC,
}
_POSTURES = {"block": agent_pb2.POSTURE_BLOCK, "audit": agent_pb2.POSTURE_AUDIT}


def apply_request(
    pod: Pod, pod_policies: Iterable[PodPolicy], *, generation: int, postures: Postures
) -> agent_pb2.ApplyPoliciesRequest:
    """Build the ApplyPolicies message for one pod."""
    return agent_pb2.ApplyPoliciesRequest(
        pod=agent_pb2.PodRef(namespace=pod.namespace, name=pod.name, uid=pod.uid),
        generation=generation,
        policies=[_policy(item) for item in pod_policies],
        file_posture=_POSTURES[postures.file],
        network_posture=_POSTURES[postures.network],
        capabilities_posture=_POSTURES[postures.capabilities],
    )


def _policy(item: PodPolicy) -> agent_pb2.Policy:
    """Build one policy's message, limited to the containers it applies to in this pod."""
    policy = item.policy
    return agent_pb2.Policy(
        name=policy.name,
        namespace=policy.namespace or "",
        containers=item.containers,
        process_rules=[_path_rule(rule) for rule in policy.process_rules],
        presets=[agent_pb2.PresetRule(preset=_PRESETS[rule.preset], **_verdict(rule)) for rule in policy.presets],
        file_rules=[_path_rule(rule) for rule in policy.file_rules],
        network_rules=[
            agent_pb2.NetworkRule(protocol=rule.protocol, no_terminal=rule.no_terminal, **_matching(rule))
            for rule in policy.network_rules
        ],
        capability_rules=[
            agent_pb2.CapabilityRule(capability=rule.capability, **_matching(rule)) for rule in policy.capability_rules
        ],
        syscall_rules=[_syscall_rule(rule) for rule in policy.syscall_rules],
        dns_rules=[agent_pb2.DnsRule(domain=rule.domain, **_matching(rule)) for rule in policy.dns_rules],
    )


def _syscall_rule(rule: SyscallRule) -> agent_pb2.SyscallRule:
    """Build a syscalls rule's message, with the directories of executables only syscalls rules may name."""
    return agent_pb2.SyscallRule(
        syscall=rule.syscall,
        path=rule.path,
        recursive=rule.recursive,
        from_source_dirs=[
            agent_pb2.SourceDirectory(dir=directory, recursive=recursive) for directory, recursive in rule.source_dirs
        ],
        **_matching(rule),
    )


def _path_rule(rule: PathRule) -> agent_pb2.PathRule:
    """Build a process or file rule's message: the wire has one PathRule for both."""
    return agent_pb2.PathRule(
        path=rule.path,
        recursive=rule.recursive,
        execname=rule.execname,
        pattern=rule.pattern,
        read_only=rule.read_only,
        owner_only=rule.owner_only,
        no_terminal=rule.no_terminal,
        allowed_args=rule.allowed_args,
        **_matching(rule),
    )


def _verdict(rule: Rule) -> dict[str, Any]:
    """Return the fields every rule message shares: what to do when it matches, and what to report."""
    return {"action": _ACTIONS[rule.action], "severity": rule.severity, "tags": rule.tags, "message": rule.message}


def _matching(rule: MatchRule) -> dict[str, Any]:
    """Return the fields of every process, file, network and capability rule message: the verdict and the sources."""
    return {**_verdict(rule), "from_source": rule.from_source}


def _transient(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() in _RETRYABLE


class AgentClient:
    """Calls to one guest agent over a channel shared with the process's other clients of that agent."""

    def __init__(
        self,
        address: AgentAddress,
        *,
        identity: Identity | None = None,
        channels: SharedChannels | None = None,
        retry_for: float = RETRY_FOR,
        rpc_timeout: float = RPC_TIMEOUT,
    ) -> None:
        """Reach address through channels, or with identity over a channel of the client's own."""
        self.address = address
        self._rpc_timeout = rpc_timeout
        self._channels = channels if channels is not None else SharedChannels(identity)
        self._channel = self._channels.acquire(address)
        self._stub = agent_pb2_grpc.GuestAgentStub(self._channel.grpc)
        self._calls: set[grpc.Future] = set()  # in flight, for close() to cancel: the channel may outlive the client
        self._closed = False
        self._lock = threading.Lock()
        self._retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_delay(retry_for),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )

    def apply(self, request: agent_pb2.ApplyPoliciesRequest) -> agent_pb2.ApplyPoliciesResponse:
        """Deliver a pod's policy set, retrying while the agent is unreachable."""
        return self._retrying(self._unary, self._stub.ApplyPolicies, request)

    def status(self) -> agent_pb2.AgentStatus:
        """Ask the agent what it enforces."""
        return self._retrying(self._unary, self._stub.GetStatus, agent_pb2.GetStatusRequest())

    def alerts(self) -> Iterator[agent_pb2.Alert]:
        """Stream the agent's alerts; the iterator ends when the stream does."""
        stream = self._start(lambda: self._stub.StreamAlerts(agent_pb2.StreamAlertsRequest(), wait_for_ready=True))
        try:
            yield from stream
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:  # cancelled: close() was called
                raise
        finally:
            self._end(stream)

    def _unary(self, method: grpc.UnaryUnaryMultiCallable, request: Any) -> Any:
        """Make one call that close() can cancel."""
        call = self._start(lambda: method.future(request, timeout=self._rpc_timeout))
        try:
            return call.result()
        except grpc.FutureCancelledError:
            raise call from None  # the call is itself the RpcError, CANCELLED, that a cancelled call raises
        finally:
            self._end(call)

    def _start(self, begin: Callable[[], T]) -> T:
        """Begin a call and note it, unless the client is closed (then raise, as a closed channel does)."""
        with self._lock:
            if self._closed:
                raise ValueError("the agent client is closed")
            call = begin()
            self._calls.add(call)
            return call

    def _end(self, call: grpc.Future) -> None:
        with self._lock:
            self._calls.discard(call)

    def close(self, *, broken: bool = False) -> None:
        """Cancel the calls in flight and let go of the channel; broken: the agent was not reached, dial afresh.

        The channel closes, ending any call still in flight, when no other client holds it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            calls = list(self._calls)
        for call in calls:
            call.cancel()
        self._channels.release(self._channel, broken=broken)

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
