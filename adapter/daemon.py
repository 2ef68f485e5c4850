# SPDX-License-Identifier: Apache-2.0
"""The node daemon behind `kadapter run`: Watcher → Manager → Exporter for every Kata pod of this node.

It wires pieces that each do one job, and decides only when each is called:

- adapter/watcher.py lists and watches the cluster and puts every change on a queue;
- one thread, the only one touching the Manager (adapter/manager.py), applies the changes in
  order and learns whose desired set changed;
- adapter/sandbox_index.py maps pods to sandboxes and agents (CRI runtime, shim monitors) and
  puts each new mapping on the same queue, so the same thread learns which pods moved;
- for each pod whose set or place changed, that thread has adapter/sessions.py make the pod's
  agent hold its set, and adapter/alert_streams.py follow its alerts, or ends both (pod gone,
  sandbox gone).

Nothing is pushed before the Watcher's first lists are all applied: an agent handed a half-read
cluster (its pod listed, the policies not yet) would enforce too little. A sandbox whose pod the
Manager does not know (yet) is left alone. Sessions and alert streams run on threads of their
own and the index asks each shim with a timeout, so a slow agent or VM delays no other.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from kubernetes import client

from adapter.agent_channels import SharedChannels
from adapter.alert_streams import AlertStreams
from adapter.errors import InputError
from adapter.events import ObjectRef, Resource, WatchEvent
from adapter.exporter import apply_request
from adapter.kubearmor_logs import ACTION_NAMES, joined_labels
from adapter.manager import DesiredPod, Manager, PodUid, kata_handlers
from adapter.metrics import Metrics
from adapter.node_status import (
    LOCATING_AGENT,
    NO_SANDBOX,
    WAITING_FOR_SYNC,
    GuestReport,
    NodeReport,
    PodReport,
    UnregisteredReport,
    attention,
)
from adapter.pods import Posture
from adapter.sandbox_index import IndexSettings, Placement, Placements, SandboxIndex
from adapter.sessions import Guest, SessionPool, SessionSettings, SessionStatus
from adapter.watcher import Watcher, WatchSettings
from kadapter_api import agent_pb2
from kadapter_api.fanout import Fanout

KATA_HANDLERS: Final = ("kata", "kata-*")  # RuntimeClass handlers that make a pod a Kata pod, as in local mode
POLL: Final = 0.5  # seconds the manager thread waits for a change before looking whether the first lists are in
STOP_TIMEOUT: Final = 5.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonSettings:
    """What `kadapter run` is told; tests shorten the pacing."""

    node_name: str
    index: IndexSettings
    kata_handlers: tuple[str, ...] = KATA_HANDLERS
    default_posture: Posture = "block"
    watch: WatchSettings = field(default_factory=WatchSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)


@dataclass(frozen=True)
class _View:
    """What the manager thread last decided, published whole for readers on other threads."""

    desired: Mapping[PodUid, DesiredPod]
    refused: Mapping[ObjectRef, InputError]
    placements: Placements  # as last taken from the index
    attached: Mapping[PodUid, Placement]  # the pods with a session, and where
    labels: Mapping[str, str]  # "namespace/name" → the pod's labels as KubeArmor writes them


class Daemon:
    """The node daemon: start(), then stop(); readers may call ready(), healthy() and report() meanwhile."""

    def __init__(
        self, api_client: client.ApiClient, settings: DaemonSettings, *, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.alerts: Fanout[agent_pb2.Alert] = Fanout()  # every agent's alerts, for --print-alerts and KubeArmor
        self._changes: queue.Queue[WatchEvent | Placements | None] = queue.Queue()  # None: wake up, stop() is called
        is_kata = kata_handlers(settings.kata_handlers)
        self._watcher = Watcher(
            api_client, node_name=settings.node_name, sink=self._changes.put, settings=settings.watch
        )
        self._manager = Manager(default_posture=settings.default_posture, is_kata=is_kata)
        self._index = SandboxIndex(settings.index, is_kata=is_kata, on_change=self._changes.put)
        channels = SharedChannels(settings.sessions.identity)  # one per agent, for its session and its alerts
        self._pool = SessionPool(settings=settings.sessions, metrics=self.metrics, channels=channels)
        self._streams = AlertStreams(self._alert, channels=channels)
        self._placements: Placements = MappingProxyType({})
        self._attached: dict[PodUid, Placement] = {}
        self._view = _View({}, {}, self._placements, {}, {})
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kadapter-manager", daemon=True)

    @property
    def labels(self) -> Mapping[str, str]:
        """Return every Kata pod's labels by "namespace/name", always current, as KubeArmor's alerts carry them."""
        return _LiveLabels(lambda: self._view.labels)

    def start(self) -> Daemon:
        """Start watching, indexing and reconciling."""
        _log.info("watching the cluster for node %s", self.settings.node_name, extra={"event": "start"})
        self._watcher.start()
        self._index.start()
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Stop everything: no agent hears from the daemon once this returns; tell whether every thread ended."""
        _log.info("stopping", extra={"event": "stop"})
        self._stopping.set()
        self._changes.put(None)
        ended = self._watcher.stop(STOP_TIMEOUT)
        self._thread.join(STOP_TIMEOUT)
        ended = self._index.stop(STOP_TIMEOUT) and ended and not self._thread.is_alive()
        self._streams.close()
        self._pool.close()
        self.alerts.close()
        return ended

    def ready(self) -> bool:
        """Tell whether the first lists are applied and every Kata pod placed by then has its session."""
        return self._synced.is_set()

    def healthy(self) -> bool:
        """Tell whether the daemon's own threads all run (they end only when stop() asks, or on a bug)."""
        return self._thread.is_alive() and self._index.alive() and self._watcher.alive()

    def report(self) -> NodeReport:
        """Describe every Kata pod of the node and every refused object, for /status."""
        view = self._view
        sessions = {status.sandbox: status for status in self._pool.snapshot()}
        desired = sorted(view.desired.values(), key=lambda item: (item.pod.namespace, item.pod.name))
        pods = [self._pod_report(item, view, sessions) for item in desired]
        return NodeReport(
            node=self.settings.node_name,
            synced=self._synced.is_set(),
            sandboxes_error=self._index.problem,
            pods=pods,
            attention=attention(pods),
            refused=[{"object": str(ref), "error": str(error)} for ref, error in sorted(view.refused.items(), key=str)],
        )

    def _pod_report(self, desired: DesiredPod, view: _View, sessions: Mapping[str, SessionStatus]) -> PodReport:
        """Describe one Kata pod: its session if it has one, else why it has none."""
        uid = PodUid(desired.pod.uid)
        attached = view.attached.get(uid)
        placement = attached or view.placements.get(uid)
        session = None if attached is None else sessions.get(attached.sandbox)
        if session is not None:
            state, error = session.state.value, session.last_error
        elif not self._synced.is_set():
            state, error = WAITING_FOR_SYNC, None
        elif placement is None:
            state, error = NO_SANDBOX, None
        else:
            state, error = LOCATING_AGENT, placement.problem
        return PodReport(
            namespace=desired.pod.namespace,
            name=desired.pod.name,
            uid=uid,
            sandbox=None if placement is None else placement.sandbox,
            agent=None if placement is None or placement.agent is None else str(placement.agent),
            state=state,
            desired_generation=desired.generation,
            applied_generation=None if session is None else session.applied_generation,
            policies=[item.policy.name for item in desired.policies],
            applied_policies=[] if session is None else list(session.policies),
            containers=[] if session is None else list(session.containers),
            stale_containers=[] if session is None else list(session.stale_containers),
            guest=None if session is None or session.guest is None else _guest_report(session.guest),
            last_error=error,
        )

    def _run(self) -> None:
        """Take changes in order until stopped; a failure here is a bug, logged, and /healthz then says so."""
        try:
            while not self._stopping.is_set():
                self._step()
        except Exception:
            _log.exception("the manager thread failed", extra={"event": "crash"})
            raise

    def _step(self) -> None:
        """Take the changes waiting (or wait a moment for one), and once the first lists are in, act on them."""
        synced = self._watcher.wait_synced(0)  # looked at first: every change of the first lists is queued by then
        first_sync = synced and not self._synced.is_set()
        changes = list(self._waiting())
        changed = set().union(*(self._take(change) for change in changes))
        if first_sync:
            changed |= self._manager.pods().keys()
            _log.info(
                "the cluster is read: %d Kata pod(s) on the node",
                len(self._manager.pods()),
                extra={"event": "synced"},
            )
        if synced:
            self._reconcile(changed)
        if changes or first_sync:
            self._publish()
        if first_sync:
            self._synced.set()

    def _waiting(self) -> Iterator[WatchEvent | Placements]:
        """Yield the changes queued, waiting up to POLL for the first."""
        try:
            change = self._changes.get(timeout=POLL)
            while True:
                if change is not None:
                    yield change
                change = self._changes.get_nowait()
        except queue.Empty:
            return

    def _take(self, change: WatchEvent | Placements) -> set[PodUid]:
        """Apply one change; return the pods whose set or place it changed."""
        if isinstance(change, WatchEvent):
            return self._apply(change)
        moved = {uid for uid in change.keys() | self._placements.keys() if change.get(uid) != self._placements.get(uid)}
        self._placements = change
        return moved

    def _apply(self, event: WatchEvent) -> set[PodUid]:
        """Hand an event to the Manager, log a refusal or an acceptance, and look for a new pod's sandbox."""
        ref = ObjectRef.of(event)
        before = self._manager.errors().get(ref)
        changed = self._manager.apply(event)
        after = self._manager.errors().get(ref)
        if after is not None and str(after) != str(before):
            _log.warning(
                "refused %s (its last valid version, if any, still applies)",
                after,
                extra={"event": "refused", "object": str(ref), "error": str(after)},
            )
        elif after is None and before is not None:
            _log.info("%s is valid again", ref, extra={"event": "accepted", "object": str(ref)})
        if event.kind is Resource.POD:
            uid = PodUid(event.obj["metadata"]["uid"])
            if self._manager.desired(uid) is not None and uid not in self._placements:
                self._index.refresh_soon()  # a Kata pod whose sandbox is not known yet: it is probably coming
        return changed

    def _reconcile(self, uids: set[PodUid]) -> None:
        """Give each pod's agent its set, or end its session: pod gone, sandbox gone or replaced."""
        for uid in sorted(uids):
            desired = self._manager.desired(uid)
            placement = self._placements.get(uid)
            wanted = placement if desired is not None and placement is not None and placement.agent else None
            attached = self._attached.get(uid)
            if attached is not None and (wanted is None or wanted.sandbox != attached.sandbox):
                self._detach(uid, attached, reason="pod gone" if desired is None else "sandbox gone")
            if wanted is not None and desired is not None:
                self._attach(uid, wanted, desired)

    def _attach(self, uid: PodUid, placement: Placement, desired: DesiredPod) -> None:
        """Have the sandbox's agent hold the pod's set (the pool ignores a generation it has) and follow its alerts."""
        assert placement.agent is not None
        request = apply_request(desired.pod, desired.policies, generation=desired.generation, postures=desired.postures)
        self._pool.desire(placement.sandbox, placement.agent, request)
        self._streams.follow(placement.sandbox, placement.agent)
        if self._attached.get(uid) != placement:
            _log.info(
                "pod %s: session with sandbox %s, agent %s",
                desired.pod.ref,
                placement.sandbox,
                placement.agent,
                extra={
                    "event": "session-start",
                    "pod": desired.pod.ref,
                    "sandbox": placement.sandbox,
                    "agent": str(placement.agent),
                },
            )
        self._attached[uid] = placement

    def _detach(self, uid: PodUid, placement: Placement, *, reason: str) -> None:
        """End a pod's alert stream, then its session, whose release closes their channel and any call in it."""
        self._streams.drop(placement.sandbox)
        self._pool.drop(placement.sandbox)
        del self._attached[uid]
        _log.info(
            "sandbox %s: session dropped (%s)",
            placement.sandbox,
            reason,
            extra={"event": "session-drop", "sandbox": placement.sandbox, "reason": reason},
        )

    def _publish(self) -> None:
        """Publish what the manager thread knows now, for report() and the labels."""
        desired = dict(self._manager.pods())
        self._view = _View(
            desired=desired,
            refused=dict(self._manager.errors()),
            placements=self._placements,
            attached=dict(self._attached),
            labels={item.pod.ref: joined_labels(item.pod.labels) for item in desired.values()},
        )

    def _alert(self, alert: agent_pb2.Alert) -> None:
        """Count an agent's alert and hand it to every subscriber (called from the alert streams' threads)."""
        self.metrics.count_alert(operation=alert.operation, action=ACTION_NAMES.get(alert.action, ""))
        self.alerts.publish(alert)


def _guest_report(guest: Guest) -> GuestReport:
    """Describe what a sandbox's agent last said of its VM, as /status shows it."""
    return GuestReport(
        bpf_lsm_active=guest.bpf_lsm_active,
        unprotected_because=list(guest.unprotected_because),
        fail_closed=guest.fail_closed,
        kernel_release=guest.kernel_release,
        unregistered=[
            UnregisteredReport(
                pid_ns=item.pid_ns,
                mnt_ns=item.mnt_ns,
                executable=item.executable,
                execs=item.execs,
                refused=item.refused,
            )
            for item in guest.unregistered
        ],
    )


class _LiveLabels(Mapping[str, str]):
    """Labels read afresh at each lookup, for alerts translated long after the daemon started."""

    def __init__(self, current: Callable[[], Mapping[str, str]]) -> None:
        self._current = current

    def __getitem__(self, ref: str) -> str:
        return self._current()[ref]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())
