# SPDX-License-Identifier: Apache-2.0
"""kadapter: the host side. `run` is the node daemon; local mode applies policy files; status and alerts inspect."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from kubernetes.config import ConfigException

from adapter import cri, discovery, jsonlog, local, node_status
from adapter.cri import CriError
from adapter.daemon import KATA_HANDLERS, Daemon, DaemonSettings
from adapter.errors import InputError
from adapter.exporter import RPC_TIMEOUT, AgentClient
from adapter.kubearmor_logs import (
    DEFAULT_CLUSTER,
    KUBEARMOR_PORT,
    KubeArmorFeed,
    ListenError,
    LogServer,
    Origin,
    joined_labels,
    listen_address,
)
from adapter.metrics import Endpoints, serve_metrics
from adapter.pods import POSTURES
from adapter.policy import load_policy_dir, load_policy_file
from adapter.sandbox_index import IndexSettings
from adapter.sessions import SessionSettings
from adapter.transport import AddressError, AgentAddress, parse_agent_url
from adapter.watcher import load_api_client
from kadapter_api import agent_pb2
from kadapter_api.channel_security import DEFAULT_DIRECTORY, VALIDITY_DAYS, CredentialsError, Identity
from kadapter_api.fanout import Fanout

DAEMON_URL = "http://127.0.0.1:9464"  # where `kadapter status` finds the node daemon: its metrics port
METRICS_ADDRESS = "0.0.0.0:9464"
NODE_NAME_ENV = "NODE_NAME"  # the DaemonSet sets it from spec.nodeName

_log = logging.getLogger("adapter.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kadapter", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    apply = commands.add_parser("local", help="apply policies from files to the agents of Kata pods")
    apply.add_argument("--policies", type=Path, required=True, help="directory of KubeArmor policy YAML")
    apply.add_argument("--manifests", type=Path, required=True, help="directory of Pod/RuntimeClass/Namespace YAML")
    apply.add_argument(
        "--agent", action="append", required=True, metavar="[NS/POD=]URL",
        help="agent of a pod (or of every pod without a prefix): tcp://, unix://, vsock://CID:PORT, hvsock://UDS:PORT",
    )  # fmt: skip
    apply.add_argument(
        "--default-posture",
        choices=sorted(POSTURES),
        default="block",
        help="posture of each category (file, network, capabilities) unless a kubearmor-*-posture annotation sets it",
    )
    apply.add_argument(
        "--rpc-timeout",
        type=float,
        default=RPC_TIMEOUT,
        metavar="SECONDS",
        help="time each agent gets to apply its pod's set (default: %(default)s; large sets in emulated VMs need more)",
    )
    apply.add_argument("--follow", action="store_true", help="then print the agents' alerts as JSON lines")
    _add_tls_option(apply)
    _add_kubearmor_options(apply)

    _add_run_command(commands)

    validate = commands.add_parser("validate", help="check policy files or directories without applying them")
    validate.add_argument("paths", type=Path, nargs="+")

    status = commands.add_parser("status", help="print each Kata pod of this node as the node daemon sees it")
    target = status.add_mutually_exclusive_group()
    target.add_argument(
        "--daemon", default=DAEMON_URL, metavar="URL", help="the node daemon's metrics address (default: %(default)s)"
    )
    target.add_argument("--agent", metavar="URL", help="ask this agent what it enforces instead (printed as JSON)")
    status.add_argument("--json", action="store_true", help="print the daemon's status as JSON rather than a table")
    _add_tls_option(status)

    alerts = commands.add_parser("alerts", help="print an agent's alerts")
    alerts.add_argument("--agent", required=True, metavar="URL")
    alerts.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    _add_tls_option(alerts)
    _add_kubearmor_options(alerts)

    credentials = commands.add_parser(
        "credentials", help="write a new pair of credentials: DIR/adapter for the node daemon, DIR/guest for the image"
    )
    credentials.add_argument("directory", type=Path)
    credentials.add_argument("--days", type=int, default=VALIDITY_DAYS, help="validity (default: %(default)s)")
    return parser


def _add_tls_option(command: argparse.ArgumentParser) -> None:
    """Add --tls-dir: the adapter's credentials, needed for every agent not on a local Unix socket."""
    command.add_argument(
        "--tls-dir",
        type=Path,
        default=DEFAULT_DIRECTORY,
        help="the adapter's key and certificate and the agents' pinned certificate (default: %(default)s)",
    )


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `kadapter run`, the node daemon, with its options; each default is what the DaemonSet needs."""
    run = commands.add_parser(
        "run", help="run the node daemon: keep every Kata pod's agent enforcing the cluster's policies that select it"
    )
    node = os.environ.get(NODE_NAME_ENV)
    run.add_argument(
        "--node-name", default=node, required=not node, help=f"this node's name (default: ${NODE_NAME_ENV})"
    )
    run.add_argument(
        "--kubeconfig", type=Path,
        help="default: the pod's service account in a cluster, else $KUBECONFIG or ~/.kube/config",
    )  # fmt: skip
    run.add_argument(
        "--cri-socket", type=Path,
        help=f"the CRI runtime's socket (default: the first of {', '.join(map(str, cri.RUNTIME_SOCKETS))})",
    )  # fmt: skip
    run.add_argument(
        "--shim-monitor-root", type=Path, action="append", metavar="DIR",
        help=f"where Kata shims keep <sandbox>/{discovery.MONITOR_SOCKET}, repeatable "
        f"(default: {' and '.join(map(str, discovery.MONITOR_ROOTS))})",
    )  # fmt: skip
    run.add_argument(
        "--agent-port",
        type=int,
        default=discovery.AGENT_PORT,
        help="kadapter-agent's vsock port (default: %(default)s)",
    )
    run.add_argument(
        "--kata-handler", action="append", metavar="GLOB",
        help=f"a RuntimeClass handler that is Kata's, repeatable (default: {', '.join(KATA_HANDLERS)})",
    )  # fmt: skip
    run.add_argument(
        "--default-posture", choices=sorted(POSTURES), default="block",
        help="posture of each category unless a namespace's kubearmor-*-posture annotation sets it",
    )  # fmt: skip
    run.add_argument(
        "--metrics-address", type=_host_port, default=METRICS_ADDRESS, metavar="HOST:PORT",
        help="serve /metrics, /healthz, /readyz and /status here (default: %(default)s)",
    )  # fmt: skip
    run.add_argument("--print-alerts", action="store_true", help="print every agent's alerts on stdout as JSON lines")
    _add_tls_option(run)
    _add_kubearmor_options(run, node_name=False)


def _host_port(value: str) -> tuple[str, int]:
    """Read HOST:PORT ([V6]:PORT for IPv6; an empty host is every IPv4 interface)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _listen_option(value: str) -> str:
    try:
        return listen_address(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_kubearmor_options(command: argparse.ArgumentParser, *, node_name: bool = True) -> None:
    """Add the options that serve the alerts to KubeArmor's own tools (karmor logs, kubearmor-relay).

    The alerts' HostName is --node-name; `kadapter run` has that option already, for the pods it watches.
    """
    group = command.add_argument_group("KubeArmor log service")
    group.add_argument(
        "--serve-kubearmor-logs", type=_listen_option, metavar="[HOST:]PORT",
        help=f"also serve the alerts as KubeArmor's gRPC LogService here (KubeArmor's port: {KUBEARMOR_PORT})",
    )  # fmt: skip
    group.add_argument("--cluster-name", default=DEFAULT_CLUSTER, help="the alerts' ClusterName (default: %(default)s)")
    if node_name:
        group.add_argument(
            "--node-name", default=socket.gethostname(), help="their HostName (default: this host's name)"
        )


def _print_json(message: object) -> None:
    print(json_format.MessageToJson(message, indent=None, preserving_proto_field_name=True), flush=True)


@contextlib.contextmanager
def _kubearmor_feed(args: argparse.Namespace, pod_labels: Mapping[str, str]) -> Iterator[KubeArmorFeed | None]:
    """Serve KubeArmor's LogService while the block runs, if --serve-kubearmor-logs asks for it."""
    if not args.serve_kubearmor_logs:
        yield None
        return
    origin = Origin(node=args.node_name, cluster=args.cluster_name, pod_labels=pod_labels)
    with LogServer(KubeArmorFeed(origin), args.serve_kubearmor_logs) as server:
        _log.info(
            "serving KubeArmor's LogService on %s",
            server.address,
            extra={"event": "listening-kubearmor", "address": server.address},
        )
        yield server.feed


def _identity(args: argparse.Namespace, addresses: Iterable[AgentAddress]) -> Identity | None:
    """Load the adapter's credentials, unless every agent is on a local Unix socket (which needs none)."""
    if all(address.scheme == "unix" for address in addresses):
        return None
    return Identity.load(args.tls_dir)


def _follow(
    addresses: Sequence[AgentAddress],
    count: int = 0,
    *,
    identity: Identity | None,
    show: bool = True,
    feed: KubeArmorFeed | None = None,
) -> None:
    """Print alerts from every given agent as they arrive, and offer them to the feed, until count (0: forever)."""
    arrived: queue.Queue[agent_pb2.Alert] = queue.Queue()

    def pump(client: AgentClient) -> None:
        for alert in client.alerts():
            arrived.put(alert)

    with contextlib.ExitStack() as clients:  # closing a client ends its stream, so no pump outlives the command
        for address in addresses:
            client = clients.enter_context(AgentClient(address, identity=identity))
            threading.Thread(target=pump, args=(client,), daemon=True).start()
        seen = 0
        while not count or seen < count:
            alert = arrived.get()
            if feed is not None:
                feed.publish(alert)
            if show:
                _print_json(alert)
            seen += 1


def _drain(fanout: Fanout[agent_pb2.Alert], handle: Callable[[agent_pb2.Alert], None]) -> None:
    """Hand every item the fan-out publishes from now on to handle, on a thread of its own, until it closes."""
    subscription = fanout.subscribe()

    def drain() -> None:
        for alert in subscription:
            handle(alert)

    threading.Thread(target=drain, name="kadapter-alert-consumer", daemon=True).start()


def _run_daemon(args: argparse.Namespace) -> int:
    """Run the node daemon until SIGTERM or SIGINT, then stop it within a few seconds."""
    try:
        cri_socket = args.cri_socket or cri.find_runtime_socket()
    except CriError as error:
        print(f"kadapter: CRI runtime: {error} (use --cri-socket)", file=sys.stderr)
        return 1
    settings = DaemonSettings(
        node_name=args.node_name,
        index=IndexSettings(
            cri_socket=cri_socket,
            monitor_roots=tuple(args.shim_monitor_root or discovery.MONITOR_ROOTS),
            agent_port=args.agent_port,
        ),
        kata_handlers=tuple(args.kata_handler or KATA_HANDLERS),
        default_posture=args.default_posture,
        sessions=SessionSettings(identity=Identity.load(args.tls_dir)),
    )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    daemon = Daemon(load_api_client(args.kubeconfig), settings)
    host, port = args.metrics_address
    with contextlib.ExitStack() as running:  # unwound in reverse: the daemon stops first, the HTTP server last
        endpoints = Endpoints(healthy=daemon.healthy, ready=daemon.ready, status=daemon.report)
        try:
            server = serve_metrics(daemon.metrics.registry, host, port, endpoints)
        except OSError as error:
            print(f"kadapter: cannot serve metrics on {host}:{port}: {error.strerror}", file=sys.stderr)
            return 1
        running.callback(server.server_close)
        running.callback(server.shutdown)
        _log.info(
            "serving /metrics, /healthz, /readyz and /status on %s:%d",
            host,
            server.server_port,
            extra={"event": "listening", "address": f"{host}:{server.server_port}"},
        )
        feed = running.enter_context(_kubearmor_feed(args, daemon.labels))
        if feed is not None:
            _drain(daemon.alerts, feed.publish)
        if args.print_alerts:
            _drain(daemon.alerts, _print_json)
        daemon.start()
        running.callback(daemon.stop)
        stopping.wait()
    return 0


def _show_daemon_status(url: str, *, as_json: bool) -> int:
    """Print the node daemon's /status as a table, or as JSON."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/status", timeout=10) as response:
            report: Any = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        print(f"kadapter: no status from the node daemon at {url}: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else node_status.render(report))
    return 0


def _validate(args: argparse.Namespace) -> None:
    """Print each policy the files hold; the first invalid one raises InputError."""
    for path in args.paths:
        policies = load_policy_dir(path) if path.is_dir() else load_policy_file(path)
        for policy in policies:
            print(f"{policy.source}: {policy.kind.value} {policy.namespace or '-'}/{policy.name}: ok")


def _run_local(args: argparse.Namespace) -> None:
    """Apply policy files to the agents named on the command line; then follow their alerts if asked."""
    agents = dict(local.parse_agent_option(value) for value in args.agent)
    plans = local.plan(
        policies_dir=args.policies,
        manifests_dir=args.manifests,
        agents=agents,
        default_posture=args.default_posture,
    )
    labels = {plan.pod.ref: joined_labels(plan.pod.labels) for plan in plans}
    addresses = sorted({plan.agent for plan in plans}, key=str)
    identity = _identity(args, addresses)
    with _kubearmor_feed(args, labels) as feed:  # listening before any agent is told anything
        for pod_plan, reply in local.export(plans, identity=identity, rpc_timeout=args.rpc_timeout):
            names = ", ".join(item.policy.name for item in pod_plan.policies) or "no policy"
            enforced = (
                f"enforced in {reply.containers_enforced} running container(s)"
                if reply.containers_enforced
                else "held, but enforced nowhere yet: the agent knows no running container of this pod "
                "(none started, or they registered under another pod name)"
            )
            print(f"{pod_plan.pod.ref}: {names} -> {pod_plan.agent} (generation {reply.generation}, {enforced})")
        if args.follow or feed is not None:
            _follow(addresses, identity=identity, show=args.follow, feed=feed)


def _write_credentials(args: argparse.Namespace) -> None:
    """Write a new pair of credentials and say where each half goes."""
    # Imported here: cryptography adds 8 MB to every process that imports it, the node daemon included.
    from adapter.credentials import write_credentials  # noqa: PLC0415

    places = write_credentials(args.directory, days=args.days)
    print(f"for the node daemon's Secret: {places['adapter']} (see deploy/kadapter.yaml)")
    print(f"for the guest image, as {DEFAULT_DIRECTORY}: {places['guest']}")


def _agent_status(args: argparse.Namespace) -> None:
    """Print what one agent says it enforces."""
    address = parse_agent_url(args.agent)
    with AgentClient(address, identity=_identity(args, [address])) as client:
        _print_json(client.status())


def _agent_alerts(args: argparse.Namespace) -> None:
    """Print one agent's alerts (and serve them to KubeArmor's tools if asked)."""
    address = parse_agent_url(args.agent)
    with _kubearmor_feed(args, {}) as feed:
        _follow([address], args.count, identity=_identity(args, [address]), feed=feed)


def _run(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run_daemon(args)
    if args.command == "status" and args.agent is None:
        return _show_daemon_status(args.daemon, as_json=args.json)
    commands: dict[str, Callable[[argparse.Namespace], None]] = {
        "credentials": _write_credentials,
        "validate": _validate,
        "local": _run_local,
        "status": _agent_status,
        "alerts": _agent_alerts,
    }
    commands[args.command](args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a kadapter command; exit 2 on bad input, 1 when an agent, daemon or runtime fails or a port is taken."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        jsonlog.configure()  # a DaemonSet's logs are read by machines first
    else:
        logging.basicConfig(level=logging.INFO, format="kadapter: %(message)s")
    try:
        return _run(args)
    except (
        InputError,
        AddressError,
        ConfigException,
        CredentialsError,
        FileExistsError,
    ) as error:  # ConfigException: no kubeconfig, not in a pod
        print(f"kadapter: {error}", file=sys.stderr)
        return 2

    except ListenError as error:
        print(f"kadapter: KubeArmor log service: {error}", file=sys.stderr)
        return 1
    except grpc.RpcError as error:
        print(f"kadapter: agent: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
