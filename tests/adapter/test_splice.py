# SPDX-License-Identifier: Apache-2.0
"""kadapter_api/splice.py: bytes both ways until both ends are done, and nothing held while a connection idles."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from kadapter_api import splice as splice_module
from kadapter_api.splice import CHUNK, splice

WAIT = 5.0


def _receive(conn: socket.socket, size: int) -> bytes:
    """Read exactly size bytes."""
    received = b""
    while len(received) < size:
        data = conn.recv(size - len(received))
        assert data, "EOF before the data"
        received += data
    return received


@pytest.fixture
def spliced() -> Iterator[tuple[socket.socket, socket.socket, threading.Thread]]:
    """Splice two socket pairs in a thread; yield the outer ends and the thread."""
    left, left_inner = socket.socketpair()
    right_inner, right = socket.socketpair()
    thread = threading.Thread(target=splice, args=(left_inner, right_inner), daemon=True)
    thread.start()
    yield left, right, thread
    left.close()
    right.close()
    thread.join(WAIT)


def test_bytes_go_both_ways_and_eof_ends_the_splice(
    spliced: tuple[socket.socket, socket.socket, threading.Thread],
) -> None:
    """Several chunks' worth each way arrive whole; EOF from both ends closes both inner sockets."""
    left, right, thread = spliced
    payload = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
    left.sendall(payload)
    assert _receive(right, len(payload)) == payload
    right.sendall(b"answer")
    assert _receive(left, len(b"answer")) == b"answer"
    left.shutdown(socket.SHUT_WR)
    assert right.recv(1) == b""  # the EOF is passed on
    right.shutdown(socket.SHUT_WR)
    assert left.recv(1) == b""
    thread.join(WAIT)
    assert not thread.is_alive()


def test_an_idle_splice_holds_no_buffer(spliced: tuple[socket.socket, socket.socket, threading.Thread]) -> None:
    """After traffic both ways, waiting for more holds no memory allocated in splice.py (it used to hold a CHUNK)."""
    left, right, _thread = spliced
    tracemalloc.start()
    try:
        for sender, receiver in ((left, right), (right, left)):
            sender.sendall(b"x" * (2 * CHUNK + 1))
            _receive(receiver, 2 * CHUNK + 1)
        deadline = time.monotonic() + WAIT  # each thread may still be returning from its last send
        while (held := _held_by_splice()) >= 1024 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        tracemalloc.stop()
    assert held < 1024


def _held_by_splice() -> int:
    """Count the bytes allocated by splice.py's code and still held."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, splice_module.__file__)])
    return sum(stat.size for stat in snapshot.statistics("filename"))
