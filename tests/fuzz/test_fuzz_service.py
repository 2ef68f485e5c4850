# SPDX-License-Identifier: Apache-2.0
"""Fuzzing the agent's gRPC handlers through a real server, as a buggy or hostile host would call them.

Each example gets a fresh agent (the Enforcer replaced by tests/guest_agent's recorder) with two
containers and a pause container of the nginx pod and a set in force, served by service.serve on a
Unix socket. ApplyPolicies gets requests drawn over every field of the proto (strings with NUL or
huge, unknown enum values, generations up to 2**64-1, many policies and rules), those same requests
with bytes flipped or cut, and arbitrary bytes; GetStatus and StreamAlerts get arbitrary bytes. A
call either succeeds, and the status then shows what was applied, or is refused with a code that
says the input was at fault and details naming the field, and the status is as it was before.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from guest_agent.agent import Agent
from guest_agent.alerts import AlertHub
from guest_agent.service import GuestAgentService, serve
from kadapter_api import agent_pb2
from tests.guest_agent.test_agent import RecordingEnforcer, container, request

CALL_SECONDS = 20.0  # past this a call counts as a hang
REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED)
# A refusal names the field at fault, the kernel's maps, or (gRPC's own) the size of the whole request.
NAMES_THE_FIELD = re.compile(r"^(pod|policies|generation|request)\b|^kernel maps: |Received message larger than max")
REQUEST_BUDGET = 1 << 20  # bytes that one rule repeated may take, so that examples stay quick
IN_FORCE = request(5, "/usr/bin/apt")
SERVICE = "/kadapter.v1.GuestAgent"

INT32 = st.integers(-(2**31), 2**31 - 1)
ENUMS = st.sampled_from([0, 1, 2, 3, 4, 5]) | INT32  # every value of Action, Posture and Preset, and unknown ones
HUGE = st.builds(lambda piece, times: piece * times, st.sampled_from(["/", "a", "\0", "é", "/a"]), st.integers(1, 5000))
TEXT = st.sampled_from(["", "default", "nginx-1", "nginx", "p", "tcp", "net_raw", "unlink", "x\0y"]) | st.text() | HUGE
PATHS = (
    st.sampled_from(["", "/", "/usr/bin/apt", "/etc/", "/etc/shadow", "usr/bin/apt", "/a/../b", "/a//b", "/bin/"])
    | st.sampled_from(["/**/*.key", "/etc/*hado?", "/a/{b,c}", "/x\0y", "/" + "a" * 254, "/" + "a" * 255])
    | TEXT
)
SOURCES = st.lists(PATHS, max_size=2)
VERDICT = {"action": ENUMS, "severity": INT32, "tags": st.lists(TEXT, max_size=2), "message": TEXT}
PATH_RULES = st.builds(
    agent_pb2.PathRule,
    path=PATHS,
    recursive=st.booleans(),
    execname=st.just("") | TEXT,
    read_only=st.booleans(),
    owner_only=st.booleans(),
    from_source=SOURCES,
    pattern=st.just("") | PATHS,
    no_terminal=st.booleans(),
    **VERDICT,
)
NETWORK_RULES = st.builds(
    agent_pb2.NetworkRule, protocol=TEXT, from_source=SOURCES, no_terminal=st.booleans(), **VERDICT
)  # fmt: skip
CAPABILITY_RULES = st.builds(agent_pb2.CapabilityRule, capability=TEXT, from_source=SOURCES, **VERDICT)
SYSCALL_RULES = st.builds(
    agent_pb2.SyscallRule,
    syscall=TEXT,
    path=st.just("") | PATHS,
    recursive=st.booleans(),
    from_source=SOURCES,
    from_source_dirs=st.lists(st.builds(agent_pb2.SourceDirectory, dir=PATHS, recursive=st.booleans()), max_size=2),
    **VERDICT,
)
PRESET_RULES = st.builds(agent_pb2.PresetRule, preset=ENUMS, **VERDICT)


def rules(rule: st.SearchStrategy[Message]) -> st.SearchStrategy[list[Message]]:
    """Draw a few rules, or one rule up to 5,000 times over (within REQUEST_BUDGET)."""
    return st.lists(rule, max_size=3) | st.builds(
        lambda one, times: [one] * min(times, max(1, REQUEST_BUDGET // max(1, one.ByteSize()))),
        rule,
        st.integers(1, 5000),
    )


POLICIES = st.builds(
    agent_pb2.Policy,
    name=TEXT,
    namespace=TEXT,
    containers=st.lists(TEXT, max_size=2),
    process_rules=rules(PATH_RULES),
    presets=rules(PRESET_RULES),
    file_rules=rules(PATH_RULES),
    network_rules=rules(NETWORK_RULES),
    capability_rules=rules(CAPABILITY_RULES),
    syscall_rules=rules(SYSCALL_RULES),
)
REQUESTS = st.builds(
    agent_pb2.ApplyPoliciesRequest,
    pod=st.just(IN_FORCE.pod) | st.builds(agent_pb2.PodRef, namespace=TEXT, name=TEXT, uid=TEXT),
    generation=st.sampled_from([0, 4, 5, 6, 2**64 - 1]) | st.integers(0, 2**64 - 1),
    policies=st.lists(POLICIES, max_size=3),
    file_posture=ENUMS,
    network_posture=ENUMS,
    capabilities_posture=ENUMS,
)


@st.composite
def damaged(draw: st.DrawFn, messages: st.SearchStrategy[agent_pb2.ApplyPoliciesRequest]) -> bytes:
    """Serialise a request, then flip one of its bytes or cut it short."""
    data = bytearray(draw(messages).SerializeToString())
    if not data:
        return bytes(data)
    position = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()):
        data[position] ^= draw(st.integers(1, 255))
        return bytes(data)
    return bytes(data[:position])


APPLY_BYTES = REQUESTS.map(lambda message: message.SerializeToString()) | damaged(REQUESTS) | st.binary()


@contextmanager
def guest_agent() -> Iterator[tuple[grpc.Channel, RecordingEnforcer]]:
    """Serve a fresh agent: two nginx containers and a pause container, generation 5 in force."""
    enforcer = RecordingEnforcer()
    agent = Agent(enforcer, AlertHub())  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="kfuzz-") as directory:
        rootfs = Path(directory, "rootfs")  # paths resolve in here, not in the machine's own root
        rootfs.mkdir()
        for number in (1, 2):
            agent.register(dataclasses.replace(container(number), rootfs=rootfs))
        agent.register(dataclasses.replace(container(3), rootfs=rootfs, sandbox=True))
        agent.apply(IN_FORCE)
        server = serve(GuestAgentService(agent, AlertHub()), unix_socket=Path(directory, "grpc.sock"), tcp_address=None)
        channel = grpc.insecure_channel(f"unix:{directory}/grpc.sock")
        try:
            yield channel, enforcer
        finally:
            channel.close()
            server.stop(None)


def status(channel: grpc.Channel) -> agent_pb2.AgentStatus:
    """Ask the agent what it enforces."""
    call = channel.unary_unary(f"{SERVICE}/GetStatus", response_deserializer=agent_pb2.AgentStatus.FromString)
    return call(agent_pb2.GetStatusRequest().SerializeToString(), timeout=CALL_SECONDS)


def assert_refused_cleanly(error: grpc.RpcError) -> None:
    """Check that a refusal blames the input, with details naming the field."""
    assert error.code() in REFUSALS, f"{error.code()}: {error.details()}"
    assert NAMES_THE_FIELD.search(error.details() or ""), f"names no field: {error.details()}"


def assert_in_force(after: agent_pb2.AgentStatus, applied: agent_pb2.ApplyPoliciesRequest) -> None:
    """Check that the status shows an accepted set: its pod at its generation, and every workload container too."""
    pod = (applied.pod.namespace, applied.pod.name)
    (generation,) = [entry.generation for entry in after.pods if (entry.pod.namespace, entry.pod.name) == pod]
    assert generation == applied.generation
    for entry in after.containers:
        if (entry.pod.namespace, entry.pod.name) == pod and not entry.sandbox:
            assert entry.generation == applied.generation, entry


@given(data=APPLY_BYTES, failing=st.sampled_from([None, "c1", "c2"]))
def test_apply_policies_applies_or_refuses_cleanly_changing_nothing(data: bytes, failing: str | None) -> None:
    """Any ApplyPolicies bytes are applied and shown in the status, or refused naming the field, changing nothing."""
    with guest_agent() as (channel, enforcer):
        before = status(channel)
        enforcer.fail_for = failing  # the kernel's maps refuse this container's rules
        apply = channel.unary_unary(f"{SERVICE}/ApplyPolicies")
        try:
            reply = agent_pb2.ApplyPoliciesResponse.FromString(apply(data, timeout=CALL_SECONDS))
        except grpc.RpcError as error:
            assert_refused_cleanly(error)
            assert status(channel) == before
            return
        applied = agent_pb2.ApplyPoliciesRequest.FromString(data)
        assert reply.generation == applied.generation
        assert_in_force(status(channel), applied)


@settings(max_examples=max(10, settings.default.max_examples // 3))
@given(data=st.binary())
def test_get_status_and_stream_alerts_answer_any_bytes_cleanly(data: bytes) -> None:
    """GetStatus and StreamAlerts answer any request bytes, or refuse them naming the request; never a crash."""
    with guest_agent() as (channel, _):
        try:
            channel.unary_unary(f"{SERVICE}/GetStatus")(data, timeout=CALL_SECONDS)
        except grpc.RpcError as error:
            assert_refused_cleanly(error)
            expect_parsed(agent_pb2.GetStatusRequest, data, parses=False)
        else:
            expect_parsed(agent_pb2.GetStatusRequest, data, parses=True)
        stream = channel.unary_stream(f"{SERVICE}/StreamAlerts")(data, timeout=CALL_SECONDS)
        stream.initial_metadata()  # sent as the stream opens, or with a refusal
        stream.cancel()
        if stream.code() == grpc.StatusCode.CANCELLED:  # it was open, waiting for alerts
            expect_parsed(agent_pb2.StreamAlertsRequest, data, parses=True)
        else:
            assert_refused_cleanly(stream)
            expect_parsed(agent_pb2.StreamAlertsRequest, data, parses=False)


def expect_parsed(message: type, data: bytes, *, parses: bool) -> None:
    """Check that the bytes parse as the message exactly when the server took them."""
    try:
        message.FromString(data)
    except DecodeError:
        assert not parses
    else:
        assert parses
