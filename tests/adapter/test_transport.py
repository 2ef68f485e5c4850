"""Agent URLs, and gRPC carried over Kata's hybrid vsock handshake to a real gRPC server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from adapter.exporter import AgentClient
from adapter.transport import AddressError, AgentAddress, parse_agent_url
from tests.adapter.fakes import fake_vmm
from tests.credentials import adapter_identity


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("tcp://127.0.0.1:5000", AgentAddress("tcp", "127.0.0.1", 5000), id="tcp"),
        pytest.param("unix:///run/a.sock", AgentAddress("unix", "/run/a.sock", 0), id="unix"),
        pytest.param("vsock://3:10240", AgentAddress("vsock", "3", 10240), id="vsock"),
        pytest.param(
            "hvsock:///run/vc/vm/sb/clh.sock:10240", AgentAddress("hvsock", "/run/vc/vm/sb/clh.sock", 10240), id="hv"
        ),
    ],
)
def test_agent_urls_parse(url: str, expected: AgentAddress) -> None:
    """The URL forms Kata's shim reports for its agent, plus tcp and unix, are understood."""
    assert parse_agent_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://x:1", "vsock://three:1024", "vsock://3", "tcp://host:99999", "hvsock://relative.sock:1", "unix://a"],
)
def test_bad_agent_urls_are_refused(url: str) -> None:
    """An unusable agent URL is an error naming the URL."""
    with pytest.raises(AddressError, match=r"expected|number|absolute"):
        parse_agent_url(url)


def test_grpc_over_hybrid_vsock(tmp_path: Path, grpc_socket: Path) -> None:
    """The dialer performs the CONNECT handshake and then carries gRPC unchanged."""
    seen: list[bytes] = []
    vmm = fake_vmm(tmp_path / "clh.sock", grpc_socket, b"OK 1073741824\n", seen)
    try:
        with AgentClient(
            parse_agent_url(f"hvsock://{tmp_path / 'clh.sock'}:10240"), identity=adapter_identity(), retry_for=5
        ) as client:
            assert client.status().kernel_release == "fake-guest"
    finally:
        vmm.close()
    assert seen and all(line == b"CONNECT 10240\n" for line in seen)


def test_refused_hybrid_vsock_handshake_is_unavailable(tmp_path: Path, grpc_socket: Path) -> None:
    """When the VMM refuses the port, the call fails as UNAVAILABLE instead of hanging."""
    vmm = fake_vmm(tmp_path / "fc.sock", grpc_socket, b"ERR no listener\n", [])
    try:
        url = f"hvsock://{tmp_path / 'fc.sock'}:10240"
        with (
            AgentClient(parse_agent_url(url), identity=adapter_identity(), retry_for=1) as client,
            pytest.raises(grpc.RpcError) as failure,
        ):
            client.status()
    finally:
        vmm.close()
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
