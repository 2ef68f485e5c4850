"""The kernel fragment against a real Kconfig: it merges with nothing dropped, and Kata's build takes it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "guest_kernel" / "build.sh"
CACHE = REPO / "build" / "cache"  # Debian's kernel source, unpacked once for every run of this checkout


def configure(script: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Merge the fragments into x86_64_defconfig + kvm_guest.config with Linux 6.1's Kconfig, as build.sh does."""
    return subprocess.run(
        [str(script), "--config-only", str(out)],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KADAPTER_CACHE": str(CACHE)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_fragment_merges_with_every_requested_symbol_kept(tmp_path: Path) -> None:
    """The merged configuration has BTF, the BPF LSM last in lsm=, the hooks' prerequisites and the guest's drivers."""
    merged = configure(BUILD, tmp_path)
    assert merged.returncode == 0, merged.stderr
    config = (tmp_path / "config").read_text().splitlines()
    for wanted in ("CONFIG_DEBUG_INFO_BTF=y", "CONFIG_BPF_LSM=y", "CONFIG_SECURITY_PATH=y", "CONFIG_VIRTIO_BLK=y"):
        assert wanted in config
    (lsm,) = [line for line in config if line.startswith("CONFIG_LSM=")]
    assert lsm.endswith(',bpf"')


def test_a_symbol_the_merge_drops_fails_the_build(tmp_path: Path) -> None:
    """A request whose dependencies cannot hold (an s390 option on x86) is named, and nothing is built."""
    copy = tmp_path / "guest_kernel"
    shutil.copytree(REPO / "guest_kernel", copy)
    with (copy / "kadapter.conf").open("a") as fragment:
        fragment.write("CONFIG_S390_GUEST=y\n")
    merged = configure(copy / "build.sh", tmp_path / "out")
    assert merged.returncode == 1
    assert "dropped requested symbols" in merged.stderr
    assert "Value requested for CONFIG_S390_GUEST not in final .config" in merged.stderr
    assert not (tmp_path / "out" / "config").exists()


@pytest.fixture
def kata_checkout(tmp_path: Path) -> Path:
    """Lay out the part of a Kata Containers checkout that its kernel build reads fragments from."""
    kernel = tmp_path / "kata" / "tools" / "packaging" / "kernel"
    (kernel / "configs" / "fragments" / "common").mkdir(parents=True)
    (kernel / "configs" / "fragments" / "common" / "fs.conf").write_text("CONFIG_EXT4_FS=y\n")
    (kernel / "kata_config_version").write_text("202\n")
    return tmp_path / "kata"


def test_add_to_kata_puts_the_fragment_with_kata_s_common_ones_once(kata_checkout: Path) -> None:
    """The fragment lands beside Kata's own, the config version moves on once; a second run changes nothing."""
    add = [str(REPO / "guest_kernel" / "add-to-kata.sh"), str(kata_checkout)]
    kernel = kata_checkout / "tools" / "packaging" / "kernel"
    for _ in range(2):
        subprocess.run(add, capture_output=True, check=True)
        assert (kernel / "configs/fragments/common/kadapter.conf").read_bytes() == (
            REPO / "guest_kernel" / "kadapter.conf"
        ).read_bytes()
        assert (kernel / "kata_config_version").read_text() == "203\n"


def test_add_to_kata_refuses_a_directory_that_is_no_kata_checkout(tmp_path: Path) -> None:
    """Nothing is written, and the message says what was looked for."""
    refused = subprocess.run(
        [str(REPO / "guest_kernel" / "add-to-kata.sh"), str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "is not a Kata Containers checkout" in refused.stderr
    assert list(tmp_path.iterdir()) == []
