# SPDX-License-Identifier: Apache-2.0
"""Fuzzing kadapter-hook's input: the OCI state on stdin and the bundle's config.json.

Whatever the runtime hands over, the hook builds a registration the agent's listener accepts,
decides there is nothing to do, or refuses with a HookInputError naming the field at fault; run
whole (hook.main) without an agent, it exits 0 or 1 with one line on stderr saying why.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guest_agent.hook import (
    CONTAINER_NAME,
    CONTAINER_TYPE,
    PID_MAX,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    HookInputError,
    main,
    parse_state,
    registration_for,
)
from guest_agent.registration import Registration
from tests.fuzz.limits import time_limit
from tests.guest_agent.test_hook import STATE

# What every refusal names: the state, config.json, an annotation or the pid.
NAMES_THE_FIELD = re.compile(r"OCI state|config\.json|annotation '|\bpid\b")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=8,
)
ANNOTATIONS = st.dictionaries(
    st.sampled_from(CONTAINER_NAME + POD_NAMESPACE + POD_NAME + POD_UID + CONTAINER_TYPE) | st.text(),
    st.text() | st.just("sandbox") | JSON,
    max_size=6,
)
PIDS = st.integers(0, PID_MAX) | st.integers() | st.integers(min_value=2**63)


def good_or_any(good: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Draw a value of the field's own type, or any JSON value at all."""
    return good | JSON


STATES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "ociVersion": good_or_any(st.just("1.0.2-dev")),
            "id": good_or_any(st.text(min_size=1)),
            "status": good_or_any(st.sampled_from(["creating", "created", "running", "stopped"])),
            "pid": good_or_any(PIDS),
            "bundle": good_or_any(st.text(min_size=1)),
            "annotations": good_or_any(ANNOTATIONS),
        },
    ),
    # The valid state of tests/guest_agent/test_hook.py with some fields dropped and others replaced.
    st.builds(
        lambda dropped, replaced: {**{k: v for k, v in STATE.items() if k not in dropped}, **replaced},
        st.sets(st.sampled_from(list(STATE))),
        st.dictionaries(st.sampled_from(list(STATE)), JSON, max_size=2),
    ),
)
STATE_TEXTS = st.one_of(
    STATES.map(json.dumps),
    st.text(),
    st.integers(1, 200_000).map(lambda depth: "[" * depth),
    st.integers(1, 10_000).map(lambda digits: json.dumps({**STATE, "pid": 0})[:-1] + ', "x": ' + "9" * digits + "}"),
)
CONFIGS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "ociVersion": JSON,
            "annotations": good_or_any(ANNOTATIONS),
            "root": good_or_any(st.fixed_dictionaries({}, optional={"path": good_or_any(st.text())})),
        },
    ),
    st.dictionaries(st.text(), JSON, max_size=4),
)
HOOK_TYPES = st.sampled_from(["prestart", "poststop", "poststart", "createRuntime", ""])


@settings(max_examples=5 * settings.default.max_examples)  # cheap: more examples
@given(text=STATE_TEXTS, hook_type=HOOK_TYPES | st.text(), config=CONFIGS)
def test_hook_input_gives_a_registration_or_an_error_naming_the_field(
    text: str, hook_type: str, config: dict[str, object]
) -> None:
    """Any state and config.json give nothing, a registration the listener decodes as sent, or a HookInputError."""
    with time_limit():
        try:
            registration = registration_for(hook_type, parse_state(text), config)
        except HookInputError as error:
            assert NAMES_THE_FIELD.search(str(error)), f"names no field: {error}"
            return
    assert registration is None or Registration.decode(registration.encode()) == registration


CONFIG_FILES = st.one_of(
    st.none(),  # the bundle is gone
    CONFIGS.map(lambda config: json.dumps(config).encode()),
    JSON.map(lambda value: json.dumps(value).encode("utf-16")),
    st.binary(),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth),
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Give every example the same bundle directory, which each fills with its own config.json."""
    return tmp_path_factory.mktemp("bundle")


@settings(max_examples=5 * settings.default.max_examples)  # cheap: more examples
@given(hook_type=HOOK_TYPES, annotations=ANNOTATIONS, config_file=CONFIG_FILES)
def test_hook_main_without_an_agent_exits_1_saying_why(
    bundle: Path, hook_type: str, annotations: dict[str, object], config_file: bytes | None
) -> None:
    """kadapter-hook exits 0 (nothing to send) or 1 with one line naming the field or the missing agent's socket."""
    config = bundle / "config.json"
    config.unlink(missing_ok=True)
    if config_file is not None:
        config.write_bytes(config_file)
    nobody = bundle / "nobody.sock"  # nothing listens here: no agent is ever reached
    state = json.dumps({**STATE, "bundle": str(bundle), "annotations": annotations})
    stderr = io.StringIO()
    with (
        mock.patch.dict(os.environ, {"KADAPTER_HOOK_SOCKET": str(nobody)}),
        mock.patch("sys.stdin", io.StringIO(state)),
        contextlib.redirect_stderr(stderr),
        time_limit(),
    ):
        code = main([hook_type])
    said = stderr.getvalue()
    if code == 0:
        assert said == ""
        return
    assert code == 1
    assert said.startswith(f"kadapter-hook {hook_type}: ") and said.count("\n") == 1, said
    assert NAMES_THE_FIELD.search(said) or f"agent at {nobody}: " in said, said
