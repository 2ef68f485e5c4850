# SPDX-License-Identifier: Apache-2.0
"""Every Kata agent's alerts, followed for as long as its sandbox has a session.

Sessions (adapter/sessions.py) push policies and check on them with short
calls; alerts come the other way, on a stream that stays open, so each sandbox
gets a thread of its own here. It holds the agent's StreamAlerts open and hands
each alert to one sink (the daemon's fan-out and counters); when the stream
breaks (agent restarted, VM rebooting) it opens a fresh channel after a capped
back-off, so a dead VM costs its own thread and no busy loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import grpc

from adapter.agent_channels import SharedChannels
from adapter.discovery import SandboxId
from adapter.exporter import AgentClient
from adapter.transport import AgentAddress
from kadapter_api import agent_pb2

BACKOFF: Final = 0.2  # seconds before reopening a broken stream; doubles while it keeps breaking
BACKOFF_MAX: Final = 30.0
PROBE_TIMEOUT: Final = 10.0  # seconds the agent gets to answer GetStatus before each stream is opened
STOP_TIMEOUT: Final = 5.0  # seconds a stream's thread may take to end once its channel is closed

Sink = Callable[[agent_pb2.Alert], None]

_log = logging.getLogger(__name__)


class AlertStreams:
    """One alert stream per sandbox; every method may be called from any thread."""

    def __init__(
        self, sink: Sink, *, channels: SharedChannels, backoff: float = BACKOFF, backoff_max: float = BACKOFF_MAX
    ) -> None:
        """Stream over channels, those of the sessions (adapter/agent_channels.py)."""
        self._sink = sink
        self._channels = channels
        self._backoff = (backoff, backoff_max)
        self._streams: dict[SandboxId, _Stream] = {}
        self._lock = threading.Lock()

    def follow(self, sandbox: SandboxId, address: AgentAddress) -> None:
        """Stream the sandbox's alerts from address, replacing a stream from another address."""
        with self._lock:
            current = self._streams.get(sandbox)
            if current is not None and current.address == address:
                return
            self._streams[sandbox] = _Stream(sandbox, address, self._channels, self._sink, self._backoff)
        if current is not None:
            current.close()

    def drop(self, sandbox: SandboxId) -> None:
        """Stop streaming the sandbox's alerts."""
        with self._lock:
            stream = self._streams.pop(sandbox, None)
        if stream is not None:
            stream.close()

    def close(self) -> None:
        """Stop every stream."""
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream.close()


class _Stream:
    """One agent's alert stream, kept open by a thread of its own until close()."""

    def __init__(
        self,
        sandbox: SandboxId,
        address: AgentAddress,
        channels: SharedChannels,
        sink: Sink,
        backoff: tuple[float, float],
    ) -> None:
        self.sandbox = sandbox
        self.address = address
        self._channels = channels
        self._sink = sink
        self._backoff = backoff
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._client: AgentClient | None = None
        self._thread = threading.Thread(target=self._run, name=f"kadapter-alerts-{sandbox}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the stream at once (cancelling it ends the call) and wait for the thread."""
        self._closed.set()
        with self._lock:
            client = self._client
        if client is not None:
            client.close()
        self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        """Hold the stream open, reopening it on a fresh channel after a back-off whenever it ends."""
        initial, ceiling = self._backoff
        delay = initial
        while not self._closed.is_set():
            with self._lock:
                if self._closed.is_set():
                    return
                self._client = client = AgentClient(
                    self.address, channels=self._channels, retry_for=0, rpc_timeout=PROBE_TIMEOUT
                )
            broken = False
            try:
                # Fails at once while the agent is down, where a waiting stream would wait out gRPC's own
                # reconnect back-off (up to two minutes) after it is back.
                client.status()
                for alert in client.alerts():
                    self._sink(alert)
                    delay = initial  # the stream works: a later break starts the back-off over
                reason = "the agent ended the stream"
            except grpc.RpcError as error:
                reason = f"{error.code().name}: {error.details()}"
                broken = error.code() is grpc.StatusCode.UNAVAILABLE
            except ValueError:  # begun on a channel closed meanwhile
                return
            finally:
                client.close(broken=broken)
            if not self._closed.is_set():
                _log.info(
                    "sandbox %s: alert stream from %s ended (%s); reopening in %.1f s",
                    self.sandbox,
                    self.address,
                    reason,
                    delay,
                    extra={"event": "alerts-reconnect", "sandbox": self.sandbox, "error": reason},
                )
            self._closed.wait(delay)
            delay = min(delay * 2, ceiling)
