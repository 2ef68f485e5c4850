# SPDX-License-Identifier: Apache-2.0
"""Kata sandboxes mapped to their pods by a real gRPC CRI runtime double on a Unix socket."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from adapter.cri import CriError, SandboxPod, find_runtime_socket, list_kata_sandboxes
from adapter.discovery import SandboxId
from adapter.manager import PodUid
from adapter.pods import is_kata_handler
from kadapter_api import cri_pb2, cri_pb2_grpc
from tests.adapter.fakes import CREATED_AT, FakeRuntime, pod_sandbox, serve_cri

READY, NOT_READY = cri_pb2.SANDBOX_READY, cri_pb2.SANDBOX_NOTREADY
NO_SHIMS: frozenset[SandboxId] = frozenset()
Request, Response = cri_pb2.ListPodSandboxRequest, cri_pb2.ListPodSandboxResponse

# Read from k8s.io/cri-api pkg/apis/runtime/v1/api.proto (kubernetes/kubernetes commit f9e5dd8,
# staging/src/k8s.io/cri-api): `package runtime.v1;`, service RuntimeService's ListPodSandbox, and the
# messages below. containerd and CRI-O serve the Go code generated from that file.
S, U32, I64, MAP = "string", "uint32", "int64", "map<string, string>"
MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "PodSandboxMetadata": {"name": (1, S), "uid": (2, S), "namespace": (3, S), "attempt": (4, U32)},
    "PodSandboxStateValue": {"state": (1, "PodSandboxState")},
    "PodSandboxFilter": {"id": (1, S), "state": (2, "PodSandboxStateValue"), "label_selector": (3, MAP)},
    "ListPodSandboxRequest": {"filter": (1, "PodSandboxFilter")},
    "PodSandbox": {
        "id": (1, S), "metadata": (2, "PodSandboxMetadata"), "state": (3, "PodSandboxState"),
        "created_at": (4, I64), "labels": (5, MAP), "annotations": (6, MAP), "runtime_handler": (7, S),
    },
    "ListPodSandboxResponse": {"items": (1, "repeated PodSandbox")},
}  # fmt: skip


def _sandbox(
    sandbox_id: str, handler: str, state: cri_pb2.PodSandboxState = READY, pod: str = "web"
) -> cri_pb2.PodSandbox:
    """Build a sandbox of pod `pod` in namespace shop, as a runtime lists it."""
    return pod_sandbox(sandbox_id, handler, name=pod, namespace="shop", uid=f"uid-{pod}", state=state)


class _Hanging(cri_pb2_grpc.RuntimeServiceServicer):
    """A runtime that never answers before it is released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def ListPodSandbox(self, request: Request, context: grpc.ServicerContext) -> Response:  # noqa: N802
        self.release.wait(5)
        return Response()


class _Failing(cri_pb2_grpc.RuntimeServiceServicer):
    """A runtime that answers every call with an internal error."""

    def ListPodSandbox(self, request: Request, context: grpc.ServicerContext) -> Response:  # noqa: N802
        context.abort(grpc.StatusCode.INTERNAL, "sandbox store is locked")


Serve = Callable[[cri_pb2_grpc.RuntimeServiceServicer | None], Path]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a gRPC server on tmp_path/cri.sock with a servicer (None: no service at all) until the test ends."""
    with contextlib.ExitStack() as stack:

        def start(servicer: cri_pb2_grpc.RuntimeServiceServicer | None) -> Path:
            path = tmp_path / "cri.sock"
            stack.callback(serve_cri(path, servicer).stop, None)
            if isinstance(servicer, _Hanging):
                stack.callback(servicer.release.set)  # before stopping: the worker thread returns at once
            return path

        yield start


def _list(path: Path, *, shims: frozenset[SandboxId] = NO_SHIMS, timeout: float = 2.0) -> dict[SandboxId, SandboxPod]:
    return list_kata_sandboxes(path, is_kata=is_kata_handler, kata_shims=shims, timeout=timeout)


def test_cri_proto_is_cri_v1_on_the_wire() -> None:
    """The service, method, field names, numbers and types are those of runtime.v1 in k8s.io/cri-api."""
    service = cri_pb2.DESCRIPTOR.services_by_name["RuntimeService"]
    method = service.methods_by_name["ListPodSandbox"]
    assert service.full_name == "runtime.v1.RuntimeService"
    assert (method.input_type.full_name, method.output_type.full_name) == (
        "runtime.v1.ListPodSandboxRequest",
        "runtime.v1.ListPodSandboxResponse",
    )
    assert cri_pb2.PodSandboxState.items() == [("SANDBOX_READY", 0), ("SANDBOX_NOTREADY", 1)]
    declared = {
        name: {field.name: (field.number, _spelled(field)) for field in message.fields}
        for name, message in cri_pb2.DESCRIPTOR.message_types_by_name.items()
    }
    assert declared == MESSAGES


_SCALARS = {FieldDescriptor.TYPE_STRING: S, FieldDescriptor.TYPE_UINT32: U32, FieldDescriptor.TYPE_INT64: I64}


def _spelled(field: FieldDescriptor) -> str:
    """Spell a field's type as the .proto file does."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (_spelled(field.message_type.fields_by_name[name]) for name in ("key", "value"))
        return f"map<{key}, {value}>"
    named = field.message_type or field.enum_type
    base = _SCALARS[field.type] if named is None else named.name
    return f"repeated {base}" if field.is_repeated else base


def test_maps_each_kata_sandbox_to_its_pod(serve: Serve) -> None:
    """Kata sandboxes come back keyed by sandbox id with their pod; runc ones are left out; no filter is sent."""
    runtime = FakeRuntime(
        [_sandbox("k1", "kata", pod="web"), _sandbox("r1", "runc", pod="db"), _sandbox("k2", "kata-clh", pod="api")]
    )
    assert _list(serve(runtime)) == {
        SandboxId("k1"): SandboxPod(
            "shop", "web", PodUid("uid-web"), handler="kata", ready=True, created_at=CREATED_AT
        ),
        SandboxId("k2"): SandboxPod(
            "shop", "api", PodUid("uid-api"), handler="kata-clh", ready=True, created_at=CREATED_AT
        ),
    }
    (request,) = runtime.requests
    assert not request.HasField("filter")  # not-ready sandboxes are wanted too


@pytest.mark.parametrize(
    ("handler", "kept"),
    [
        pytest.param("kata", True, id="kata"),
        pytest.param("kata-qemu", True, id="kata-qemu"),
        pytest.param("runc", False, id="runc"),
        pytest.param("crun", False, id="crun"),
        pytest.param("katana", False, id="kata-prefix-only"),
        pytest.param("gvisor-kata", False, id="kata-suffix-only"),
    ],
)
def test_only_kata_handlers_are_kept(serve: Serve, handler: str, kept: bool) -> None:
    """is_kata decides from the runtime handler the runtime reports."""
    assert (SandboxId("s1") in _list(serve(FakeRuntime([_sandbox("s1", handler)])))) is kept


def test_handlers_are_judged_by_the_callers_test(serve: Serve) -> None:
    """A configured handler test (here: every handler but runc) is the one applied."""
    path = serve(FakeRuntime([_sandbox("g1", "gvisor"), _sandbox("r1", "runc")]))
    found = list_kata_sandboxes(path, is_kata=lambda handler: handler != "runc", kata_shims=NO_SHIMS, timeout=2.0)
    assert set(found) == {SandboxId("g1")}


@pytest.mark.parametrize(
    ("shims", "kept"),
    [
        pytest.param(frozenset({SandboxId("e1")}), True, id="kata-shim-serves-it"),
        pytest.param(frozenset({SandboxId("other")}), False, id="no-kata-shim"),
    ],
)
def test_empty_handler_is_kata_only_with_a_kata_shim(serve: Serve, shims: frozenset[SandboxId], kept: bool) -> None:
    """A sandbox whose runtime reports no handler counts as Kata exactly when a Kata shim serves it."""
    found = _list(serve(FakeRuntime([_sandbox("e1", "")])), shims=shims)
    assert (
        found.get(SandboxId("e1"))
        == SandboxPod("shop", "web", PodUid("uid-web"), "", ready=True, created_at=CREATED_AT)
    ) is kept
    assert len(found) == int(kept)


def test_a_reported_handler_overrides_the_shim_evidence(serve: Serve) -> None:
    """kata_shims only fills in a missing handler: a runc sandbox stays out whatever the shim list says."""
    assert _list(serve(FakeRuntime([_sandbox("r1", "runc")])), shims=frozenset({SandboxId("r1")})) == {}


def test_not_ready_sandboxes_are_listed_as_not_ready(serve: Serve) -> None:
    """A stopped Kata sandbox is still mapped, with ready False, beside its pod's new ready one."""
    found = _list(serve(FakeRuntime([_sandbox("old", "kata", NOT_READY), _sandbox("new", "kata", READY)])))
    assert {sandbox: pod.ready for sandbox, pod in found.items()} == {SandboxId("old"): False, SandboxId("new"): True}
    assert found[SandboxId("old")].uid == found[SandboxId("new")].uid == "uid-web"


def test_an_answer_over_grpcs_default_4_mib_is_read(serve: Serve) -> None:
    """A node's worth of sandboxes with large annotations fits the kubelet's 16 MiB limit, not gRPC's 4 MiB."""
    big = _sandbox("k1", "kata")
    big.annotations["kubectl.kubernetes.io/last-applied-configuration"] = "x" * (5 * 1024 * 1024)
    assert set(_list(serve(FakeRuntime([big])))) == {SandboxId("k1")}


def test_an_absent_socket_is_named(tmp_path: Path) -> None:
    """No socket file: the error names it and says no runtime is there."""
    path = tmp_path / "cri.sock"
    with pytest.raises(CriError, match="no such socket") as caught:
        _list(path)
    assert caught.value.socket == path


def test_a_file_that_is_no_socket_is_refused(tmp_path: Path) -> None:
    """A regular file at the path is reported as such, not dialled."""
    path = tmp_path / "cri.sock"
    path.write_text("")
    with pytest.raises(CriError, match="not a socket"):
        _list(path)


def test_a_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    """A socket left behind by a runtime that exited refuses the connection, and the error says so."""
    path = tmp_path / "cri.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # never listens: connecting is refused
    with pytest.raises(CriError, match=r"cannot connect: .*Connection refused") as caught:
        _list(path)
    assert caught.value.socket == path


def test_a_runtime_that_does_not_answer_times_out(serve: Serve) -> None:
    """A runtime that accepts the call but never answers costs the timeout, then a clear error."""
    with pytest.raises(CriError, match=r"no answer to ListPodSandbox within 0.2 s"):
        _list(serve(_Hanging()), timeout=0.2)


def test_a_socket_without_cri_v1_is_unimplemented(serve: Serve) -> None:
    """A gRPC server without runtime.v1 (an old runtime, containerd without its cri plugin) is named as such."""
    with pytest.raises(CriError, match="no CRI v1 here"):
        _list(serve(None))


def test_other_runtime_errors_carry_code_and_details(serve: Serve) -> None:
    """Any other failure keeps the runtime's status code and message."""
    with pytest.raises(CriError, match="ListPodSandbox failed: INTERNAL: sandbox store is locked"):
        _list(serve(_Failing()))


def test_the_first_runtime_socket_present_is_chosen(tmp_path: Path) -> None:
    """Candidates are tried in order; missing ones and plain files are passed over."""
    plain, crio, containerd = tmp_path / "plain.sock", tmp_path / "crio.sock", tmp_path / "containerd.sock"
    plain.write_text("")
    with contextlib.ExitStack() as stack:
        for path in (crio, containerd):
            listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            listener.bind(str(path))
        assert find_runtime_socket([tmp_path / "absent.sock", plain, crio, containerd]) == crio


def test_no_runtime_socket_names_every_candidate(tmp_path: Path) -> None:
    """With no candidate present, the error names each path tried."""
    first, second = tmp_path / "containerd.sock", tmp_path / "crio.sock"
    with pytest.raises(CriError, match=f"no CRI runtime socket here nor at {second}") as caught:
        find_runtime_socket([first, second])
    assert caught.value.socket == first
