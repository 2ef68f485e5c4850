"""The agent's gRPC service: a socket for root alone, and bounds on what one peer may ask for."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from guest_agent.agent import Agent
from guest_agent.alerts import AlertHub
from guest_agent.service import MAX_REASON, GuestAgentService, serve
from kadapter_api import agent_pb2, agent_pb2_grpc
from tests.guest_agent.test_agent import RecordingEnforcer


def test_grpc_socket_and_its_directory_are_root_only(tmp_path: Path) -> None:
    """A lax umask and a world-open directory left from before still give 0700 and 0600."""
    directory = tmp_path / "kadapter"
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)
    previous = os.umask(0)
    try:
        server = serve(GuestAgentService(None, AlertHub()), unix_socket=directory / "grpc.sock", tcp_address=None)
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(directory / "grpc.sock").st_mode) == 0o600
    finally:
        server.stop(None)


@contextmanager
def served(service: GuestAgentService, directory: Path, **options: Any) -> Iterator[grpc.Channel]:
    """Serve a service over a real gRPC server on a Unix socket in directory; yield a channel to it."""
    server = serve(service, unix_socket=directory / "grpc.sock", **options)
    channel = grpc.insecure_channel(f"unix:{directory / 'grpc.sock'}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(None)


@pytest.fixture
def agent_channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    """Serve an agent over a real gRPC server with 2 alert streams and 64 KiB messages at most."""
    agent = Agent(RecordingEnforcer(), AlertHub(), max_rules=10)  # type: ignore[arg-type]
    with served(GuestAgentService(agent, AlertHub(), max_streams=2), tmp_path, max_message_bytes=64 << 10) as channel:
        yield channel


def nginx_request(*paths: str) -> agent_pb2.ApplyPoliciesRequest:
    """Return a set for the nginx pod blocking these paths."""
    rules = [agent_pb2.PathRule(path=path, action=agent_pb2.ACTION_BLOCK) for path in paths]
    return agent_pb2.ApplyPoliciesRequest(
        pod=agent_pb2.PodRef(namespace="default", name="nginx-1"),
        generation=1,
        policies=[agent_pb2.Policy(name="p", process_rules=rules)],
    )


def test_a_stream_past_the_limit_is_refused_and_calls_still_answered(agent_channel: grpc.Channel) -> None:
    """Two streams hold; a third is refused with the reason; ApplyPolicies and GetStatus go on being answered."""
    stub = agent_pb2_grpc.GuestAgentStub(agent_channel)
    held = [stub.StreamAlerts(agent_pb2.StreamAlertsRequest()) for _ in range(2)]
    try:
        for stream in held:  # both are open once their first (empty) metadata arrives
            stream.initial_metadata()
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.StreamAlerts(agent_pb2.StreamAlertsRequest())))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2 alert streams" in refused.value.details()
        assert stub.ApplyPolicies(nginx_request("/usr/bin/apt"), timeout=5).generation == 1
        assert stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5).pods[0].generation == 1
    finally:
        for stream in held:
            stream.cancel()


def test_an_oversized_request_is_refused_by_size(agent_channel: grpc.Channel) -> None:
    """A request past the message limit never reaches the agent; gRPC says why."""
    stub = agent_pb2_grpc.GuestAgentStub(agent_channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ApplyPolicies(nginx_request("/" + "x" * (100 << 10)), timeout=5)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in refused.value.details()
    assert not stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=5).pods


def test_more_rules_than_a_table_holds_are_refused_with_the_count(agent_channel: grpc.Channel) -> None:
    """A set that could never fit the maps is refused whole, naming both numbers."""
    stub = agent_pb2_grpc.GuestAgentStub(agent_channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ApplyPolicies(nginx_request(*(f"/usr/bin/tool{number}" for number in range(11))), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "11 rules, more than the 10 entries" in refused.value.details()


def test_bytes_that_are_no_request_are_refused_as_the_callers_error(agent_channel: grpc.Channel) -> None:
    """Bytes that do not parse get INVALID_ARGUMENT naming the request (gRPC alone says INTERNAL), changing nothing."""
    apply = agent_channel.unary_unary("/kadapter.v1.GuestAgent/ApplyPolicies")
    with pytest.raises(grpc.RpcError) as refused:
        apply(b"\xff\xff", timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("request: not a valid message")
    assert not agent_pb2_grpc.GuestAgentStub(agent_channel).GetStatus(agent_pb2.GetStatusRequest(), timeout=5).pods


def test_a_refusal_quoting_a_long_path_keeps_its_reason(agent_channel: grpc.Channel) -> None:
    """A reason quoting a 20,000-character path is cut to fit a trailer, not lost to the peer's header limit."""
    stub = agent_pb2_grpc.GuestAgentStub(agent_channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ApplyPolicies(nginx_request("x" * 20_000), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("policies[0].process_rules[0].path: 'xxx")
    assert len(refused.value.details()) == MAX_REASON


class HungUpContext:
    """The context of a stream the host left before the handler got to it: callbacks are no longer taken."""

    def add_callback(self, callback: object) -> bool:
        """Refuse the callback, as gRPC does once a call is over."""
        return False

    def send_initial_metadata(self, metadata: object) -> None:
        """Send nothing: there is no one to send it to."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        """Fail loudly: nothing should be refused here."""
        raise AssertionError(f"{code}: {details}")


def drain(stream: Iterator[agent_pb2.Alert], into: list[list[agent_pb2.Alert]]) -> None:
    """Read a stream to its end and keep what it gave."""
    into.append(list(stream))


def test_a_stream_the_host_left_before_it_began_ends_and_frees_its_slot() -> None:
    """Such a stream ends at once and gives its slot back (it used to wait for a callback that never came)."""
    service = GuestAgentService(None, AlertHub(), max_streams=1)  # type: ignore[arg-type]
    for _ in range(2):  # had the first kept the only slot, the second would be refused
        drained: list[list[agent_pb2.Alert]] = []
        stream = service.StreamAlerts(agent_pb2.StreamAlertsRequest(), HungUpContext())  # type: ignore[arg-type]
        worker = threading.Thread(target=drain, args=(stream, drained), daemon=True)
        worker.start()
        worker.join(timeout=5)
        assert drained == [[]]
