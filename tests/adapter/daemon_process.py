# SPDX-License-Identifier: Apache-2.0
"""`kadapter run` as its own process on a node in miniature (tests/adapter/fakes.py), as the DaemonSet runs it.

NODE_NAME comes from the environment, JSON logs from stderr, printed alerts from stdout; the HTTP
endpoints (/status, /metrics, probes) are found from the address the daemon logs when it listens.
Used by the CLI's tests against fake agents and by the end-to-end test against the test guest's agent.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.adapter.fakes import KataNode
from tests.adapter.objects import NODE
from tests.credentials import ADAPTER_DIR

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0  # seconds: the process imports gRPC and the kubernetes client before anything else


@dataclass
class Running:
    """A `kadapter run` process, with its log records and printed alerts as they come."""

    process: subprocess.Popen[str]
    records: queue.Queue[dict[str, Any]]
    printed: queue.Queue[str]
    seen: list[dict[str, Any]]

    def record(self, check: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """Return the first log record (seen before or arriving within timeout) for which check holds."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((record for record in self.seen if check(record)), None)
            if found is not None:
                return found
            try:
                self.seen.append(self.records.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no such log record within {timeout} s; seen: {self.seen}")

    def url(self, event: str) -> str:
        """Return the address the daemon logged for a listening event."""
        return self.record(lambda record: record.get("event") == event)["address"]

    @property
    def base(self) -> str:
        """Return the daemon's HTTP endpoint (/status, /metrics, /healthz, /readyz)."""
        return f"http://{self.url('listening')}"

    def status(self) -> dict[str, Any]:
        """Return the daemon's /status report."""
        return json.loads(http_get(f"{self.base}/status")[1])


def _log_record(line: str) -> dict[str, Any]:
    """Parse one stderr line: a JSON log record, or (a traceback, faulthandler's thread dump) its text."""
    try:
        return json.loads(line)
    except ValueError:
        return {"event": "stderr", "text": line.rstrip("\n")}


def _lines(stream: Any, into: queue.Queue[Any], parse: Callable[[str], Any]) -> None:
    """Copy a process's lines into a queue as they come."""
    for line in stream:
        into.put(parse(line))


@contextmanager
def kadapter_run(node: KataNode, directory: Path, *options: str) -> Iterator[Running]:
    """Run `kadapter run` on the node with the options every node needs and these; kill it if still running after."""
    argv = [
        sys.executable, "-m", "adapter.cli", "run",
        "--kubeconfig", str(node.api.write_kubeconfig(directory / "kubeconfig")),
        "--cri-socket", str(node.cri_socket),
        *(option for root in node.monitor_roots for option in ("--shim-monitor-root", str(root))),
        "--metrics-address", "127.0.0.1:0",
        "--tls-dir", str(ADAPTER_DIR),
        *options,
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    process = subprocess.Popen(
        argv,
        cwd=REPO,
        env={**env, "NODE_NAME": NODE, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread's stack
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(process, queue.Queue(), queue.Queue(), [])
    threading.Thread(target=_lines, args=(process.stderr, running.records, _log_record), daemon=True).start()
    threading.Thread(target=_lines, args=(process.stdout, running.printed, str.strip), daemon=True).start()
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def http_get(url: str) -> tuple[int, str]:
    """GET a URL; return the status and the body, for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
