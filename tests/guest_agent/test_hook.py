"""kadapter-hook reads the OCI state the way Kata's guest hooks deliver it."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import threading
from pathlib import Path

import pytest

from guest_agent.agent import Agent
from guest_agent.alerts import AlertHub
from guest_agent.hook import HookInputError, main, parse_state, registration_for
from guest_agent.listener import HookListener, register_pending
from guest_agent.registration import Registration, leave_pending
from tests.guest_agent.test_agent import RecordingEnforcer, container

ANNOTATIONS = {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.container-name": "nginx",
    "io.kubernetes.cri.sandbox-namespace": "default",
    "io.kubernetes.cri.sandbox-name": "nginx-1",
    "io.kubernetes.cri.sandbox-uid": "0b3c",
}
STATE = {
    "ociVersion": "1.0.2-dev",
    "id": "ctr1",
    "status": "creating",
    "pid": 122,
    "bundle": "/run/kata-containers/ctr1",
    "annotations": ANNOTATIONS,
}


def test_prestart_registers_the_container_with_its_pod() -> None:
    """Container and pod names come from the CRI annotations; the rootfs from config.json."""
    config = {"root": {"path": "/run/kata-containers/shared/ctr1/rootfs"}}
    assert registration_for("prestart", parse_state(json.dumps(STATE)), config) == Registration(
        operation="register",
        container_id="ctr1",
        container_name="nginx",
        pod_namespace="default",
        pod_name="nginx-1",
        pod_uid="0b3c",
        pid=122,
        rootfs="/run/kata-containers/shared/ctr1/rootfs",
    )


def test_relative_rootfs_is_taken_from_the_bundle() -> None:
    """A relative root.path is relative to the bundle directory, as the runtime spec says."""
    registration = registration_for("prestart", STATE, {"root": {"path": "rootfs"}})
    assert registration is not None and registration.rootfs == "/run/kata-containers/ctr1/rootfs"


def test_cri_o_annotations_are_understood() -> None:
    """CRI-O names the same facts with its own keys."""
    state = {
        **STATE,
        "annotations": {
            "io.kubernetes.container.name": "web",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.name": "web-7",
        },
    }
    registration = registration_for("prestart", state, {})
    assert registration is not None
    assert (registration.container_name, registration.pod_namespace, registration.pod_name) == ("web", "shop", "web-7")


def test_annotations_fall_back_to_config_json() -> None:
    """Runtimes that leave annotations out of the state still have them in the bundle."""
    state = {key: value for key, value in STATE.items() if key != "annotations"}
    registration = registration_for("prestart", state, {"annotations": ANNOTATIONS})
    assert registration is not None and registration.pod_name == "nginx-1"


def test_pause_container_is_registered_as_the_sandbox() -> None:
    """The pause container registers (a fail-closed agent must let it run), marked so it never gets rules."""
    state = {**STATE, "annotations": {**ANNOTATIONS, "io.kubernetes.cri.container-type": "sandbox"}}
    registration = registration_for("prestart", state, {})
    assert registration is not None and (registration.sandbox, registration.pid) == (True, STATE["pid"])
    assert registration_for("poststop", state, {}) == Registration(operation="unregister", container_id="ctr1")


def test_poststop_unregisters_by_id() -> None:
    """At poststop the process is gone; the container id is enough."""
    assert registration_for("poststop", {**STATE, "pid": 0}, {}) == Registration(
        operation="unregister", container_id="ctr1"
    )


def test_other_hook_types_do_nothing() -> None:
    """poststart needs no action: prestart already covered the container."""
    assert registration_for("poststart", STATE, {}) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("not json", "not JSON", id="not-json"),
        pytest.param("[]", "JSON object", id="array"),
        pytest.param(json.dumps({**STATE, "id": ""}), "'id'", id="empty-id"),
        pytest.param(json.dumps({k: v for k, v in STATE.items() if k != "bundle"}), "'bundle'", id="no-bundle"),
        pytest.param(json.dumps({**STATE, "pid": "122"}), "'pid'", id="pid-string"),
        pytest.param(json.dumps({**STATE, "pid": True}), "'pid'", id="pid-bool"),
        pytest.param(json.dumps({**STATE, "annotations": []}), "'annotations'", id="annotations-list"),
        pytest.param(json.dumps({**STATE, "pid": -1}), "'pid' is out of range", id="pid-negative"),
        pytest.param(json.dumps({**STATE, "pid": 2**63}), "'pid' is out of range", id="pid-huge"),
        pytest.param("[" * 100_000, "not JSON", id="nesting-past-the-recursion-limit"),
        pytest.param('{"pid": ' + "9" * 5000 + "}", "not JSON", id="integer-past-the-digit-limit"),
    ],
)
def test_malformed_state_is_refused(text: str, reason: str) -> None:
    """A state that breaks the runtime spec is an error naming the field."""
    with pytest.raises(HookInputError, match=reason):
        parse_state(text)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        pytest.param({"annotations": None}, "config.json field 'annotations' is not an object", id="annotations-null"),
        pytest.param({"root": None}, "config.json field 'root' is not an object", id="root-null"),
        pytest.param({"root": {"path": 5}}, "config.json field 'root.path' missing or not a str", id="path-number"),
        pytest.param(
            {"annotations": {"io.kubernetes.cri.container-name": 5}},
            "annotation 'io.kubernetes.cri.container-name' is not a string",
            id="annotation-number",
        ),
    ],
)
def test_malformed_config_json_is_refused_naming_the_field(config: dict[str, object], reason: str) -> None:
    """A config.json with a field of the wrong type is an error naming it, not a crash or a mistyped registration."""
    state = {key: value for key, value in STATE.items() if key != "annotations"}  # config.json's count then
    with pytest.raises(HookInputError, match=re.escape(reason)):
        registration_for("prestart", state, config)


@pytest.mark.parametrize(
    ("config_json", "reason"),
    [
        pytest.param(b"\xff", "config.json is not JSON", id="not-utf8"),
        pytest.param(b"[]", "config.json must be a JSON object", id="array"),
        pytest.param(b"{}", "agent at ", id="no-agent"),
    ],
)
def test_hook_exits_1_with_one_line_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config_json: bytes, reason: str
) -> None:
    """A bad config.json, or no agent at the socket, ends the hook with 1 and one line naming the file or socket."""
    (tmp_path / "config.json").write_bytes(config_json)
    monkeypatch.setenv("KADAPTER_HOOK_SOCKET", str(tmp_path / "nobody.sock"))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({**STATE, "bundle": str(tmp_path)})))
    assert main(["prestart"]) == 1
    said = capsys.readouterr().err
    assert said.startswith("kadapter-hook prestart: ") and reason in said and said.count("\n") == 1


def test_prestart_without_pid_is_refused() -> None:
    """Without the init pid there is no namespace to key the container by."""
    with pytest.raises(HookInputError, match="pid"):
        registration_for("prestart", {**STATE, "pid": 0}, {})


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"operation": "register"}', id="no-id"),
        pytest.param(b'{"operation": "explode", "container_id": "c"}', id="bad-op"),
        pytest.param(b'{"operation": "register", "container_id": "c", "pid": "1"}', id="pid-type"),
        pytest.param(b'{"operation": "register", "container_id": "c", "extra": 1}', id="unknown-field"),
        pytest.param(b"[1]", id="not-object"),
    ],
)
def test_bad_registration_lines_are_refused(line: bytes) -> None:
    """The agent's listener refuses malformed messages instead of half-registering."""
    with pytest.raises((ValueError, TypeError)):
        Registration.decode(line)


def test_registration_round_trips() -> None:
    """What the hook encodes is what the listener decodes."""
    registration = Registration(operation="register", container_id="c", pid=5, rootfs="/r")
    assert Registration.decode(registration.encode()) == registration


def test_poststop_unregisters_whatever_is_left_of_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config.json removed or garbled by the time the container stops does not keep it registered."""
    agent = Agent(RecordingEnforcer(), AlertHub())  # type: ignore[arg-type]
    agent.register(dataclasses.replace(container(1), id=STATE["id"]))
    listener = HookListener(tmp_path / "hook.sock", agent)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        (tmp_path / "config.json").write_bytes(b"\xff not json")
        monkeypatch.setenv("KADAPTER_HOOK_SOCKET", str(tmp_path / "hook.sock"))
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({**STATE, "pid": 0, "bundle": str(tmp_path)})))
        assert main(["poststop"]) == 0
    finally:
        listener.shutdown()
    assert not agent.status().containers


def test_a_registration_no_agent_took_is_left_for_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No agent: the hook still fails, and leaves the registration; the next agent registers the container."""
    (tmp_path / "config.json").write_bytes(b"{}")
    monkeypatch.setenv("KADAPTER_HOOK_SOCKET", str(tmp_path / "hook.sock"))
    live = {**STATE, "pid": os.getpid(), "bundle": str(tmp_path)}  # an init that still runs: this process
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(live)))
    assert main(["prestart"]) == 1
    pending = tmp_path / "pending"
    assert f"left for the next agent in {pending / 'ctr1.json'}" in capsys.readouterr().err
    assert (pending.stat().st_mode & 0o777, (pending / "ctr1.json").stat().st_mode & 0o777) == (0o700, 0o600)
    agent = Agent(RecordingEnforcer(), AlertHub())  # type: ignore[arg-type]
    assert register_pending(agent, pending) == 1
    (registered,) = agent.status().containers
    assert (registered.id, registered.name, registered.pod.name) == ("ctr1", "nginx", "nginx-1")
    assert not list(pending.iterdir())


def test_pending_registrations_of_gone_or_garbled_containers_are_dropped(tmp_path: Path) -> None:
    """An init now in other namespaces (its pid recycled) or an unreadable entry registers nothing, and goes."""
    pending = tmp_path / "pending"
    registration = Registration(operation="register", container_id="c", container_name="nginx", pid=os.getpid())
    leave_pending(registration, pending)
    left = json.loads((pending / "c.json").read_text())
    (pending / "c.json").write_text(json.dumps({**left, "mnt_ns": left["mnt_ns"] + 1}))
    (pending / "d.json").write_bytes(b"\xff")
    agent = Agent(RecordingEnforcer(), AlertHub())  # type: ignore[arg-type]
    assert register_pending(agent, pending) == 0
    assert not agent.status().containers and not list(pending.iterdir())


@pytest.mark.parametrize("container_id", ["../escape", ".hidden"])
def test_a_container_id_that_cannot_name_a_file_is_not_left_pending(tmp_path: Path, container_id: str) -> None:
    """The id becomes a file name under the agent's directory: nothing may climb out of it or hide in it."""
    with pytest.raises(ValueError, match="cannot name a file"):
        leave_pending(Registration(operation="register", container_id=container_id, pid=os.getpid()), tmp_path)
