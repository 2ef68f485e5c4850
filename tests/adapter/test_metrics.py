# SPDX-License-Identifier: Apache-2.0
"""The node daemon's metrics: a registry per instance, bounded alert labels, the endpoint with probes and status."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_client import REGISTRY

from adapter.metrics import Endpoints, Metrics, serve_metrics


@pytest.fixture
def served() -> Iterator[tuple[Metrics, WSGIServer]]:
    """Yield metrics served on a free loopback port, stopped afterwards."""
    metrics = Metrics()
    server = serve_metrics(metrics.registry, "127.0.0.1", 0)
    yield metrics, server
    server.shutdown()
    server.server_close()


def _get(server: WSGIServer, path: str) -> tuple[int, str]:
    """Fetch a path from the server and return its status and body."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def test_each_instance_has_its_own_registry() -> None:
    """Counts in one Metrics are not seen in another, nor in prometheus_client's global registry."""
    first, second = Metrics(), Metrics()
    first.pushes.labels(outcome="applied").inc()
    assert first.registry.get_sample_value("kadapter_pushes_total", {"outcome": "applied"}) == 1
    assert second.registry.get_sample_value("kadapter_pushes_total", {"outcome": "applied"}) is None
    assert REGISTRY.get_sample_value("kadapter_pushes_total", {"outcome": "applied"}) is None


@pytest.mark.parametrize(
    ("operation", "action", "labels"),
    [
        pytest.param("File", "Block", {"operation": "File", "action": "Block"}, id="kubearmor-names"),
        pytest.param("x" * 200, "Drop", {"operation": "other", "action": "other"}, id="unknown-names"),
    ],
)
def test_alerts_are_counted_under_a_few_label_values(operation: str, action: str, labels: dict[str, str]) -> None:
    """KubeArmor's operations and actions are labels as they are; anything else an agent sends counts as other."""
    metrics = Metrics()
    metrics.count_alert(operation=operation, action=action)
    assert metrics.registry.get_sample_value("kadapter_alerts_total", labels) == 1


def test_endpoint_serves_metrics_and_health(served: tuple[Metrics, WSGIServer]) -> None:
    """/metrics is the Prometheus text format, the declared states and the gauges at zero; /healthz answers 200."""
    metrics, server = served
    metrics.declare_states(["applied", "unreachable"])
    metrics.sessions.labels(state="applied").inc()
    status, body = _get(server, "/metrics")
    assert status == 200
    assert 'kadapter_sessions{state="applied"} 1.0' in body
    assert 'kadapter_sessions{state="unreachable"} 0.0' in body
    assert "kadapter_unprotected_sandboxes 0.0" in body
    assert "kadapter_unregistered_containers 0.0" in body
    assert _get(server, "/healthz") == (200, "ok\n")


def _get_status(server: WSGIServer, path: str) -> tuple[int, str]:
    """Fetch a path, returning error statuses instead of raising."""
    try:
        return _get(server, path)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_probes_and_status_answer_what_the_endpoints_say() -> None:
    """/healthz and /readyz follow their callables (503 while false); /status is the status callable's JSON."""
    health, readiness = [True], [False]
    endpoints = Endpoints(healthy=lambda: health[0], ready=lambda: readiness[0], status=lambda: {"pods": []})
    server = serve_metrics(Metrics().registry, "127.0.0.1", 0, endpoints)
    try:
        assert _get_status(server, "/readyz") == (503, "not ready\n")
        readiness[0] = True
        assert _get_status(server, "/readyz") == (200, "ready\n")
        assert _get_status(server, "/healthz") == (200, "ok\n")
        health[0] = False
        assert _get_status(server, "/healthz") == (503, "unhealthy\n")
        status, body = _get_status(server, "/status")
        assert (status, json.loads(body)) == (200, {"pods": []})
    finally:
        server.shutdown()
        server.server_close()
