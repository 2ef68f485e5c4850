"""The state a restarted agent takes over: saved whole, read back as written."""

from __future__ import annotations

from pathlib import Path

from guest_agent.state import SavedContainer, StateStore
from kadapter_api import agent_pb2

CONTAINER = SavedContainer(
    id="c1", name="nginx", namespace="default", pod="nginx-1", pod_uid="u-1",
    pid_ns=4026532000, mnt_ns=4026532001, rootfs=None, pid=42, kernel_id=7,
)  # fmt: skip
REQUEST = agent_pb2.ApplyPoliciesRequest(
    pod=agent_pb2.PodRef(namespace="default", name="nginx-1"),
    generation=1_700_000_000_000_000_000,
    policies=[agent_pb2.Policy(name="p", process_rules=[agent_pb2.PathRule(path="/usr/bin/apt")])],
)


def test_saved_state_reads_back_as_written(tmp_path: Path) -> None:
    """Containers and desired sets round-trip; the file is root's alone and no temporary file is left."""
    store = StateStore(tmp_path / "state")
    store.save([CONTAINER], [REQUEST])
    loaded = StateStore(tmp_path / "state").load()
    assert (loaded.containers, loaded.pods) == ((CONTAINER,), (REQUEST,))
    assert [path.name for path in (tmp_path / "state").iterdir()] == ["agent-state.json"]
    assert (store.path.stat().st_mode & 0o777, (tmp_path / "state").stat().st_mode & 0o777) == (0o600, 0o700)


def test_nothing_saved_is_an_empty_state(tmp_path: Path) -> None:
    """The first agent of a guest finds nothing to take over."""
    loaded = StateStore(tmp_path).load()
    assert (loaded.containers, loaded.pods) == ((), ())


def test_a_later_save_replaces_the_earlier(tmp_path: Path) -> None:
    """Each save is the whole state: a container unregistered since is gone from the file."""
    store = StateStore(tmp_path)
    store.save([CONTAINER], [REQUEST])
    store.save([], [REQUEST])
    assert store.load().containers == ()
