# SPDX-License-Identifier: Apache-2.0
"""Join two connected sockets, copying bytes both ways.

grpcio speaks neither AF_VSOCK nor Kata's hybrid vsock, so each end of the
host-guest link runs gRPC on a local Unix socket and splices it to the
vsock connection: the guest agent's relay and the host adapter's dialer.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

CHUNK = 65536


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Copy until EOF or error, then half-close the sink so the peer sees EOF too.

    It waits for the source to be readable before receiving: recv() takes its CHUNK-byte buffer
    when called and holds it for as long as it blocks, and these connections are idle nearly all
    the time (the node daemon keeps two per Kata sandbox: with 50 sandboxes, 200 waiting buffers, 13 MB).
    """
    readable = select.poll()
    readable.register(source, select.POLLIN)
    with contextlib.suppress(OSError):
        while readable.poll() and _forward(source, sink):
            pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _forward(source: socket.socket, sink: socket.socket) -> bool:
    """Pass on what the source holds now, keeping no buffer once done; tell whether it was data, not EOF."""
    data = source.recv(CHUNK)
    if not data:
        return False
    sink.sendall(data)
    return True


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes between a and b until both directions are done, then close both.

    Plain sockets only: an ssl.SSLSocket can hold decrypted bytes that its descriptor no longer
    shows as readable, and the wait in _copy would not end (TLS belongs inside the spliced stream).
    """
    backwards = threading.Thread(target=_copy, args=(b, a), daemon=True)
    backwards.start()
    _copy(a, b)
    backwards.join()
    a.close()
    b.close()
