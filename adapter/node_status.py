# SPDX-License-Identifier: Apache-2.0
"""What `kadapter status` shows of a node: the document the daemon serves at /status, and its table.

The node daemon (adapter/daemon.py) fills the document from the Manager, the
sandbox index and the sessions; `kadapter status` fetches it over HTTP and
prints it as JSON or as the table below. The shape is declared once here, so
both ends agree on it, and so is what needs attention: a pod shown without
its problem would look enforced to whoever reads the table in a hurry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypedDict

from adapter.sessions import SessionState

# The states of a Kata pod without a session, beside the sessions' own (adapter.sessions.SessionState).
WAITING_FOR_SYNC: Final = "waiting-for-sync"  # the daemon has not read the whole cluster yet: nothing is pushed
NO_SANDBOX: Final = "no-sandbox"  # the runtime runs no ready Kata sandbox for the pod (yet)
LOCATING_AGENT: Final = "locating-agent"  # the sandbox is there; its shim has not told where the agent is
SANDBOX_WIDTH: Final = 12  # sandbox ids are 64 hex digits; the table shows their start, as crictl does

# What needs attention, gravest first: the sessions' states that leave a pod unenforced, and a sandbox's
# containers the agent never registered.
UNPROTECTED: Final = SessionState.UNPROTECTED.value
NO_CONTAINERS: Final = SessionState.NO_CONTAINERS.value
PARTIAL: Final = SessionState.PARTIAL.value
UNREGISTERED: Final = "unregistered"
_GRAVITY: Final = (UNPROTECTED, NO_CONTAINERS, PARTIAL, UNREGISTERED)


class UnregisteredReport(TypedDict):
    """A container of the sandbox's VM the agent never registered, seen executing."""

    pid_ns: int
    mnt_ns: int
    executable: str  # the last program it ran, named within its own mounts
    execs: int
    refused: bool  # fail-closed: none of them ran


class GuestReport(TypedDict):
    """What the pod's agent last said of its whole VM."""

    bpf_lsm_active: bool  # false: the guest kernel enforces nothing
    unprotected_because: list[str]  # the agent's self-check: why nothing in the VM is enforced
    fail_closed: bool  # execs in unregistered containers are refused
    kernel_release: str
    unregistered: list[UnregisteredReport]


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
    containers: list[str]  # the pod's running containers the agent reported (its pause container aside)
    stale_containers: list[str]  # those of them enforcing another generation, or registered for another pod uid
    guest: GuestReport | None  # None until the agent answered a status request
    last_error: str | None


class RefusedObject(TypedDict):
    """A policy (or Pod, Namespace, RuntimeClass) the Manager refused; its last valid version still counts."""

    object: str  # "KubeArmorPolicy web/block-apt"
    error: str


class Attention(TypedDict):
    """Something about a pod that a person should look at: it is not (fully) enforced, or its VM runs strangers."""

    pod: str  # namespace/name
    sandbox: str | None
    problem: str  # one of _GRAVITY
    detail: str


class NodeReport(TypedDict):
    """The node daemon's whole status."""

    node: str
    synced: bool  # the first lists are read and applied
    sandboxes_error: str | None  # why the last look at the CRI runtime or the shims failed
    pods: list[PodReport]
    attention: list[Attention]  # from the pods, gravest first
    refused: list[RefusedObject]


def attention(pods: Sequence[PodReport]) -> list[Attention]:
    """List what needs attention in the pods, gravest problem first, pods in their order within a problem."""
    found = [item for pod in pods for item in _problems(pod)]
    return sorted(found, key=lambda item: _GRAVITY.index(item["problem"]))


def _problems(pod: PodReport) -> Iterator[Attention]:
    """Yield a pod's problems; a VM's kernel and unregistered containers as its agent last reported them."""
    guest = pod["guest"]
    if guest is not None and (not guest["bpf_lsm_active"] or guest["unprotected_because"]):
        reasons = "; ".join(guest["unprotected_because"]) or "the guest kernel has no bpf in its LSM list"
        yield _attention(pod, UNPROTECTED, f"nothing in the VM is enforced: {reasons}")
    if pod["state"] == NO_CONTAINERS:
        yield _attention(
            pod,
            NO_CONTAINERS,
            "the agent knows no container of the pod: not started yet, or registered under another pod's name",
        )
    if pod["state"] == PARTIAL:
        stale = ", ".join(pod["stale_containers"])
        yield _attention(pod, PARTIAL, f"container(s) {stale} not on generation {pod['desired_generation']} yet")
    if guest is not None and guest["unregistered"]:
        mode = "their execs are refused (fail-closed)" if guest["fail_closed"] else "running unprotected (fail-open)"
        yield _attention(
            pod, UNREGISTERED, f"{len(guest['unregistered'])} container(s) the agent never registered, {mode}"
        )


def _attention(pod: PodReport, problem: str, detail: str) -> Attention:
    """Name the pod and its sandbox beside the problem, so that a JSON reader needs no lookup in pods."""
    return Attention(pod=f"{pod['namespace']}/{pod['name']}", sandbox=pod["sandbox"], problem=problem, detail=detail)


def render(report: NodeReport) -> str:
    """Write a report as a table of pods followed by what needs attention, for people."""
    synced = "synced" if report["synced"] else "not synced yet (nothing is pushed before)"
    lines = [f"node {report['node']}: {len(report['pods'])} Kata pod(s), {synced}", ""]
    header = ("POD", "SANDBOX", "AGENT", "STATE", "DESIRED", "APPLIED", "POLICIES", "ERROR")
    rows = [header, *(_row(pod) for pod in report["pods"])]
    lines.extend(_columns(rows))
    if report["attention"]:
        lines += ["", "needs attention:"]
        problems = [(_shown(item["problem"]), item["pod"], item["detail"]) for item in report["attention"]]
        lines += [f"  {line}" for line in _columns(problems)]
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
        _shown(pod["state"]),
        str(pod["desired_generation"]),
        _cell(pod["applied_generation"]),
        ",".join(pod["policies"]) or "-",
        _cell(pod["last_error"]),
    )


def _shown(state: str) -> str:
    """Write a state or problem as the table shows it: UNPROTECTED in capitals, so that no one reads past it."""
    return state.upper() if state == UNPROTECTED else state


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Align rows in columns two spaces apart, the last one unpadded."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    ]
