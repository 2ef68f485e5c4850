# SPDX-License-Identifier: Apache-2.0
"""A guest agent process for bench/propagation.py: the real agent and gRPC service over an Enforcer writing no maps.

The node daemon's benchmark needs 50 agents answering as a guest's would, without 50 VMs. Everything an
ApplyPolicies call goes through in a guest is the real code (guest_agent/service.py's server and
interceptor, guest_agent/agent.py checking, compiling per container and saving its state to a tmpfs
directory, as /run/kadapter/state is in a guest); only the kernel maps are stood in for. The pod's pause
and application containers are registered at start (the process itself stands in for their init), so
GetStatus reports what a guest running the pod reports and the daemon's sessions can reach "applied".

Each accepted ApplyPolicies prints one JSON line on stdout, stamped with CLOCK_MONOTONIC (one clock for
every process of the machine) the moment the agent holds the set, before the answer goes back: ``t`` (ns),
``generation`` and ``markers``, the process-rule paths starting with MARKER_PREFIX, by which the benchmark
tells which change arrived. The process serves until its stdin closes (the benchmark exiting closes it too).

usage: python -m bench.noop_agent --socket PATH --state-dir DIR --tls-dir DIR
           --namespace NS --pod NAME --uid UID --container NAME
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

from guest_agent.agent import Agent, Container, PodKey
from guest_agent.alerts import AlertHub
from guest_agent.rules import CompiledRules, ContainerKey
from guest_agent.service import GuestAgentService, serve
from guest_agent.state import StateStore
from kadapter_api import agent_pb2
from kadapter_api.channel_security import Identity

MARKER_PREFIX = "/usr/bin/probe-"  # the benchmark's changes name a new executable of this prefix each time
READY = "ready"  # the line printed once the gRPC socket serves


class NoopEnforcer:
    """The Enforcer's interface with no kernel behind it: the agent's own work is all that is left to time."""

    fail_closed = False

    def __init__(self) -> None:
        self._rulesets = itertools.count(1)
        self._kernel_ids: dict[str, int] = {}

    def enforce(self, container_id: str, rules: CompiledRules, *, key: ContainerKey, init_pid: int) -> tuple[int, ...]:
        """Hand out a ruleset id per kind, as the real one does, and write nothing."""
        self._kernel_ids.setdefault(container_id, len(self._kernel_ids) + 1)
        return tuple(next(self._rulesets) for _ in rules.kinds)

    def release(self, container_id: str) -> None:
        """Forget a container."""
        self._kernel_ids.pop(container_id, None)

    def kernel_id(self, container_id: str) -> int:
        """Return the id enforce() gave the container (saved in the agent's state)."""
        return self._kernel_ids[container_id]

    def adopt(self, container_id: str, *, kernel_id: int, key: ContainerKey) -> None:
        """Take over a previous agent's container (never happens here: each agent starts afresh)."""
        self._kernel_ids[container_id] = kernel_id

    def forget(self, *, kernel_id: int, key: ContainerKey) -> None:
        """Nothing to delete."""

    def collect_garbage(self) -> int:
        """Nothing to collect."""
        return 0

    def alerts_dropped(self, container_id: str) -> int:
        """No kernel, no drops."""
        return 0


class StampedAgent(Agent):
    """The real Agent, printing when it holds each set, and speaking for a guest kernel that runs the BPF LSM."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._out = threading.Lock()

    def apply(self, request: agent_pb2.ApplyPoliciesRequest) -> agent_pb2.ApplyPoliciesResponse:
        """Apply as the agent does, then stamp: the set is held (and saved) from this moment."""
        response = super().apply(request)
        now = time.monotonic_ns()
        markers = sorted(
            rule.path
            for policy in request.policies
            for rule in policy.process_rules
            if rule.path.startswith(MARKER_PREFIX)
        )
        line = json.dumps({"t": now, "generation": request.generation, "markers": markers})
        with self._out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return response

    def status(self) -> agent_pb2.AgentStatus:
        """Report as the agent does in a Kata guest that passes the self-check (this host has no securityfs)."""
        reply = super().status()
        reply.bpf_lsm_active = True
        del reply.unprotected_because[:]
        return reply


def _containers(args: argparse.Namespace) -> list[Container]:
    """List the pod's pause and application containers, as the OCI hooks would register them."""
    pod = PodKey(args.namespace, args.pod)
    return [
        Container(
            id=f"{args.uid}-{name}",
            name=name,
            pod=pod,
            pod_uid=args.uid,
            key=ContainerKey(number, number),
            rootfs=None,
            pid=os.getpid(),
            sandbox=name == "pause",
        )
        for number, name in enumerate(("pause", args.container), start=1)
    ]


def main(argv: list[str] | None = None) -> int:
    """Serve one sandbox's agent until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m bench.noop_agent", description=__doc__)
    for option in ("--socket", "--state-dir", "--tls-dir"):
        parser.add_argument(option, type=Path, required=True)
    for option in ("--namespace", "--pod", "--uid", "--container"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    alerts = AlertHub()
    agent = StampedAgent(NoopEnforcer(), alerts, store=StateStore(args.state_dir))
    for container in _containers(args):
        agent.register(container)
    server = serve(
        GuestAgentService(agent, alerts),
        unix_socket=args.socket.with_name("private.sock"),
        remote_socket=args.socket,  # the fake VMM splices the daemon's connections to it, as the vsock relay does
        identity=Identity.load(args.tls_dir),
    )
    print(READY, flush=True)
    sys.stdin.read()  # until the benchmark closes it, or exits
    server.stop(None).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
