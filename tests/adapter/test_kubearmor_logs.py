# SPDX-License-Identifier: Apache-2.0
"""KubeArmor's log service on the host: karmor logs and kubearmor-relay read Kata alerts as KubeArmor's own.

Every client call here is made as those tools make it (kubearmor-client log/logClient.go,
kubearmor-relay-server relay-server/server/relayServer.go): a HealthCheck with a nonce, then
WatchMessages, WatchAlerts and WatchLogs with a RequestMessage whose Filter is "policy", "system",
"all" or (karmor's WatchMessages) empty, on stubs generated from kadapter_api/kubearmor.proto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest

from adapter.kubearmor_logs import KubeArmorFeed, LogServer, Origin, kubearmor_time, listen_address
from kadapter_api import agent_pb2, kubearmor_pb2, kubearmor_pb2_grpc

# 2026-07-24T10:11:12.345678Z, and a few nanoseconds KubeArmor's microseconds drop
RECEIVED_NS = int(datetime(2026, 7, 24, 10, 11, 12, tzinfo=UTC).timestamp()) * 10**9 + 345_678_901
ORIGIN = Origin(node="node-1", cluster="prod", pod_labels={"default/nginx-1": "app=nginx,tier=web"})

BLOCKED_FILE = agent_pb2.Alert(
    timestamp_ns=12_345,  # guest CLOCK_BOOTTIME: must not show up anywhere
    namespace_name="default",
    pod_name="nginx-1",
    container_id="c0ffee",
    container_name="nginx",
    pid=4242,
    ppid=4241,
    uid=1000,
    process_name="/bin/cat",
    parent_process_name="/bin/sh",
    policy_name="ksp-nginx-harden",
    severity=7,
    tags=["MITRE", "T1552"],
    message="secrets read",
    operation="File",
    resource="/etc/shadow",
    action=agent_pb2.ACTION_BLOCK,
    result="Permission denied",
    enforcer="BPFLSM",
)
POSTURE_NETWORK = agent_pb2.Alert(
    namespace_name="web",
    pod_name="front",
    container_id="d00d",
    container_name="app",
    pid=77,
    ppid=1,
    process_name="/usr/bin/curl",
    parent_process_name="/bin/bash",
    policy_name="DefaultPosture",
    operation="Network",
    resource="domain=AF_INET type=SOCK_RAW protocol=1",
    action=agent_pb2.ACTION_AUDIT,
    result="Passed",
    enforcer="BPFLSM",
)
AUDITED_EXEC = agent_pb2.Alert(
    namespace_name="default",
    pod_name="nginx-1",
    container_name="nginx",
    pid=5,
    ppid=4,
    process_name="/bin/sh",
    policy_name="ksp-nginx-audit-apt",
    severity=1,
    tags=["apt"],
    operation="Process",
    resource="/usr/bin/apt",
    data="exec",
    action=agent_pb2.ACTION_ALLOW,
    result="Passed",
)

UPDATED = "2026-07-24T10:11:12.345678Z"
TIMESTAMP = RECEIVED_NS // 10**9
EXPECTED = [
    kubearmor_pb2.Alert(
        Timestamp=TIMESTAMP, UpdatedTime=UPDATED, ClusterName="prod", HostName="node-1",
        NamespaceName="default", PodName="nginx-1", Labels="app=nginx,tier=web",
        ContainerID="c0ffee", ContainerName="nginx", HostPID=4242, HostPPID=4241, UID=1000,
        ProcessName="/bin/cat", ParentProcessName="/bin/sh", PolicyName="ksp-nginx-harden", Severity="7",
        Tags="MITRE,T1552", ATags=["MITRE", "T1552"], Message="secrets read", Type="MatchedPolicy",
        Source="/bin/cat", Operation="File", Resource="/etc/shadow", Enforcer="BPFLSM", Action="Block",
        Result="Permission denied",
    ),
    kubearmor_pb2.Alert(  # a posture hit: no severity, tags or message, as in KubeArmor
        Timestamp=TIMESTAMP, UpdatedTime=UPDATED, ClusterName="prod", HostName="node-1",
        NamespaceName="web", PodName="front", ContainerID="d00d", ContainerName="app", HostPID=77, HostPPID=1,
        ProcessName="/usr/bin/curl", ParentProcessName="/bin/bash", PolicyName="DefaultPosture",
        Type="MatchedPolicy", Source="/usr/bin/curl", Operation="Network",
        Resource="domain=AF_INET type=SOCK_RAW protocol=1",
        EventData={"Domain": "AF_INET", "Type": "SOCK_RAW", "Protocol": "1"},
        Enforcer="BPFLSM", Action="Audit", Result="Passed",
    ),
    kubearmor_pb2.Alert(  # no enforcer named by the agent: BPFLSM, the only one it has
        Timestamp=TIMESTAMP, UpdatedTime=UPDATED, ClusterName="prod", HostName="node-1",
        NamespaceName="default", PodName="nginx-1", Labels="app=nginx,tier=web", ContainerName="nginx",
        HostPID=5, HostPPID=4, ProcessName="/bin/sh", PolicyName="ksp-nginx-audit-apt", Severity="1",
        Tags="apt", ATags=["apt"], Type="MatchedPolicy", Source="/bin/sh", Operation="Process",
        Resource="/usr/bin/apt", Data="exec", Enforcer="BPFLSM", Action="Allow", Result="Passed",
    ),
]  # fmt: skip
TIMEOUT = 10.0


@pytest.fixture
def server() -> Iterator[LogServer]:
    """Serve KubeArmor's LogService in-process on a free port, its clock stopped at RECEIVED_NS."""
    with LogServer(KubeArmorFeed(ORIGIN, depth=8, clock=lambda: RECEIVED_NS), "127.0.0.1:0") as running:
        yield running


@pytest.fixture
def connect(server: LogServer) -> Iterator[Callable[[], kubearmor_pb2_grpc.LogServiceStub]]:
    """Open client connections to the server, each its own channel as each karmor or relay has."""
    channels: list[grpc.Channel] = []

    def open_stub() -> kubearmor_pb2_grpc.LogServiceStub:
        channels.append(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        return kubearmor_pb2_grpc.LogServiceStub(channels[-1])

    yield open_stub
    for channel in channels:
        channel.close()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _watch_alerts(stub: kubearmor_pb2_grpc.LogServiceStub, server: LogServer, filter_: str = "policy"):
    """Open WatchAlerts as karmor does and return the stream once the server has registered it."""
    before = server.feed.alerts.subscribers
    stream = stub.WatchAlerts(kubearmor_pb2.RequestMessage(Filter=filter_), timeout=TIMEOUT)
    _until(lambda: server.feed.alerts.subscribers > before)
    return stream


def test_health_check_echoes_the_nonce(connect) -> None:
    """HealthCheck returns the nonce it was sent as Retval, which karmor and the relay compare."""
    stub = connect()
    for nonce in (0, 1, 1_804_289_383, 2**31 - 1):
        assert stub.HealthCheck(kubearmor_pb2.NonceMessage(nonce=nonce), timeout=TIMEOUT).Retval == nonce


@pytest.mark.parametrize("filter_", [pytest.param("policy", id="policy"), pytest.param("all", id="all")])
def test_watch_alerts_maps_every_field(server: LogServer, connect, filter_: str) -> None:
    """Each agent alert arrives as KubeArmor's Alert, every field mapped; the guest's boot clock is not used."""
    stream = _watch_alerts(connect(), server, filter_)
    for alert in (BLOCKED_FILE, POSTURE_NETWORK, AUDITED_EXEC):
        server.feed.publish(alert)
    received = [next(stream) for _ in EXPECTED]
    stream.cancel()
    assert received == EXPECTED


@pytest.mark.parametrize("filter_", [pytest.param("system", id="system"), pytest.param("", id="empty")])
def test_watch_alerts_without_policy_filter_ends_at_once(connect, filter_: str) -> None:
    """WatchAlerts with a filter other than "policy" or "all" ends empty and without error, as KubeArmor's does."""
    assert list(connect().WatchAlerts(kubearmor_pb2.RequestMessage(Filter=filter_), timeout=TIMEOUT)) == []


@pytest.mark.parametrize("filter_", [pytest.param("policy", id="policy"), pytest.param("", id="empty")])
def test_watch_logs_without_system_filter_ends_at_once(connect, filter_: str) -> None:
    """WatchLogs with a filter other than "system" or "all" ends empty and without error, as KubeArmor's does."""
    assert list(connect().WatchLogs(kubearmor_pb2.RequestMessage(Filter=filter_), timeout=TIMEOUT)) == []


@pytest.mark.parametrize(
    ("method", "filter_"),
    [
        pytest.param("WatchLogs", "system", id="logs-system-relay"),
        pytest.param("WatchLogs", "all", id="logs-all-karmor"),
        pytest.param("WatchMessages", "", id="messages-karmor"),
        pytest.param("WatchMessages", "all", id="messages-relay"),
    ],
)
def test_log_and_message_streams_stay_open_until_the_watcher_leaves(
    server: LogServer, connect, method: str, filter_: str
) -> None:
    """The relay ends its session when any stream ends, so WatchLogs and WatchMessages stay open, sending nothing."""
    fanout = server.feed.logs if method == "WatchLogs" else server.feed.messages
    stream = getattr(connect(), method)(kubearmor_pb2.RequestMessage(Filter=filter_))
    _until(lambda: fanout.subscribers == 1)
    server.feed.publish(BLOCKED_FILE)  # an alert is not a log or a message
    time.sleep(0.2)
    assert stream.is_active()
    stream.cancel()
    _until(lambda: fanout.subscribers == 0)


def test_two_watchers_both_receive_every_alert(server: LogServer, connect) -> None:
    """A karmor and a relay watching at once each get every alert."""
    karmor = _watch_alerts(connect(), server, "policy")
    relay = _watch_alerts(connect(), server, "policy")
    for alert in (BLOCKED_FILE, POSTURE_NETWORK, AUDITED_EXEC):
        server.feed.publish(alert)
    assert [next(karmor) for _ in EXPECTED] == EXPECTED
    assert [next(relay) for _ in EXPECTED] == EXPECTED


def test_a_slow_watcher_does_not_hold_up_the_other(server: LogServer, connect) -> None:
    """A watcher that stops reading loses alerts (counted); another keeps receiving all of them, in order."""
    stalled = _watch_alerts(connect(), server)
    reader = _watch_alerts(connect(), server)
    count = 2000  # 8 queued per watcher, 32 MiB: far more than the stalled stream's transport buffers
    bulky = agent_pb2.Alert()
    bulky.CopyFrom(BLOCKED_FILE)
    bulky.message = "x" * 16384
    received: list[int] = []

    def read() -> None:
        for alert in reader:
            received.append(alert.HostPID)
            if len(received) == count:
                return

    thread = threading.Thread(target=read)
    thread.start()
    for pid in range(count):
        bulky.pid = pid
        server.feed.publish(bulky)
        _until(lambda pid=pid: len(received) > pid - 6)  # a live reader stays within its queue's depth
    thread.join(TIMEOUT)
    assert received == list(range(count))
    assert server.feed.alerts.dropped > 0
    stalled.cancel()


def test_stopping_the_server_ends_open_streams(connect) -> None:
    """Watch streams end cleanly when the server stops, as KubeArmor's do when its feeder stops."""
    feed = KubeArmorFeed(ORIGIN)
    running = LogServer(feed, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = kubearmor_pb2_grpc.LogServiceStub(channel)
    alerts = stub.WatchAlerts(kubearmor_pb2.RequestMessage(Filter="all"))
    logs = stub.WatchLogs(kubearmor_pb2.RequestMessage(Filter="all"))
    _until(lambda: feed.alerts.subscribers == 1 and feed.logs.subscribers == 1)
    running.stop(grace=1.0)
    assert list(alerts) == list(logs) == []
    channel.close()


def test_kubearmor_time_formats_as_kubearmor() -> None:
    """UpdatedTime is UTC with exactly six fractional digits and a Z, as Go's "...05.000000Z" layout writes it."""
    assert kubearmor_time(RECEIVED_NS) == (TIMESTAMP, UPDATED)
    assert kubearmor_time(1_700_000_000 * 10**9) == (1_700_000_000, "2023-11-14T22:13:20.000000Z")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("32767", "[::]:32767", id="port"),
        pytest.param(":32767", "[::]:32767", id="colon-port"),
        pytest.param("127.0.0.1:0", "127.0.0.1:0", id="v4"),
        pytest.param("[::1]:32767", "[::1]:32767", id="v6"),
        pytest.param("node-1:32767", "node-1:32767", id="name"),
    ],
)
def test_listen_addresses(value: str, expected: str) -> None:
    """--serve-kubearmor-logs takes [HOST:]PORT; without a host it listens on every interface."""
    assert listen_address(value) == expected


@pytest.mark.parametrize("value", ["", "host", "host:", "1:2:3", "70000", "host:port"])
def test_bad_listen_addresses_are_refused(value: str) -> None:
    """Anything but [HOST:]PORT with a port up to 65535 is refused."""
    with pytest.raises(ValueError, match=r"\[HOST:\]PORT"):
        listen_address(value)
