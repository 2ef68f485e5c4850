#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the Kadapter test guest from Debian packages: Debian's BTF + BPF-LSM
# kernel and a busybox initramfs that mounts the host root over 9p.
# Usage: build.sh OUTDIR     (idempotent: does nothing when OUTDIR is complete)
set -euo pipefail

out=$(realpath -m "${1:?usage: build.sh OUTDIR}")
here=$(dirname "$(realpath "$0")")
[[ -s $out/vmlinuz && -s $out/initramfs.cpio.gz ]] && exit 0

# The kernel package that linux-image-amd64 points at today (a fresh machine's lists may be empty).
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n 1
}
pkg=$(kernel_package)
[[ -n $pkg ]] || { apt-get update -q >/dev/null && pkg=$(kernel_package); }
[[ -n $pkg ]] || { echo "build.sh: cannot resolve linux-image-amd64" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1)
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/pkg"

root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$root/bin/busybox"
cp "$here/init" "$here/modules.order" "$root/"
while read -r mod; do
	find "$work/pkg/lib/modules" -name "$mod.ko" -exec cp {} "$root/modules/" \;
	[[ -s $root/modules/$mod.ko ]] || { echo "build.sh: module $mod not in $pkg" >&2; exit 1; }
done <"$here/modules.order"

python3 "$here/../../guest_kernel/check_config.py" --allow-modules "$work"/pkg/boot/config-*

mkdir -p "$out"
cp "$work"/pkg/boot/config-* "$out/config"
cp "$work"/pkg/boot/vmlinuz-* "$out/vmlinuz.tmp"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initramfs.cpio.gz.tmp"
echo "$pkg" >"$out/kernel-package"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
