#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build Kadapter's Kata guest image from Debian packages and PyPI.
#   OUTDIR/kadapter-guest.img            a disk with one ext4 partition: Debian bookworm (minbase), systemd,
#                                        Python and Kadapter; Kata's `image =` (root=/dev/vda1)
#   OUTDIR/kadapter-guest-hooks.tar.zst  Kadapter's files alone, for osbuilder's GUEST_HOOKS_TARBALL
#                                        (with EXTRA_PKGS="python3-minimal libpython3.11-stdlib libbpf1")
# With --test the disk also carries what the tests drive it with (runc, the command service, the
# test guest's credentials and a TCP port for the agent); the tarball is the same either way.
# Debian packages and wheels are cached under build/cache, so a rebuild of a checkout downloads nothing.
# usage: build.sh OUTDIR [--test]     (idempotent: does nothing when OUTDIR is complete)
set -euo pipefail

out=$(realpath -m "${1:?usage: build.sh OUTDIR [--test]}")
variant=${2:-}
here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
[[ -s $out/kadapter-guest.img && -s $out/kadapter-guest-hooks.tar.zst ]] && exit 0

suite=bookworm
mirror=http://deb.debian.org/debian
packages=python3-minimal,libpython3.11-stdlib,libbpf1,systemd,util-linux
[[ $variant == --test ]] && packages+=,runc,iproute2
cache=$repo/build/cache
mkdir -p "$cache/debs" "$cache/wheels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Kadapter's files, as they lie in the guest's root.
stage=$work/kadapter
lib=$stage/usr/lib/kadapter
mkdir -p "$lib/python" "$stage/usr/bin" "$stage/usr/lib/systemd/system/kata-containers.target.wants"
# The agent needs grpcio and protobuf (and what they need), at the versions its generated code was made with.
pins=$("$repo/.venv/bin/python" -m pip freeze | grep -iE '^(grpcio|protobuf)==')
wheel_for=(--only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp
	--abi cp311 --abi abi3)
# shellcheck disable=SC2086 # one requirement per word
"$repo/.venv/bin/python" -m pip download -q "${wheel_for[@]}" --dest "$cache/wheels" $pins
# shellcheck disable=SC2086
"$repo/.venv/bin/python" -m pip install -q "${wheel_for[@]}" --no-index --find-links "$cache/wheels" \
	--no-compile --target "$lib/python" $pins
(cd "$repo" && find guest_agent kadapter_api -name '*.py' -not -name '*_pb2.pyi' | cpio -pdm --quiet "$lib/python")
rm -rf "$lib/python/bin" "$lib/python"/*.dist-info/RECORD
find "$lib/python" \( -name '__pycache__' -o -name '*.pyi' -o -name 'tests' \) -prune -exec rm -rf {} +
install -m 0644 "$repo/bpf/lsm/.output/kadapter.bpf.o" "$lib/kadapter.bpf.o"
install -m 0755 "$here/kadapter-agent" "$stage/usr/bin/kadapter-agent"
install -m 0755 "$here/start-agent" "$lib/start-agent"
for kind in prestart poststop; do  # regular executable files: kata-agent skips symlinks
	install -D -m 0755 "$here/kadapter-hook" "$stage/usr/share/oci/hooks/$kind/kadapter-hook"
done
install -m 0644 "$here/kadapter-agent.service" "$stage/usr/lib/systemd/system/kadapter-agent.service"
ln -s ../kadapter-agent.service "$stage/usr/lib/systemd/system/kata-containers.target.wants/kadapter-agent.service"
mkdir -p "$out"
tar --zstd --owner=0 --group=0 -C "$stage" -cf "$out/kadapter-guest-hooks.tar.zst.tmp" .

# The test variant's additions, which the production disk must not carry.
extra=$work/test
if [[ $variant == --test ]]; then
	mkdir -p "$extra/usr/lib/kadapter-test" "$extra/etc/default" "$extra/etc/kadapter/tls" \
		"$extra/usr/lib/systemd/system/kata-containers.target.wants" "$extra/etc/systemd/system/kadapter-agent.service.d"
	install -m 0644 "$repo/images/testguest/testctl.py" "$extra/usr/lib/kadapter-test/testctl.py"
	install -m 0755 "$repo/images/testguest/control-network.sh" "$extra/usr/lib/kadapter-test/control-network.sh"
	for unit in kadapter-testctl.service kadapter-test-network.service; do
		install -m 0644 "$here/test/$unit" "$extra/usr/lib/systemd/system/"
		ln -s "../$unit" "$extra/usr/lib/systemd/system/kata-containers.target.wants/"
	done
	install -m 0644 "$here/test/kadapter-agent-test.conf" "$extra/etc/systemd/system/kadapter-agent.service.d/test.conf"
	install -m 0644 "$here/test/kadapter-agent.default" "$extra/etc/default/kadapter-agent"
	install -m 0400 "$repo"/build/tls/guest/* "$extra/etc/kadapter/tls/"
fi

root=$work/root
# Debian packages: the cache in, then what was downloaded back out; docs, manuals and locales never land.
mmdebstrap --quiet --variant=minbase --include="$packages" --skip=download/empty \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && cp -a '$cache/debs/.' \"\$1/var/cache/apt/archives/\"" \
	--customize-hook="cp -a \"\$1\"/var/cache/apt/archives/*.deb '$cache/debs/'" \
	--customize-hook="rm -rf \"\$1\"/var/cache/apt/archives/*.deb \"\$1\"/var/lib/apt/lists/*" \
	--customize-hook="cp -a '$stage/.' \"\$1/\"" \
	--customize-hook="[ ! -d '$extra' ] || cp -a '$extra/.' \"\$1/\"" \
	--customize-hook="install -m 0644 '$here/kata-containers.target' \"\$1/usr/lib/systemd/system/\"" \
	--customize-hook="echo kadapter-guest >\"\$1/etc/hostname\"" \
	"$suite" "$root" "$mirror"

# One partition, as Kata's own images have (root=/dev/vda1 once image nvdimm is off, see deploy/kata).
size_mb=$(($(du -sm "$root" | cut -f1) * 5 / 4 + 32))
mkfs.ext4 -q -L kadapter-root -d "$root" "$work/root.ext4" "${size_mb}M"
truncate -s $((size_mb + 1))M "$out/kadapter-guest.img.tmp"
echo 'start=2048, type=83' | sfdisk -q "$out/kadapter-guest.img.tmp"
dd if="$work/root.ext4" of="$out/kadapter-guest.img.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
mv "$out/kadapter-guest-hooks.tar.zst.tmp" "$out/kadapter-guest-hooks.tar.zst"
mv "$out/kadapter-guest.img.tmp" "$out/kadapter-guest.img"
echo "kadapter guest image: $out/kadapter-guest.img (${size_mb} MiB filesystem, $(du -sh --apparent-size "$root" | cut -f1) of files)"
