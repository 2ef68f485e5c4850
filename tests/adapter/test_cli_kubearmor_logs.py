# SPDX-License-Identifier: Apache-2.0
"""`kadapter alerts` and `kadapter local` serving KubeArmor's log service: options, the served feed, refusals."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from adapter.cli import main
from adapter.kubearmor_logs import KubeArmorFeed, LogServer, Origin
from kadapter_api import agent_pb2, agent_pb2_grpc, kubearmor_pb2, kubearmor_pb2_grpc
from tests.credentials import ADAPTER_DIR, guest_identity

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "images" / "testguest" / "manifests"
UNREACHABLE = "tcp://127.0.0.1:9"  # nothing listens: calling it would retry for a minute
TIMEOUT = 10.0
ALERT = agent_pb2.Alert(
    namespace_name="default",
    pod_name="nginx-1",
    container_name="nginx",
    process_name="/bin/cat",
    policy_name="ksp-nginx-harden",
    operation="File",
    resource="/etc/shadow",
    action=agent_pb2.ACTION_BLOCK,
    result="Permission denied",
    enforcer="BPFLSM",
)


class _FakeAgent(agent_pb2_grpc.GuestAgentServicer):
    """An agent that streams ALERT every few milliseconds once released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def StreamAlerts(self, request, context):  # noqa: N802
        self.release.wait(TIMEOUT)
        while context.is_active():
            yield ALERT
            time.sleep(0.005)


def test_cli_serves_an_agents_alerts_to_kubearmor_watchers(capsys: pytest.CaptureFixture[str]) -> None:
    """`kadapter alerts --serve-kubearmor-logs` prints the agent's alerts and serves them to a karmor-style client."""
    agent = _FakeAgent()
    agent_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_GuestAgentServicer_to_server(agent, agent_server)
    agent_port = agent_server.add_secure_port("127.0.0.1:0", guest_identity().server_credentials())
    agent_server.start()
    probe = LogServer(KubeArmorFeed(Origin(node="probe")), "127.0.0.1:0")  # a free port for the command
    port = probe.port
    probe.stop(grace=None)
    argv = [
        "alerts", "--agent", f"tcp://127.0.0.1:{agent_port}", "--count", "100", "--tls-dir", str(ADAPTER_DIR),
        "--serve-kubearmor-logs", f"127.0.0.1:{port}", "--cluster-name", "prod", "--node-name", "node-9",
    ]  # fmt: skip
    codes: list[int] = []
    command = threading.Thread(target=lambda: codes.append(main(argv)))
    command.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = kubearmor_pb2_grpc.LogServiceStub(channel)
        assert stub.HealthCheck(kubearmor_pb2.NonceMessage(nonce=7), wait_for_ready=True, timeout=TIMEOUT).Retval == 7
        stream = stub.WatchAlerts(kubearmor_pb2.RequestMessage(Filter="policy"), timeout=TIMEOUT)
        agent.release.set()
        alert = next(stream)
        stream.cancel()
    command.join(TIMEOUT)
    agent_server.stop(None)
    assert codes == [0]
    assert (alert.ClusterName, alert.HostName, alert.PodName, alert.Action) == ("prod", "node-9", "nginx-1", "Block")
    assert alert.Labels == ""  # `kadapter alerts` knows no pod manifests
    assert capsys.readouterr().out.count('"pod_name": "nginx-1"') == 100


def test_cli_refuses_a_taken_port_before_telling_any_agent(capsys: pytest.CaptureFixture[str]) -> None:
    """`kadapter local --serve-kubearmor-logs` on a port in use fails at once (exit 1), before any agent is called."""
    with LogServer(KubeArmorFeed(Origin(node="probe")), "127.0.0.1:0") as taken:
        started = time.monotonic()
        code = main(
            [
                "local", "--policies", str(REPO / "policies"), "--manifests", str(MANIFESTS),
                "--agent", UNREACHABLE, "--tls-dir", str(ADAPTER_DIR),
                "--serve-kubearmor-logs", f"127.0.0.1:{taken.port}",
            ]
        )  # fmt: skip
    assert code == 1
    assert "cannot listen" in capsys.readouterr().err
    assert time.monotonic() - started < 5  # an agent call would have retried for a minute


def test_cli_refuses_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --serve-kubearmor-logs is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["alerts", "--agent", "tcp://127.0.0.1:9", "--serve-kubearmor-logs", "nowhere"])
    assert exit_info.value.code == 2
    assert "[HOST:]PORT" in capsys.readouterr().err
