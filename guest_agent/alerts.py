# SPDX-License-Identifier: Apache-2.0
"""Fan alerts out to every host subscriber without letting a slow one stall the kernel reader.

Each subscriber gets a bounded queue; when it is full the alert is dropped
for that subscriber and counted, and the count is reported in the status.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from kadapter_api import agent_pb2

QUEUE_DEPTH = 4096


class AlertHub:
    """Publish alerts to any number of streaming subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[queue.Queue[agent_pb2.Alert]] = set()
        self._lock = threading.Lock()
        self.dropped = 0

    def publish(self, alert: agent_pb2.Alert) -> None:
        """Offer an alert to every subscriber."""
        with self._lock:
            for subscriber in self._subscribers:
                try:
                    subscriber.put_nowait(alert)
                except queue.Full:
                    self.dropped += 1

    def subscribe(self, stopped: threading.Event) -> Iterator[agent_pb2.Alert]:
        """Yield alerts as they are published, until `stopped` is set or the consumer stops iterating."""
        subscriber: queue.Queue[agent_pb2.Alert] = queue.Queue(QUEUE_DEPTH)
        with self._lock:
            self._subscribers.add(subscriber)
        try:
            while True:
                try:
                    yield subscriber.get(timeout=1.0)
                except queue.Empty:
                    if stopped.is_set():
                        return
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)
