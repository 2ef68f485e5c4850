"""Process rules enforced by BPF-LSM in the guest kernel, on real programs in real namespaced containers."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pytest

from adapter.exporter import AgentClient
from adapter.transport import parse_agent_url
from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.credentials import ADAPTER_DIR, adapter_identity
from tests.guest.support import (
    DENIED,
    MANIFESTS,
    NGINX,
    PolicyApplier,
    alert_stream,
    assert_denied,
    init_pid,
    kadapter,
    paths,
    process_policy,
)

pytestmark = pytest.mark.guest

AUDIT_NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: default
  annotations:
    kubearmor-file-posture: audit
"""
BLOCK_APT = process_policy(name="block-apt", rules=paths("/usr/bin/apt"))
# Map a file readable, then ask for PROT_EXEC; print the errno (0: allowed).
MPROTECT_LATER = (
    "import ctypes, mmap, os; libc = ctypes.CDLL(None, use_errno=True); libc.mmap.restype = ctypes.c_void_p; "
    "libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long); "
    "fd = os.open('{path}', os.O_RDONLY); address = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0); "
    "libc.mprotect(ctypes.c_void_p(address), 4096, mmap.PROT_READ | mmap.PROT_EXEC); print(ctypes.get_errno())"
)


def test_apt_is_denied_in_selected_pod_and_other_programs_run(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """The use case: apt fails with Permission denied in the nginx pod; ls and cat still run."""
    policies.apply(BLOCK_APT)
    nginx = pods["nginx-1"]
    assert_denied(containers.exec(nginx, ["/usr/bin/apt", "--version"]), "apt")
    listing = containers.exec(nginx, ["/bin/ls", "/usr/bin/apt"])
    assert listing.returncode == 0 and listing.stdout.strip() == "/usr/bin/apt", listing
    cat = containers.exec(nginx, ["/bin/cat", "/etc/debian_version"])
    assert cat.returncode == 0 and cat.stdout.strip(), cat


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("ln -sf /usr/bin/apt /tmp/pkg && /tmp/pkg --version", id="symlink"),
        pytest.param("cd /usr/bin && ./apt --version", id="relative-path"),
        pytest.param("cd /usr/share && ../bin/apt --version", id="dot-dot-path"),
        pytest.param("exec 3</usr/bin/apt && /proc/self/fd/3 --version", id="proc-self-fd"),
        pytest.param("/usr/bin/env apt --version", id="via-env-PATH"),
        pytest.param("/bin/sh -c '/usr/bin/apt --version'", id="nested-shell"),
        pytest.param("printf '#!/usr/bin/apt\\n' >/tmp/s && chmod +x /tmp/s && /tmp/s", id="as-script-interpreter"),
    ],
)
def test_bypasses_of_a_blocked_path_are_denied(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """Other names for the blocked file reach the same file object and are denied too."""
    policies.apply(BLOCK_APT)
    assert_denied(containers.shell(pods["nginx-1"], script), script)


def test_unlinked_blocked_binary_is_still_denied(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Open, unlink, exec /proc/self/fd/N: the kernel's "(deleted)" name still matches the rule."""
    policies.apply(process_policy(name="block-tool", rules=paths("/tmp/unlink/tool")))
    nginx = pods["nginx-1"]
    setup = containers.shell(nginx, "mkdir -p /tmp/unlink && cp /usr/bin/id /tmp/unlink/tool")
    assert setup.returncode == 0, setup
    assert_denied(containers.shell(nginx, "/tmp/unlink/tool"), "tool")
    script = "exec 3</tmp/unlink/tool && rm /tmp/unlink/tool && /proc/self/fd/3"
    assert_denied(containers.shell(nginx, script), "unlinked tool via /proc/self/fd")
    decoy = containers.shell(nginx, "cp /usr/bin/id '/tmp/unlink/tool (deleted)' && '/tmp/unlink/tool (deleted)'")
    assert decoy.returncode == 0 and decoy.stdout.startswith("uid="), decoy


def test_loaders_cannot_map_a_blocked_binary_executable(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """ld.so run as a program, a PROT_EXEC mapping or mprotect() adding PROT_EXEC: not for the blocked file."""
    policies.apply(BLOCK_APT)
    nginx = pods["nginx-1"]
    via_loader = containers.exec(nginx, ["/lib64/ld-linux-x86-64.so.2", "/usr/bin/apt", "--version"])
    assert via_loader.returncode != 0 and "failed to map segment" in via_loader.stderr, via_loader
    assert "apt 2" not in via_loader.stdout
    other = containers.exec(nginx, ["/lib64/ld-linux-x86-64.so.2", "/bin/ls", "/usr/bin/apt"])
    assert other.returncode == 0 and "/usr/bin/apt" in other.stdout, other
    mapping = (
        "import mmap; f = open('/usr/bin/apt', 'rb'); mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ | mmap.PROT_EXEC)"
    )
    assert_denied(containers.exec(nginx, ["/usr/bin/python3", "-c", mapping]), "mmap PROT_EXEC")
    for path, errno_seen in (("/usr/bin/apt", "13"), ("/usr/bin/id", "0")):
        later = containers.exec(nginx, ["/usr/bin/python3", "-c", MPROTECT_LATER.format(path=path)])
        assert later.stdout.split() == [errno_seen], f"mprotect PROT_EXEC of {path}: {later}"


def test_apt_runs_outside_the_container_and_in_an_unselected_pod(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """The policy is scoped by namespace key: the guest root and the busybox pod are untouched."""
    policies.apply(BLOCK_APT)
    assert_denied(containers.exec(pods["nginx-1"], ["/usr/bin/apt", "--version"]), "apt in nginx")
    outside = guest.run(["/usr/bin/apt", "--version"])
    assert outside.returncode == 0 and outside.stdout.startswith("apt "), outside
    other = containers.exec(pods["busybox-1"], ["/usr/bin/apt", "--version"])
    assert other.returncode == 0 and other.stdout.startswith("apt "), other


def test_audit_lets_apt_run_and_the_host_gets_an_alert(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """With action Audit apt runs, and an alert naming pod, container, policy and binary reaches the host."""
    policies.apply(process_policy(name="audit-apt", rules=paths("/usr/bin/apt"), action="Audit"))
    with alert_stream(guest) as alerts:
        ran = containers.exec(pods["nginx-1"], ["/usr/bin/apt", "--version"])
        assert ran.returncode == 0 and ran.stdout.startswith("apt "), ran
        alert = alerts.get(timeout=60)
    assert (alert.namespace_name, alert.pod_name, alert.container_name) == ("default", "nginx-1", "nginx")
    assert alert.container_id == pods["nginx-1"]
    assert alert.policy_name == "audit-apt"
    assert alert.resource == "/usr/bin/apt"
    assert alert.result == "Passed" and alert.enforcer == "BPFLSM" and alert.operation == "Process"
    assert alert.severity == 7 and list(alert.tags) == ["test"]


def test_block_alert_reaches_the_host(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """A denied exec is reported as Permission denied with the policy that blocked it."""
    policies.apply(BLOCK_APT)
    alerts: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: alerts.put(
            kadapter("alerts", "--agent", f"tcp://{guest.agent_target}", "--tls-dir", str(ADAPTER_DIR), "--count", "1")
        ),
        daemon=True,
    ).start()
    guest.run(["sleep", "3"])  # the CLI starts and subscribes
    assert_denied(containers.exec(pods["nginx-1"], ["/usr/bin/apt", "--version"]), "apt")
    printed = alerts.get(timeout=90)
    assert printed.returncode == 0, printed.stderr
    alert = json.loads(printed.stdout)
    assert alert["policy_name"] == "block-apt" and alert["result"] == DENIED
    assert alert["resource"] == "/usr/bin/apt" and alert["action"] == "ACTION_BLOCK"


def test_allow_list_denies_everything_else(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Allowing only /bin/ls and the shell turns process rules into an allow list for that container."""
    policies.apply(process_policy(name="only-ls", rules=paths("/bin/ls", "/bin/sh"), action="Allow"))
    nginx = pods["nginx-1"]
    listing = containers.shell(nginx, "/bin/ls /usr/bin/apt")
    assert listing.returncode == 0 and "/usr/bin/apt" in listing.stdout, listing
    assert_denied(containers.exec(nginx, ["/bin/cat", "/etc/hostname"]), "cat")
    assert_denied(containers.shell(nginx, "/usr/bin/id"), "id via sh")
    assert_denied(containers.exec(nginx, ["/usr/bin/apt", "--version"]), "apt")
    other = containers.exec(pods["busybox-1"], ["/bin/cat", "/etc/debian_version"])
    assert other.returncode == 0, other


def test_audit_posture_reports_instead_of_blocking(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str], tmp_path: Path
) -> None:
    """With kubearmor-file-posture: audit on the namespace, execs outside the allow list run and are reported."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "pods.yaml").write_text((MANIFESTS / "pods.yaml").read_text())
    (manifests / "namespace.yaml").write_text(AUDIT_NAMESPACE)
    policies.apply(process_policy(name="only-ls", rules=paths("/bin/ls"), action="Allow"), manifests=manifests)
    with alert_stream(guest) as alerts:
        cat = containers.exec(pods["nginx-1"], ["/bin/cat", "/etc/debian_version"])
        assert cat.returncode == 0 and cat.stdout.strip(), cat
        alert = alerts.get(timeout=60)
    assert alert.policy_name == "DefaultPosture" and alert.result == "Passed"
    assert alert.resource == "/usr/bin/cat" and alert.pod_name == "nginx-1"


def test_empty_policy_set_restores_exec(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """Pushing an empty set (the policy file removed) lifts enforcement."""
    policies.apply(BLOCK_APT)
    assert_denied(containers.exec(pods["nginx-1"], ["/usr/bin/apt", "--version"]), "apt")
    policies.apply()
    ran = containers.exec(pods["nginx-1"], ["/usr/bin/apt", "--version"])
    assert ran.returncode == 0 and ran.stdout.startswith("apt "), ran


def test_container_created_after_the_policy_is_denied_from_its_first_exec(
    policies: PolicyApplier, containers: GuestContainers
) -> None:
    """The prestart hook registers the container before its workload's first exec."""
    policies.apply(BLOCK_APT)
    first = containers.run_once("nginx-late", NGINX, ["/usr/bin/apt", "--version"])
    assert_denied(first, "apt as the container's first exec")
    allowed = containers.run_once("nginx-late-ls", NGINX, ["/bin/ls", "/usr/bin/apt"])
    assert allowed.returncode == 0 and "/usr/bin/apt" in allowed.stdout, allowed


def test_poststop_removes_the_containers_map_entries(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers
) -> None:
    """After the container is deleted, its key is gone from the kernel map and from the agent's status."""
    policies.apply(BLOCK_APT)
    containers.start("nginx-short", NGINX)
    with AgentClient(parse_agent_url(f"tcp://{guest.agent_target}"), identity=adapter_identity()) as client:
        entry = next(c for c in client.status().containers if c.id == "nginx-short")
        assert entry.process_rules >= 1
        assert _kernel_has_container(guest, entry.pid_ns, entry.mnt_ns)
        containers.delete("nginx-short")
        assert "nginx-short" not in {c.id for c in client.status().containers}
    assert not _kernel_has_container(guest, entry.pid_ns, entry.mnt_ns)


def test_a_late_poststop_does_not_lift_a_container_that_holds_recycled_namespace_ids(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers
) -> None:
    """Namespace ids are recycled: after B registers with A's ids, A's late poststop leaves B enforced."""
    policies.apply(BLOCK_APT)
    containers.start("nginx-a", NGINX)
    pid = init_pid(guest, "nginx-a")
    bundle = "/run/bundles/nginx-a"
    hook = [str(guest.repo / ".venv" / "bin" / "kadapter-hook")]
    # B: a new container whose init holds the (pid ns, mnt ns) ids A had, registered before A's poststop.
    state_b = json.dumps({"ociVersion": "1.0.2", "id": "nginx-b", "pid": pid, "bundle": bundle})
    assert guest.run([*hook, "prestart"], stdin=state_b).returncode == 0
    late = guest.run([*hook, "poststop"], stdin=json.dumps({"ociVersion": "1.0.2", "id": "nginx-a", "bundle": bundle}))
    assert late.returncode == 0, late
    try:
        assert_denied(containers.exec("nginx-a", ["/usr/bin/apt", "--version"]), "apt joining through setns")
        assert_denied(containers.shell("nginx-a", "unshare -U -m /usr/bin/apt --version"), "apt in new namespaces")
    finally:
        guest.run([*hook, "poststop"], stdin=json.dumps({"ociVersion": "1.0.2", "id": "nginx-b", "bundle": bundle}))
        containers.delete("nginx-a")


def _kernel_has_container(guest: TestGuest, pid_ns: int, mnt_ns: int) -> bool:
    """Read the live `container_ns` BPF map (namespaces -> container id) with bpftool."""
    dump = guest.run(["bpftool", "-j", "map", "dump", "name", "container_ns"])
    assert dump.returncode == 0, dump
    return any(item["formatted"]["key"] == {"pid_ns": pid_ns, "mnt_ns": mnt_ns} for item in json.loads(dump.stdout))


def test_a_noisy_container_is_rate_limited_in_the_kernel(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """300 blocked execs in a burst: each is denied, at most the budget (20/s here) is sent, the rest counted."""
    policies.apply(BLOCK_APT)
    nginx = pods["nginx-1"]
    with AgentClient(parse_agent_url(f"tcp://{guest.agent_target}"), identity=adapter_identity()) as client:

        def dropped() -> int:
            return next(c.alerts_dropped for c in client.status().containers if c.id == nginx)

        dropped_before = dropped()
        with alert_stream(guest) as alerts:
            started = time.monotonic()
            burst = containers.shell(
                nginx, "n=0; for i in $(seq 300); do /usr/bin/apt 2>/dev/null || n=$((n+1)); done; echo $n"
            )
            guest.run(["sleep", "2"])  # let the last window's events arrive
            elapsed = time.monotonic() - started
            received = alerts.qsize()
        dropped_now = dropped() - dropped_before
    assert burst.stdout.split() == ["300"], burst  # the budget never changes a verdict
    assert dropped_now > 0 and received + dropped_now == 300, (received, dropped_now)
    assert received <= 20 * (int(elapsed) + 2), (received, elapsed)
