# SPDX-License-Identifier: Apache-2.0
"""kadapter-agent: the daemon a Kata guest image starts next to kata-agent."""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from guest_agent.agent import Agent
from guest_agent.alerts import AlertHub
from guest_agent.enforcer import Enforcer
from guest_agent.libbpf import PINNED_LINKS, BpfError
from guest_agent.listener import HookListener, register_pending
from guest_agent.registration import DEFAULT_SOCKET, pending_directory
from guest_agent.relay import HOST_CID, VsockRelay
from guest_agent.self_check import UnprotectedAgent, kernel_problems
from guest_agent.service import MAX_MESSAGE_BYTES, MAX_STREAMS, GuestAgentService, serve
from guest_agent.state import StateStore
from kadapter_api.channel_security import DEFAULT_DIRECTORY, CredentialsError, Identity

log = logging.getLogger("kadapter-agent")

DEFAULT_VSOCK_PORT = 10240  # kata-agent owns 1024-1027
REMOTE_SOCKET = "remote.sock"  # beside --grpc-socket: what the vsock relay splices to, behind TLS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="kadapter-agent", description=__doc__)
    parser.add_argument("--bpf-object", type=Path, default=Path("/usr/lib/kadapter/kadapter.bpf.o"))
    parser.add_argument("--hook-socket", type=Path, default=Path(DEFAULT_SOCKET))
    parser.add_argument("--grpc-socket", type=Path, default=Path("/run/kadapter/grpc.sock"))
    parser.add_argument("--vsock-port", type=int, default=DEFAULT_VSOCK_PORT, help="0 disables vsock")
    parser.add_argument(
        "--allow-cid", type=int, action="append", help=f"vsock peer allowed to connect (default {HOST_CID})"
    )
    parser.add_argument("--tcp-listen", metavar="HOST:PORT", help="also serve gRPC on TCP (test guests only)")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=DEFAULT_DIRECTORY,
        help="the agent's key and certificate and the adapter's pinned certificate, required by vsock and TCP "
        "(default: %(default)s; written by `kadapter credentials`)",
    )
    parser.add_argument("--max-containers", type=int, default=1024)
    parser.add_argument("--max-rules", type=int, default=65536, help="entries per rule table, all containers together")
    parser.add_argument(
        "--alerts-per-second", type=int, default=100, help="per container; the kernel drops and counts the rest"
    )
    parser.add_argument(
        "--pin-dir",
        type=Path,
        default=Path("/sys/fs/bpf/kadapter"),
        help="bpffs directory where programs and maps stay pinned when the agent dies ('' to not pin)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path("/run/kadapter/state"), help="what the next agent needs to take over"
    )
    parser.add_argument(
        "--fail-closed",
        action="store_true",
        help="refuse every exec in a container whose hook did not register it (default: run it, and report it)",
    )
    parser.add_argument(
        "--max-streams", type=int, default=MAX_STREAMS, help="alert streams open at once; more are refused"
    )
    parser.add_argument(
        "--max-message-bytes", type=int, default=MAX_MESSAGE_BYTES, help="largest request accepted (gRPC)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _single_instance(path: Path) -> TextIO | None:
    """Hold an exclusive lock on path for the process's life (the kernel drops it if the process dies)."""
    lock = open(path, "a")  # noqa: SIM115 (held open until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def main(argv: list[str] | None = None) -> int:
    """Load the enforcer, then serve hooks, gRPC and vsock until SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    identity = None
    if args.vsock_port or args.tcp_listen:
        try:
            identity = Identity.load(args.tls_dir)
        except CredentialsError as error:
            log.error("cannot serve the host without credentials: %s", error)
            return 1
    store = StateStore(args.state_dir)
    lock = _single_instance(args.state_dir / "agent.lock")
    if lock is None:
        log.error("another kadapter-agent holds %s", args.state_dir / "agent.lock")
        return 1
    # Serve whatever the self-check finds: the host must hear that this VM is unprotected, not find no agent.
    problems = kernel_problems()
    enforcer = _load_enforcer(args, problems)
    for problem in problems:
        log.error("UNPROTECTED: %s", problem)
    alerts = AlertHub()
    stop = threading.Event()
    agent: Agent | UnprotectedAgent
    if enforcer is None:
        agent = UnprotectedAgent(problems)
    else:
        agent = Agent(enforcer, alerts, store=store, max_rules=args.max_rules)
        adopted, gone = agent.restore()
        if adopted or gone:
            log.info("took over %d running container(s) from the previous agent; %d had stopped", adopted, gone)
        threading.Thread(target=enforcer.watch_events, args=(agent.on_event, stop), daemon=True).start()

    remote_socket = args.grpc_socket.with_name(REMOTE_SOCKET) if args.vsock_port else None
    server = serve(
        GuestAgentService(agent, alerts, max_streams=args.max_streams),
        unix_socket=args.grpc_socket,
        remote_socket=remote_socket,
        tcp_address=args.tcp_listen,
        identity=identity,
        max_message_bytes=args.max_message_bytes,
    )
    relay = None
    if remote_socket is not None:
        relay = VsockRelay(port=args.vsock_port, target=remote_socket, allowed_cids=args.allow_cid or [HOST_CID])
        threading.Thread(target=relay.serve_forever, daemon=True).start()
    listener = HookListener(args.hook_socket, agent)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    pending = register_pending(agent, pending_directory(str(args.hook_socket)))
    if pending:
        log.info("registered %d container(s) whose hook found no agent", pending)
    log.info("serving: hooks %s, gRPC %s, vsock port %s", args.hook_socket, args.grpc_socket, args.vsock_port)
    notify_ready()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    listener.shutdown()
    if relay:
        relay.close()
    server.stop(grace=2).wait()
    if enforcer is not None:
        enforcer.close()
    return 0


def notify_ready(environ: Mapping[str, str] = os.environ) -> None:
    """Tell systemd (Type=notify) that registrations are taken now.

    kata-agent's unit starts after this one, and the first container of the pod is created right after
    the VM boots: with readiness told only once the hook socket answers, its hook finds the agent there.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.sendto(b"READY=1", address)


def _load_enforcer(args: argparse.Namespace, problems: list[str]) -> Enforcer | None:
    """Load and attach the BPF programs; None, with the reason added to problems, when they do not load."""
    pin_dir = args.pin_dir if str(args.pin_dir) not in ("", ".") else None
    try:
        return Enforcer(
            args.bpf_object,
            max_containers=args.max_containers,
            max_rules=args.max_rules,
            alerts_per_second=args.alerts_per_second,
            pin_dir=pin_dir,
            fail_closed=args.fail_closed,
        )
    except BpfError as error:
        problem = f"the enforcer did not load: {error}"
        if pin_dir and any((pin_dir / PINNED_LINKS).glob("*")):
            problem += "; the previous agent's programs stay attached with their rules, which this agent cannot change"
        problems.append(problem)
        return None


if __name__ == "__main__":
    sys.exit(main())
