#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Add Kadapter's fragment to a Kata Containers checkout, so that Kata's own kernel build
# (tools/packaging/kernel/build-kernel.sh) produces a guest kernel with BTF and the BPF LSM.
# The fragment goes with Kata's common fragments, which build-kernel.sh merges for every
# architecture, and kata_config_version is bumped once, as Kata asks of any config change, so
# that the new kernel gets a name of its own. Running it again changes nothing.
# usage: add-to-kata.sh KATA_CHECKOUT
set -euo pipefail
kata=$(realpath "${1:?usage: add-to-kata.sh KATA_CHECKOUT}")
here=$(dirname "$(realpath "$0")")
kernel=$kata/tools/packaging/kernel
fragments=$kernel/configs/fragments/common
[[ -d $fragments && -f $kernel/kata_config_version ]] || {
	echo "add-to-kata.sh: $kata is not a Kata Containers checkout (no $fragments)" >&2
	exit 1
}
if cmp -s "$here/kadapter.conf" "$fragments/kadapter.conf"; then
	echo "add-to-kata.sh: $fragments/kadapter.conf is already current"
	exit 0
fi
install -m 0644 "$here/kadapter.conf" "$fragments/kadapter.conf"
version=$(($(cat "$kernel/kata_config_version") + 1))
echo "$version" >"$kernel/kata_config_version"
echo "added $fragments/kadapter.conf (kata_config_version $version); now build with Kata's own script:"
echo "  cd $kernel && ./build-kernel.sh setup && ./build-kernel.sh build && ./build-kernel.sh install"
