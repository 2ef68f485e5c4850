# SPDX-License-Identifier: Apache-2.0
"""KubeArmor's log service on the host, fed with Kata pods' alerts.

KubeArmor's consumers (``karmor logs``, kubearmor-relay) dial a node's
``feeder.LogService`` (kadapter_api/kubearmor.proto, port 32767 by default),
check it with ``HealthCheck`` and then hold ``WatchAlerts``, ``WatchLogs``
and ``WatchMessages`` streams open. This module answers them the way
KubeArmor's own feeder does, so those tools read Kadapter's alerts
unchanged: each agent alert (kadapter_api/agent.proto) is translated once
into KubeArmor's ``Alert`` and handed to every watcher through
kadapter_api/fanout.py. It sits beside adapter/exporter.py, whose
``AgentClient.alerts`` supplies the alerts; the CLI joins the two.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

import grpc

from kadapter_api import agent_pb2, kubearmor_pb2, kubearmor_pb2_grpc
from kadapter_api.fanout import QUEUE_DEPTH, Fanout

KUBEARMOR_PORT: Final = 32767  # where karmor logs and the relay look for a node's log service
DEFAULT_CLUSTER: Final = "default"  # KubeArmor's own default for its cluster name
MAX_STREAMS: Final = 48  # concurrent calls served; karmor holds up to three streams, the relay three per node
ALERT_TYPE: Final = "MatchedPolicy"  # a container's alert, posture hits included (PolicyName "DefaultPosture")

ALERT_FILTERS: Final = frozenset({"policy", "all"})  # WatchAlerts serves these, as KubeArmor does
LOG_FILTERS: Final = frozenset({"system", "all"})  # and WatchLogs these

ACTION_NAMES: Final = {  # KubeArmor's names of the agent's actions
    agent_pb2.ACTION_ALLOW: "Allow",
    agent_pb2.ACTION_AUDIT: "Audit",
    agent_pb2.ACTION_BLOCK: "Block",
}
_SERVER_OPTIONS: Final = (
    ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
    ("grpc.keepalive_time_ms", 10_000),  # idle watch streams must survive port-forwards and NAT
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
_LISTEN = re.compile(r"(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]*):)?(?P<port>\d+)")

T = TypeVar("T")


class ListenError(Exception):
    """The log service cannot listen where it was asked to."""


@dataclass(frozen=True)
class Origin:
    """Where alerts are said to come from: KubeArmor's ClusterName, HostName and the pods' Labels."""

    node: str
    cluster: str = DEFAULT_CLUSTER
    pod_labels: Mapping[str, str] = field(default_factory=dict)  # "namespace/pod" -> "k=v,k2=v2"


def joined_labels(labels: Iterable[tuple[str, str]]) -> str:
    """Spell a pod's labels as KubeArmor's Labels field does: "k=v" joined by commas (sorted here)."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels))


def kubearmor_time(wall_ns: int) -> tuple[int, str]:
    """Return KubeArmor's (Timestamp, UpdatedTime): Unix seconds and UTC with microseconds and a Z."""
    seconds, micros = divmod(wall_ns // 1000, 1_000_000)
    when = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    return seconds, when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_data(*texts: str) -> dict[str, str]:
    """Collect the key=value words of each text, keys capitalised, as KubeArmor fills EventData."""
    pairs: dict[str, str] = {}
    for text in texts:
        for word in text.split():
            key, sep, value = word.partition("=")
            if sep and key:
                pairs[key[:1].upper() + key[1:]] = value
    return pairs


def to_kubearmor_alert(alert: agent_pb2.Alert, *, origin: Origin, received_ns: int) -> kubearmor_pb2.Alert:
    """Translate one agent alert into KubeArmor's Alert.

    Timestamp and UpdatedTime are the host's wall clock when the alert
    arrived (``received_ns``): the agent's ``timestamp_ns`` is the guest's
    CLOCK_BOOTTIME, which no host clock can be compared with. The agent
    reports process ids in the guest's root pid namespace, the namespace the
    enforcing kernel calls its host's, so they go to HostPID and HostPPID;
    PID and PPID (ids inside the container's own namespace) are not known and
    stay unset. Severity 0 and empty tags stay unset, as KubeArmor leaves them.
    """
    timestamp, updated = kubearmor_time(received_ns)
    tags = list(alert.tags)
    network = alert.operation == "Network"
    return kubearmor_pb2.Alert(
        Timestamp=timestamp,
        UpdatedTime=updated,
        ClusterName=origin.cluster,
        HostName=origin.node,
        NamespaceName=alert.namespace_name,
        PodName=alert.pod_name,
        Labels=origin.pod_labels.get(f"{alert.namespace_name}/{alert.pod_name}", ""),
        ContainerID=alert.container_id,
        ContainerName=alert.container_name,
        HostPID=alert.pid,
        HostPPID=alert.ppid,
        UID=alert.uid,
        ProcessName=alert.process_name,
        ParentProcessName=alert.parent_process_name,
        PolicyName=alert.policy_name,
        Severity=str(alert.severity) if alert.severity else "",
        Tags=",".join(tags),
        ATags=tags,
        Message=alert.message,
        Type=ALERT_TYPE,
        Source=alert.process_name,
        Operation=alert.operation,
        Resource=alert.resource,
        Data=alert.data,
        EventData=_event_data(alert.data, alert.resource if network else ""),
        Enforcer=alert.enforcer or "BPFLSM",
        Action=ACTION_NAMES.get(alert.action, ""),
        Result=alert.result,
    )


class KubeArmorFeed:
    """Translate agent alerts once and hand them to every KubeArmor watcher.

    ``logs`` and ``messages`` carry nothing today (the agents report neither
    visibility logs nor daemon messages); they exist so those watch streams
    stay open until their watcher or the server leaves, as KubeArmor's do.
    """

    def __init__(self, origin: Origin, *, depth: int = QUEUE_DEPTH, clock: Callable[[], int] = time.time_ns) -> None:
        self.origin = origin
        self._clock = clock
        self.alerts: Fanout[kubearmor_pb2.Alert] = Fanout(depth=depth)
        self.logs: Fanout[kubearmor_pb2.Log] = Fanout(depth=depth)
        self.messages: Fanout[kubearmor_pb2.Message] = Fanout(depth=depth)

    def publish(self, alert: agent_pb2.Alert) -> None:
        """Stamp an agent alert with the time now, translate it and offer it to every alert watcher."""
        self.alerts.publish(to_kubearmor_alert(alert, origin=self.origin, received_ns=self._clock()))

    def close(self) -> None:
        """End every watch stream."""
        for fanout in (self.alerts, self.logs, self.messages):
            fanout.close()


def _watch(fanout: Fanout[T], context: grpc.ServicerContext) -> Iterator[T]:
    """Stream a fan-out's items to one watcher until it hangs up or the feed closes."""
    subscription = fanout.subscribe()
    if not context.add_callback(lambda: fanout.unsubscribe(subscription)):
        fanout.unsubscribe(subscription)  # the call had already ended
    try:
        yield from subscription
    finally:
        fanout.unsubscribe(subscription)


class LogService(kubearmor_pb2_grpc.LogServiceServicer):
    """KubeArmor's feeder.LogService over a KubeArmorFeed, answering as KubeArmor's feeder does."""

    def __init__(self, feed: KubeArmorFeed) -> None:
        self._feed = feed

    def HealthCheck(  # noqa: N802 - the name is KubeArmor's
        self, request: kubearmor_pb2.NonceMessage, context: grpc.ServicerContext
    ) -> kubearmor_pb2.ReplyMessage:
        """Return the nonce: karmor and the relay compare it with the one they sent."""
        return kubearmor_pb2.ReplyMessage(Retval=request.nonce)

    def WatchMessages(  # noqa: N802
        self, request: kubearmor_pb2.RequestMessage, context: grpc.ServicerContext
    ) -> Iterator[kubearmor_pb2.Message]:
        """Stream daemon messages, whatever the filter (KubeArmor ignores it here too)."""
        return _watch(self._feed.messages, context)

    def WatchAlerts(  # noqa: N802
        self, request: kubearmor_pb2.RequestMessage, context: grpc.ServicerContext
    ) -> Iterator[kubearmor_pb2.Alert]:
        """Stream alerts for filter "policy" or "all"; any other filter gets an empty stream, as from KubeArmor."""
        if request.Filter not in ALERT_FILTERS:
            return iter(())
        return _watch(self._feed.alerts, context)

    def WatchLogs(  # noqa: N802
        self, request: kubearmor_pb2.RequestMessage, context: grpc.ServicerContext
    ) -> Iterator[kubearmor_pb2.Log]:
        """Hold a log stream open for filter "system" or "all"; any other filter gets an empty stream."""
        if request.Filter not in LOG_FILTERS:
            return iter(())
        return _watch(self._feed.logs, context)


def listen_address(value: str) -> str:
    """Turn "PORT", ":PORT", "HOST:PORT" or "[V6]:PORT" into a gRPC listen address (all interfaces by default)."""
    match = _LISTEN.fullmatch(value.strip())
    if match is None or int(match["port"]) > 65535:
        raise ValueError(f"expected [HOST:]PORT, got {value!r}")
    return f"{match['host'] or '[::]'}:{int(match['port'])}"


class LogServer:
    """A running gRPC server with KubeArmor's LogService on one address."""

    def __init__(self, feed: KubeArmorFeed, address: str, *, max_streams: int = MAX_STREAMS) -> None:
        """Listen on ``address`` (see listen_address) and start serving; raise ListenError if it cannot."""
        self.feed = feed
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="kubearmor-logs"),
            maximum_concurrent_rpcs=max_streams,  # one more gets RESOURCE_EXHAUSTED instead of waiting forever
            options=_SERVER_OPTIONS,
        )
        kubearmor_pb2_grpc.add_LogServiceServicer_to_server(LogService(feed), self._server)
        target = listen_address(address)
        try:
            self.port = self._server.add_insecure_port(target)
        except RuntimeError as error:
            raise ListenError(f"cannot listen on {target}: {error}") from error
        if not self.port:
            raise ListenError(f"cannot listen on {target}")
        self.address = f"{target.rpartition(':')[0]}:{self.port}"
        self._server.start()

    def stop(self, grace: float | None = 1.0) -> None:
        """End every watch stream, then stop the server."""
        self.feed.close()
        self._server.stop(grace).wait()

    def __enter__(self) -> LogServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
