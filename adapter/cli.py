# SPDX-License-Identifier: Apache-2.0
"""kadapter: the host side. Local mode applies policy files; status and alerts inspect an agent."""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format

from adapter import local
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
from adapter.pods import POSTURES
from adapter.policy import load_policy_dir, load_policy_file
from adapter.transport import AddressError, AgentAddress, parse_agent_url
from kadapter_api import agent_pb2


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
    _add_kubearmor_options(apply)

    validate = commands.add_parser("validate", help="check policy files or directories without applying them")
    validate.add_argument("paths", type=Path, nargs="+")

    for name, text in (("status", "print what an agent enforces"), ("alerts", "print an agent's alerts")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--agent", required=True, metavar="URL")
        if name == "alerts":
            command.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
            _add_kubearmor_options(command)
    return parser


def _listen_option(value: str) -> str:
    try:
        return listen_address(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_kubearmor_options(command: argparse.ArgumentParser) -> None:
    """Add the options that serve the alerts to KubeArmor's own tools (karmor logs, kubearmor-relay)."""
    group = command.add_argument_group("KubeArmor log service")
    group.add_argument(
        "--serve-kubearmor-logs", type=_listen_option, metavar="[HOST:]PORT",
        help=f"also serve the alerts as KubeArmor's gRPC LogService here (KubeArmor's port: {KUBEARMOR_PORT})",
    )  # fmt: skip
    group.add_argument("--cluster-name", default=DEFAULT_CLUSTER, help="the alerts' ClusterName (default: %(default)s)")
    group.add_argument("--node-name", default=socket.gethostname(), help="their HostName (default: this host's name)")


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
        print(f"kadapter: serving KubeArmor's LogService on {server.address}", file=sys.stderr, flush=True)
        yield server.feed


def _follow(
    addresses: Sequence[AgentAddress], count: int = 0, *, show: bool = True, feed: KubeArmorFeed | None = None
) -> None:
    """Print alerts from every given agent as they arrive, and offer them to the feed, until count (0: forever)."""
    arrived: queue.Queue[agent_pb2.Alert] = queue.Queue()

    def pump(client: AgentClient) -> None:
        for alert in client.alerts():
            arrived.put(alert)

    with contextlib.ExitStack() as clients:  # closing a client ends its stream, so no pump outlives the command
        for address in addresses:
            client = clients.enter_context(AgentClient(address))
            threading.Thread(target=pump, args=(client,), daemon=True).start()
        seen = 0
        while not count or seen < count:
            alert = arrived.get()
            if feed is not None:
                feed.publish(alert)
            if show:
                _print_json(alert)
            seen += 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        for path in args.paths:
            policies = load_policy_dir(path) if path.is_dir() else load_policy_file(path)
            for policy in policies:
                print(f"{policy.source}: {policy.kind.value} {policy.namespace or '-'}/{policy.name}: ok")
        return 0
    if args.command == "local":
        agents = dict(local.parse_agent_option(value) for value in args.agent)
        plans = local.plan(
            policies_dir=args.policies,
            manifests_dir=args.manifests,
            agents=agents,
            default_posture=args.default_posture,
        )
        labels = {plan.pod.ref: joined_labels(plan.pod.labels) for plan in plans}
        with _kubearmor_feed(args, labels) as feed:  # listening before any agent is told anything
            for pod_plan, reply in local.export(plans, rpc_timeout=args.rpc_timeout):
                names = ", ".join(item.policy.name for item in pod_plan.policies) or "no policy"
                print(
                    f"{pod_plan.pod.ref}: {names} -> {pod_plan.agent} "
                    f"(generation {reply.generation}, {reply.containers_enforced} running container(s))"
                )
            if args.follow or feed is not None:
                _follow(sorted({plan.agent for plan in plans}, key=str), show=args.follow, feed=feed)
        return 0
    address = parse_agent_url(args.agent)
    if args.command == "status":
        with AgentClient(address) as client:
            _print_json(client.status())
        return 0
    with _kubearmor_feed(args, {}) as feed:
        _follow([address], args.count, feed=feed)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one kadapter command; exit 2 on bad input, 1 when an agent refuses or is unreachable or a port is taken."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (InputError, AddressError) as error:
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
