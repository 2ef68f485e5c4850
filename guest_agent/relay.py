# SPDX-License-Identifier: Apache-2.0
"""Carry gRPC over vsock: grpcio cannot listen on AF_VSOCK, so bytes are relayed.

Each connection accepted on the vsock port is checked for its peer CID
(only the host, CID 2, by default: other VMs and the guest itself are
refused) and then spliced to the agent's private gRPC Unix socket.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Collection
from pathlib import Path

from kadapter_api.splice import splice

log = logging.getLogger(__name__)

HOST_CID = 2


class VsockRelay:
    """Accept vsock connections from allowed CIDs and splice them to a Unix socket."""

    def __init__(self, *, port: int, target: Path, allowed_cids: Collection[int] = (HOST_CID,)) -> None:
        self.target = target
        self.allowed_cids = frozenset(allowed_cids)
        self._listener = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        self._listener.bind((socket.VMADDR_CID_ANY, port))
        self._listener.listen(64)

    def serve_forever(self) -> None:
        """Accept until the listener is closed."""
        while True:
            try:
                conn, (cid, port) = self._listener.accept()
            except OSError:
                return
            if cid not in self.allowed_cids:
                log.warning("vsock connection from CID %d port %d refused", cid, port)
                conn.close()
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.target))
        except OSError as error:
            log.error("cannot reach gRPC socket %s: %s", self.target, error)
            conn.close()
            upstream.close()
            return
        splice(conn, upstream)

    def close(self) -> None:
        """Stop accepting."""
        self._listener.close()
