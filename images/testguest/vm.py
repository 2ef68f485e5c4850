# SPDX-License-Identifier: Apache-2.0
"""Boot and drive the Kata-like test guest under QEMU.

The guest is what a Kata VM is to Kadapter: its own kernel (Debian's, with
BTF and BPF-LSM), its own PID 1, containers started by an OCI runtime with
guest hooks. The host's root is its userland (9p, read-only), so the repo's
own Python runs inside without an image build. Host-side code reaches the
agent and the test command service through QEMU user-mode port forwards on
a NIC of their own, which the guest keeps in a network namespace its
containers never see (control-network.sh); the containers have the pod NIC.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

AGENT_GUEST_PORT = 50051
TESTCTL_GUEST_PORT = 50052
POD_MAC = "52:54:00:12:34:56"  # the pod network, in the guest's root network namespace (init)
CONTROL_MAC = "52:54:00:4b:41:01"  # the tests' own, moved to the kadapter-test namespace (control-network.sh)


@dataclass(frozen=True)
class GuestResult:
    """What a command run in the guest returned."""

    returncode: int
    stdout: str
    stderr: str


def free_local_port() -> int:
    """Ask the host kernel for an unused loopback TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestGuest:
    """One running QEMU test guest; use as a context manager."""

    __test__ = False  # a fixture, not a pytest test class

    def __init__(
        self,
        *,
        repo: Path,
        image_dir: Path,
        console_log: Path,
        memory_mb: int = 1024,
        icount: bool = False,
        kernel_args: str = "",
        root_disk: Path | None = None,
    ) -> None:
        """Describe a guest; with root_disk it boots that disk image (snapshot: left unchanged), not the host's root."""
        self.repo = repo.resolve()
        self.root_disk = root_disk
        self.kernel_args = kernel_args  # appended to the command line, e.g. an lsm= list
        self.image_dir = image_dir
        self.console_log = console_log
        self.memory_mb = memory_mb
        self.icount = icount
        self.agent_port = free_local_port()
        self.testctl_port = free_local_port()
        self._qemu: subprocess.Popen[bytes] | None = None

    @property
    def agent_target(self) -> str:
        """Return the gRPC target of the guest agent as seen from the host."""
        return f"127.0.0.1:{self.agent_port}"

    def command_line(self) -> list[str]:
        """Return the QEMU command line that boots this guest.

        One vCPU: with two, multi-threaded TCG once left both vCPUs in soft
        lockups inside runc (guest kernel watchdog, RCU stalls), failing a
        whole CI run; one vCPU is what the field notes measured as stable.
        With icount the guest clock advances one nanosecond per emulated
        instruction, which makes guest-side timings repeatable (benchmarks).
        """
        forwards = (
            f"hostfwd=tcp:127.0.0.1:{self.agent_port}-:{AGENT_GUEST_PORT},"
            f"hostfwd=tcp:127.0.0.1:{self.testctl_port}-:{TESTCTL_GUEST_PORT}"
        )
        if self.root_disk is None:  # the host's root, read-only over 9p, is the guest's userland
            root = f"kadapter.repo={self.repo}"
            disks = ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"]
        else:  # a guest image on virtio-blk, booted as a Kata VM boots it
            root = "kadapter.root=/dev/vda1 systemd.unit=kata-containers.target"
            disks = ["-drive", f"file={self.root_disk},if=virtio,format=raw,snapshot=on"]
        return [
            shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
            "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(self.memory_mb),
            "-nographic", "-no-reboot",
            "-kernel", str(self.image_dir / "vmlinuz"),
            "-initrd", str(self.image_dir / "initramfs.cpio.gz"),
            "-append", f"console=ttyS0 loglevel=5 panic=-1 {root} {self.kernel_args}".rstrip(),
            *disks,
            # restrict=on on both: the guest reaches neither the host nor beyond it (slirp's 10.0.2.2 would be
            # the host's loopback, where the forwarded ports listen); only the forwards reach the guest.
            "-netdev", "user,id=pod,net=10.0.2.0/24,restrict=on",
            "-device", f"virtio-net-pci,netdev=pod,mac={POD_MAC}",
            "-netdev", f"user,id=control,net=10.0.3.0/24,restrict=on,{forwards}",
            "-device", f"virtio-net-pci,netdev=control,mac={CONTROL_MAC}",
            *(["-icount", "shift=0,align=off,sleep=off"] if self.icount else []),
        ]  # fmt: skip

    def start(self, *, timeout: float = 180.0) -> None:
        """Boot the guest and wait until its services answer."""
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("wb") as console:
            self._qemu = subprocess.Popen(
                self.command_line(), stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._qemu.poll() is not None:
                raise RuntimeError(f"test guest exited during boot:\n{self.console()[-4000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"test guest not ready after {timeout} s:\n{self.console()[-4000:]}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        """Tell whether the guest has finished booting: its command service starts last."""
        try:
            return self.run(["true"], timeout=10).returncode == 0
        except OSError:  # slirp accepts on the host side before the guest listens
            return False

    def console(self) -> str:
        """Return everything the guest printed on its serial console so far."""
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    def run(self, argv: list[str], *, stdin: str = "", timeout: float = 120.0) -> GuestResult:
        """Run a command in the guest (as root, in the guest's root namespaces)."""
        request = json.dumps({"argv": argv, "stdin": stdin, "timeout": timeout}).encode() + b"\n"
        with socket.create_connection(("127.0.0.1", self.testctl_port), timeout=timeout + 30) as conn:
            conn.sendall(request)
            reply = conn.makefile("rb").readline()
        if not reply:
            raise ConnectionError("test guest command service closed the connection")
        return GuestResult(**json.loads(reply))

    def stop(self) -> None:
        """Power the guest off."""
        if self._qemu and self._qemu.poll() is None:
            self._qemu.kill()
            self._qemu.wait()

    def __enter__(self) -> TestGuest:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
