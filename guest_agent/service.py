# SPDX-License-Identifier: Apache-2.0
"""The agent's gRPC API (kadapter_api/agent.proto), served on a private Unix socket.

The host reaches it through the vsock relay (guest_agent/relay.py); a TCP
port is opened only when asked for, as the test guest does. What one peer
may ask for is bounded: the size of a message, and how many alert streams
it holds open (each holds a worker thread; the others keep enough for
ApplyPolicies and GetStatus to be answered).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc

from guest_agent.agent import Agent, StaleGenerationError
from guest_agent.alerts import AlertHub
from guest_agent.rules import InvalidPolicyError
from kadapter_api import agent_pb2, agent_pb2_grpc

MAX_STREAMS = 16  # alert streams open at once
MAX_MESSAGE_BYTES = 64 << 20  # a request's size; 40,000 rules take about 4 MiB
SPARE_WORKERS = 4  # threads no stream may take: for ApplyPolicies and GetStatus


class GuestAgentService(agent_pb2_grpc.GuestAgentServicer):
    """Map gRPC calls onto the Agent, and its refusals onto gRPC status codes."""

    def __init__(self, agent: Agent, alerts: AlertHub, *, max_streams: int = MAX_STREAMS) -> None:
        self._agent = agent
        self._alerts = alerts
        self.max_streams = max_streams
        self._streams = threading.BoundedSemaphore(max_streams)

    def ApplyPolicies(  # noqa: N802 (generated name)
        self, request: agent_pb2.ApplyPoliciesRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ApplyPoliciesResponse:
        """Apply a pod's policy set; refuse invalid or stale input without changing anything."""
        try:
            return self._agent.apply(request)
        except InvalidPolicyError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except StaleGenerationError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except OSError as error:  # a map update failed; the previous rules stay in force
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"kernel maps: {error}")

    def GetStatus(  # noqa: N802 (generated name)
        self, request: agent_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> agent_pb2.AgentStatus:
        """Report what is enforced."""
        return self._agent.status()

    def StreamAlerts(  # noqa: N802 (generated name)
        self, request: agent_pb2.StreamAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.Alert]:
        """Stream alerts until the host hangs up; refuse a stream past the limit rather than starve the others."""
        if not self._streams.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self.max_streams} alert streams at once; close one first"
            )
        try:
            context.send_initial_metadata(())  # the stream is open: the host need not wait for the first alert
            stopped = threading.Event()
            context.add_callback(stopped.set)
            yield from self._alerts.subscribe(stopped)
        finally:
            self._streams.release()


def serve(
    service: GuestAgentService,
    *,
    unix_socket: Path,
    tcp_address: str | None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Server:
    """Start the gRPC server on the private socket (and TCP if asked) and return it.

    A larger request is refused by gRPC itself (RESOURCE_EXHAUSTED, saying so) before it is read whole.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=service.max_streams + SPARE_WORKERS),
        options=[("grpc.max_receive_message_length", max_message_bytes)],
    )
    agent_pb2_grpc.add_GuestAgentServicer_to_server(service, server)
    unix_socket.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(unix_socket.parent, 0o700)  # whatever the umask, and for a directory that was already there
    unix_socket.unlink(missing_ok=True)
    server.add_insecure_port(f"unix:{unix_socket}")
    if tcp_address:
        server.add_insecure_port(tcp_address)
    server.start()
    os.chmod(unix_socket, 0o600)
    return server
