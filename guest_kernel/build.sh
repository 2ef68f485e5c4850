#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A small Kata-like guest kernel with BTF and the BPF LSM, from Debian's kernel source package:
# x86_64_defconfig + kvm_guest.config + guest_kernel/base.conf + guest_kernel/kadapter.conf, merged
# the way Kata's build-kernel.sh merges its fragments, and refused if any requested symbol did not
# survive the merge (Kata's build fails the same way) or if check_config.py finds one missing.
#   build.sh OUTDIR                  configure and compile: OUTDIR/vmlinuz, OUTDIR/config (make guest-kernel)
#   build.sh --config-only OUTDIR    configure only: OUTDIR/config (CI: the fragment still merges)
# The source is unpacked once under build/cache (Kconfig files and scripts alone for --config-only).
set -euo pipefail

config_only=false
if [[ ${1:-} == --config-only ]]; then
	config_only=true
	shift
fi
out=$(realpath -m "${1:?usage: build.sh [--config-only] OUTDIR}")
here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/..")
version=6.1
cache=${KADAPTER_CACHE:-$repo/build/cache}  # tests point copies of this script at the same cache
src=$cache/linux-source-$version
started=$(date +%s)

unpack() {  # unpack the parts of Debian's source tarball matching the patterns, once
	local stamp=$src/.unpacked-$1
	shift
	[[ -e $stamp || -e $src/.unpacked-all ]] && return
	mkdir -p "$cache"
	if [[ ! -s $cache/linux-source-$version.deb ]]; then
		(cd "$cache" && apt-get download -q "linux-source-$version" >/dev/null 2>&1 ||
			{ apt-get update -q >/dev/null && apt-get download -q "linux-source-$version" >/dev/null; })
		mv "$cache"/linux-source-"$version"_*_all.deb "$cache/linux-source-$version.deb"
	fi
	dpkg-deb --fsys-tarfile "$cache/linux-source-$version.deb" | tar -x --wildcards '*.tar.xz' -O |
		tar -xJ -C "$cache" --wildcards "$@"
	touch "$stamp"
}
if $config_only; then
	unpack kconfig "linux-source-$version/Makefile" "linux-source-$version/scripts/*" \
		"linux-source-$version/*Kconfig*" "linux-source-$version/arch/x86/configs/*" \
		"linux-source-$version/kernel/configs/*" "linux-source-$version/arch/x86/Makefile*" \
		"linux-source-$version/include/*" "linux-source-$version/arch/x86/include/*"
else
	unpack all "linux-source-$version/*"
fi

obj=$out/obj
mkdir -p "$obj"
merged=$(cd "$src" && ARCH=x86_64 scripts/kconfig/merge_config.sh -O "$obj" arch/x86/configs/x86_64_defconfig \
	kernel/configs/kvm_guest.config "$here/base.conf" "$here/kadapter.conf" 2>&1)
# Only our fragments' symbols count: the generic kvm_guest.config also asks for other architectures'.
ours=$(grep -ohE '^(# )?CONFIG_[A-Z0-9_]+' "$here/base.conf" "$here/kadapter.conf" | sed 's/^# //' | sort -u)
dropped=$(sed -n 's/^Value requested for \(CONFIG_[A-Z0-9_]*\) not in final .config$/\1/p' <<<"$merged" | sort -u)
if lost=$(comm -12 <(echo "$ours") <(echo "$dropped")) && [[ -n $lost ]]; then
	echo "build.sh: the merge dropped requested symbols (a dependency is missing):" >&2
	grep -A2 -F -f <(sed 's/$/ not in final/' <<<"$lost") <<<"$merged" >&2
	exit 1
fi
python3 "$here/check_config.py" "$obj/.config"
cp "$obj/.config" "$out/config"
if ! $config_only; then
	nice -n 10 make -s -C "$src" O="$obj" ARCH=x86_64 -j"$(nproc)" bzImage
	cp "$obj/arch/x86/boot/bzImage" "$out/vmlinuz"
fi
echo "guest kernel $($config_only && echo configuration || echo build) in $(($(date +%s) - started)) s: $out"
