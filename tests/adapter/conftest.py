# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the host-side tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from kadapter_api import agent_pb2, agent_pb2_grpc
from tests.credentials import guest_identity


class _StatusOnly(agent_pb2_grpc.GuestAgentServicer):
    """An agent that answers GetStatus only, naming its kernel "fake-guest"."""

    def GetStatus(self, request, context):  # noqa: N802
        return agent_pb2.AgentStatus(kernel_release="fake-guest")


@pytest.fixture
def grpc_socket(tmp_path: Path) -> Iterator[Path]:
    """Serve real gRPC on a Unix socket, standing in for the guest agent's remote socket (TLS)."""
    path = tmp_path / "grpc.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_GuestAgentServicer_to_server(_StatusOnly(), server)
    server.add_secure_port(f"unix:{path}", guest_identity().server_credentials())
    server.start()
    yield path
    server.stop(None)
