"""Channels to agents: one per address, shared, and replaced once a holder finds it broken."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from adapter.agent_channels import AgentChannel, SharedChannels
from adapter.exporter import AgentClient
from adapter.transport import AgentAddress
from kadapter_api import agent_pb2, agent_pb2_grpc
from tests.adapter.fakes import Agents, FakeAgent
from tests.adapter.test_sessions import eventually
from tests.credentials import adapter_identity


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[FakeAgent, AgentAddress]]:
    """Serve a fake agent (mutual TLS on a Unix socket)."""
    agents = Agents(tmp_path)
    try:
        yield agents.start("sb"), agents.address("sb")
    finally:
        agents.stop_all()


def closed(channel: AgentChannel) -> bool:
    """Tell whether a channel is closed: gRPC refuses to begin a call on it."""
    try:
        agent_pb2_grpc.GuestAgentStub(channel.grpc).GetStatus(agent_pb2.GetStatusRequest(), timeout=5)
    except ValueError:
        return True
    return False


def clients(address: AgentAddress, channels: SharedChannels, count: int) -> list[AgentClient]:
    """Open clients of one agent over channels, each trying its calls once."""
    return [AgentClient(address, channels=channels, retry_for=0) for _ in range(count)]


def test_clients_of_one_agent_share_a_channel_until_the_last_lets_go(
    agent: tuple[FakeAgent, AgentAddress],
) -> None:
    """A session and an alert stream of one sandbox ride one channel; it closes with its last holder."""
    _, address = agent
    channels = SharedChannels(adapter_identity())
    session, stream = clients(address, channels, 2)
    assert session._channel is stream._channel
    session.close()
    assert stream.status() is not None  # still open for the other holder
    stream.close()
    assert closed(stream._channel)


def test_a_broken_channel_goes_to_no_new_client_and_stays_with_its_holders(
    agent: tuple[FakeAgent, AgentAddress],
) -> None:
    """The next client dials afresh (no reconnect back-off to wait out); a client on the old one keeps it."""
    _, address = agent
    channels = SharedChannels(adapter_identity())
    first, second = clients(address, channels, 2)
    old = first._channel
    first.close(broken=True)
    third = AgentClient(address, channels=channels, retry_for=0)
    assert third._channel is not old
    assert second.status() is not None
    second.close(broken=True)  # a second report on a channel already replaced leaves the new one alone
    fourth = AgentClient(address, channels=channels, retry_for=0)
    assert fourth._channel is third._channel
    assert closed(old)  # its last holder gone
    assert not closed(third._channel)
    third.close()
    fourth.close()


def test_close_ends_a_call_in_flight_though_the_channel_stays(agent: tuple[FakeAgent, AgentAddress]) -> None:
    """A session dropped while its agent hangs returns at once, its alert stream's channel untouched."""
    fake, address = agent
    channels = SharedChannels(adapter_identity())
    session, stream = AgentClient(address, channels=channels, retry_for=0), AgentClient(address, channels=channels)
    fake.running.clear()  # ApplyPolicies hangs
    outcome: list[grpc.StatusCode] = []

    def push() -> None:
        try:
            session.apply(agent_pb2.ApplyPoliciesRequest(pod=agent_pb2.PodRef(uid="u1"), generation=1))
            outcome.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            outcome.append(error.code())

    pushing = threading.Thread(target=push)
    pushing.start()
    eventually(lambda: fake.applied == [1])
    began = time.monotonic()
    session.close()
    pushing.join(5)
    assert time.monotonic() - began < 1
    assert outcome == [grpc.StatusCode.CANCELLED]
    fake.running.set()
    assert stream.status() is not None
    stream.close()
