#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install the Debian packages Kadapter builds and tests with, when missing.
# clang/llvm/libbpf/bpftool build the BPF-LSM object; qemu, busybox and cpio
# build and boot the test guest; runc starts containers inside it; gcc and
# libc6-dev build the static benchmark programs (make bench); mmdebstrap, e2fsprogs,
# fdisk and zstd build the Kata guest image (make guest-image); flex, bison, bc and dwarves
# (pahole) configure the guest kernel, libelf-dev and libssl-dev build it (make guest-kernel).
set -euo pipefail
packages=(clang llvm libbpf-dev libbpf1 bpftool qemu-system-x86 busybox-static cpio runc make gcc libc6-dev
	mmdebstrap e2fsprogs fdisk zstd flex bison bc dwarves libelf-dev libssl-dev)
missing=()
for package in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
