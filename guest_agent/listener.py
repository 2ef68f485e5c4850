# SPDX-License-Identifier: Apache-2.0
"""The Listener: takes kadapter-hook's registrations on a root-only Unix socket.

This is how the agent learns each container's init PID without forking
kata-agent. The container's kernel identity is derived here, from the
namespaces of that PID, not taken from the message.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import struct
from pathlib import Path

from guest_agent.agent import Agent, Container, PodKey, container_key
from guest_agent.registration import Registration, take_pending
from guest_agent.self_check import UnprotectedAgent

log = logging.getLogger(__name__)

_UCRED = struct.Struct("3i")


class _RegistrationHandler(socketserver.StreamRequestHandler):
    server: HookListener

    def handle(self) -> None:
        _, uid, _ = _UCRED.unpack(self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        try:
            if uid != 0:
                raise PermissionError(f"uid {uid} may not register containers")
            self.server.dispatch(Registration.decode(self.rfile.readline()))
            reply = {"ok": True}
        except Exception as error:  # the hook gets the reason; the agent keeps serving
            log.warning("registration refused: %s", error)
            reply = {"ok": False, "error": str(error)}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class HookListener(socketserver.ThreadingUnixStreamServer):
    """Serve registrations until shut down."""

    daemon_threads = True

    def __init__(self, path: Path, agent: Agent | UnprotectedAgent) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)
        self.agent = agent
        super().__init__(str(path), _RegistrationHandler)
        os.chmod(path, 0o600)

    def dispatch(self, registration: Registration) -> None:
        """Apply one registration to the agent."""
        dispatch(self.agent, registration)


def dispatch(agent: Agent | UnprotectedAgent, registration: Registration) -> None:
    """Apply one registration (from the hook, or left pending for this agent) to the agent."""
    if registration.operation == "unregister":
        agent.unregister(registration.container_id)
        log.info("container %s removed", registration.container_id)
        return
    container = Container(
        id=registration.container_id,
        name=registration.container_name,
        pod=PodKey(registration.pod_namespace, registration.pod_name),
        pod_uid=registration.pod_uid,
        key=container_key(registration.pid),
        rootfs=Path(registration.rootfs) if registration.rootfs else None,
        pid=registration.pid,
        sandbox=registration.sandbox,
    )
    rules = agent.register(container)
    log.info(
        "container %s (%s of %s/%s) registered: pid %d, key %s, %d exec rules",
        container.id, container.name, container.pod.namespace, container.pod.name,
        container.pid, container.key, rules,
    )  # fmt: skip


def register_pending(agent: Agent | UnprotectedAgent, directory: Path) -> int:
    """Register the containers whose hook found no agent and that still run; return how many."""
    registered = 0
    for registration in take_pending(directory):
        try:
            dispatch(agent, registration)
        except Exception as error:  # as for the hook's own call: the next one may go through
            log.error("container %s left pending could not be registered: %s", registration.container_id, error)
            continue
        registered += 1
    return registered
