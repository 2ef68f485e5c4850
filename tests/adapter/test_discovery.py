"""Agent discovery from fake Kata shim monitor sockets, through to gRPC over the hybrid vsock handshake."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapter.discovery import (
    AGENT_PORT,
    MONITOR_SOCKET,
    DiscoveryError,
    SandboxGoneError,
    SandboxId,
    agent_address,
    list_sandboxes,
)
from adapter.exporter import AgentClient
from adapter.transport import AgentAddress
from tests.adapter.fakes import FakeShim, fake_vmm
from tests.credentials import adapter_identity

# Short ids keep the socket paths under tmp_path within AF_UNIX's 108 bytes; real ones are 64 hex digits.
GO_SANDBOX = SandboxId("5f0c9a7e1b2d")
RS_SANDBOX = SandboxId("c41d7e09aa3f")
GO_ROOT, RS_ROOT = "vc/sbs", "kata"  # /run/vc/sbs (Go runtime), /run/kata (runtime-rs), under tmp_path


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Close whatever fake shims and sockets a test opened."""
    with contextlib.ExitStack() as opened:
        yield opened


def _monitor(tmp_path: Path, root: str, sandbox: str) -> Path:
    """Return a sandbox's monitor socket path under a root, its directory created."""
    path = tmp_path / root / sandbox / MONITOR_SOCKET
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _serve(stack: contextlib.ExitStack, path: Path, body: str, status: int = 200) -> FakeShim:
    """Serve a fake shim monitor at a socket path until the test ends."""
    shim = FakeShim(path, body, status)
    stack.callback(shim.close)
    return shim


def test_sandboxes_of_both_runtimes_are_listed(tmp_path: Path, stack: contextlib.ExitStack) -> None:
    """Each sandbox directory with a monitor socket is found under the Go and the runtime-rs root."""
    go = _monitor(tmp_path, GO_ROOT, GO_SANDBOX)
    rs = _monitor(tmp_path, RS_ROOT, RS_SANDBOX)
    _serve(stack, go, "vsock://3:1024")
    _serve(stack, rs, "vsock://4:1024")
    (tmp_path / GO_ROOT / "starting").mkdir()  # a shim that has not bound its socket yet
    (tmp_path / RS_ROOT / "stray-file").touch()
    roots = (tmp_path / GO_ROOT, tmp_path / RS_ROOT, tmp_path / "not-installed")
    assert list_sandboxes(roots) == {GO_SANDBOX: go, RS_SANDBOX: rs}


def test_no_runtime_no_sandboxes(tmp_path: Path) -> None:
    """A node without Kata's directories has no sandboxes, and that is not an error."""
    assert list_sandboxes((tmp_path / GO_ROOT, tmp_path / RS_ROOT)) == {}


@pytest.mark.parametrize(
    ("answer", "port", "expected"),
    [
        pytest.param("vsock://3:1024", AGENT_PORT, AgentAddress("vsock", "3", 10240), id="qemu"),
        pytest.param("vsock://42:1024\n", 7000, AgentAddress("vsock", "42", 7000), id="qemu-newline-own-port"),
        pytest.param(
            "hvsock:///run/vc/vm/5f0c/clh.sock:1024", AGENT_PORT,
            AgentAddress("hvsock", "/run/vc/vm/5f0c/clh.sock", 10240), id="clh",
        ),
        pytest.param(
            "hvsock:///run/kata/c41d/root/kata.hvsock:1024", AGENT_PORT,
            AgentAddress("hvsock", "/run/kata/c41d/root/kata.hvsock", 10240), id="dragonball",
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("root", [GO_ROOT, RS_ROOT], ids=["go-runtime", "runtime-rs"])
def test_agent_address_is_the_shims_with_our_port(
    tmp_path: Path, stack: contextlib.ExitStack, root: str, answer: str, port: int, expected: AgentAddress
) -> None:
    """The shim's agent URL keeps its CID or VMM socket, and the port becomes Kadapter's agent's."""
    shim = _serve(stack, _monitor(tmp_path, root, GO_SANDBOX), answer)
    ((sandbox, monitor),) = list_sandboxes([tmp_path / root]).items()
    assert sandbox == GO_SANDBOX
    assert agent_address(monitor, port=port) == expected
    assert shim.requests == ["/agent-url"]


Peer = Callable[[Path, contextlib.ExitStack], Path]


def _absent(tmp_path: Path, stack: contextlib.ExitStack) -> Path:
    """Name a sandbox directory whose shim has removed its socket."""
    return _monitor(tmp_path, GO_ROOT, GO_SANDBOX)


def _refusing(tmp_path: Path, stack: contextlib.ExitStack) -> Path:
    """Leave a socket file that nobody listens on, as a crashed shim does."""
    path = _monitor(tmp_path, GO_ROOT, GO_SANDBOX)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))
    return path


def _hanging(tmp_path: Path, stack: contextlib.ExitStack) -> Path:
    """Listen and never answer, as a stuck shim does; the kernel still completes the connection."""
    path = _monitor(tmp_path, GO_ROOT, GO_SANDBOX)
    listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    listener.bind(str(path))
    listener.listen()
    return path


def _answering(status: int, body: str) -> Peer:
    """Make a shim that answers GET /agent-url with this status and body."""

    def make(tmp_path: Path, stack: contextlib.ExitStack) -> Path:
        path = _monitor(tmp_path, RS_ROOT, RS_SANDBOX)
        _serve(stack, path, body, status)
        return path

    return make


@pytest.mark.parametrize(
    ("make", "error", "reason"),
    [
        pytest.param(_absent, SandboxGoneError, "no such socket: the sandbox is gone", id="absent"),
        pytest.param(_refusing, DiscoveryError, "connection refused", id="refused"),
        pytest.param(_hanging, DiscoveryError, "no answer to GET /agent-url within 0.2 s", id="timeout"),
        pytest.param(
            _answering(500, "sandbox not ready"), DiscoveryError,
            "GET /agent-url answered 500 Internal Server Error: 'sandbox not ready'", id="http-500",
        ),
        pytest.param(
            _answering(404, "404 page not found"), DiscoveryError, "answered 404 Not Found", id="old-shim-404"
        ),
        pytest.param(
            _answering(200, "tcp://10.0.0.1:1024"), DiscoveryError,
            "agent URL 'tcp://10.0.0.1:1024' is neither vsock:// nor hvsock://", id="tcp-url",
        ),
        pytest.param(
            _answering(200, "unix:///run/agent.sock"), DiscoveryError, "is neither vsock:// nor hvsock://", id="unix"
        ),
        pytest.param(_answering(200, "mock://agent"), DiscoveryError, "unusable agent URL: 'mock://", id="mock-url"),
        pytest.param(_answering(200, ""), DiscoveryError, "unusable agent URL: ''", id="empty"),
        pytest.param(
            _answering(200, "hvsock://clh.sock:1024"), DiscoveryError, "unusable agent URL: .*absolute", id="relative"
        ),
    ],
)  # fmt: skip
def test_discovery_errors_name_the_socket_and_the_reason(
    tmp_path: Path, stack: contextlib.ExitStack, make: Peer, error: type[DiscoveryError], reason: str
) -> None:
    """Every way a shim can fail to give an agent address is one DiscoveryError naming its socket and why."""
    monitor = make(tmp_path, stack)
    with pytest.raises(error) as raised:
        agent_address(monitor, timeout=0.2)
    assert type(raised.value) is error
    assert raised.value.path == monitor
    assert str(raised.value).startswith(f"{monitor}: ")
    assert raised.match(reason)


def test_discovered_hvsock_address_reaches_the_agent(
    tmp_path: Path,
    stack: contextlib.ExitStack,
    grpc_socket: Path,
) -> None:
    """From the shim's monitor socket to a gRPC answer: discovery, CONNECT <our port>, OK, then gRPC unchanged."""
    vmm_socket = tmp_path / "vm" / "clh.sock"
    vmm_socket.parent.mkdir()
    seen: list[bytes] = []
    stack.callback(fake_vmm(vmm_socket, grpc_socket, b"OK 1073741824\n", seen).close)
    _serve(stack, _monitor(tmp_path, RS_ROOT, RS_SANDBOX), f"hvsock://{vmm_socket}:1024")
    ((sandbox, monitor),) = list_sandboxes([tmp_path / GO_ROOT, tmp_path / RS_ROOT]).items()
    address = agent_address(monitor)
    with AgentClient(address, identity=adapter_identity(), retry_for=5) as client:
        assert client.status().kernel_release == "fake-guest"
    assert sandbox == RS_SANDBOX
    assert address == AgentAddress("hvsock", str(vmm_socket), AGENT_PORT)
    assert seen and all(line == f"CONNECT {AGENT_PORT}\n".encode() for line in seen)
