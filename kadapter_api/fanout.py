# SPDX-License-Identifier: Apache-2.0
"""Hand each published item to every subscriber, each through its own bounded queue.

Both sides fan alerts out: the agent to each host stream (guest_agent/alerts.py), the node daemon to
the KubeArmor log service's watchers (adapter/kubearmor_logs.py) and its own consumers. Each subscriber
drains at its own pace over the network. Publishing never waits: a subscriber whose queue is full loses
that item, and the loss is counted for it and in total, so one slow subscriber costs only itself.
Closing a subscription ends its iteration at once. Plain threading, no gRPC, so tests drive it directly.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

QUEUE_DEPTH = 1000  # items a subscriber may fall behind by; KubeArmor's feeder buffers as many per watcher


class Subscription(Generic[T]):
    """One subscriber's queue: iterate it to receive items until it is closed."""

    def __init__(self, depth: int) -> None:
        self._items: deque[T] = deque()
        self._depth = depth
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0

    def offer(self, item: T) -> bool:
        """Queue an item without waiting; return False (and count it) when the queue is full."""
        with self._ready:
            if self._closed:
                return True
            if len(self._items) >= self._depth:
                self.dropped += 1
                return False
            self._items.append(item)
            self._ready.notify()
            return True

    def close(self) -> None:
        """Stop the subscription: iteration ends at once, whatever is still queued."""
        with self._ready:
            self._closed = True
            self._items.clear()
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        """Tell whether the subscription has been closed."""
        return self._closed

    def __iter__(self) -> Iterator[T]:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items or self._closed)
                if self._closed:
                    return
                item = self._items.popleft()
            yield item


class Fanout(Generic[T]):
    """Publish items to any number of subscribers; a full subscriber drops, others are unaffected."""

    def __init__(self, *, depth: int = QUEUE_DEPTH) -> None:
        self._depth = depth
        self._subscribers: set[Subscription[T]] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.published = 0
        self.dropped = 0

    def publish(self, item: T) -> None:
        """Offer an item to every current subscriber; never blocks on a slow one."""
        with self._lock:
            subscribers = tuple(self._subscribers)
            self.published += 1
        lost = sum(not subscriber.offer(item) for subscriber in subscribers)
        if lost:
            with self._lock:
                self.dropped += lost

    def subscribe(self) -> Subscription[T]:
        """Start receiving what is published from now on (nothing, once the fan-out is closed)."""
        subscription: Subscription[T] = Subscription(self._depth)
        with self._lock:
            if self._closed:
                subscription.close()
            else:
                self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        """Stop delivering to a subscription and close it."""
        with self._lock:
            self._subscribers.discard(subscription)
        subscription.close()

    @property
    def subscribers(self) -> int:
        """Count the current subscribers."""
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """Close every subscription and refuse new ones."""
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = self._subscribers, set()
        for subscription in subscribers:
            subscription.close()
