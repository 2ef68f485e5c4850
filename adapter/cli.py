# SPDX-License-Identifier: Apache-2.0
"""kadapter: the host side. Local mode applies policy files; status and alerts inspect an agent."""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format

from adapter import local
from adapter.errors import InputError
from adapter.exporter import AgentClient
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
    apply.add_argument("--follow", action="store_true", help="then print the agents' alerts as JSON lines")

    validate = commands.add_parser("validate", help="check policy files or directories without applying them")
    validate.add_argument("paths", type=Path, nargs="+")

    for name, text in (("status", "print what an agent enforces"), ("alerts", "print an agent's alerts")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--agent", required=True, metavar="URL")
        if name == "alerts":
            command.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    return parser


def _print_json(message: object) -> None:
    print(json_format.MessageToJson(message, indent=None, preserving_proto_field_name=True), flush=True)


def _follow(addresses: Sequence[AgentAddress], count: int = 0) -> None:
    """Print alerts from every given agent as they arrive, until count (0: forever)."""
    arrived: queue.Queue[agent_pb2.Alert] = queue.Queue()

    def pump(address: AgentAddress) -> None:
        with AgentClient(address) as client:
            for alert in client.alerts():
                arrived.put(alert)

    for address in addresses:
        threading.Thread(target=pump, args=(address,), daemon=True).start()
    seen = 0
    while not count or seen < count:
        _print_json(arrived.get())
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
        for pod_plan, reply in local.export(plans):
            names = ", ".join(item.policy.name for item in pod_plan.policies) or "no policy"
            print(
                f"{pod_plan.pod.ref}: {names} -> {pod_plan.agent} "
                f"(generation {reply.generation}, {reply.containers_enforced} running container(s))"
            )
        if args.follow:
            _follow(sorted({plan.agent for plan in plans}, key=str))
        return 0
    address = parse_agent_url(args.agent)
    if args.command == "status":
        with AgentClient(address) as client:
            _print_json(client.status())
        return 0
    _follow([address], args.count)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one kadapter command; exit 2 on bad input, 1 when an agent refuses or is unreachable."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (InputError, AddressError) as error:
        print(f"kadapter: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        print(f"kadapter: agent: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
