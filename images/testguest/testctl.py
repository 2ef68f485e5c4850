# SPDX-License-Identifier: Apache-2.0
"""Run commands inside the test guest on behalf of the host-side tests.

Only the test guest starts this: it is the stand-in for what a kubelet and
kata-agent would do (start containers, exec into them), reachable from the
host through QEMU's user-mode port forwarding. One JSON request per TCP
connection, one JSON reply.

It is started in the control NIC's network namespace (control-network.sh)
and listens there only: it then joins the guest's root network namespace,
so that what it runs (containers above all) is where a Kata guest's would
be, while no container can reach its port.
"""

import ctypes
import json
import os
import socketserver
import subprocess
import sys

CLONE_NEWNET = 0x40000000


class CommandHandler(socketserver.StreamRequestHandler):
    """Run the requested argv and answer with its exit code and output."""

    def handle(self) -> None:
        """Serve one request."""
        request = json.loads(self.rfile.readline())
        try:
            done = subprocess.run(
                request["argv"],
                input=request.get("stdin", ""),
                capture_output=True,
                text=True,
                timeout=request.get("timeout", 60),
                check=False,
            )
            reply = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        except (OSError, subprocess.TimeoutExpired) as error:
            reply = {"returncode": -1, "stdout": "", "stderr": f"testctl: {error}"}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class Server(socketserver.ThreadingTCPServer):
    """A threaded server that can be restarted on the same port at once."""

    allow_reuse_address = True
    daemon_threads = True


def join_network_namespace(path: str) -> None:
    """Move this (still single-threaded) process into the network namespace at path; sockets stay where made."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as namespace:
        if libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")


if __name__ == "__main__":
    with Server(("0.0.0.0", int(sys.argv[1])), CommandHandler) as server:
        join_network_namespace("/proc/1/ns/net")
        server.serve_forever()
