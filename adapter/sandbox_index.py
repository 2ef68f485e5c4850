# SPDX-License-Identifier: Apache-2.0
"""Which Kata sandbox runs each pod of this node, and where its agent listens.

The Manager knows pods by uid; a session needs a sandbox id and an agent
address. No single source has both: the node's CRI runtime maps sandbox ids
to pods (adapter/cri.py), and each sandbox's shim tells where its agent is
(adapter/discovery.py). The index asks the runtime and lists the shims' sockets
every few seconds, and at once when asked (after a Pod event, when a sandbox
is likely coming), and hands the whole mapping on whenever it changes.

A pod's sandbox is its newest ready one: a pod whose sandbox was recreated
keeps the stopped one beside it until the kubelet removes it. An agent's
address is fixed for its sandbox's life, so each shim is asked once, on a
small pool of threads with a short timeout, and the answer reported when it
comes: a stuck shim delays no other sandbox. When the runtime or the shims'
directories cannot be read, the last mapping stands, so a runtime restarting
does not look like every VM gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from adapter import cri, discovery
from adapter.discovery import SandboxId
from adapter.manager import PodUid
from adapter.transport import AgentAddress

INTERVAL: Final = 5.0  # seconds between looks at the runtime when nothing asks sooner
LOOKUP_TIMEOUT: Final = 2.0  # seconds a shim gets to answer GET /agent-url; it answers from memory
LOOKUP_THREADS: Final = 4  # shims asked at once
NO_MONITOR: Final = "no shim monitor socket: the shim is starting, or gone"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where a Kata pod runs: its sandbox, and its agent's address once the shim has told it."""

    sandbox: SandboxId
    agent: AgentAddress | None
    problem: str | None = None  # why there is no address; None while the shim is being asked


Placements = Mapping[PodUid, Placement]


@dataclass(frozen=True)
class IndexSettings:
    """Where the runtime and the shims are, and how often to look."""

    cri_socket: Path
    monitor_roots: tuple[Path, ...] = discovery.MONITOR_ROOTS
    agent_port: int = discovery.AGENT_PORT
    interval: float = INTERVAL
    lookup_timeout: float = LOOKUP_TIMEOUT


class SandboxIndex:
    """Keeps the node's Kata pods mapped to their sandboxes and agents on a thread of its own, until stop()."""

    def __init__(
        self, settings: IndexSettings, *, is_kata: Callable[[str], bool], on_change: Callable[[Placements], None]
    ) -> None:
        """Call on_change (from the index's thread) with the whole mapping each time it changes."""
        self._settings = settings
        self._is_kata = is_kata
        self._on_change = on_change
        self._lock = threading.Lock()
        self._addresses: dict[SandboxId, AgentAddress] = {}
        self._problems: dict[SandboxId, str] = {}  # why a shim gave no address, until it gives one
        self._asking: set[SandboxId] = set()
        self._placements: Placements = MappingProxyType({})
        self._problem: str | None = None
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._lookups = futures.ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="kadapter-agent-url")
        self._thread = threading.Thread(target=self._run, name="kadapter-sandboxes", daemon=True)

    @property
    def placements(self) -> Placements:
        """Return the mapping as last handed on."""
        return self._placements

    @property
    def problem(self) -> str | None:
        """Say why the last look at the runtime or the shims failed, or None when it succeeded."""
        return self._problem

    def start(self) -> SandboxIndex:
        """Look now, then every interval."""
        self._thread.start()
        return self

    def refresh_soon(self) -> None:
        """Look again now rather than at the next interval."""
        self._poked.set()

    def alive(self) -> bool:
        """Tell whether the index's thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop looking, leaving lookups in flight to end at their timeout; tell whether the thread ended in time."""
        self._stopping.set()
        self._poked.set()
        self._thread.join(timeout)
        self._lookups.shutdown(wait=False, cancel_futures=True)
        return not self._thread.is_alive()

    def _run(self) -> None:
        """Look, then wait for the interval or a poke, until stopped."""
        while not self._stopping.is_set():
            self._refresh()
            self._poked.wait(self._settings.interval)
            self._poked.clear()

    def _refresh(self) -> None:
        """Ask the runtime and list the shims; hand the mapping on if it changed; keep the last one on failure."""
        settings = self._settings
        try:
            monitors = discovery.list_sandboxes(settings.monitor_roots)
            sandboxes = cri.list_kata_sandboxes(settings.cri_socket, is_kata=self._is_kata, kata_shims=monitors.keys())
        except (cri.CriError, discovery.DiscoveryError) as error:
            self._report(str(error))
            return
        self._report(None)
        with self._lock:
            self._forget_all_but(sandboxes)
            placements = {uid: self._place(sandbox, monitors.get(sandbox)) for uid, sandbox in _running(sandboxes)}
        if placements != self._placements:
            self._placements = MappingProxyType(placements)
            self._on_change(self._placements)

    def _place(self, sandbox: SandboxId, monitor: Path | None) -> Placement:
        """Place a pod in its sandbox, asking the shim for the agent's address if nobody has yet (lock held)."""
        if monitor is None:
            return Placement(sandbox, None, NO_MONITOR)
        address = self._addresses.get(sandbox)
        if address is not None:
            return Placement(sandbox, address)
        if sandbox not in self._asking and not self._stopping.is_set():
            self._asking.add(sandbox)
            self._lookups.submit(self._ask, sandbox, monitor)
        return Placement(sandbox, None, self._problems.get(sandbox))

    def _ask(self, sandbox: SandboxId, monitor: Path) -> None:
        """Ask a shim where its agent is (on a lookup thread); look again at once when it tells."""
        settings = self._settings
        try:
            address = discovery.agent_address(monitor, port=settings.agent_port, timeout=settings.lookup_timeout)
        except discovery.DiscoveryError as error:
            with self._lock:
                self._asking.discard(sandbox)
                self._problems[sandbox] = error.reason
            _log.warning(
                "sandbox %s: no agent address: %s",
                sandbox,
                error,
                extra={"event": "discovery-failure", "sandbox": sandbox, "error": str(error)},
            )
            return  # asked again at the next interval, not at once: a failing shim must not make a busy loop
        with self._lock:
            self._asking.discard(sandbox)
            self._addresses[sandbox] = address
            self._problems.pop(sandbox, None)
        _log.info(
            "sandbox %s: agent at %s",
            sandbox,
            address,
            extra={"event": "discovered", "sandbox": sandbox, "agent": str(address)},
        )
        self.refresh_soon()

    def _forget_all_but(self, sandboxes: Iterable[SandboxId]) -> None:
        """Forget what was learnt of sandboxes the runtime no longer lists (lock held)."""
        kept = set(sandboxes)
        for learnt in (self._addresses, self._problems):
            for sandbox in learnt.keys() - kept:
                del learnt[sandbox]

    def _report(self, problem: str | None) -> None:
        """Remember why looking failed, logging each new reason and the recovery."""
        if problem == self._problem:
            return
        self._problem = problem
        if problem is None:
            _log.info("sandboxes are listed again", extra={"event": "sandboxes-listed"})
        else:
            _log.warning(
                "cannot list sandboxes, keeping the last list: %s",
                problem,
                extra={"event": "sandboxes-failure", "error": problem},
            )


def _running(sandboxes: Mapping[SandboxId, cri.SandboxPod]) -> list[tuple[PodUid, SandboxId]]:
    """Pick each pod's newest ready sandbox."""
    newest: dict[PodUid, tuple[int, SandboxId]] = {}
    for sandbox, pod in sandboxes.items():
        if pod.ready and (pod.uid not in newest or newest[pod.uid][0] < pod.created_at):
            newest[pod.uid] = (pod.created_at, sandbox)
    return [(uid, sandbox) for uid, (_, sandbox) in newest.items()]
