"""Only the node's adapter changes a guest's policy: every other peer, on the host or in a container, is refused.

The attacker sends what would hurt most: an empty set (enforcement lifted) at generation 2^64-1 (the
adapter locked out). From the host it comes over the agent's TCP port (the test guest's stand-in for
vsock, behind the same TLS); from inside a container, over every way out of it to the agent. The
test guest's TCP ports (the agent's and its command service's) listen in a network namespace of
their own, so a container cannot even connect to them: probed on every address it could try.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import AGENT_GUEST_PORT, TESTCTL_GUEST_PORT, TestGuest
from tests.credentials import guest_identity, impostor_identities
from tests.guest.support import PolicyApplier, agent_status, assert_denied, process_policy

pytestmark = pytest.mark.guest

ATTEMPTS = """\
import json, socket, sys
import grpc
from kadapter_api import agent_pb2, agent_pb2_grpc
from kadapter_api.channel_security import CHANNEL_OPTIONS

given = json.load(open(sys.argv[1]))
target, agent_certificate = given["target"], given["agent_certificate"].encode()
impostor_key, impostor_certificate = given["impostor_key"].encode(), given["impostor_certificate"].encode()
lockout = agent_pb2.ApplyPoliciesRequest(
    pod=agent_pb2.PodRef(namespace="default", name="nginx-1"), generation=2**64 - 1
)
channels = {
    "plaintext": grpc.insecure_channel(target),
    "tls without a certificate": grpc.secure_channel(
        target, grpc.ssl_channel_credentials(agent_certificate), options=CHANNEL_OPTIONS
    ),
    "tls with a self-signed kadapter-adapter": grpc.secure_channel(
        target,
        grpc.ssl_channel_credentials(agent_certificate, impostor_key, impostor_certificate),
        options=CHANNEL_OPTIONS,
    ),
}
outcome = {}
for what, channel in channels.items():
    try:
        agent_pb2_grpc.GuestAgentStub(channel).ApplyPolicies(lockout, timeout=20)
        outcome[what] = "APPLIED"
    except grpc.RpcError as error:
        outcome[what] = error.code().name
if given["inside"]:
    vsock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    vsock.settimeout(20)
    try:
        vsock.connect((1, 10240))  # the guest itself, through vsock_loopback: the relay admits the host only
        vsock.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n")
        outcome["vsock to the agent"] = "ANSWERED" if vsock.recv(100) else "closed"
    except (BrokenPipeError, ConnectionResetError):  # closed before or while we wrote
        outcome["vsock to the agent"] = "closed"
    except OSError as error:
        outcome["vsock to the agent"] = type(error).__name__
    try:
        socket.socket(socket.AF_UNIX).connect("/run/kadapter/grpc.sock")
        outcome["private socket"] = "CONNECTED"
    except OSError as error:
        outcome["private socket"] = type(error).__name__
print(json.dumps(outcome))
"""
PROBE = """\
import json, socket, sys
outcome = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        outcome[f"{host}:{port}"] = "CONNECTED"
    except OSError as error:
        outcome[f"{host}:{port}"] = type(error).__name__
print(json.dumps(outcome))
"""
REFUSED = dict.fromkeys(
    ("plaintext", "tls without a certificate", "tls with a self-signed kadapter-adapter"), "UNAVAILABLE"
)


def _attempt(path: Path, *, target: str, inside: bool) -> Path:
    """Write the attempt's script and its inputs (the impostor's pair, the agent's public certificate)."""
    impostor, _ = impostor_identities()
    (path / "attempt.py").write_text(ATTEMPTS)
    given = {
        "target": target,
        "inside": inside,
        "agent_certificate": guest_identity().certificate.decode(),
        "impostor_key": impostor.key.decode(),
        "impostor_certificate": impostor.certificate.decode(),
    }
    (path / "given.json").write_text(json.dumps(given))
    return path / "attempt.py"


def _holds_block_apt(guest: TestGuest, containers: GuestContainers, container: str) -> int:
    """Check the adapter's set is still in force: its generation reported, apt still denied; return the generation."""
    status = agent_status(guest)
    assert_denied(containers.exec(container, ["/usr/bin/apt", "--version"]), "apt after the attempts")
    (pod,) = [item for item in status["pods"] if item["pod"]["name"] == "nginx-1"]
    return int(pod["generation"])


def test_peers_other_than_the_adapter_are_refused(
    guest: TestGuest, containers: GuestContainers, pods: dict[str, str], policies: PolicyApplier, tmp_path: Path
) -> None:
    """A host process and a process in the guest's own container both fail; the policy is what the adapter set."""
    policies.apply(process_policy(name="block-apt", rules="    - path: /usr/bin/apt"))
    container = pods["nginx-1"]
    before = _holds_block_apt(guest, containers, container)

    script = _attempt(tmp_path, target=guest.agent_target, inside=False)
    host = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "given.json")],
        capture_output=True, text=True, timeout=120, check=False, env={"PYTHONPATH": str(guest.repo)},
    )  # fmt: skip
    assert host.returncode == 0, host
    assert json.loads(host.stdout) == REFUSED

    inside = tmp_path / "inside"
    inside.mkdir()
    script = _attempt(inside, target=f"127.0.0.1:{AGENT_GUEST_PORT}", inside=True)
    python = str(guest.repo / ".venv" / "bin" / "python")
    result = containers.exec(
        container, ["env", f"PYTHONPATH={guest.repo}", python, str(script), f"{inside}/given.json"]
    )
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {
        **REFUSED,
        "vsock to the agent": "closed",
        "private socket": "FileNotFoundError",
    }

    assert _holds_block_apt(guest, containers, container) == before


def test_a_container_cannot_connect_to_the_test_guests_tcp_ports(
    guest: TestGuest, containers: GuestContainers, pods: dict[str, str], tmp_path: Path
) -> None:
    """Loopback, the pod address, the control address, the host's forwards: none connects from a container.

    The same probe, run in the control namespace where the ports listen, connects: it can tell.
    """
    guest_ports = (AGENT_GUEST_PORT, TESTCTL_GUEST_PORT)
    targets = [
        *((address, port) for address in ("127.0.0.1", "10.0.2.15", "10.0.3.15") for port in guest_ports),
        *(("10.0.2.2", port) for port in (guest.agent_port, guest.testctl_port)),  # slirp's way to the host
    ]
    (tmp_path / "probe.py").write_text(PROBE)
    python = str(guest.repo / ".venv" / "bin" / "python")
    probe = [python, str(tmp_path / "probe.py")]

    from_container = containers.exec(pods["nginx-1"], [*probe, json.dumps(targets)])
    assert from_container.returncode == 0, from_container
    outcomes = json.loads(from_container.stdout)
    assert len(outcomes) == len(targets)
    assert "CONNECTED" not in outcomes.values(), outcomes

    loopback = [("127.0.0.1", port) for port in guest_ports]
    from_control = guest.run(["nsenter", "--net=/run/netns/kadapter-test", *probe, json.dumps(loopback)])
    assert from_control.returncode == 0, from_control
    assert json.loads(from_control.stdout) == {f"127.0.0.1:{port}": "CONNECTED" for port in guest_ports}
