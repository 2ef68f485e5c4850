"""The agent's bookkeeping between pods, containers and the Enforcer: generations, idempotence, rollback.

The Enforcer is replaced by a recorder here: these tests are about which
rules the agent asks for, not about the kernel (tests/guest covers that).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
from pathlib import Path

import pytest

from guest_agent import agent as agent_module
from guest_agent import bpf_types
from guest_agent.agent import Agent, Container, PodKey, StaleGenerationError, container_key
from guest_agent.alerts import AlertHub
from guest_agent.bpf_types import Kind
from guest_agent.libbpf import BpfError
from guest_agent.rules import CompiledRules, ContainerKey
from guest_agent.state import StateStore
from kadapter_api import agent_pb2

NGINX = PodKey("default", "nginx-1")


class RecordingEnforcer:
    """Remember the rules each container was last given; fail on request like a full map."""

    def __init__(self) -> None:
        self.rules: dict[str, CompiledRules] = {}
        self.calls = 0
        self.fail_for: str | None = None
        self.last_ruleset = 0
        self.kernel_ids: dict[str, int] = {}
        self.adopted: dict[str, int] = {}
        self.forgotten: list[int] = []
        self.collections = 0
        self.fail_closed = False
        self.object_sha256 = "00" * 32

    def enforce(self, container_id: str, rules: CompiledRules, *, key: ContainerKey, init_pid: int) -> dict[Kind, int]:
        """Record, or raise ENOSPC for the chosen container."""
        self.calls += 1
        if container_id == self.fail_for:
            raise BpfError(errno.ENOSPC, "update map name_rules: No space left on device")
        self.rules[container_id] = rules
        self.kernel_ids.setdefault(container_id, len(self.kernel_ids) + 1)
        self.last_ruleset += 1
        return (self.last_ruleset,)

    def release(self, container_id: str) -> None:
        """Forget a container."""
        self.rules.pop(container_id, None)

    def kernel_id(self, container_id: str) -> int:
        """Return the id enforce() gave the container."""
        return self.kernel_ids[container_id]

    def adopt(self, container_id: str, *, kernel_id: int, key: ContainerKey) -> None:
        """Record a container taken over from a previous agent."""
        self.adopted[container_id] = self.kernel_ids[container_id] = kernel_id

    def forget(self, *, kernel_id: int, key: ContainerKey) -> None:
        """Record a previous agent's container found gone."""
        self.forgotten.append(kernel_id)

    def collect_garbage(self) -> int:
        """Count the sweeps."""
        self.collections += 1
        return 0

    def alerts_dropped(self, container_id: str) -> int:
        """Nothing is ever dropped here."""
        return 0


def container(number: int) -> Container:
    """Return container N of the nginx pod."""
    key = ContainerKey(number, number)
    return Container(id=f"c{number}", name="nginx", pod=NGINX, pod_uid="", key=key, rootfs=None, pid=os.getpid())


def request(generation: int, *paths: str) -> agent_pb2.ApplyPoliciesRequest:
    """Return an ApplyPolicies for the nginx pod blocking these paths."""
    return agent_pb2.ApplyPoliciesRequest(
        pod=agent_pb2.PodRef(namespace=NGINX.namespace, name=NGINX.name),
        generation=generation,
        policies=[
            agent_pb2.Policy(
                name="p", process_rules=[agent_pb2.PathRule(path=p, action=agent_pb2.ACTION_BLOCK) for p in paths]
            )
        ]
        if paths
        else [],
    )


@pytest.fixture
def enforcer() -> RecordingEnforcer:
    """Stand in for the BPF maps."""
    return RecordingEnforcer()


@pytest.fixture
def agent(enforcer: RecordingEnforcer) -> Agent:
    """Run an agent over the recorder."""
    return Agent(enforcer, AlertHub())  # type: ignore[arg-type]


def test_container_registered_after_the_policy_gets_it_at_once(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """Registration compiles the pod's stored policy before the hook returns."""
    agent.apply(request(1, "/opt/not-in-this-root/tool"))
    assert agent.register(container(1)) == 1  # no such file: a rule by path only, no identity
    assert list(enforcer.rules["c1"].kinds[Kind.PROCESS].names) == ["/opt/not-in-this-root/tool"]


def test_same_generation_twice_changes_nothing(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """Re-sending the same set (a reconcile) does not touch the maps."""
    agent.register(container(1))
    agent.apply(request(5, "/usr/bin/apt"))
    calls = enforcer.calls
    assert agent.apply(request(5, "/usr/bin/apt")).generation == 5
    assert enforcer.calls == calls


def test_older_generation_is_refused(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """A delayed older push cannot undo a newer one."""
    agent.register(container(1))
    agent.apply(request(5, "/usr/bin/apt"))
    with pytest.raises(StaleGenerationError):
        agent.apply(request(4))
    assert list(enforcer.rules["c1"].kinds[Kind.PROCESS].names) == ["/usr/bin/apt"]


def test_failure_on_one_container_rolls_the_others_back(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """If the maps refuse the new set for any container, every container keeps the old set."""
    agent.register(container(1))
    agent.register(container(2))
    agent.apply(request(1, "/usr/bin/apt"))
    enforcer.fail_for = "c2"
    with pytest.raises(BpfError):
        agent.apply(request(2, "/usr/bin/apt", "/usr/bin/curl"))
    assert {key: list(rules.kinds[Kind.PROCESS].names) for key, rules in enforcer.rules.items()} == {
        "c1": ["/usr/bin/apt"],
        "c2": ["/usr/bin/apt"],
    }
    assert agent.status().pods[0].generation == 1


def test_unregister_releases_the_container(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """poststop removes the container from the maps and from the status."""
    agent.apply(request(1, "/usr/bin/apt"))
    agent.register(container(1))
    assert agent.unregister("c1")
    assert not enforcer.rules
    assert not agent.status().containers
    assert not agent.unregister("c1")


def test_invalid_policy_changes_nothing(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """A malformed rule from the host is refused before any container is touched."""
    agent.register(container(1))
    calls = enforcer.calls
    with pytest.raises(ValueError, match="absolute"):
        agent.apply(request(1, "usr/bin/apt"))
    assert enforcer.calls == calls


def test_request_without_a_pod_name_is_refused(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """An unnamed pod would otherwise match containers that carry no CRI annotations."""
    unannotated = Container(
        id="bare", name="", pod=PodKey("", ""), pod_uid="", key=ContainerKey(9, 9), rootfs=None, pid=9
    )
    agent.register(unannotated)
    blank = request(1, "/usr/bin/apt")
    blank.pod.Clear()
    with pytest.raises(ValueError, match="pod"):
        agent.apply(blank)
    assert not enforcer.rules["bare"].kinds[Kind.PROCESS].names


def publishing_agent(enforcer: RecordingEnforcer, policy: agent_pb2.Policy) -> tuple[Agent, list[agent_pb2.Alert]]:
    """Return an agent enforcing policy on container 1 of the nginx pod, and the list its alerts go to."""
    published: list[agent_pb2.Alert] = []
    hub = AlertHub()
    hub.publish = published.append  # type: ignore[method-assign]
    agent = Agent(enforcer, hub)  # type: ignore[arg-type]
    agent.register(container(1))
    agent.apply(agent_pb2.ApplyPoliciesRequest(pod=request(1).pod, generation=1, policies=[policy]))
    return agent, published


def test_an_alert_from_a_pattern_names_its_policy_and_an_unfinished_match(enforcer: RecordingEnforcer) -> None:
    """A Block pattern that fired at the work bound is reported as its policy's, saying the patterns went unfinished."""
    policy = agent_pb2.Policy(
        name="no-conf",
        namespace="default",
        file_rules=[agent_pb2.PathRule(pattern="/**/*.conf", action=agent_pb2.ACTION_BLOCK, severity=4)],
    )
    agent, published = publishing_agent(enforcer, policy)
    agent.on_event(
        bpf_types.AlertEvent(
            ruleset=enforcer.last_ruleset,
            rule=1,
            action=bpf_types.ACTION_BLOCK,
            retval=-errno.EACCES,
            kind=Kind.FILE,
            operation=bpf_types.OP_OPEN,
            name_flags=bpf_types.NAME_LONG | bpf_types.NAME_PATTERN_BOUND,
            path=b"/etc/" + b"d" * 250,
        )
    )
    (alert,) = published
    assert (alert.policy_name, alert.severity, alert.result) == ("no-conf", 4, "Permission denied")
    assert alert.data == "open for read, name cut to 255 bytes, patterns unfinished"


def test_a_dns_alert_says_what_kubearmor_says_and_when_the_query_went_unread(enforcer: RecordingEnforcer) -> None:
    """A refused query: Network, the name asked for as resource, KubeArmor's Data; an unread one says so."""
    policy = agent_pb2.Policy(
        name="no-example",
        namespace="default",
        dns_rules=[agent_pb2.DnsRule(domain="example.com", action=agent_pb2.ACTION_BLOCK, severity=7)],
    )
    agent, published = publishing_agent(enforcer, policy)
    for rule, flags, name in ((1, 0, b"www.example.com"), (0, bpf_types.NAME_DNS_UNREAD, b"")):
        agent.on_event(
            bpf_types.AlertEvent(
                ruleset=enforcer.last_ruleset,
                rule=rule,
                action=bpf_types.ACTION_BLOCK,
                retval=-errno.EACCES,
                kind=Kind.DNS,
                operation=bpf_types.OP_DNS_QUERY,
                name_flags=flags,
                path=name,
            )
        )
    named, unread = published
    assert (named.operation, named.resource, named.policy_name, named.severity) == (
        "Network", "www.example.com", "no-example", 7,
    )  # fmt: skip
    assert (named.data, named.result) == ("lsm=SOCKET_SENDMSG domain=www.example.com", "Permission denied")
    assert (unread.policy_name, unread.data) == ("DefaultPosture", "lsm=SOCKET_SENDMSG domain=, not read as one query")


def running_container(container_id: str, pid: int) -> Container:
    """Return a container of the nginx pod whose init is process pid, in that process's namespaces."""
    return Container(
        id=container_id, name="nginx", pod=NGINX, pod_uid="u", key=container_key(pid), rootfs=None, pid=pid
    )


def test_a_restarted_agent_takes_over_running_containers_and_forgets_stopped_ones(tmp_path: Path) -> None:
    """The next agent re-enforces what still runs under its kernel id, with the pod's saved set, then sweeps."""
    first = RecordingEnforcer()
    before = Agent(first, AlertHub(), store=StateStore(tmp_path))  # type: ignore[arg-type]
    finished = subprocess.run(["sleep", "0"], check=True)
    before.register(running_container("alive", os.getpid()))
    stopped = running_container("stopped", os.getpid())
    before.register(dataclasses.replace(stopped, pid=999_999_999))  # no such process any more
    before.apply(request(3, "/usr/bin/apt"))
    assert finished.returncode == 0

    second = RecordingEnforcer()
    after = Agent(second, AlertHub(), store=StateStore(tmp_path))  # type: ignore[arg-type]
    assert after.restore() == (1, 1)
    assert second.adopted == {"alive": first.kernel_ids["alive"]}
    assert second.forgotten == [first.kernel_ids["stopped"]]
    assert list(second.rules["alive"].kinds[Kind.PROCESS].names) == ["/usr/bin/apt"]
    assert second.collections == 1
    status = after.status()
    assert [(pod.pod.name, pod.generation) for pod in status.pods] == [("nginx-1", 3)]
    assert [container.id for container in status.containers] == ["alive"]


def test_a_container_whose_rules_cannot_be_rewritten_keeps_the_old_ones(tmp_path: Path) -> None:
    """Failing to rewrite a taken-over container's rules skips the sweep, which would delete those in force."""
    before = Agent(RecordingEnforcer(), AlertHub(), store=StateStore(tmp_path))  # type: ignore[arg-type]
    before.register(running_container("alive", os.getpid()))
    second = RecordingEnforcer()
    second.fail_for = "alive"
    after = Agent(second, AlertHub(), store=StateStore(tmp_path))  # type: ignore[arg-type]
    assert after.restore() == (1, 0)
    assert second.collections == 0


def unregistered_exec(pid_ns: int, mnt_ns: int, path: bytes, *, refused: bool) -> bpf_types.AlertEvent:
    """Return the kernel's report of an exec in a container never registered."""
    event = bpf_types.AlertEvent(
        kind=Kind.PROCESS,
        operation=bpf_types.OP_EXEC,
        name_flags=bpf_types.NAME_UNREGISTERED | bpf_types.NAME_OUTSIDE,
        action=bpf_types.ACTION_BLOCK if refused else bpf_types.ACTION_AUDIT,
        retval=-errno.EACCES if refused else 0,
        path=path,
    )
    event.args[0], event.args[1] = pid_ns, mnt_ns
    return event


class RecordingHub:
    """Keep every alert the agent publishes."""

    dropped = 0

    def __init__(self) -> None:
        self.published: list[agent_pb2.Alert] = []

    def publish(self, alert: agent_pb2.Alert) -> None:
        """Record one alert."""
        self.published.append(alert)


def test_unregistered_containers_are_reported_until_they_register(enforcer: RecordingEnforcer) -> None:
    """Each is listed once in status with its last program and count, and alerted; registering it clears it."""
    hub = RecordingHub()
    agent = Agent(enforcer, hub)  # type: ignore[arg-type]
    pid_ns = container_key(os.getpid()).pid_ns  # a namespace with a live process, as a running container's is
    agent.on_event(unregistered_exec(pid_ns, 8, b"/bin/sh", refused=True))
    agent.on_event(unregistered_exec(pid_ns, 8, b"/usr/bin/id", refused=True))
    status = agent.status()
    assert [(u.pid_ns, u.mnt_ns, u.executable, u.execs, u.refused) for u in status.unregistered] == [
        (pid_ns, 8, "/usr/bin/id", 2, True)
    ]
    alert = hub.published[-1]
    assert (alert.policy_name, alert.action, alert.result) == (
        "UnregisteredContainer",
        agent_pb2.ACTION_BLOCK,
        "Permission denied",
    )
    assert f"pid ns {pid_ns}, mnt ns 8" in alert.data
    agent.register(dataclasses.replace(container(1), key=ContainerKey(pid_ns, 8)))
    assert not agent.status().unregistered


def test_an_unregistered_container_that_stopped_long_ago_is_no_longer_reported(
    enforcer: RecordingEnforcer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped one stays for a while (a refused container dies at once); then it leaves; a running one stays."""
    agent = Agent(enforcer, RecordingHub())  # type: ignore[arg-type]
    live = container_key(os.getpid()).pid_ns
    stopped = subprocess.run(  # a pid namespace whose only process has exited by the time we look
        ["unshare", "--pid", "--fork", "readlink", "/proc/self/ns/pid"], capture_output=True, text=True, check=True
    )
    gone = int(stopped.stdout.strip().removeprefix("pid:[").removesuffix("]"))
    for pid_ns in (live, gone):
        agent.on_event(unregistered_exec(pid_ns, 8, b"/bin/sh", refused=False))
    assert [u.pid_ns for u in agent.status().unregistered] == [live, gone]
    monkeypatch.setattr(agent_module, "UNREGISTERED_KEPT_FOR", 0.0)
    assert [u.pid_ns for u in agent.status().unregistered] == [live]


def test_the_pause_container_never_gets_the_pods_rules(agent: Agent, enforcer: RecordingEnforcer) -> None:
    """Registered as the sandbox, it enforces nothing whatever its pod's set says, and says so in status."""
    agent.apply(request(4, "/usr/bin/apt"))
    agent.register(dataclasses.replace(container(1), id="pause", sandbox=True))
    agent.register(container(2))
    assert not enforcer.rules["pause"].kinds[Kind.PROCESS].names
    assert list(enforcer.rules["c2"].kinds[Kind.PROCESS].names) == ["/usr/bin/apt"]
    reported = {c.id: (c.sandbox, c.generation) for c in agent.status().containers}
    assert reported == {"pause": (True, 0), "c2": (False, 4)}
