# SPDX-License-Identifier: Apache-2.0
"""Doubles of what the node daemon talks to on a Kata node, each speaking the real protocol.

- FakeRuntime: a CRI runtime (containerd, CRI-O) answering runtime.v1 ListPodSandbox over gRPC.
- FakeShim: a Kata shim's monitor socket, HTTP on a Unix socket, answering GET /agent-url.
- fake_vmm: a Cloud Hypervisor / Firecracker hybrid-vsock socket: `CONNECT <port>` in, `OK` out, then
  the bytes of the connection carried to a backend Unix socket (where a fake agent listens).
- FakeAgent / Agents: scripted guest agents serving kadapter_api's GuestAgent over gRPC on Unix sockets,
  behind the agents' TLS identity as a real agent's remote socket is (tests/credentials.py).
- KataNode: all of them together with the API server double (tests/kube_api.py), as a node the daemon runs on.

The unit tests of each module use one of them; the daemon's end-to-end tests use KataNode.
"""

from __future__ import annotations

import contextlib
import http.server
import queue
import socket
import socketserver
import threading
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from adapter.discovery import MONITOR_SOCKET
from adapter.transport import AgentAddress
from kadapter_api import agent_pb2, agent_pb2_grpc, cri_pb2, cri_pb2_grpc
from kadapter_api.splice import splice
from tests.credentials import guest_identity
from tests.kube_api import FakeKubeAPI

HANG_SECONDS = 5.0  # the longest a scripted agent or runtime holds a call before answering anyway
CREATED_AT = 1_700_000_000_000_000_000  # a sandbox's default creation time, in nanoseconds


# --- CRI runtime ---------------------------------------------------------------------------------------------------


def pod_sandbox(
    sandbox_id: str,
    handler: str,
    *,
    name: str,
    namespace: str,
    uid: str,
    state: cri_pb2.PodSandboxState = cri_pb2.SANDBOX_READY,
    created_at: int = CREATED_AT,
) -> cri_pb2.PodSandbox:
    """Build a sandbox as a runtime lists it, with labels and annotations nobody should need."""
    return cri_pb2.PodSandbox(
        id=sandbox_id,
        metadata=cri_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=1),
        state=state,
        created_at=created_at,
        labels={"app": name},
        annotations={"note": "ignored"},
        runtime_handler=handler,
    )


class FakeRuntime(cri_pb2_grpc.RuntimeServiceServicer):
    """A CRI runtime listing the sandboxes a test gives it (changeable while it serves), recording each request."""

    def __init__(self, items: list[cri_pb2.PodSandbox] | None = None) -> None:
        self._lock = threading.Lock()
        self._items = list(items or [])
        self.requests: list[cri_pb2.ListPodSandboxRequest] = []

    @property
    def items(self) -> list[cri_pb2.PodSandbox]:
        """Return the sandboxes listed now."""
        with self._lock:
            return list(self._items)

    @items.setter
    def items(self, items: list[cri_pb2.PodSandbox]) -> None:
        with self._lock:
            self._items = list(items)

    def ListPodSandbox(self, request, context):  # noqa: N802
        """List every sandbox, whatever the filter (the daemon sends none)."""
        with self._lock:
            self.requests.append(request)
            return cri_pb2.ListPodSandboxResponse(items=self._items)


def serve_cri(path: Path, servicer: cri_pb2_grpc.RuntimeServiceServicer | None) -> grpc.Server:
    """Serve a runtime on a Unix socket (None: a gRPC server without the CRI service); stop it with stop(None)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    if servicer is not None:
        cri_pb2_grpc.add_RuntimeServiceServicer_to_server(servicer, server)
    assert server.add_insecure_port(f"unix:{path}")
    server.start()
    return server


# --- Kata shim monitor ---------------------------------------------------------------------------------------------


class FakeShim(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A shim's monitor: HTTP on a Unix socket, answering every GET with one status and body, until close()."""

    daemon_threads = True

    def __init__(self, path: Path, body: str, status: int = 200) -> None:
        self.path, self.status, self.body = path, status, body
        self.requests: list[str] = []
        super().__init__(str(path), _ShimHandler)
        threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True).start()  # quick shutdown

    def close(self) -> None:
        """Stop answering and remove the socket, as an exiting shim does."""
        self.shutdown()
        self.server_close()
        self.path.unlink(missing_ok=True)


class _ShimHandler(http.server.BaseHTTPRequestHandler):
    server: FakeShim

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.body.encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: a Unix peer has no address to log."""


# --- Hybrid vsock VMM socket ---------------------------------------------------------------------------------------


Backend = Path | tuple[str, int]  # where a VMM double carries connections: a Unix socket, or a TCP (host, port)


def _dial(backend: Backend) -> socket.socket:
    """Connect to a backend: a Unix socket path, or a TCP address such as the test guest's agent_target."""
    if isinstance(backend, Path):
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(backend))
        except OSError:
            upstream.close()
            raise
        return upstream
    return socket.create_connection(backend)


def fake_vmm(path: Path, backend: Backend, answer: bytes, seen: list[bytes]) -> socket.socket:
    """Listen like a Cloud Hypervisor / Firecracker vsock socket: CONNECT <port> in, answer out, then splice.

    Each handshake line received is appended to seen. After an answer starting with OK, the connection is
    carried to the backend; when nothing listens there (the agent is down), it is closed, as a VMM closes a
    connection to a guest port nobody listens on. Close the returned socket to stop.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def forward(conn: socket.socket) -> None:
        request = b""
        while not request.endswith(b"\n"):
            byte = conn.recv(1)
            if not byte:
                conn.close()
                return
            request += byte
        seen.append(request)
        conn.sendall(answer)
        try:
            if not answer.startswith(b"OK"):
                raise ConnectionRefusedError(answer)
            upstream = _dial(backend)
        except OSError:
            conn.close()
            return
        splice(conn, upstream)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=forward, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


# --- Guest agents --------------------------------------------------------------------------------------------------


def container_status(
    pod: agent_pb2.PodRef, name: str, generation: int, *, sandbox: bool = False
) -> agent_pb2.ContainerStatus:
    """Build a container as an agent reports it: of a pod, enforcing a generation of its set (0: none)."""
    return agent_pb2.ContainerStatus(id=f"{pod.uid}-{name}", name=name, pod=pod, generation=generation, sandbox=sandbox)


class FakeAgent(agent_pb2_grpc.GuestAgentServicer):
    """A scripted guest agent: records each call, and can hang, fail with a given code, or forget its pods.

    Alerts put in ``outbox`` are streamed to every StreamAlerts caller in turn. GetStatus reports, for each pod
    held, its pause container and one container "app" enforcing the pod's generation, unless ``containers`` is
    set; ``bpf_lsm_active``, ``unprotected_because``, ``fail_closed`` and ``unregistered`` script the rest of
    the answer.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.applied: list[int] = []  # generations ApplyPolicies received, in order
        self.requests: list[agent_pb2.ApplyPoliciesRequest] = []  # ApplyPolicies received, in order
        self.checks = 0  # GetStatus calls
        self.pods: dict[str, agent_pb2.PodStatus] = {}  # by pod uid, as the agent reports them
        self.running = threading.Event()  # cleared: ApplyPolicies hangs until it is set again
        self.running.set()
        self.fail_with: grpc.StatusCode | None = None
        self.outbox: queue.Queue[agent_pb2.Alert] = queue.Queue()
        self.containers: list[agent_pb2.ContainerStatus] | None = None  # None: the pause and "app" of each pod
        self.bpf_lsm_active = True
        self.unprotected_because: list[str] = []
        self.fail_closed = False
        self.unregistered: list[agent_pb2.UnregisteredContainer] = []

    def ApplyPolicies(self, request, context):  # noqa: N802
        """Record the call, hang while told to, then fail as told or hold the set (older ones refused)."""
        with self.lock:
            self.applied.append(request.generation)
            self.requests.append(request)
        self.running.wait(HANG_SECONDS)
        if self.fail_with is not None:
            context.abort(self.fail_with, "scripted failure")
        with self.lock:
            held = self.pods.get(request.pod.uid)
            if held is not None and request.generation < held.generation:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "older generation")
            names = [policy.name for policy in request.policies]
            self.pods[request.pod.uid] = agent_pb2.PodStatus(
                pod=request.pod, generation=request.generation, policies=names
            )
        return agent_pb2.ApplyPoliciesResponse(generation=request.generation, containers_enforced=1)

    def GetStatus(self, request, context):  # noqa: N802
        """Count the call and report the pods held, their containers and the rest as scripted."""
        with self.lock:
            self.checks += 1
            return agent_pb2.AgentStatus(
                bpf_lsm_active=self.bpf_lsm_active,
                unprotected_because=self.unprotected_because,
                fail_closed=self.fail_closed,
                pods=list(self.pods.values()),
                containers=self._containers(),
                unregistered=self.unregistered,
            )

    def _containers(self) -> list[agent_pb2.ContainerStatus]:
        """Return the scripted containers, or each held pod's pause and "app", the latter enforcing its set."""
        if self.containers is not None:
            return self.containers
        return [
            container
            for held in self.pods.values()
            for container in (
                container_status(held.pod, "pause", 0, sandbox=True),
                container_status(held.pod, "app", held.generation),
            )
        ]

    def StreamAlerts(self, request, context):  # noqa: N802
        """Stream what the test puts in the outbox until the caller leaves."""
        while context.is_active():
            with contextlib.suppress(queue.Empty):
                yield self.outbox.get(timeout=0.02)

    def calls(self) -> int:
        """Count every ApplyPolicies and GetStatus call received so far."""
        with self.lock:
            return len(self.applied) + self.checks

    def policies(self, uid: str) -> list[str] | None:
        """Return the policy names held for a pod, or None when the agent holds nothing for it."""
        with self.lock:
            held = self.pods.get(uid)
            return None if held is None else list(held.policies)


class Agents:
    """Fake agents on Unix sockets in a directory, started and stopped by name as VMs come and go."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._running: dict[str, tuple[grpc.Server, FakeAgent]] = {}

    def address(self, name: str) -> AgentAddress:
        """Return where the agent of that name listens, whether it runs or not."""
        return AgentAddress("unix", str(self._directory / f"{name}.sock"), 0)

    def start(self, name: str) -> FakeAgent:
        """Start a fresh agent (nothing applied) at the name's address."""
        agent = FakeAgent()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        agent_pb2_grpc.add_GuestAgentServicer_to_server(agent, server)
        server.add_secure_port(f"unix:{self.address(name).host}", guest_identity().server_credentials())
        server.start()
        self._running[name] = (server, agent)
        return agent

    def stop(self, name: str) -> None:
        """Stop the agent of that name, if one runs, as a dying VM would: calls in flight end, nothing answers."""
        if name not in self._running:
            return
        server, agent = self._running.pop(name)
        agent.running.set()
        server.stop(None).wait()

    def stop_all(self) -> None:
        """Stop every agent still running."""
        for name in list(self._running):
            self.stop(name)


# --- A node in miniature -------------------------------------------------------------------------------------------


@dataclass
class _VM:
    """What a running Kata sandbox shows the host: its shim's monitor and its VMM's hybrid-vsock socket."""

    shim: FakeShim
    vmm: socket.socket
    handshakes: list[bytes]


class KataNode:
    """A Kata node without VMs: an API server, a CRI runtime, and per sandbox a shim, a VMM socket and an agent.

    Everything lives under ``directory``, which must be short (Unix socket paths fit in 108 bytes). The daemon
    is pointed at ``api``, ``cri_socket`` and ``monitor_roots``; it reaches each agent over hybrid vsock through
    the VMM socket the shim names, as under Cloud Hypervisor or Firecracker.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.api = FakeKubeAPI()
        self.runtime = FakeRuntime()
        self.cri_socket = directory / "cri.sock"
        self._cri = serve_cri(self.cri_socket, self.runtime)
        self.monitor_roots = (directory / "vc" / "sbs", directory / "kata")  # as the Go runtime and runtime-rs
        self.agents = Agents(directory)
        self.vms: dict[str, _VM] = {}

    def boot(
        self, pod: Mapping[str, Any], sandbox: str, *, handler: str = "kata", created_at: int = CREATED_AT
    ) -> FakeAgent:
        """Start a sandbox for a pod (as stored by the API server) with a fake agent of its own in it."""
        agent = self.agents.start(sandbox)
        self.place(pod, sandbox, Path(self.agents.address(sandbox).host), handler=handler, created_at=created_at)
        return agent

    def place(
        self,
        pod: Mapping[str, Any],
        sandbox: str,
        agent: Backend,
        *,
        handler: str = "kata",
        created_at: int = CREATED_AT,
    ) -> None:
        """Make a sandbox of a pod appear, its agent at ``agent``: listed by the runtime, its shim and VMM up.

        ``agent`` is a fake agent's Unix socket, or the TCP address of a real one (the test guest's
        ``agent_target``): the daemon then reaches it through this sandbox's VMM socket as over hybrid vsock.
        """
        metadata = pod["metadata"]
        vmm_path = self.directory / f"{sandbox}.vmm"
        handshakes: list[bytes] = []
        vmm = fake_vmm(vmm_path, agent, b"OK 1073741824\n", handshakes)
        root = self.monitor_roots[len(self.vms) % len(self.monitor_roots)]  # both runtimes' layouts in turn
        monitor = root / sandbox / MONITOR_SOCKET
        monitor.parent.mkdir(parents=True, exist_ok=True)
        shim = FakeShim(monitor, f"hvsock://{vmm_path}:1024")
        self.vms[sandbox] = _VM(shim, vmm, handshakes)
        listed = pod_sandbox(
            sandbox,
            handler,
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            created_at=created_at,
        )
        self.runtime.items = [*self.runtime.items, listed]

    def halt(self, sandbox: str) -> None:
        """Stop a sandbox: the runtime forgets it, its shim removes its socket, its VMM and any fake agent go."""
        self.runtime.items = [item for item in self.runtime.items if item.id != sandbox]
        vm = self.vms.pop(sandbox)
        vm.shim.close()
        vm.vmm.close()
        self.agents.stop(sandbox)

    def restart_agent(self, sandbox: str) -> FakeAgent:
        """Restart a sandbox's agent with nothing applied, as after a crash or a VM reboot."""
        self.agents.stop(sandbox)
        return self.agents.start(sandbox)

    def stop_runtime(self) -> None:
        """Stop the CRI runtime, as during a containerd restart: the sandboxes run on."""
        self._cri.stop(None)

    def close(self) -> None:
        """Stop every sandbox, the runtime and the API server."""
        for sandbox in list(self.vms):
            self.halt(sandbox)
        self._cri.stop(None)
        self.api.close()
