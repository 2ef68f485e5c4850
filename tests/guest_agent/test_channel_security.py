"""Who may change a guest's policy: the adapter's pinned certificate, and nobody else, on the remote socket."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from adapter.credentials import write_credentials
from adapter.exporter import AgentClient
from adapter.transport import AgentAddress, parse_agent_url
from guest_agent.agent import Agent
from guest_agent.alerts import AlertHub
from guest_agent.service import GuestAgentService, serve
from kadapter_api import agent_pb2, agent_pb2_grpc
from kadapter_api.channel_security import ADAPTER_NAME, AGENT_NAME, CHANNEL_OPTIONS, CredentialsError, Identity
from tests.credentials import adapter_identity, guest_identity, impostor_identities
from tests.guest_agent.test_agent import RecordingEnforcer
from tests.guest_agent.test_service import nginx_request


@dataclass
class ServedAgent:
    """A real agent and service, serving its private socket and its remote one (as the vsock relay's target)."""

    agent: Agent
    private: Path
    remote: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedAgent]:
    """Serve an agent with the agents' identity on the remote socket."""
    agent = Agent(RecordingEnforcer(), AlertHub(), max_rules=10)  # type: ignore[arg-type]
    directory = tmp_path / "kadapter"
    server = serve(
        GuestAgentService(agent, AlertHub()),
        unix_socket=directory / "grpc.sock",
        remote_socket=directory / "remote.sock",
        identity=guest_identity(),
    )
    try:
        yield ServedAgent(agent, directory / "grpc.sock", directory / "remote.sock")
    finally:
        server.stop(None)


def _apply(channel: grpc.Channel, request: agent_pb2.ApplyPoliciesRequest) -> agent_pb2.ApplyPoliciesResponse:
    return agent_pb2_grpc.GuestAgentStub(channel).ApplyPolicies(request, timeout=5)


def test_the_adapter_changes_the_policy_over_the_remote_socket(served: ServedAgent) -> None:
    """The adapter's identity gets through the handshake; the agent holds what it sent."""
    with AgentClient(AgentAddress("unix", str(served.remote), 0), identity=adapter_identity(), retry_for=0) as client:
        assert client.apply(nginx_request("/usr/bin/apt")).generation == 1
        assert client.status().pods[0].generation == 1


def _unlock_attempts(remote: Path) -> dict[str, grpc.Channel]:
    """Channels to the remote socket of every peer that is not the adapter."""
    impostor_adapter, _ = impostor_identities()
    target = f"unix:{remote}"
    guest = guest_identity()
    return {
        "plaintext": grpc.insecure_channel(target),
        "tls without a certificate": grpc.secure_channel(
            target, grpc.ssl_channel_credentials(root_certificates=guest.certificate), options=CHANNEL_OPTIONS
        ),
        "a self-signed certificate named kadapter-adapter": grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(
                root_certificates=guest.certificate,
                private_key=impostor_adapter.key,
                certificate_chain=impostor_adapter.certificate,
            ),
            options=CHANNEL_OPTIONS,
        ),
        "the agents' own key, stolen from a guest": grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(
                root_certificates=guest.certificate, private_key=guest.key, certificate_chain=guest.certificate
            ),
            options=CHANNEL_OPTIONS,
        ),
    }


def test_every_other_peer_is_refused_and_the_policy_stays(served: ServedAgent) -> None:
    """An empty set or a generation of 2^64-1 from anyone else never arrives; the adapter's set stays in force."""
    with AgentClient(AgentAddress("unix", str(served.remote), 0), identity=adapter_identity(), retry_for=0) as client:
        client.apply(nginx_request("/usr/bin/apt"))
    lockout = nginx_request()
    lockout.generation = 2**64 - 1
    for what, channel in _unlock_attempts(served.remote).items():
        with channel, pytest.raises(grpc.RpcError) as refused:
            _apply(channel, lockout)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, what
    assert served.agent.status().pods[0].generation == 1
    assert list(served.agent.status().pods[0].policies) == ["p"]


def test_the_adapter_refuses_an_impostor_agent(tmp_path: Path) -> None:
    """A server with another agent identity (a squatter on the agent's port) never gets the set."""
    _, impostor_guest = impostor_identities()
    agent = Agent(RecordingEnforcer(), AlertHub(), max_rules=10)  # type: ignore[arg-type]
    server = serve(
        GuestAgentService(agent, AlertHub()),
        unix_socket=tmp_path / "grpc.sock",
        remote_socket=tmp_path / "remote.sock",
        identity=impostor_guest,
    )
    try:
        remote = AgentAddress("unix", str(tmp_path / "remote.sock"), 0)
        with AgentClient(remote, identity=adapter_identity(), retry_for=0) as client, pytest.raises(grpc.RpcError):
            client.apply(nginx_request("/usr/bin/apt"))
        assert not agent.status().pods
    finally:
        server.stop(None)


def test_the_private_socket_serves_without_credentials(served: ServedAgent) -> None:
    """The guest's root, on the 0600 socket, needs no certificate: the file's mode is the check."""
    with AgentClient(AgentAddress("unix", str(served.private), 0), identity=None, retry_for=0) as client:
        assert client.status().bpf_lsm_active in (True, False)
    assert stat.S_IMODE(os.stat(served.remote).st_mode) == 0o600


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:9", "vsock://3:10240", "hvsock:///run/vc/clh.sock:10240"])
def test_an_agent_beyond_a_local_socket_is_never_dialled_without_credentials(url: str) -> None:
    """The adapter has no plaintext mode for vsock, hybrid vsock or TCP."""
    with pytest.raises(CredentialsError, match="credentials"):
        AgentClient(parse_agent_url(url), identity=None)


def test_remote_listeners_are_never_served_without_credentials(tmp_path: Path) -> None:
    """The agent has no plaintext mode for the vsock relay's socket or TCP either."""
    with pytest.raises(ValueError, match="credentials"):
        serve(GuestAgentService(None, AlertHub()), unix_socket=tmp_path / "a.sock", tcp_address="127.0.0.1:0")


def test_written_credentials_pin_each_other_and_keep_keys_private(tmp_path: Path) -> None:
    """Each side's peer file is the other's certificate; keys are 0600; nothing is overwritten."""
    places = write_credentials(tmp_path / "tls")
    adapter, guest = Identity.load(places["adapter"]), Identity.load(places["guest"])
    assert (adapter.peers, guest.peers) == (guest.certificate, adapter.certificate)
    names = {
        role: x509.load_pem_x509_certificate(Identity.load(place).certificate).subject for role, place in places.items()
    }
    assert {role: name.rfc4514_string() for role, name in names.items()} == {
        "adapter": f"CN={ADAPTER_NAME}",
        "guest": f"CN={AGENT_NAME}",
    }
    for place in places.values():
        assert stat.S_IMODE(os.stat(place / "tls.key").st_mode) == 0o600
    with pytest.raises(FileExistsError, match=r"tls\.key exists"):
        write_credentials(tmp_path / "tls")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "tls.key").unlink(), r"tls\.key: No such file"),
        (lambda d: os.chmod(d / "tls.key", 0o644), r"tls\.key: readable by others \(mode 0644\)"),
        (lambda d: (d / "peer.crt").write_text("not a certificate\n"), r"peer\.crt: no PEM CERTIFICATE"),
        (lambda d: (d / "tls.crt").unlink(), r"tls\.crt: No such file"),
    ],
    ids=["no key", "key readable by others", "peer not PEM", "no certificate"],
)
def test_unusable_credentials_name_the_file_and_the_reason(tmp_path: Path, damage, message: str) -> None:
    """Loading says which file is wrong and why."""
    directory = write_credentials(tmp_path / "tls")["guest"]
    damage(directory)
    with pytest.raises(CredentialsError, match=message):
        Identity.load(directory)


def test_the_node_daemon_leaves_cryptography_unloaded() -> None:
    """Only `kadapter credentials` writes certificates; the 8 MB library stays out of the daemon's memory."""
    probe = "import sys, adapter.cli; print('cryptography' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
