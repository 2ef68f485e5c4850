"""The system call table the agent and the host share: names as KubeArmor's CRD lists them, numbers as the kernel's."""

from __future__ import annotations

import re
from pathlib import Path

from adapter.schema import crds
from kadapter_api.syscalls import NUMBERS, PATH_ARGUMENTS

UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")  # linux-libc-dev, installed with clang


def test_numbers_are_the_x86_64_kernel_abi() -> None:
    """Every name has the number the kernel's own header gives it."""
    header = dict(re.findall(r"#define __NR_(\w+) (\d+)", UNISTD_64.read_text()))
    assert {name: int(header[name]) for name in NUMBERS} == NUMBERS


def test_names_are_those_the_crd_accepts() -> None:
    """The table names exactly the calls KubeArmor's schema lets a policy name."""
    schema = crds()["KubeArmorPolicy"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    syscalls = schema["properties"]["spec"]["properties"]["syscalls"]["properties"]
    assert set(syscalls["matchSyscalls"]["items"]["properties"]["syscall"]["items"]["enum"]) == set(NUMBERS)


def test_path_arguments_are_within_the_arguments_read() -> None:
    """The kernel side reads arguments 0 to 4; each path and directory fd is one of them, and differ."""
    for name, argument in PATH_ARGUMENTS.items():
        assert 0 <= argument.path <= 4, name
        assert argument.dirfd is None or (0 <= argument.dirfd <= 4 and argument.dirfd != argument.path), name
