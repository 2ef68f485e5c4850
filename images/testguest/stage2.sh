#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Stage 2 of the test guest, running in the host root (read-only 9p) as the
# guest's userland: start the Kadapter agent the way a Kata guest image would,
# plus the test-only command service, then report readiness on the console.
set -u
repo=$1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1
mkdir -p "$TMPDIR"
cd /run
echo "testguest: lsm=$(cat /sys/kernel/security/lsm)"
venv=$repo/.venv
export PYTHONPATH=$repo  # the agent runs from this checkout, whichever checkout the venv was installed from
mkdir -p /run/kadapter
"$venv/bin/kadapter-agent" --bpf-object "$repo/bpf/lsm/.output/kadapter.bpf.o" \
	--tcp-listen 0.0.0.0:50051 --alerts-per-second 20 >/run/kadapter/agent.log 2>&1 &
for _ in $(seq 600); do
	[[ -S /run/kadapter/hook.sock ]] && break
	sleep 0.1
done
[[ -S /run/kadapter/hook.sock ]] || { echo "testguest: agent did not start"; cat /run/kadapter/agent.log; }
# The command service answering is the host's signal that the guest is ready.
"$venv/bin/python" "$repo/images/testguest/testctl.py" 50052 &
echo "testguest: ready"
wait
