"""No way out: a container's policy follows every process it has, whatever namespaces, root or names it uses.

Every test runs real programs in a container shaped like a pod's
(containerd's default capabilities, writable overlay rootfs) in the guest
kernel. Each escape is tried with the blocked binary (apt: denied), with a
binary no rule names (id: runs), and in another pod (apt: runs).
"""

from __future__ import annotations

import queue

import pytest

from images.testguest.containers import ALL_CAPABILITIES, GuestContainers
from images.testguest.vm import GuestResult, TestGuest
from tests.guest.support import (
    NGINX,
    PolicyApplier,
    alert_stream,
    assert_denied,
    assert_ran,
    init_pid,
    paths,
    process_policy,
)

pytestmark = pytest.mark.guest

BLOCK_APT = process_policy(name="block-apt", rules=paths("/usr/bin/apt"))
# What each program prints for --version when it really runs.
PRINTS = {"apt": "apt 2", "id": "GNU coreutils"}

# Each escape runs `{name} --version` in the container; {name} is apt or id.
ESCAPES = [
    pytest.param("unshare -U -m /usr/bin/{name} --version", id="new-user-and-mount-ns"),
    pytest.param("unshare -U -m -p -f /usr/bin/{name} --version", id="new-user-mount-pid-ns"),
    pytest.param("unshare -U -r -m -p -f -n -u -i -C -T /usr/bin/{name} --version", id="every-namespace-kind"),
    pytest.param(
        "unshare -U -r -m -p -f --mount-proc sh -c 'sh -c \"/usr/bin/{name} --version\"'",
        id="nested-shells-in-new-namespaces",
    ),
    pytest.param("chroot /usr /bin/{name} --version", id="chroot"),
    pytest.param("unshare -U -r chroot /usr /bin/{name} --version", id="chroot-in-user-ns"),
    pytest.param("chroot /usr /lib64/ld-linux-x86-64.so.2 /bin/{name} --version", id="loader-in-chroot"),
    pytest.param(
        "unshare -U -r -m sh -c 'mkdir -p /tmp/new && mount --rbind /usr /tmp/new && cd /tmp/new"
        " && mkdir -p old && pivot_root . old && cd / && /bin/{name} --version'",
        id="pivot-root",
    ),
    pytest.param("unshare -U -r -m sh -c 'mount --bind /usr/bin /mnt && /mnt/{name} --version'", id="bind-mount"),
    pytest.param("/proc/1/root/usr/bin/{name} --version", id="proc-pid-root"),
    pytest.param("cd /usr/lib/../bin && unshare -U -m ./{name} --version", id="relative-path-in-new-ns"),
    pytest.param(
        'unshare -U -r -m sh -c \'printf "#!/usr/bin/{name} --version\\n" >/tmp/s-{name}'
        " && chmod +x /tmp/s-{name} && /tmp/s-{name}'",
        id="interpreter-in-new-ns",
    ),
]


def denied_exit(result: GuestResult, what: str) -> None:
    """Check that apt was refused: Permission denied, or the loader failing to map it; never its output."""
    assert "apt 2" not in result.stdout, f"{what} ran: {result}"
    if "failed to map segment" not in result.stderr:
        assert_denied(result, what)


@pytest.mark.parametrize("script", ESCAPES)
def test_escapes_cannot_run_the_blocked_binary(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """Each escape still meets the container's Block rule."""
    policies.apply(BLOCK_APT)
    denied_exit(containers.shell(pods["nginx-1"], script.format(name="apt")), script)


@pytest.mark.parametrize("script", ESCAPES)
def test_escapes_run_unblocked_binaries_and_leave_other_pods_alone(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """The same tricks run a binary no rule names, and run apt in a pod the policy does not select."""
    policies.apply(BLOCK_APT)
    assert_ran(containers.shell(pods["nginx-1"], script.format(name="id")), script, prints=PRINTS["id"])
    assert_ran(containers.shell(pods["busybox-1"], script.format(name="apt")), script, prints=PRINTS["apt"])


def test_a_process_joining_through_setns_is_under_the_policy(
    policies: PolicyApplier, guest: TestGuest, pods: dict[str, str]
) -> None:
    """A process entering the container later (as kata-agent's exec does), and its new namespaces, stay covered."""
    policies.apply(BLOCK_APT)
    pid = init_pid(guest, pods["nginx-1"])
    join = ["nsenter", "-t", str(pid), "-m", "-p", "-u", "-i", "--"]
    assert_denied(guest.run([*join, "/usr/bin/apt", "--version"]), "apt after setns")
    assert_denied(guest.run([*join, "unshare", "-U", "-m", "/usr/bin/apt", "--version"]), "apt after setns+unshare")
    assert_ran(guest.run([*join, "/usr/bin/id", "--version"]), "id after setns", prints=PRINTS["id"])


def test_hard_links_made_before_the_policy_are_the_same_file(
    policies: PolicyApplier, containers: GuestContainers
) -> None:
    """A hard link made before the policy, run from a chroot or renamed, is denied; new links or renames refused."""
    container = "nginx-links"
    policies.apply()
    containers.start(container, NGINX)
    try:
        setup = "mkdir -p /opt/jail/bin && ln /usr/bin/apt /opt/jail/bin/pkg && ln /bin/busybox /opt/jail/bin/busybox"
        assert containers.shell(container, setup).returncode == 0
        policies.apply(BLOCK_APT)
        assert_denied(containers.shell(container, "chroot /opt/jail /bin/pkg --version"), "hard link in chroot")
        assert_denied(containers.shell(container, "/opt/jail/bin/pkg --version"), "hard link")
        assert_ran(containers.shell(container, "chroot /opt/jail /bin/busybox echo ok"), "busybox", prints="ok")
        assert_denied(containers.shell(container, "ln /usr/bin/apt /opt/pkg2"), "new hard link")
        assert_denied(containers.shell(container, "mv /usr/bin/apt /opt/pkg3"), "rename")
        moved_link = containers.shell(container, "mv /opt/jail/bin/pkg /opt/pkg4 && /opt/pkg4 --version")
        assert_denied(moved_link, "the old link, renamed")  # the same real inode, whatever its name
        moved = containers.shell(container, "cp /usr/bin/id /opt/id && mv /opt/id /opt/id2 && /opt/id2 --version")
        assert_ran(moved, "rename of an unblocked file", prints=PRINTS["id"])
    finally:
        containers.delete(container)


def test_a_chroot_cannot_pass_another_file_off_as_an_allowed_one(
    policies: PolicyApplier, containers: GuestContainers
) -> None:
    """Under an allow list, names are the container's: a file at /opt/fake/usr/bin/ls is not /usr/bin/ls."""
    container = "nginx-allow"
    policies.apply()
    containers.start(container, NGINX)
    try:
        setup = containers.shell(container, "mkdir -p /opt/fake/usr/bin && cp /bin/busybox /opt/fake/usr/bin/ls")
        assert setup.returncode == 0, setup
        allowed = paths("/bin/sh", "/usr/sbin/chroot", "/usr/bin/ls")
        policies.apply(process_policy(name="only-ls", rules=allowed, action="Allow"))
        assert_ran(containers.shell(container, "/usr/bin/ls /opt/fake/usr/bin"), "real ls", prints="ls")
        assert_denied(containers.shell(container, "chroot /opt/fake /usr/bin/ls /"), "fake ls in chroot")
    finally:
        containers.delete(container)


def test_a_container_with_every_capability_stays_under_its_policy(
    policies: PolicyApplier, containers: GuestContainers
) -> None:
    """Privileged: real mounts and mount namespaces without a user namespace change nothing."""
    container = "nginx-privileged"
    policies.apply(BLOCK_APT)
    containers.start(container, NGINX, capabilities=ALL_CAPABILITIES)
    try:
        for script in (
            "unshare -m sh -c 'mount --bind /usr/bin /mnt && /mnt/apt --version'",
            "unshare -m -p -f sh -c 'mount -t tmpfs t /mnt && mount --rbind / /mnt && chroot /mnt /usr/bin/apt'",
            "nsenter -t 1 -m -p /usr/bin/apt --version",
        ):
            denied_exit(containers.shell(container, script), script)
        assert_ran(containers.shell(container, "unshare -m /usr/bin/id --version"), "id", prints=PRINTS["id"])
    finally:
        containers.delete(container)


@pytest.mark.parametrize("script", ESCAPES)
def test_audit_alerts_name_the_container_through_escapes(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str], script: str
) -> None:
    """An audited binary runs through each escape, and the alert names pod, container, policy and the file."""
    policies.apply(process_policy(name="audit-apt", rules=paths("/usr/bin/apt"), action="Audit"))
    with alert_stream(guest) as alerts:
        assert_ran(containers.shell(pods["nginx-1"], script.format(name="apt")), script, prints=PRINTS["apt"])
        alert = alerts.get(timeout=60)
    assert (alert.pod_name, alert.container_name, alert.container_id) == ("nginx-1", "nginx", pods["nginx-1"])
    assert alert.policy_name == "audit-apt" and alert.result == "Passed" and alert.resource.endswith("/apt")


def test_audit_alerts_name_files_from_the_container_root(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """In a chroot or through a bind mount the file is still /usr/bin/apt; processes are named by executable."""
    policies.apply(process_policy(name="audit-apt", rules=paths("/usr/bin/apt"), action="Audit"))
    with alert_stream(guest) as alerts:
        containers.shell(pods["nginx-1"], "chroot /usr /bin/apt --version; true")  # `; true`: sh forks, not execs
        containers.shell(pods["nginx-1"], "unshare -U -r -m sh -c 'mount --bind /usr/bin /mnt && /mnt/apt --version'")
        chrooted, bound = alerts.get(timeout=60), alerts.get(timeout=60)
    assert (chrooted.resource, chrooted.data) == ("/usr/bin/apt", "exec")
    assert (chrooted.process_name, chrooted.parent_process_name) == ("/usr/sbin/chroot", "/usr/bin/dash")
    assert (bound.resource, bound.data, bound.process_name) == ("/usr/bin/apt", "exec", "/usr/bin/dash")


FILELESS = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: fileless
  namespace: default
spec:
  severity: 8
  message: fileless execution
  selector:
    matchLabels:
      app: nginx
  presets:
  - name: filelessExec
    action: {action}
"""
MEMFD_EXEC = (
    "import os; fd = os.memfd_create('payload', 0); os.write(fd, open('/usr/bin/id', 'rb').read()); "
    "os.execv(f'/proc/self/fd/{fd}', ['id', '--version'])"
)
MEMFD_LOADER = MEMFD_EXEC.replace(
    "os.execv(f'/proc/self/fd/{fd}', ['id', '--version'])",
    "os.execv('/lib64/ld-linux-x86-64.so.2', ['ld.so', f'/proc/self/fd/{fd}', '--version'])",
)
FILELESS_RUNS = [
    pytest.param(["/usr/bin/python3", "-c", MEMFD_EXEC], id="memfd"),
    pytest.param(["/usr/bin/python3", "-c", MEMFD_LOADER], id="memfd-through-loader"),
    pytest.param(
        ["/bin/sh", "-c", "cp /usr/bin/id /tmp/gone && exec 3</tmp/gone && rm /tmp/gone && /proc/self/fd/3 --version"],
        id="unlinked-file",
    ),
]


@pytest.mark.parametrize("argv", FILELESS_RUNS)
def test_fileless_exec_preset_blocks_in_the_selected_pod_only(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str], argv: list[str]
) -> None:
    """filelessExec: Block denies running a memfd or an unlinked file; another pod still can."""
    policies.apply(FILELESS.format(action="Block"))
    result = containers.exec(pods["nginx-1"], argv)
    assert "GNU coreutils" not in result.stdout, result
    if "failed to map segment" not in result.stderr:
        assert_denied(result, "fileless exec")
    assert_ran(containers.exec(pods["busybox-1"], argv), "fileless exec in busybox", prints=PRINTS["id"])
    assert_ran(containers.exec(pods["nginx-1"], ["/usr/bin/id", "--version"]), "id from a file", prints=PRINTS["id"])


def test_fileless_exec_preset_audits(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """filelessExec with Audit lets the memfd run and reports it with the policy's severity and message."""
    policies.apply(FILELESS.format(action="Audit"))
    with alert_stream(guest) as alerts:
        assert_ran(containers.exec(pods["nginx-1"], ["/usr/bin/python3", "-c", MEMFD_EXEC]), "memfd", prints="GNU")
        alert = alerts.get(timeout=60)
    assert alert.policy_name == "fileless" and alert.result == "Passed" and alert.pod_name == "nginx-1"
    assert alert.severity == 8 and alert.message == "fileless execution"
    assert alert.resource.startswith("/memfd:payload") and "fileless" in alert.data
    with pytest.raises(queue.Empty):
        alerts.get(timeout=2)  # one exec, one alert


DIRECTORIES = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: block-dirs
  namespace: default
spec:
  selector:
    matchLabels:
      app: nginx
  process:
    matchDirectories:
    - dir: /opt/tools/
      recursive: true
    - dir: /opt/flat/
  action: Block
"""
DEEP = "/".join(["a" * 50] * 6)  # 305 characters below /opt/tools/: longer than any path rule


def test_directory_rules_block_at_any_depth_under_any_name(
    policies: PolicyApplier, containers: GuestContainers
) -> None:
    """A recursive directory rule covers files at any depth, a plain one only its own files, through escapes too."""
    container = "nginx-dirs"
    policies.apply()
    containers.start(container, NGINX)
    try:
        setup = (
            f"mkdir -p /opt/tools/{DEEP} /opt/flat/sub /opt/other && cp /usr/bin/id /opt/tools/t"
            f" && cp /usr/bin/id /opt/tools/{DEEP}/t && cp /usr/bin/id /opt/flat/t && cp /usr/bin/id /opt/flat/sub/t"
            " && cp /usr/bin/id /opt/other/t"
        )
        assert containers.shell(container, setup).returncode == 0
        policies.apply(DIRECTORIES)
        for script in (
            "/opt/tools/t --version",
            f"/opt/tools/{DEEP}/t --version",
            f"cd /opt/tools/{DEEP} && ./t --version",
            "ln -s /opt/tools/t /tmp/l && /tmp/l --version",
            "chroot /opt /tools/t --version",
            "unshare -U -r -m sh -c 'mount --bind /opt/tools /mnt && /mnt/t --version'",
            "/opt/flat/t --version",
        ):
            assert_denied(containers.shell(container, script), script)
        for script in ("/opt/flat/sub/t --version", "/opt/other/t --version", "/usr/bin/id --version"):
            assert_ran(containers.shell(container, script), script, prints=PRINTS["id"])
    finally:
        containers.delete(container)


EXECNAME = process_policy(name="block-apt-anywhere", rules="    - execname: apt\n")


def test_execname_blocks_the_name_wherever_the_file_is(
    policies: PolicyApplier, containers: GuestContainers, pods: dict[str, str]
) -> None:
    """execname: apt blocks any file called apt (a copy too), under any root; other names run."""
    policies.apply(EXECNAME)
    nginx = pods["nginx-1"]
    for script in (
        "/usr/bin/apt --version",
        "mkdir -p /tmp/copy && cp /usr/bin/apt /tmp/copy/apt && /tmp/copy/apt --version",
        "chroot /usr /bin/apt --version",
    ):
        assert_denied(containers.shell(nginx, script), script)
    renamed = containers.shell(nginx, "cp /usr/bin/apt /tmp/apt-renamed && /tmp/apt-renamed --version")
    assert_ran(renamed, "a copy under another name (execname matches names)", prints=PRINTS["apt"])
    assert_ran(containers.shell(pods["busybox-1"], "/usr/bin/apt --version"), "another pod", prints=PRINTS["apt"])
