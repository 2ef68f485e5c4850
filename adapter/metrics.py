# SPDX-License-Identifier: Apache-2.0
"""The node daemon's Prometheus metrics, and the HTTP endpoint that serves them with its probes and status.

The Exporter's sessions (adapter/sessions.py) count what they do here, and
whoever relays alerts counts those. The metrics live in a registry of their
own rather than prometheus_client's global one, so that each test (and each
pool) reads only what it caused. Labels take a few fixed values: nothing a
pod or an agent names becomes a label, so a hostile or noisy agent cannot
grow the series count.

The same small server answers the kubelet's probes (/healthz, /readyz) and
`kadapter status` (/status, JSON): one port for everything a node's operator
asks the daemon, and nothing here knows what the answers mean.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

# From a healthy local agent (milliseconds) to a slow emulated guest compiling many rules (RPC timeout: 30 s).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ALERT_OPERATIONS: Final = frozenset({"Process", "File", "Network", "Capabilities"})  # KubeArmor's names
ALERT_ACTIONS: Final = frozenset({"Allow", "Audit", "Block"})
OTHER: Final = "other"  # the label value for anything outside the sets above


class Metrics:
    """The metric objects, registered in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sessions = Gauge(
            "kadapter_sessions", "Exporter sessions (one per Kata sandbox) by state.", ["state"], registry=self.registry
        )
        self.pushes = Counter(
            "kadapter_pushes",
            "ApplyPolicies calls by outcome: applied, refused (invalid policy) or failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.failures = Counter(
            "kadapter_failures",
            "Failed agent calls by operation (apply, status) and gRPC status code.",
            ["operation", "code"],
            registry=self.registry,
        )
        self.push_latency = Histogram(
            "kadapter_push_latency_seconds",
            "Round trip of ApplyPolicies calls the agent accepted.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.resyncs = Counter(
            "kadapter_resyncs",
            "Sets pushed again because an agent no longer held them (agent restarted, VM rebooted).",
            registry=self.registry,
        )
        self.unprotected_sandboxes = Gauge(
            "kadapter_unprotected_sandboxes",
            "Sandboxes whose agent last reported no BPF LSM in the guest kernel: nothing in them is enforced.",
            registry=self.registry,
        )
        self.unregistered_containers = Gauge(
            "kadapter_unregistered_containers",
            "Containers the agents last reported they never registered, summed over sandboxes.",
            registry=self.registry,
        )
        self.alerts = Counter(
            "kadapter_alerts",
            "Alerts received from agents by operation and action.",
            ["operation", "action"],
            registry=self.registry,
        )

    def declare_states(self, states: Iterable[str]) -> None:
        """Show every session state from the start, at zero, so dashboards need not guess which exist."""
        for state in states:
            self.sessions.labels(state=state)

    def count_alert(self, *, operation: str, action: str) -> None:
        """Count one alert; an operation or action outside KubeArmor's vocabulary counts as "other"."""
        self.alerts.labels(
            operation=operation if operation in ALERT_OPERATIONS else OTHER,
            action=action if action in ALERT_ACTIONS else OTHER,
        ).inc()


class _Server(ThreadingMixIn, WSGIServer):
    """A WSGI server answering each request on its own thread, so a slow scraper holds up no probe."""

    daemon_threads = True

    def __init__(self, host: str, port: int) -> None:
        # IPv4 or IPv6 by the address given, as prometheus_client's own server decides.
        self.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        super().__init__((host, port), _QuietHandler)


class _QuietHandler(WSGIRequestHandler):
    """Log nothing per request: the kubelet probes every few seconds."""

    def log_message(self, format: str, *args: object) -> None:
        """Drop the access log line."""


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Endpoints:
    """What the server answers besides the metrics; the defaults suit a process with nothing to wait for."""

    healthy: Callable[[], bool] = _always  # /healthz: 200 while true, else 503 (the kubelet restarts the pod)
    ready: Callable[[], bool] = _always  # /readyz: 200 once true, else 503
    status: Callable[[], object] | None = None  # /status: this, as JSON; None: no such path


def _text(start_response: StartResponse, good: bool, yes: bytes, no: bytes) -> list[bytes]:
    """Answer a probe: 200 with yes, or 503 with no."""
    start_response("200 OK" if good else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
    return [yes if good else no]


def _app(registry: CollectorRegistry, endpoints: Endpoints) -> WSGIApplication:
    """Route the probes and /status to the endpoints, and every other path to the metrics."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        match environ.get("PATH_INFO"):
            case "/healthz":
                return _text(start_response, endpoints.healthy(), b"ok\n", b"unhealthy\n")
            case "/readyz":
                return _text(start_response, endpoints.ready(), b"ready\n", b"not ready\n")
            case "/status" if endpoints.status is not None:
                body = json.dumps(endpoints.status(), indent=2).encode() + b"\n"
                start_response("200 OK", [("Content-Type", "application/json")])
                return [body]
            case _:
                return metrics(environ, start_response)

    return app


def serve_metrics(registry: CollectorRegistry, host: str, port: int, endpoints: Endpoints | None = None) -> WSGIServer:
    """Serve the registry's metrics, the probes and /status on host:port (port 0: any free one) from a daemon thread.

    ``server_port`` is the port it listens on; stop it with ``shutdown()`` then ``server_close()``.
    """
    server = _Server(host, port)
    server.set_app(_app(registry, endpoints if endpoints is not None else Endpoints()))
    threading.Thread(target=server.serve_forever, name="kadapter-metrics", daemon=True).start()
    return server
