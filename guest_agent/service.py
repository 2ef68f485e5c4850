# SPDX-License-Identifier: Apache-2.0
"""The agent's gRPC API (kadapter_api/agent.proto), served on a private Unix socket and an authenticated one.

The private socket serves the guest's root (`kadapter-agent`'s own tools)
without authentication: its mode is the authentication. The host reaches
the agent through the vsock relay (guest_agent/relay.py), which splices to
the second socket, where only a peer presenting the adapter's pinned
certificate gets past the TLS handshake (kadapter_api/channel_security.py);
so does a TCP port, opened only when asked for, as the test guest does. What one peer
may ask for is bounded: the size of a message, and how many alert streams
it holds open (each holds a worker thread; the others keep enough for
ApplyPolicies and GetStatus to be answered). Bad input, bytes that are no
message included, is refused as such, with a reason short enough to arrive.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc
from google.protobuf.message import DecodeError

from guest_agent.agent import Agent, StaleGenerationError
from guest_agent.alerts import AlertHub
from guest_agent.rules import InvalidPolicyError
from guest_agent.self_check import UnprotectedAgent, UnprotectedError, unprotected_alerts
from kadapter_api import agent_pb2, agent_pb2_grpc
from kadapter_api.channel_security import Identity

MAX_STREAMS = 16  # alert streams open at once
MAX_MESSAGE_BYTES = 64 << 20  # a request's size; 40,000 rules take about 4 MiB
SPARE_WORKERS = 4  # threads no stream may take: for ApplyPolicies and GetStatus
# Characters of a refusal's reason. It travels percent-encoded in a trailer, and a peer drops trailers past
# 8 KiB, the reason with them ("metadata size exceeds soft limit"); 512 characters stay below even as emoji.
MAX_REASON = 512


class GuestAgentService(agent_pb2_grpc.GuestAgentServicer):
    """Map gRPC calls onto the Agent, and its refusals onto gRPC status codes."""

    def __init__(self, agent: Agent | UnprotectedAgent, alerts: AlertHub, *, max_streams: int = MAX_STREAMS) -> None:
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
            _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except (StaleGenerationError, UnprotectedError) as error:
            _refuse(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except OSError as error:  # a map update failed; the previous rules stay in force
            _refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"kernel maps: {error}")

    def GetStatus(  # noqa: N802 (generated name)
        self, request: agent_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> agent_pb2.AgentStatus:
        """Report what is enforced."""
        return self._agent.status()

    def StreamAlerts(  # noqa: N802 (generated name)
        self, request: agent_pb2.StreamAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.Alert]:
        """Stream alerts until the host hangs up; refuse a stream past the limit rather than starve the others.

        In a VM that enforces nothing the stream opens with one alert per reason, so that whoever reads
        alerts (`kadapter alerts`, KubeArmor's tools through the node daemon) learns it there too.
        """
        if not self._streams.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self.max_streams} alert streams at once; close one first"
            )
        subscription = self._alerts.subscribe()
        try:
            # The call's end closes the subscription, which ends the iteration at once and frees the slot.
            if context.add_callback(lambda: self._alerts.unsubscribe(subscription)):
                context.send_initial_metadata(())  # the stream is open: the host need not wait for the first alert
                yield from unprotected_alerts(list(self._agent.status().unprotected_because))
                yield from subscription
        finally:
            self._alerts.unsubscribe(subscription)
            self._streams.release()


def _refuse(context: grpc.ServicerContext, code: grpc.StatusCode, reason: str) -> NoReturn:
    """End the call with a code and its reason, cut to MAX_REASON characters (a long path may be quoted in it)."""
    context.abort(code, reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "...")


@dataclass(frozen=True)
class _Unparsable:
    """Why a request's bytes are not its method's message, passed on in the request's place."""

    reason: str


class _RefuseUnparsable(grpc.ServerInterceptor):
    """Answer a request that is not its method's message with INVALID_ARGUMENT, as any other bad input.

    gRPC's own answer, INTERNAL ("Exception deserializing request!"), reads as a fault of the agent's.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap a unary-request method: parse leniently, then refuse what did not parse before the method runs."""
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        behavior = handler.unary_stream if handler.response_streaming else handler.unary_unary

        def lenient(data: bytes) -> object:
            try:
                return parse(data)
            except DecodeError as error:
                return _Unparsable(str(error))

        def guarded(request: object, context: grpc.ServicerContext) -> object:
            if isinstance(request, _Unparsable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid message ({request.reason})")
            return behavior(request, context)

        wrap = (
            grpc.unary_stream_rpc_method_handler if handler.response_streaming else grpc.unary_unary_rpc_method_handler
        )
        return wrap(guarded, request_deserializer=lenient, response_serializer=handler.response_serializer)


def serve(
    service: GuestAgentService,
    *,
    unix_socket: Path,
    remote_socket: Path | None = None,
    tcp_address: str | None = None,
    identity: Identity | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Server:
    """Start the gRPC server on the private socket, and the authenticated ones asked for, and return it.

    Each socket is 0600 in a 0700 directory whatever the umask. A larger request is refused by gRPC itself
    (RESOURCE_EXHAUSTED, saying so) before it is read whole.
    """
    if (remote_socket or tcp_address) and identity is None:
        raise ValueError("the remote socket and TCP serve only with the agent's credentials")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=service.max_streams + SPARE_WORKERS),
        options=[("grpc.max_receive_message_length", max_message_bytes)],
        interceptors=[_RefuseUnparsable()],
    )
    agent_pb2_grpc.add_GuestAgentServicer_to_server(service, server)
    sockets = [path for path in (unix_socket, remote_socket) if path is not None]
    for path in sockets:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # whatever the umask, and for a directory that was already there
        path.unlink(missing_ok=True)
    server.add_insecure_port(f"unix:{unix_socket}")
    if identity is not None:
        credentials = identity.server_credentials()
        if remote_socket is not None:
            server.add_secure_port(f"unix:{remote_socket}", credentials)
        if tcp_address:
            server.add_secure_port(tcp_address, credentials)
    server.start()
    for path in sockets:
        os.chmod(path, 0o600)
    return server
