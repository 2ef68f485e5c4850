# SPDX-License-Identifier: Apache-2.0
"""Start OCI containers in the test guest the way kata-agent does in a Kata VM.

Each container looks like a Kubernetes pod's: its own pid, mount, ipc and
uts namespaces, containerd's default capabilities, masked and read-only
/proc paths, and a writable rootfs (an overlay whose upper layer is a
tmpfs over the read-only guest root, as a snapshotter gives a Kata guest).
It carries the CRI annotations containerd passes into a Kata guest, and
kadapter-hook as its prestart and poststop hook, called as `<path> <hook
type>` like Kata's guest hooks. runc stands in for kata-agent's own
container runtime.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from images.testguest.vm import GuestResult, TestGuest

RUNC = ["runc", "--root", "/run/runc"]
BUNDLES = PurePosixPath("/run/bundles")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What containerd grants a container whose spec drops nothing (CapEff 00000000a80425fb).
DEFAULT_CAPABILITIES = tuple(
    f"CAP_{name}"
    for name in (
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
    )
)  # fmt: skip
# privileged: true, for showing that even a container holding every capability stays under its policy.
ALL_CAPABILITIES = (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN", "CAP_DAC_READ_SEARCH")
NO_CAPABILITIES: tuple[str, ...] = ()
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class PodContainer:
    """Where a container belongs: its pod and its name in the pod spec."""

    namespace: str
    pod: str
    name: str
    container_type: str = "container"

    @property
    def uid(self) -> str:
        """Return the pod's uid as the container's CRI annotations give it."""
        return f"uid-{self.namespace}-{self.pod}"

    def annotations(self, container_id: str) -> dict[str, str]:
        """Return the annotations containerd sets on a container of a Kata pod."""
        return {
            "io.kubernetes.cri.container-type": self.container_type,
            "io.kubernetes.cri.container-name": self.name,
            "io.kubernetes.cri.sandbox-namespace": self.namespace,
            "io.kubernetes.cri.sandbox-name": self.pod,
            "io.kubernetes.cri.sandbox-uid": self.uid,
            "io.kubernetes.cri.sandbox-id": f"sandbox-{self.namespace}-{self.pod}",
            "io.katacontainers.pkg.oci.bundle_path": str(BUNDLES / container_id),
        }


def oci_config(
    *,
    args: list[str],
    hooks: Mapping[str, str],
    annotations: dict[str, str],
    capabilities: tuple[str, ...],
    hook_timeout: int = 10,
    masked_paths: tuple[str, ...] = MASKED_PATHS,
) -> dict[str, Any]:
    """Return a runtime-spec config.json shaped like containerd's for a pod's container (no hooks: unregistered).

    hooks maps a hook type (prestart, poststop) to the program run for it.
    """
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [f"PATH={PATH}", "HOME=/tmp"],
            "cwd": "/",
            "capabilities": {kind: list(capabilities) for kind in ("bounding", "effective", "permitted")},
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "kata-pod",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "hooks": {
            kind: [{"path": path, "args": [path, kind], "timeout": hook_timeout}] for kind, path in hooks.items()
        },
        "annotations": annotations,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "mount", "ipc", "uts")],
            "maskedPaths": list(masked_paths),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


class GuestContainers:
    """Create, exec into and delete containers in a running test guest."""

    def __init__(self, guest: TestGuest, *, hooks: Mapping[str, str] | None = None, hook_timeout: int = 10) -> None:
        """Drive containers in guest with hooks (by type; default: the checkout's kadapter-hook for both).

        Hooks get kata-agent's 10 s unless the guest is slowed down on purpose.
        """
        self.guest = guest
        hook = str(guest.repo / ".venv" / "bin" / "kadapter-hook")
        self.hooks = dict(hooks) if hooks is not None else {"prestart": hook, "poststop": hook}
        self.hook_timeout = hook_timeout

    def _prepare_bundle(
        self,
        container_id: str,
        owner: PodContainer,
        args: list[str],
        capabilities: tuple[str, ...],
        *,
        registered: bool = True,
    ) -> str:
        """Write config.json and mount a fresh writable overlay rootfs over the read-only guest root."""
        bundle = BUNDLES / container_id
        config = oci_config(
            args=args,
            hooks=self.hooks if registered else {},
            hook_timeout=self.hook_timeout,
            annotations=owner.annotations(container_id),
            capabilities=capabilities,
            # The guest's root is the containers' lower layer here, so the test credentials are in it (the host's
            # both halves over 9p, or the agent's half on a test image's disk); in a Kata VM the agent's half sits
            # outside every container's rootfs.
            masked_paths=(*MASKED_PATHS, str(self.guest.repo / "build" / "tls"), "/etc/kadapter/tls"),
        )
        layers = f"lowerdir=/,upperdir={bundle}/upper,workdir={bundle}/work"
        script = (
            f"mkdir -p {bundle}/rootfs {bundle}/upper {bundle}/work"
            f" && mount -t overlay overlay -o {layers} {bundle}/rootfs && cat > {bundle}/config.json"
        )
        self._check(self.guest.run(["sh", "-c", script], stdin=json.dumps(config)), "prepare bundle")
        return str(bundle)

    def start(
        self,
        container_id: str,
        owner: PodContainer,
        *,
        capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES,
        registered: bool = True,
    ) -> None:
        """Start a long-running container (its init sleeps); unregistered, Kadapter never hears of it."""
        bundle = self._prepare_bundle(
            container_id, owner, ["/bin/sleep", "1000000"], capabilities, registered=registered
        )
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
        bundle = self._prepare_bundle(container_id, owner, args, DEFAULT_CAPABILITIES)
        try:
            return self.guest.run([*RUNC, "run", "--bundle", bundle, container_id])
        finally:
            self.guest.run(["umount", f"{bundle}/rootfs"])

    def running(self) -> list[str]:
        """Return the ids of the containers the runtime has running."""
        listed = self.guest.run([*RUNC, "list", "--format", "json"])
        if listed.returncode != 0:
            raise RuntimeError(f"runc list failed: {listed}")
        return [item["id"] for item in json.loads(listed.stdout or "null") or [] if item["status"] == "running"]

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
