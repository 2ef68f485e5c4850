# SPDX-License-Identifier: Apache-2.0
"""What `kadapter status` shows of a node: the document the daemon serves at /status, and its table.

The node daemon (adapter/daemon.py) fills the document from the Manager, the
sandbox index and the sessions; `kadapter status` fetches it over HTTP and
prints it as JSON or as the table below. The shape is declared once here, so
both ends agree on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypedDict

# The states of a Kata pod without a session, beside the sessions' own (adapter.sessions.SessionState).
WAITING_FOR_SYNC: Final = "waiting-for-sync"  # the daemon has not read the whole cluster yet: nothing is pushed
NO_SANDBOX: Final = "no-sandbox"  # the runtime runs no ready Kata sandbox for the pod (yet)
LOCATING_AGENT: Final = "locating-agent"  # the sandbox is there; its shim has not told where the agent is
SANDBOX_WIDTH: Final = 12  # sandbox ids are 64 hex digits; the table shows their start, as crictl does


class PodReport(TypedDict):
    """One Kata pod of the node, from its desired set to what its agent confirmed."""

    namespace: str
    name: str
    uid: str
    sandbox: str | None
    agent: str | None  # the agent's address (vsock://, hvsock://)
    state: str  # a session state, or one of the states above
    desired_generation: int
    applied_generation: int | None  # as the agent last confirmed it
    policies: list[str]  # what the pod should enforce
    applied_policies: list[str]  # what the agent confirmed it enforces
    last_error: str | None


class RefusedObject(TypedDict):
    """A policy (or Pod, Namespace, RuntimeClass) the Manager refused; its last valid version still counts."""

    object: str  # "KubeArmorPolicy web/block-apt"
    error: str


class NodeReport(TypedDict):
    """The node daemon's whole status."""

    node: str
    synced: bool  # the first lists are read and applied
    sandboxes_error: str | None  # why the last look at the CRI runtime or the shims failed
    pods: list[PodReport]
    refused: list[RefusedObject]


def render(report: NodeReport) -> str:
    """Write a report as a table of pods followed by what needs attention, for people."""
    synced = "synced" if report["synced"] else "not synced yet (nothing is pushed before)"
    lines = [f"node {report['node']}: {len(report['pods'])} Kata pod(s), {synced}", ""]
    header = ("POD", "SANDBOX", "AGENT", "STATE", "DESIRED", "APPLIED", "POLICIES", "ERROR")
    rows = [header, *(_row(pod) for pod in report["pods"])]
    lines.extend(_columns(rows))
    if report["sandboxes_error"]:
        lines += ["", f"sandboxes: {report['sandboxes_error']}"]
    if report["refused"]:
        lines += ["", "refused objects (their last valid version, if any, still applies):"]
        lines += [f"  {refused['error']}" for refused in report["refused"]]
    return "\n".join(lines)


def _row(pod: PodReport) -> tuple[str, ...]:
    """Write one pod's cells; what is unknown is a dash."""
    return (
        f"{pod['namespace']}/{pod['name']}",
        _cell(pod["sandbox"] and pod["sandbox"][:SANDBOX_WIDTH]),
        _cell(pod["agent"]),
        pod["state"],
        str(pod["desired_generation"]),
        _cell(pod["applied_generation"]),
        ",".join(pod["policies"]) or "-",
        _cell(pod["last_error"]),
    )


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Align rows in columns two spaces apart, the last one unpadded."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]
