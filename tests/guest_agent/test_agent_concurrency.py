"""Registration is on kata-agent's hook timeout: never held up by another pod's compilation, never left stale."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from guest_agent import agent as agent_module
from guest_agent.agent import Agent, PodKey
from guest_agent.alerts import AlertHub
from guest_agent.bpf_types import Kind
from guest_agent.rules import CompiledRules, compile_rules
from kadapter_api import agent_pb2
from tests.guest_agent.test_agent import RecordingEnforcer, container, request

GATED = "/usr/bin/slow-to-compile"  # a set naming it is held in compilation until the test releases it
DB = PodKey("default", "db-1")
WAIT = 10.0


class GatedCompile:
    """compile_rules, held for sets naming GATED until release is set (stands in for a large set's file walk)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, policies: Sequence[agent_pb2.Policy], **kwargs: Any) -> CompiledRules:
        """Compile, after waiting at the gate if the set names GATED."""
        if any(rule.path == GATED for policy in policies for rule in policy.process_rules):
            self.entered.set()
            assert self.release.wait(WAIT), "never released"
        return compile_rules(policies, **kwargs)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> GatedCompile:
    """Hold the compilation of sets naming GATED."""
    gated = GatedCompile()
    monkeypatch.setattr(agent_module, "compile_rules", gated)
    return gated


def _in_thread(call: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _names(enforcer: RecordingEnforcer, container_id: str) -> list[str]:
    return list(enforcer.rules[container_id].kinds[Kind.PROCESS].names)


def test_registration_is_not_held_up_by_another_pods_compilation(gate: GatedCompile) -> None:
    """While a large set for db-1 compiles, an nginx container registers at once; db-1's set lands after."""
    enforcer = RecordingEnforcer()
    agent = Agent(enforcer, AlertHub(), max_rules=100)  # type: ignore[arg-type]
    database = dataclasses.replace(container(9), id="db", name="db", pod=DB)
    agent.register(database)
    db_set = request(1, GATED)
    db_set.pod.name = DB.name
    applying = _in_thread(lambda: agent.apply(db_set))
    assert gate.entered.wait(WAIT)
    registering = _in_thread(lambda: agent.register(container(1)))
    registering.join(2.0)
    assert not registering.is_alive(), "registration waited for another pod's compilation"
    gate.release.set()
    applying.join(WAIT)
    assert _names(enforcer, "db") == [GATED]


def test_a_container_registered_while_its_pods_set_is_compiled_ends_with_that_set(gate: GatedCompile) -> None:
    """Registered between an apply's compilation and its commit: the apply compiles it too and writes the new set."""
    enforcer = RecordingEnforcer()
    agent = Agent(enforcer, AlertHub())  # type: ignore[arg-type]
    agent.apply(request(1, "/usr/bin/old"))
    agent.register(container(1))
    applying = _in_thread(lambda: agent.apply(request(2, GATED)))
    assert gate.entered.wait(WAIT)
    agent.register(container(2))  # gets generation 1 meanwhile
    assert _names(enforcer, "c2") == ["/usr/bin/old"]
    gate.release.set()
    applying.join(WAIT)
    assert _names(enforcer, "c1") == _names(enforcer, "c2") == [GATED]
    assert [item.generation for item in agent.status().containers] == [2, 2]


def test_a_set_applied_while_a_container_compiles_is_the_one_it_gets(gate: GatedCompile) -> None:
    """The pod's set changes while registration compiles the old one: registration compiles again, never stale."""
    enforcer = RecordingEnforcer()
    agent = Agent(enforcer, AlertHub())  # type: ignore[arg-type]
    agent.apply(request(1, GATED))
    registering = _in_thread(lambda: agent.register(container(3)))
    assert gate.entered.wait(WAIT)
    agent.apply(request(2, "/usr/bin/new"))  # no container yet: applies at once
    gate.release.set()
    registering.join(WAIT)
    assert _names(enforcer, "c3") == ["/usr/bin/new"]
    assert [item.generation for item in agent.status().containers] == [2]
