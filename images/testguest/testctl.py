# SPDX-License-Identifier: Apache-2.0
"""Run commands inside the test guest on behalf of the host-side tests.

Only the test guest starts this: it is the stand-in for what a kubelet and
kata-agent would do (start containers, exec into them), reachable from the
host through QEMU's user-mode port forwarding. One JSON request per TCP
connection, one JSON reply.
"""

import json
import socketserver
import subprocess
import sys


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


if __name__ == "__main__":
    with Server(("0.0.0.0", int(sys.argv[1])), CommandHandler) as server:
        server.serve_forever()
