"""kadapter-agent tells systemd it is ready only once it takes registrations (its unit is Type=notify)."""

from __future__ import annotations

import socket
from pathlib import Path

from guest_agent.cli import notify_ready


def test_readiness_goes_to_the_socket_systemd_names(tmp_path: Path) -> None:
    """A datagram READY=1 on $NOTIFY_SOCKET, as sd_notify sends it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        notify_ready({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert systemd.recv(64) == b"READY=1"


def test_an_abstract_notify_socket_is_reached_too() -> None:
    """systemd may name an abstract socket ("@..."), reached through a leading NUL."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0kadapter-test-notify")
        notify_ready({"NOTIFY_SOCKET": "@kadapter-test-notify"})
        assert systemd.recv(64) == b"READY=1"
