#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Stage 2 of the test guest, running in the host root (read-only 9p) as the
# guest's userland: start the Kadapter agent the way a Kata guest image would,
# plus the test-only command service (both listening in the control NIC's
# network namespace only), then report readiness on the console.
set -u
repo=$1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1
mkdir -p "$TMPDIR"
cd /run
echo "testguest: lsm=$(cat /sys/kernel/security/lsm)"
venv=$repo/.venv
"$repo/images/testguest/control-network.sh" || exit 1
"$repo/images/testguest/start-agent.sh" "$repo"
# The command service answering is the host's signal that the guest is ready.
nsenter --net=/run/netns/kadapter-test "$venv/bin/python" "$repo/images/testguest/testctl.py" 50052 &
echo "testguest: ready"
wait
