"""Helpers for the guest tests: the host CLI, policy files, the demo pods."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from images.testguest.containers import PodContainer
from images.testguest.vm import TestGuest

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "images" / "testguest" / "manifests"
NGINX = PodContainer("default", "nginx-1", "nginx")
BUSYBOX = PodContainer("default", "busybox-1", "busybox")


def kadapter(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the host CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=180, check=False
    )


class PolicyApplier:
    """Write KubeArmor YAML into a directory and apply it with `kadapter local`."""

    def __init__(self, guest: TestGuest, directory: Path) -> None:
        self.guest = guest
        self.directory = directory

    def apply(
        self, *documents: str, expect_success: bool = True, manifests: Path = MANIFESTS
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
            "--agent", f"tcp://{self.guest.agent_target}",
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


def paths(*executables: str) -> str:
    """Return matchPaths entries for these executables."""
    return "".join(f"    - path: {path}\n" for path in executables)
