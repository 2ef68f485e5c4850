"""The agent's gRPC socket is the host's alone: root only, whatever the umask or the directory's old mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guest_agent.alerts import AlertHub
from guest_agent.service import GuestAgentService, serve


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
