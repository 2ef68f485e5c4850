#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Start the Kadapter agent in the test guest the way a Kata guest image would,
# detached, and wait until it serves (at boot, and when a test restarts it).
# usage: start-agent.sh REPO [AGENT OPTION...]
set -u
repo=$1
shift
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH=$repo  # the agent runs from this checkout, whichever checkout the venv was installed from
log=/run/kadapter/agent.log
mkdir -p /run/kadapter "$TMPDIR"
: >"$log"
rm -f /run/kadapter/hook.sock  # a killed agent's; the new one creates it once it serves
# In the control NIC's network namespace, where its test-only TCP port is out of every container's reach.
setsid nsenter --net=/run/netns/kadapter-test "$repo/.venv/bin/kadapter-agent" --bpf-object "$repo/bpf/lsm/.output/kadapter.bpf.o" \
	--tcp-listen 0.0.0.0:50051 --tls-dir "$repo/build/tls/guest" --alerts-per-second 20 "$@" >>"$log" 2>&1 </dev/null &
agent=$!
deadline=$((SECONDS + 400))  # the verifier takes minutes on an emulated CPU
while ((SECONDS < deadline)); do
	[[ -S /run/kadapter/hook.sock ]] && exit 0
	kill -0 "$agent" 2>/dev/null || break  # it exited: its log says why
	sleep 0.1
done
echo "testguest: agent did not start"
cat "$log"
exit 1
