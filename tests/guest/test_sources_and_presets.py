"""fromSource and the presets, in a real container in the guest kernel.

fromSource narrows a rule to processes running given executables (at
exec, the program calling execve); an Allow rule with sources makes an
allow list for those processes alone. The presets guard what KubeArmor
names them for: anonymous executable memory, other processes' /proc files
and their environment.
"""

from __future__ import annotations

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.guest.support import DENIED, PolicyApplier, alert_for, alert_stream, assert_denied, nginx_policy

pytestmark = pytest.mark.guest


def test_process_rule_from_a_source_blocks_only_what_that_program_runs(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """id run by the shell is refused; id run by python, or by the shell through env, runs."""
    body = """\
  process:
    matchPaths:
    - path: /usr/bin/id
      fromSource:
      - path: /bin/sh
  action: Block
"""
    policies.apply(nginx_policy("shell-no-id", body))
    nginx = pods["nginx-1"]
    assert_denied(containers.shell(nginx, "/usr/bin/id -u || false"), "id run by dash (/bin/sh resolves to it)")
    by_python = containers.exec(nginx, ["/usr/bin/python3", "-c", "import subprocess; subprocess.run(['id', '-u'])"])
    assert by_python.stdout.strip() == "0", by_python
    assert containers.shell(nginx, "env id -u").stdout.strip() == "0"  # the caller is env, not the shell


def test_file_allow_from_a_source_is_an_allow_list_for_that_program_only(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """cat may open only /usr and /etc/hostname; head, with no rules of its own, opens anything."""
    body = """\
  file:
    matchPaths:
    - path: /etc/hostname
      fromSource:
      - path: /usr/bin/cat
    matchDirectories:
    - dir: /usr/
      recursive: true
      fromSource:
      - path: /usr/bin/cat
  action: Allow
"""
    policies.apply(nginx_policy("cat-allow-list", body))
    nginx = pods["nginx-1"]
    assert containers.shell(nginx, "cat /etc/hostname").returncode == 0
    with alert_stream(guest) as alerts:
        assert_denied(containers.shell(nginx, "cat /etc/debian_version"), "cat outside its allow list")
        alert = alert_for(alerts, "/etc/debian_version")
    assert (alert.policy_name, alert.process_name, alert.result) == ("DefaultPosture", "/usr/bin/cat", DENIED)
    assert containers.shell(nginx, "head -c 2 /etc/debian_version").stdout.strip()


def test_network_and_capability_rules_from_a_source(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """python may not open TCP sockets and chown may not use CAP_CHOWN; perl and python still can."""
    body = """\
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /usr/bin/python3
  capabilities:
    matchCapabilities:
    - capability: chown
      fromSource:
      - path: /usr/bin/chown
  action: Block
"""
    policies.apply(nginx_policy("sources", body))
    nginx = pods["nginx-1"]
    tcp = "import socket; socket.socket(); print('ok')"
    assert_denied(containers.exec(nginx, ["/usr/bin/python3", "-c", tcp]), "python3 (a link to python3.11) opening TCP")
    perl = "use Socket; socket(my $s, PF_INET, SOCK_STREAM, 0) or die $!; print qq(ok\\n)"
    assert containers.exec(nginx, ["/usr/bin/perl", "-e", perl]).stdout.strip() == "ok"
    made = containers.shell(nginx, "rm -f /tmp/src-owned && touch /tmp/src-owned && echo made")
    assert "made" in made.stdout, made
    refused = containers.shell(nginx, "chown 1 /tmp/src-owned")
    assert "Operation not permitted" in refused.stderr, refused
    by_python = containers.exec(
        nginx, ["/usr/bin/python3", "-c", "import os; os.chown('/tmp/src-owned', 1, 1); print('ok')"]
    )
    assert by_python.stdout.strip() == "ok", by_python


ANONYMOUS_EXEC = """\
import ctypes, mmap
results = []
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    results.append("mmap-ok")
except OSError as error:
    results.append(f"mmap-{error.errno}")
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
changed = libc.mprotect(ctypes.c_void_p(page), ctypes.c_size_t(4096), 5)  # PROT_READ|PROT_EXEC
results.append("mprotect-ok" if changed == 0 else f"mprotect-{ctypes.get_errno()}")
print(" ".join(results))
"""


def test_anonymous_map_exec_refuses_executable_anonymous_memory_both_ways(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """mmap with PROT_EXEC and mprotect adding it later are refused in the selected pod, allowed in the other."""
    policies.apply(nginx_policy("no-anon-exec", "  presets:\n  - name: anonymousMapExec\n    action: Block\n"))
    command = ["/usr/bin/python3", "-c", ANONYMOUS_EXEC]
    assert containers.exec(pods["nginx-1"], command).stdout.split() == ["mmap-13", "mprotect-13"]
    assert containers.exec(pods["busybox-1"], command).stdout.split() == ["mmap-ok", "mprotect-ok"]


def test_protect_env_and_proc_guard_other_processes_only(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Another process's environ is refused (protectEnv, Block); its other /proc files are audited (protectProc)."""
    body = "  presets:\n  - name: protectEnv\n    action: Block\n  - name: protectProc\n    action: Audit\n"
    policies.apply(nginx_policy("proc-guard", body))
    nginx = pods["nginx-1"]
    assert_denied(containers.shell(nginx, "cat /proc/1/environ"), "the container init's environment")
    assert_denied(containers.shell(nginx, "cd /proc/1 && cat ./environ"), "by a relative name")
    own = containers.shell(nginx, "env PROBE=1 cat /proc/self/environ")
    assert "PROBE=1" in own.stdout, own
    with alert_stream(guest) as alerts:
        status = containers.shell(nginx, "cat /proc/1/status")
        alert = alert_for(alerts, "/proc/1/status")
    assert "Name:" in status.stdout, status
    assert (alert.policy_name, alert.result) == ("proc-guard", "Passed")
    assert "another process's /proc file" in alert.data
