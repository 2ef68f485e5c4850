# SPDX-License-Identifier: Apache-2.0
"""The fan-out behind the KubeArmor log service: every subscriber gets every item, a slow one only loses its own."""

from __future__ import annotations

import threading
import time

from kadapter_api.fanout import Fanout


def _drain(subscription, into: list[int], until: int) -> None:
    for item in subscription:
        into.append(item)
        if len(into) == until:
            return


def test_every_subscriber_gets_every_item_in_order() -> None:
    """Two subscribers both receive all items, in publishing order."""
    fanout: Fanout[int] = Fanout(depth=100)
    first, second = fanout.subscribe(), fanout.subscribe()
    for item in range(10):
        fanout.publish(item)
    got_first: list[int] = []
    got_second: list[int] = []
    _drain(first, got_first, 10)
    _drain(second, got_second, 10)
    assert got_first == got_second == list(range(10))
    assert fanout.dropped == 0 and fanout.published == 10


def test_a_full_subscriber_drops_and_counts_while_others_keep_up() -> None:
    """A subscriber that never reads fills its queue, then loses items (counted); publishing never waits on it."""
    fanout: Fanout[int] = Fanout(depth=4)
    stalled = fanout.subscribe()
    reader = fanout.subscribe()
    received: list[int] = []
    thread = threading.Thread(target=_drain, args=(reader, received, 1000))
    thread.start()
    started = time.monotonic()
    for item in range(1000):
        fanout.publish(item)
        while len(received) < item + 1 - 3:  # keep the reader within its queue, as a fast client would be
            time.sleep(0.0001)
    thread.join(timeout=10)
    assert received == list(range(1000))
    assert stalled.dropped == 996 and fanout.dropped == 996
    assert time.monotonic() - started < 10
    fanout.close()
    assert list(stalled) == []  # closing ends iteration, whatever was queued


def test_only_items_published_after_subscribing_arrive() -> None:
    """A subscriber sees what is published from the moment it subscribed, nothing earlier."""
    fanout: Fanout[str] = Fanout()
    fanout.publish("before")
    subscription = fanout.subscribe()
    fanout.publish("after")
    assert next(iter(subscription)) == "after"
    assert fanout.subscribers == 1


def test_unsubscribe_and_close_end_iteration_of_a_waiting_reader() -> None:
    """A reader blocked waiting for an item returns when its subscription is closed; closed fan-outs refuse new ones."""
    fanout: Fanout[int] = Fanout()
    subscription = fanout.subscribe()
    done = threading.Event()

    def read() -> None:
        list(subscription)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.05)
    assert not done.is_set()
    fanout.unsubscribe(subscription)
    assert done.wait(5)
    fanout.close()
    late = fanout.subscribe()
    fanout.publish(1)
    assert late.closed and list(late) == []
