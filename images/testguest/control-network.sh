#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Give the test guest's control NIC (the one QEMU forwards the host-side tests' connections to, see
# vm.py) a network namespace of its own, where only the test-only services listen: the command
# service and the agent's TCP port. The guest's containers share its root network namespace, as
# in Kata (where its pod NIC stays), and so can never reach either.
# usage: control-network.sh  (as root, once per boot)
set -eu
mac=52:54:00:4b:41:01    # vm.py's CONTROL_MAC
namespace=kadapter-test  # /run/netns/kadapter-test
nic=
for device in /sys/class/net/*; do
	[ "$(cat "$device/address")" = "$mac" ] && nic=${device##*/}
done
[ -n "$nic" ] || { echo "control-network: no NIC with MAC $mac" >&2; exit 1; }
ip netns add "$namespace"
ip link set "$nic" netns "$namespace"
ip -n "$namespace" link set lo up
ip -n "$namespace" link set "$nic" up
ip -n "$namespace" addr add 10.0.3.15/24 dev "$nic"
