# SPDX-License-Identifier: Apache-2.0
"""gRPC channels to guest agents: one per agent address, shared by everything that talks to that agent.

The node daemon talks to each agent twice over: its session (short calls) and its alert stream (one
long call). HTTP/2 carries both on one connection, where two connections per sandbox cost a second TLS
session (about 80 kB) and, for vsock, a second dialled splice (three threads): 6 MB with 50 sandboxes.

A holder whose call found the agent unreachable releases the channel as broken. The channel then leaves
the registry, so the next holder dials afresh instead of waiting out gRPC's own reconnect back-off (up
to two minutes, long after a rebooted VM is back); it is closed once its last holder lets go.
"""

from __future__ import annotations

import threading

import grpc

from adapter.transport import AgentAddress, grpc_target
from kadapter_api.channel_security import CHANNEL_OPTIONS, CredentialsError, Identity


class AgentChannel:
    """One gRPC channel to an agent (mutual TLS unless it is the agent's private Unix socket), and its dialer."""

    def __init__(self, address: AgentAddress, identity: Identity | None) -> None:
        if identity is None and address.scheme != "unix":
            raise CredentialsError(f"{address}: an agent outside this host's file system is reached with credentials")
        self.address = address
        target, self._dialer = grpc_target(address)
        self.grpc: grpc.Channel = (
            grpc.insecure_channel(target)
            if identity is None
            else grpc.secure_channel(target, identity.channel_credentials(), options=CHANNEL_OPTIONS)
        )
        self.holders = 0  # counted by SharedChannels, under its lock

    def close(self) -> None:
        """Close the channel, ending its calls, and its dialer."""
        self.grpc.close()
        if self._dialer is not None:
            self._dialer.close()


class SharedChannels:
    """The channels of one process, by agent address; every method may be called from any thread."""

    def __init__(self, identity: Identity | None) -> None:
        self.identity = identity
        self._current: dict[AgentAddress, AgentChannel] = {}
        self._lock = threading.Lock()

    def acquire(self, address: AgentAddress) -> AgentChannel:
        """Return the address's current channel, opening one if there is none; release() it when done."""
        with self._lock:
            channel = self._current.get(address)
            if channel is None:
                channel = self._current[address] = AgentChannel(address, self.identity)
            channel.holders += 1
            return channel

    def release(self, channel: AgentChannel, *, broken: bool = False) -> None:
        """Let go of a channel; a broken one is handed to no one else. The last holder closes it."""
        with self._lock:
            channel.holders -= 1
            current = self._current.get(channel.address) is channel
            if current and (broken or channel.holders == 0):
                del self._current[channel.address]
            last = channel.holders == 0
        if last:
            channel.close()
