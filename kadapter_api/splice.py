# SPDX-License-Identifier: Apache-2.0
"""Join two connected sockets, copying bytes both ways.

grpcio speaks neither AF_VSOCK nor Kata's hybrid vsock, so each end of the
host-guest link runs gRPC on a local Unix socket and splices it to the
vsock connection: the guest agent's relay and the host adapter's dialer.
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK = 65536


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Copy until EOF or error, then half-close the sink so the peer sees EOF too."""
    with contextlib.suppress(OSError):
        while data := source.recv(CHUNK):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes between a and b until both directions are done, then close both."""
    backwards = threading.Thread(target=_copy, args=(b, a), daemon=True)
    backwards.start()
    _copy(a, b)
    backwards.join()
    a.close()
    b.close()
