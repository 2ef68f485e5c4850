"""Helpers for the guest tests: the host CLI, policy files, the demo pods."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapter.exporter import AgentClient
from adapter.transport import parse_agent_url
from images.testguest.containers import RUNC, PodContainer
from images.testguest.vm import GuestResult, TestGuest
from kadapter_api import agent_pb2
from tests.credentials import ADAPTER_DIR, adapter_identity

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "images" / "testguest" / "manifests"
NGINX = PodContainer("default", "nginx-1", "nginx")
BUSYBOX = PodContainer("default", "busybox-1", "busybox")
DENIED = "Permission denied"
GUEST_IMAGE = REPO / "build" / "guest-image-test" / "kadapter-guest.img"  # make guest-image-test


@dataclass(frozen=True)
class Boot:
    """A guest of a test's own (parametrize "guest" indirectly): more kernel arguments, or a root disk to boot."""

    kernel_args: str = ""
    root_disk: Path | None = None


def assert_denied(result: GuestResult, what: str) -> None:
    """Check that a command failed because the kernel refused it (EACCES)."""
    assert result.returncode != 0, f"{what} ran: {result}"
    assert DENIED.lower() in (result.stdout + result.stderr).lower(), f"{what}: {result}"


def assert_ran(result: GuestResult, what: str, *, prints: str) -> None:
    """Check that the program ran: it printed what it prints (apt in a chroot then exits non-zero)."""
    assert prints in result.stdout, f"{what}: {result}"


@contextmanager
def alert_stream(guest: TestGuest) -> Iterator[queue.Queue[agent_pb2.Alert]]:
    """Subscribe to the agent's alerts for the duration of the block."""
    alerts: queue.Queue[agent_pb2.Alert] = queue.Queue()
    client = AgentClient(parse_agent_url(f"tcp://{guest.agent_target}"), identity=adapter_identity())

    def collect() -> None:
        for alert in client.alerts():
            alerts.put(alert)

    threading.Thread(target=collect, daemon=True).start()
    try:
        guest.run(["sleep", "1"])  # let the stream subscribe before the first event
        yield alerts
    finally:
        client.close()


def alert_for(alerts: queue.Queue[agent_pb2.Alert], resource: str, *, timeout: float = 60) -> agent_pb2.Alert:
    """Return the next alert about this resource, skipping others (a shell opens and execs more than it is asked)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            alert = alerts.get(timeout=left)
        except queue.Empty:
            break
        if alert.resource == resource:
            return alert
    raise AssertionError(f"no alert about {resource} within {timeout} s")


def no_alert_for(alerts: queue.Queue[agent_pb2.Alert], resource: str, *, wait: float = 3) -> None:
    """Check that no alert about this resource arrives within `wait` seconds."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            alert = alerts.get(timeout=left)
        except queue.Empty:
            return
        assert alert.resource != resource, f"unexpected alert: {alert}"


def init_pid(guest: TestGuest, container_id: str) -> int:
    """Return the guest pid of a running container's init, as kata-agent knows it."""
    state = guest.run([*RUNC, "state", container_id])
    assert state.returncode == 0, state
    return json.loads(state.stdout)["pid"]


def kadapter(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the host CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )


def agent_status(guest: TestGuest) -> dict:
    """Ask the guest's agent for its status as the adapter asks it; return it as JSON."""
    asked = kadapter("status", "--agent", f"tcp://{guest.agent_target}", "--tls-dir", str(ADAPTER_DIR))
    assert asked.returncode == 0, asked.stderr
    return json.loads(asked.stdout)


# Verifying the BPF object takes minutes on the guest's emulated CPU (more for some builds of it).
AGENT_START_TIMEOUT = 420.0


def start_agent(guest: TestGuest, *options: str) -> None:
    """Start an agent the way the guest started the first one (options override its defaults); wait until it serves."""
    started = guest.run(
        [str(guest.repo / "images/testguest/start-agent.sh"), str(guest.repo), *options], timeout=AGENT_START_TIMEOUT
    )
    assert started.returncode == 0, started


class PolicyApplier:
    """Write KubeArmor YAML into a directory and apply it with `kadapter local`."""

    def __init__(self, guest: TestGuest, directory: Path) -> None:
        self.guest = guest
        self.directory = directory

    def apply(
        self, *documents: str, expect_success: bool = True, manifests: Path = MANIFESTS, default_posture: str = "block"
    ) -> subprocess.CompletedProcess[str]:
        """Replace the policy directory with these files and apply it to every demo pod."""
        self.directory.mkdir(exist_ok=True)
        for old in self.directory.iterdir():
            old.unlink()
        for number, text in enumerate(documents):
            (self.directory / f"policy-{number}.yaml").write_text(text)
        done = kadapter(
            "local",
            "--policies", str(self.directory),
            "--manifests", str(manifests),
            "--agent", f"tcp://{self.guest.agent_target}", "--tls-dir", str(ADAPTER_DIR),
            "--default-posture", default_posture,
        )  # fmt: skip
        if expect_success:
            assert done.returncode == 0, done.stderr
        return done


def process_policy(*, name: str, rules: str, labels: str = "app: nginx", action: str = "Block") -> str:
    """Return a KubeArmorPolicy with the given process.matchPaths entries."""
    return f"""\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: {name}
  namespace: default
spec:
  severity: 7
  message: "test policy {name}"
  tags: ["test"]
  selector:
    matchLabels:
      {labels}
  process:
    matchPaths:
{rules}
  action: {action}
"""


def nginx_policy(name: str, body: str) -> str:
    """Return a KubeArmorPolicy named `name` selecting the nginx pod, with this spec body (indented two spaces)."""
    return f"""\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: {name}
  namespace: default
spec:
  selector:
    matchLabels:
      app: nginx
{body}"""


def paths(*executables: str) -> str:
    """Return matchPaths entries for these executables."""
    return "".join(f"    - path: {path}\n" for path in executables)
