# SPDX-License-Identifier: Apache-2.0
"""kadapter_api/kubearmor.proto is KubeArmor's log feed on the wire: same package, service, methods, fields."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from kadapter_api import kubearmor_pb2

# Read from KubeArmor's protobuf/kubearmor.proto (github.com/kubearmor/KubeArmor, commit 510cee3, 2026-07-24):
# `package feeder;` (line 3), service LogService (lines 154-160), messages at lines 8-152. karmor logs
# (kubearmor-client log/logClient.go) and kubearmor-relay-server (relay-server/server/relayServer.go) import
# the Go code generated from that file, so these names and numbers are what they send and expect.
PACKAGE = "feeder"
SERVICE = "LogService"
METHODS = {  # name: (request, response, server streaming)
    "HealthCheck": ("NonceMessage", "ReplyMessage", False),
    "WatchMessages": ("RequestMessage", "Message", True),
    "WatchAlerts": ("RequestMessage", "Alert", True),
    "WatchLogs": ("RequestMessage", "Log", True),
}
S, I32, I64, TAGS, MAP = "string", "int32", "int64", "repeated string", "map<string, string>"
MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "NonceMessage": {"nonce": (1, I32)},
    "Message": {
        "Timestamp": (1, I64), "UpdatedTime": (2, S), "ClusterName": (3, S), "HostName": (4, S),
        "HostIP": (5, S), "Type": (6, S), "Level": (7, S), "Message": (8, S),
    },
    "Podowner": {"Ref": (1, S), "Name": (2, S), "Namespace": (3, S)},
    "ExecEvent": {"ExecID": (1, S), "ExecutableName": (2, S)},
    "Alert": {
        "Timestamp": (1, I64), "UpdatedTime": (2, S), "ClusterName": (3, S), "HostName": (4, S),
        "NamespaceName": (5, S), "PodName": (6, S), "ContainerID": (7, S), "ContainerName": (8, S),
        "HostPID": (9, I32), "PPID": (10, I32), "PID": (11, I32), "UID": (12, I32),
        "PolicyName": (13, S), "Severity": (14, S), "Tags": (15, S), "Message": (16, S),
        "Type": (17, S), "Source": (18, S), "Operation": (19, S), "Resource": (20, S), "Data": (21, S),
        "Action": (22, S), "Result": (23, S), "ContainerImage": (24, S), "ParentProcessName": (25, S),
        "ProcessName": (26, S), "HostPPID": (27, I32), "Enforcer": (28, S), "Labels": (29, S),
        "ATags": (30, TAGS), "Owner": (31, "Podowner"), "Cwd": (32, S), "TTY": (33, S),
        "MaxAlertsPerSec": (34, I32), "DroppingAlertsInterval": (35, I32), "ExecEvent": (36, "ExecEvent"),
        "KubeArmorVersion": (37, S), "NodeID": (38, S), "ProcessHash": (39, S), "ParentHash": (40, S),
        "ResourceHash": (41, S), "HashAlgo": (42, S), "EventData": (43, MAP), "UserName": (44, S),
    },
    "Log": {
        "Timestamp": (1, I64), "UpdatedTime": (2, S), "ClusterName": (3, S), "HostName": (4, S),
        "NamespaceName": (5, S), "PodName": (6, S), "ContainerID": (7, S), "ContainerName": (8, S),
        "HostPID": (9, I32), "PPID": (10, I32), "PID": (11, I32), "UID": (12, I32),
        "Type": (13, S), "Source": (14, S), "Operation": (15, S), "Resource": (16, S), "Data": (17, S),
        "Result": (18, S), "ContainerImage": (19, S), "ParentProcessName": (20, S), "ProcessName": (21, S),
        "HostPPID": (22, I32), "Labels": (23, S), "Owner": (24, "Podowner"), "Cwd": (25, S), "TTY": (26, S),
        "ExecEvent": (27, "ExecEvent"), "NodeID": (28, S), "ProcessHash": (29, S), "ParentHash": (30, S),
        "ResourceHash": (31, S), "HashAlgo": (32, S), "EventData": (33, MAP), "UserName": (34, S),
    },
    "RequestMessage": {"Filter": (1, S)},
    "ReplyMessage": {"Retval": (1, I32)},
}  # fmt: skip

_SCALARS = {FieldDescriptor.TYPE_STRING: S, FieldDescriptor.TYPE_INT32: I32, FieldDescriptor.TYPE_INT64: I64}


def _spelled(field: FieldDescriptor) -> str:
    """Spell a field's type as the .proto file does."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (_spelled(field.message_type.fields_by_name[name]) for name in ("key", "value"))
        return f"map<{key}, {value}>"
    base = _SCALARS.get(field.type) or field.message_type.full_name.removeprefix(PACKAGE + ".")
    return f"repeated {base}" if field.is_repeated else base


def _fields(message: Descriptor) -> dict[str, tuple[int, str]]:
    return {field.name: (field.number, _spelled(field)) for field in message.fields}


def test_package_service_and_methods_are_kubearmors() -> None:
    """The gRPC paths are /feeder.LogService/<method>, with KubeArmor's request and response types."""
    assert kubearmor_pb2.DESCRIPTOR.package == PACKAGE
    assert set(kubearmor_pb2.DESCRIPTOR.services_by_name) == {SERVICE}
    service = kubearmor_pb2.DESCRIPTOR.services_by_name[SERVICE]
    assert service.full_name == "feeder.LogService"
    methods = {
        method.name: (method.input_type.name, method.output_type.name, method.server_streaming)
        for method in service.methods
    }
    assert methods == METHODS
    assert not any(method.client_streaming for method in service.methods)


def test_no_message_or_enum_beyond_kubearmors() -> None:
    """The file declares exactly KubeArmor's messages and no enum."""
    assert set(kubearmor_pb2.DESCRIPTOR.message_types_by_name) == set(MESSAGES)
    assert not kubearmor_pb2.DESCRIPTOR.enum_types_by_name


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in MESSAGES])
def test_message_fields_are_kubearmors(name: str) -> None:
    """Every field has KubeArmor's name, number and type, and there is no other."""
    assert _fields(kubearmor_pb2.DESCRIPTOR.message_types_by_name[name]) == MESSAGES[name]
