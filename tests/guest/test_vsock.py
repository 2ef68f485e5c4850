"""The vsock leg: the agent's relay checks the peer CID; the adapter's dialer carries gRPC over AF_VSOCK."""

from __future__ import annotations

import json
import textwrap

import pytest

from images.testguest.vm import TestGuest

pytestmark = pytest.mark.guest

AGENT_VSOCK_PORT = 10240
LOOPBACK_CID = 1
TLS = "build/tls/adapter"  # relative to the checkout: the adapter's credentials (tests/credentials.py)


def test_relay_refuses_peers_other_than_the_host(guest: TestGuest) -> None:
    """A connection from inside the guest (CID 1, not the host's CID 2) is closed unanswered."""
    probe = textwrap.dedent(f"""
        import socket
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(({LOOPBACK_CID}, {AGENT_VSOCK_PORT}))
        try:
            s.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n")
            answer = s.recv(100)
        except (BrokenPipeError, ConnectionResetError):  # closed before or while we wrote
            answer = b""
        print(repr(answer))
    """)
    result = guest.run([str(guest.repo / ".venv/bin/python"), "-c", probe])
    assert result.returncode == 0, result
    assert result.stdout.strip() == "b''", result
    log = guest.run(["cat", "/run/kadapter/agent.log"]).stdout
    assert f"vsock connection from CID {LOOPBACK_CID}" in log and "refused" in log


def start_loopback_relay(guest: TestGuest, port: int) -> str:
    """Start a second vsock relay to the agent that admits vsock_loopback's CID; return the guest's python."""
    python = str(guest.repo / ".venv/bin/python")
    relay = (
        "from pathlib import Path; from guest_agent.relay import VsockRelay; "
        f"VsockRelay(port={port}, target=Path('/run/kadapter/remote.sock'), allowed_cids=[1]).serve_forever()"
    )
    command = f'cd {guest.repo} && {python} -c "{relay}" </dev/null >/run/relay-{port}.log 2>&1 &'
    started = guest.run(["sh", "-c", command])
    assert started.returncode == 0, started
    return python


def test_adapter_reaches_an_agent_over_vsock(guest: TestGuest) -> None:
    """`kadapter status --agent vsock://CID:PORT` gets the agent's answer through both relays."""
    python = start_loopback_relay(guest, 10241)
    command = f"sleep 8; cd {guest.repo} && {python} -m adapter.cli status --agent vsock://1:10241 --tls-dir {TLS}"
    status = guest.run(["sh", "-c", command], timeout=180)
    assert status.returncode == 0, status
    assert json.loads(status.stdout)["bpf_lsm_active"] is True


DISCOVER_OVER_VSOCK = """\
import json, sys
from pathlib import Path
from adapter.discovery import agent_address, list_sandboxes
from adapter.exporter import AgentClient
from tests.adapter.fakes import FakeShim
from tests.credentials import adapter_identity

roots = (Path("/run/kd-shims/vc/sbs"), Path("/run/kd-shims/kata"))  # the Go runtime's and runtime-rs's layouts
shims = []
for root, sandbox in zip(roots, ("sb-go", "sb-rs")):
    (root / sandbox).mkdir(parents=True, exist_ok=True)
    shims.append(FakeShim(root / sandbox / "shim-monitor.sock", "vsock://1:1024"))
found = {}
for sandbox, monitor in sorted(list_sandboxes(roots).items()):
    address = agent_address(monitor, port=int(sys.argv[1]))
    with AgentClient(address, identity=adapter_identity(), retry_for=30) as client:
        found[sandbox] = [str(address), client.status().bpf_lsm_active]
print(json.dumps(found))
"""


def test_the_agent_is_found_through_shim_monitors_and_reached_over_vsock(guest: TestGuest) -> None:
    """Both runtimes' shim monitor paths answer vsock://CID:1024; Kadapter's port swapped in reaches the agent."""
    python = start_loopback_relay(guest, 10242)
    found = guest.run(
        ["sh", "-c", f"sleep 5; cd {guest.repo} && {python} - 10242"], stdin=DISCOVER_OVER_VSOCK, timeout=240
    )
    assert found.returncode == 0, found
    assert json.loads(found.stdout) == {"sb-go": ["vsock://1:10242", True], "sb-rs": ["vsock://1:10242", True]}
