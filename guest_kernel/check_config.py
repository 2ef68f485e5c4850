# SPDX-License-Identifier: Apache-2.0
"""Check a kernel .config against guest_kernel/kadapter.conf before booting Kata VMs with it.

A kernel that lacks an option fails only later and quietly (the agent
refuses to start, or BPF loading fails inside every VM), so the build
checks up front. CONFIG_LSM is checked for containing "bpf", not for
equality: distributions order their LSMs differently.

Usage: python guest_kernel/check_config.py KERNEL_CONFIG [--allow-modules]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FRAGMENT = Path(__file__).with_name("kadapter.conf")


def read_config(text: str) -> dict[str, str]:
    """Parse CONFIG_X=value lines; '# CONFIG_X is not set' means absent."""
    options = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            options[name] = value.strip('"')
    return options


def missing_options(kernel: dict[str, str], required: dict[str, str], *, allow_modules: bool) -> list[str]:
    """Return one line per required option the kernel config does not satisfy."""
    problems = []
    for name, wanted in required.items():
        have = kernel.get(name)
        if name == "CONFIG_LSM":
            if have is None or "bpf" not in have.split(","):
                problems.append(f'{name}: "bpf" missing from {have!r}')
        elif have != wanted and not (allow_modules and wanted == "y" and have == "m"):
            problems.append(f"{name}: want {wanted}, have {have or 'not set'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Print what is missing; exit 1 if anything is."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--allow-modules", action="store_true", help="accept =m where =y is asked (test guests)")
    args = parser.parse_args(argv)
    problems = missing_options(
        read_config(args.config.read_text()),
        read_config(FRAGMENT.read_text()),
        allow_modules=args.allow_modules,
    )
    for problem in problems:
        print(f"{args.config}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
