# SPDX-License-Identifier: Apache-2.0
"""Start OCI containers in the test guest the way kata-agent does in a Kata VM.

Each container gets its own pid, mount, ipc and uts namespaces, a read-only
rootfs (a bind mount of the guest's root), a private /tmp, the CRI
annotations containerd passes into a Kata guest, and kadapter-hook as its
prestart and poststop hook, called as `<path> <hook type>` like Kata's
guest hooks. runc stands in for kata-agent's own container runtime.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from images.testguest.vm import GuestResult, TestGuest

RUNC = ["runc", "--root", "/run/runc"]
BUNDLES = PurePosixPath("/run/bundles")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class PodContainer:
    """Where a container belongs: its pod and its name in the pod spec."""

    namespace: str
    pod: str
    name: str
    container_type: str = "container"

    def annotations(self, container_id: str) -> dict[str, str]:
        """Return the annotations containerd sets on a container of a Kata pod."""
        return {
            "io.kubernetes.cri.container-type": self.container_type,
            "io.kubernetes.cri.container-name": self.name,
            "io.kubernetes.cri.sandbox-namespace": self.namespace,
            "io.kubernetes.cri.sandbox-name": self.pod,
            "io.kubernetes.cri.sandbox-uid": f"uid-{self.namespace}-{self.pod}",
            "io.kubernetes.cri.sandbox-id": f"sandbox-{self.namespace}-{self.pod}",
            "io.katacontainers.pkg.oci.bundle_path": str(BUNDLES / container_id),
        }


def oci_config(*, args: list[str], hook: str, annotations: dict[str, str]) -> dict[str, Any]:
    """Return a runtime-spec config.json for a namespaced, read-only container."""
    hooks = {kind: [{"path": hook, "args": [hook, kind], "timeout": 10}] for kind in ("prestart", "poststop")}
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [f"PATH={PATH}", "HOME=/tmp"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "kata-pod",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "hooks": hooks,
        "annotations": annotations,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "mount", "ipc", "uts")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class GuestContainers:
    """Create, exec into and delete containers in a running test guest."""

    def __init__(self, guest: TestGuest) -> None:
        self.guest = guest
        self.hook = str(guest.repo / ".venv" / "bin" / "kadapter-hook")

    def _prepare_bundle(self, container_id: str, owner: PodContainer, args: list[str]) -> str:
        bundle = BUNDLES / container_id
        config = oci_config(args=args, hook=self.hook, annotations=owner.annotations(container_id))
        script = f"mkdir -p {bundle}/rootfs && mount --bind / {bundle}/rootfs && cat > {bundle}/config.json"
        self._check(self.guest.run(["sh", "-c", script], stdin=json.dumps(config)), "prepare bundle")
        return str(bundle)

    def start(self, container_id: str, owner: PodContainer) -> None:
        """Start a long-running container (its init sleeps) in the background."""
        bundle = self._prepare_bundle(container_id, owner, ["/bin/sleep", "1000000"])
        command = shlex.join([*RUNC, "run", "--detach", "--bundle", bundle, container_id])
        self._check(
            self.guest.run(["sh", "-c", f"{command} </dev/null >{bundle}/runc.log 2>&1 || cat {bundle}/runc.log"]),
            "start container",
        )
        state = self.guest.run([*RUNC, "state", container_id])
        if state.returncode != 0 or json.loads(state.stdout)["status"] != "running":
            raise RuntimeError(f"container {container_id} is not running: {state}")

    def run_once(self, container_id: str, owner: PodContainer, args: list[str]) -> GuestResult:
        """Create a container whose first exec is `args`, wait for it and remove it."""
        bundle = self._prepare_bundle(container_id, owner, args)
        return self.guest.run([*RUNC, "run", "--bundle", bundle, container_id])

    def exec(self, container_id: str, args: list[str]) -> GuestResult:
        """Run a process inside a running container's namespaces."""
        return self.guest.run([*RUNC, "exec", container_id, *args])

    def shell(self, container_id: str, script: str) -> GuestResult:
        """Run a shell script inside a running container."""
        return self.exec(container_id, ["/bin/sh", "-c", script])

    def delete(self, container_id: str) -> None:
        """Kill and delete a container; its poststop hook runs."""
        self.guest.run([*RUNC, "kill", container_id, "KILL"])
        for _ in range(50):
            if self.guest.run([*RUNC, "delete", container_id]).returncode == 0:
                break
            self.guest.run(["sleep", "0.2"])
        self.guest.run(["umount", str(BUNDLES / container_id / "rootfs")])

    @staticmethod
    def _check(result: GuestResult, doing: str) -> None:
        if result.returncode != 0 or result.stdout.strip():
            raise RuntimeError(f"{doing} failed: {result}")
