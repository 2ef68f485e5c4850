"""The agent's command line: what it refuses before it loads anything."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

import pytest

from guest_agent.cli import main


def test_a_second_agent_refuses_to_start_while_one_holds_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only one agent per guest: another one holding the state directory's lock makes a new one exit 1 at once."""
    (tmp_path / "agent.lock").touch()
    with open(tmp_path / "agent.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running agent holds it
        with caplog.at_level(logging.ERROR):
            assert main(["--state-dir", str(tmp_path), "--vsock-port", "0"]) == 1
    assert f"another kadapter-agent holds {tmp_path / 'agent.lock'}" in caplog.text
