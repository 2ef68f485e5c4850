"""What Kadapter hands a Kata operator: the config.d drop-in, and the files of the guest image's tarball.

The tarball (images/guest/build.sh, built by `make test`) is unpacked here and run with this host's
Python 3.11, the guest image's version: the agent must start from exactly what it ships, and its hook
must start it where no systemd does (kata-agent as PID 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DROP_IN = REPO / "deploy" / "kata" / "50-kadapter.toml"
TARBALL = REPO / "build" / "guest-image-test" / "kadapter-guest-hooks.tar.zst"
HOOK_PATH = "usr/share/oci/hooks"
DEBIAN_PYTHON = "/usr/bin/python3"  # bookworm's 3.11, as in the guest image


def test_the_drop_in_wires_kernel_image_hooks_and_the_bpf_lsm() -> None:
    """Every key Kadapter needs is set, lsm= ends in bpf, and no pod annotation can undo it."""
    qemu = tomllib.loads(DROP_IN.read_text())["hypervisor"]["qemu"]
    assert {"kernel", "image", "guest_hook_path", "kernel_params"} <= qemu.keys()
    assert all(qemu[key].startswith("/") for key in ("kernel", "image", "guest_hook_path"))
    (lsm,) = [param.removeprefix("lsm=") for param in qemu["kernel_params"].split() if param.startswith("lsm=")]
    assert lsm.split(",")[-1] == "bpf"
    assert qemu["disable_image_nvdimm"] is True  # the image is a partitioned disk on virtio-blk
    assert not {"kernel_params", "guest_hook_path", "kernel", "image"} & set(qemu["enable_annotations"])
    assert qemu["guest_hook_path"] == "/" + HOOK_PATH


@pytest.fixture
def unpacked(tmp_path: Path) -> Path:
    """Unpack the osbuilder tarball as osbuilder does, at a root of its own, with Debian's Python 3.11."""
    if not TARBALL.exists():
        pytest.fail(f"no {TARBALL}: run `make test` (it builds the guest image)")
    root = tmp_path / "guest-root"
    root.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(TARBALL), "-C", str(root)], check=True)
    (root / "usr/bin/python3").symlink_to(DEBIAN_PYTHON)  # no site-packages of Kadapter's: only what ships
    return root


def test_the_tarball_holds_the_hooks_unit_and_object_kata_needs(unpacked: Path) -> None:
    """Hooks are regular executables (kata-agent skips symlinks); the unit is wanted by kata-containers.target."""
    for kind in ("prestart", "poststop"):
        hook = unpacked / HOOK_PATH / kind / "kadapter-hook"
        assert hook.is_file() and not hook.is_symlink() and os.access(hook, os.X_OK)
    wants = unpacked / "usr/lib/systemd/system/kata-containers.target.wants/kadapter-agent.service"
    assert wants.resolve() == (unpacked / "usr/lib/systemd/system/kadapter-agent.service").resolve()
    assert (unpacked / "usr/lib/kadapter/kadapter.bpf.o").read_bytes()[:4] == b"\x7fELF"
    listing = subprocess.run(
        ["tar", "--zstd", "-tvf", str(TARBALL), "--numeric-owner"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert {line.split()[1] for line in listing} == {"0/0"}  # root's files, whoever built them
    names = [line.split()[5] for line in listing]
    assert not [name for name in names if "/etc/kadapter/tls" in name or name.endswith((".key", ".crt"))]
    assert not [name for name in names if "__pycache__" in name]


def test_the_agent_runs_from_what_the_tarball_ships(unpacked: Path) -> None:
    """Its own packages only: grpcio and protobuf beside the agent, under Debian's Python, nothing from a venv."""
    shown = subprocess.run(
        [str(unpacked / "usr/bin/kadapter-agent"), "--help"],
        env={"KADAPTER_ROOT": str(unpacked)}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "usage: kadapter-agent" in shown
    probe = "import grpc, google.protobuf, guest_agent.service as s; print(grpc.__file__, s.__file__)"
    found = subprocess.run(
        [str(unpacked / "usr/bin/python3"), "-c", probe],
        env={"PYTHONPATH": str(unpacked / "usr/lib/kadapter/python")}, cwd=unpacked,  # not this checkout
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(path.startswith(str(unpacked)) for path in found), found


@pytest.fixture
def agentless_root(unpacked: Path, tmp_path: Path) -> Iterator[Path]:
    """Make a guest root without systemd whose agent keeps inside it (hook socket, state; no vsock, no pins)."""
    run = unpacked / "run"
    options = (
        f"--hook-socket {run}/kadapter/hook.sock --grpc-socket {run}/kadapter/grpc.sock --state-dir "
        f"{run}/kadapter/state --pin-dir '' --vsock-port 0 --bpf-object {unpacked}/usr/lib/kadapter/kadapter.bpf.o"
    )
    (unpacked / "etc/default").mkdir(parents=True, exist_ok=True)
    (unpacked / "etc/default/kadapter-agent").write_text(f'KADAPTER_AGENT_OPTIONS="{options}"\n')
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    yield unpacked
    subprocess.run(["pkill", "-KILL", "-f", f"state-dir {run}/kadapter/state"], check=False)


def run_hook(root: Path, hook_type: str, bundle: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed hook as kata-agent does, with an empty environment but for the test's root."""
    state = {"ociVersion": "1.0.2", "id": "ctr1", "status": "creating", "pid": os.getpid(), "bundle": str(bundle)}
    state["annotations"] = {"io.kubernetes.cri.sandbox-name": "nginx-1", "io.kubernetes.cri.container-name": "nginx"}
    env = {"KADAPTER_ROOT": str(root), "KADAPTER_HOOK_SOCKET": str(root / "run/kadapter/hook.sock")}
    hook = root / HOOK_PATH / hook_type / "kadapter-hook"
    return subprocess.run(
        [str(hook), hook_type],
        input=json.dumps(state),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_without_systemd_the_first_prestart_starts_the_agent_once(agentless_root: Path, tmp_path: Path) -> None:
    """The hook finds no agent, starts it and registers with it; the next hook finds it running and starts none.

    This host cannot load BPF-LSM programs, so the agent it starts serves as an unprotected one: the
    registration is refused with the agent's reason, which proves the hook reached the agent it started.
    """
    first = run_hook(agentless_root, "prestart", tmp_path / "bundle")
    assert "this VM cannot enforce policies" in first.stderr, first.stderr
    log = (agentless_root / "run/kadapter/agent.log").read_text()
    time.sleep(0.5)
    second = run_hook(agentless_root, "prestart", tmp_path / "bundle")
    assert "this VM cannot enforce policies" in second.stderr, second.stderr
    assert (agentless_root / "run/kadapter/agent.log").read_text().count("UNPROTECTED") == log.count("UNPROTECTED")
    assert run_hook(agentless_root, "poststop", tmp_path / "bundle").returncode == 0


def test_with_systemd_the_hook_leaves_starting_the_agent_to_its_unit(unpacked: Path, tmp_path: Path) -> None:
    """Where systemd runs (/run/systemd/system), a hook that finds no agent fails rather than start one."""
    (unpacked / "run/systemd/system").mkdir(parents=True, exist_ok=True)
    try:
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text("{}")
        refused = run_hook(unpacked, "prestart", bundle)
    finally:
        (unpacked / "run/systemd/system").rmdir()
    assert refused.returncode == 1
    assert "agent at" in refused.stderr
    assert not (unpacked / "run/kadapter/agent.log").exists()
