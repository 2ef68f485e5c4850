"""The guest kernel check accepts the test guest's real kernel and names what a deficient one lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from guest_kernel.check_config import FRAGMENT, main, missing_options, read_config

TEST_GUEST_CONFIG = Path(__file__).resolve().parents[2] / "build" / "testguest" / "config"
REQUIRED = read_config(FRAGMENT.read_text())


def test_test_guest_kernel_satisfies_the_fragment() -> None:
    """Debian's kernel, which the guest tests boot, has every option (vsock as modules, loaded by init)."""
    assert main([str(TEST_GUEST_CONFIG), "--allow-modules"]) == 0
    assert missing_options(read_config(TEST_GUEST_CONFIG.read_text()), REQUIRED, allow_modules=False) == [
        "CONFIG_VSOCKETS: want y, have m",
        "CONFIG_VIRTIO_VSOCKETS: want y, have m",
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(("CONFIG_BPF_LSM", None), "CONFIG_BPF_LSM: want y, have not set", id="no-bpf-lsm"),
        pytest.param(("CONFIG_DEBUG_INFO_BTF", None), "CONFIG_DEBUG_INFO_BTF: want y, have not set", id="no-btf"),
        pytest.param(("CONFIG_LSM", "landlock,yama,selinux"), 'CONFIG_LSM: "bpf" missing', id="lsm-order"),
    ],
)
def test_stock_kata_gaps_are_named(change: tuple[str, str | None], problem: str) -> None:
    """What Kata's stock kernel lacks (BTF, BPF_LSM, bpf in LSM) is reported by name."""
    kernel = dict(REQUIRED)
    name, value = change
    if value is None:
        del kernel[name]
    else:
        kernel[name] = value
    problems = missing_options(kernel, REQUIRED, allow_modules=False)
    assert len(problems) == 1 and problems[0].startswith(problem)
