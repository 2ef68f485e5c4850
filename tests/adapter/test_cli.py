"""The kadapter command line: validation output, and bad input refused before any agent is contacted."""

from __future__ import annotations

import shutil
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from adapter.cli import main
from kadapter_api import agent_pb2, agent_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "images" / "testguest" / "manifests"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Nothing listens here: reaching the agent at all would fail the command with exit 1, not 2.
UNREACHABLE = "tcp://127.0.0.1:9"


def test_validate_reports_each_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """`kadapter validate policies` names every policy it accepted."""
    assert main(["validate", str(REPO / "policies")]) == 0
    assert "KubeArmorPolicy default/ksp-nginx-block-apt: ok" in capsys.readouterr().out


def test_validate_accepts_file_network_and_capability_rules(capsys: pytest.CaptureFixture[str]) -> None:
    """A policy with every rule kind Kadapter enforces validates."""
    assert main(["validate", str(FIXTURES / "ksp-nginx-harden.yaml")]) == 0
    assert "KubeArmorPolicy default/ksp-nginx-harden: ok" in capsys.readouterr().out


def test_bad_policy_directory_stops_before_any_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One invalid file: exit 2 with file, field and reason, and no agent is called."""
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    (tmp_path / "policies" / "zz-bad.yaml").write_text(
        (REPO / "policies" / "ksp-nginx-block-apt.yaml")
        .read_text()
        .replace("ksp-nginx-block-apt", "other")
        .replace("/usr/bin/apt", "apt")
    )
    code = main(
        ["local", "--policies", str(tmp_path / "policies"), "--manifests", str(MANIFESTS), "--agent", UNREACHABLE]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert "zz-bad.yaml" in error and "spec.process.matchPaths[0].path" in error and "absolute" in error


def test_kata_pod_without_an_agent_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every Kata pod needs an agent address; a missing one is named."""
    code = main(
        [
            "local", "--policies", str(REPO / "policies"), "--manifests", str(MANIFESTS),
            "--agent", f"default/nginx-1={UNREACHABLE}",
        ]
    )  # fmt: skip
    assert code == 2
    assert "default/busybox-1" in capsys.readouterr().err


def test_bad_agent_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """An agent URL in an unknown scheme is refused with the URL named."""
    assert main(["status", "--agent", "http://127.0.0.1:1"]) == 2
    assert "http://127.0.0.1:1" in capsys.readouterr().err


def test_unknown_namespace_posture_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A posture annotation other than audit or block is an error naming the annotation."""
    manifests = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, manifests)
    (manifests / "namespace.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n"
        "  annotations:\n    kubearmor-file-posture: strict\n"
    )
    code = main(["local", "--policies", str(REPO / "policies"), "--manifests", str(manifests), "--agent", UNREACHABLE])
    error = capsys.readouterr().err
    assert code == 2 and "namespace.yaml" in error and "kubearmor-file-posture" in error and "'strict'" in error


class _AppliesToNothing(agent_pb2_grpc.GuestAgentServicer):
    """An agent that holds the set but knows no container of the pod."""

    def ApplyPolicies(  # noqa: N802 (generated name)
        self, request: agent_pb2.ApplyPoliciesRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ApplyPoliciesResponse:
        """Accept the set; no container holds it."""
        return agent_pb2.ApplyPoliciesResponse(generation=request.generation, containers_enforced=0)


def test_local_says_when_a_set_is_enforced_in_no_container(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pod the agent knows no container of is not reported as enforced, and the likely reasons are given."""
    socket_path = tmp_path / "agent.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_GuestAgentServicer_to_server(_AppliesToNothing(), server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    try:
        code = main(
            ["local", "--policies", str(REPO / "policies"), "--manifests", str(MANIFESTS),
             "--agent", f"unix://{socket_path}"]
        )  # fmt: skip
    finally:
        server.stop(None)
    assert code == 0
    out = capsys.readouterr().out
    assert "default/nginx-1: ksp-nginx-block-apt" in out
    assert "enforced nowhere yet: the agent knows no running container of this pod" in out
    assert "enforced in" not in out
