# SPDX-License-Identifier: Apache-2.0
"""Fuzzing the policy and manifest readers: any text is read, or refused with an InputError saying where.

Examples come as arbitrary text, as arbitrary bytes decoded, as YAML-like token soup, and as valid
KubeArmor policies and pod manifests (the shapes of policies/ and tests/adapter) with a few random
changes each: values of other types, keys dropped, repeated or added, huge, unicode and NUL strings,
deep nesting, alias bombs, self-referencing aliases and very long lists. Those documents are written
in YAML's flow style, which can spell a repeated key and an alias, one entry per line so that errors
have lines to name.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.errors import InputError
from adapter.pods import parse_manifests
from adapter.policy import parse_policies
from tests.adapter.test_pods import NGINX_POD, namespace_manifest, pod_manifest, runtime_class_manifest
from tests.adapter.test_policy_syscalls import HOME_UNLINKS
from tests.adapter.test_policy_validation import (
    BLOCK_APT,
    CAPABILITY_NET_RAW,
    FILE_DIRECTORY,
    FILE_SHADOW,
    NETWORK_RAW,
    SELECT_NGINX,
    USE_CASE,
    ksp,
    presets,
)
from tests.fuzz.limits import time_limit

SOURCE = "fuzz.yaml"
# About what a long list grows to, in characters: reading takes some 3 s a megabyte, linearly.
TEXT_BUDGET = 300_000
Reader = Callable[..., object]
READERS: tuple[Reader, ...] = (parse_policies, parse_manifests)
FIXTURES = Path(__file__).resolve().parents[1] / "adapter" / "fixtures"

POLICY_TEXTS = (
    USE_CASE,
    (FIXTURES / "ksp-nginx-harden.yaml").read_text(encoding="utf-8"),
    ksp(presets("{name: filelessExec}", "{name: exec, action: Audit}") + BLOCK_APT + FILE_SHADOW + NETWORK_RAW),
    ksp(SELECT_NGINX + FILE_DIRECTORY + CAPABILITY_NET_RAW + HOME_UNLINKS),
    ksp(
        "selector:\n  matchExpressions:\n  - {key: label, operator: In, values: [app=nginx]}\n"
        "process:\n  matchPaths:\n  - execname: apt\n    fromSource: [{path: /bin/bash}]\n"
        "  matchPatterns:\n  - pattern: /usr/**/apt*\n",
        kind="KubeArmorClusterPolicy",
    ),
)
MANIFEST_TEXTS = (
    NGINX_POD,
    pod_manifest("web", runtime_class="kata", namespace="shop"),
    runtime_class_manifest("kata-qemu", "kata-qemu"),
    namespace_manifest("{kubearmor-file-posture: audit, kubearmor-network-posture: block}"),
    "apiVersion: v1\nkind: List\nitems:\n"
    "- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{name: c}]}}\n",
)

# Pieces of YAML syntax and of the policy language, for token soup that gets past the scanner more often.
TOKENS = (
    "[", "]", "{", "}", ":", ": ", ",", "- ", "\n", "  ", "&a ", "*a", "&b ", "*b", "<<: ", "? ", "!!str ",
    "!!binary ", "!!python/name:os.system ", "|", ">", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "\t",
    "\0", "\ufeff", "\x85", "\u2028", "null", "~", "true", "0x1F", "1e3", ".inf", "2001-01-01", "apiVersion",
    "security.kubearmor.com/v1", "kind", "KubeArmorPolicy", "metadata", "name", "spec", "process",
    "matchPaths", "path", "/usr/bin/apt", "action", "Block", "selector", "matchLabels",
)  # fmt: skip
ARBITRARY_TEXT = st.one_of(
    st.text(),
    st.lists(st.sampled_from(TOKENS) | st.characters(), max_size=80).map("".join),
    st.binary().map(lambda data: data.decode("utf-8", errors="surrogateescape")),
    st.binary().map(lambda data: data.decode("latin-1")),
)


@dataclass
class Pairs:
    """A mapping as written: its entries in order, where a key may repeat."""

    entries: list[list[object]]  # [key, value], mutable so that mutations can change them in place


@dataclass(frozen=True)
class Nested:
    """A value wrapped in ``depth`` one-item lists."""

    depth: int
    value: object


@dataclass(frozen=True)
class Repeated:
    """A list holding one value ``times`` times."""

    value: object
    times: int


@dataclass(frozen=True)
class Bomb:
    """A billion laughs: ``levels`` lists, each holding ``width`` aliases of the one before."""

    levels: int
    width: int


@dataclass(frozen=True)
class SelfAlias:
    """A list that holds an alias of itself."""


def _quoted(text: str) -> str:
    """Write a string as a double-quoted YAML scalar, escaping all but printable ASCII."""
    escaped = []
    for character in text:
        code = ord(character)
        if 0x20 <= code < 0x7F and character not in '"\\':
            escaped.append(character)
        else:
            escaped.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(escaped) + '"'


def _scalar(value: object) -> str:
    """Write a scalar as YAML reads it back: null, booleans, numbers and quoted strings."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    if isinstance(value, int | float):
        return repr(value)
    return _quoted(str(value))


def emit(node: object, anchors: Iterator[int]) -> str:
    """Write a node as flow-style YAML, taking fresh anchor numbers from ``anchors``."""
    match node:
        case Pairs(entries):
            lines = (f"{emit(key, anchors)}: {emit(value, anchors)}" for key, value in entries)
            text = "{\n" + ",\n".join(lines) + "\n}"
        case list():
            text = "[\n" + ",\n".join(emit(item, anchors) for item in node) + "\n]"
        case Nested(depth, value):
            text = "[" * depth + emit(value, anchors) + "]" * depth
        case Repeated(value, times):
            text = "[" + ", ".join([emit(value, anchors)] * times) + "]"
        case Bomb(levels, width):
            names = [f"laugh{next(anchors)}" for _ in range(levels)]
            layers = [f"&{names[0]} [{', '.join(['lol'] * width)}]"]
            layers += [f"&{name} [{', '.join([f'*{below}'] * width)}]" for below, name in itertools.pairwise(names)]
            text = "[" + ", ".join(layers) + "]"
        case SelfAlias():
            name = f"self{next(anchors)}"
            text = f"&{name} [*{name}]"
        case _:
            text = _scalar(node)
    return text


def _written(value: object) -> object:
    """Turn loaded YAML into nodes that mutations can change in place."""
    if isinstance(value, dict):
        return Pairs([[key, _written(item)] for key, item in value.items()])
    if isinstance(value, list):
        return [_written(item) for item in value]
    return value


def _slots(holder: list[object], index: int) -> Iterator[tuple[list[object], int]]:
    """Yield where each value under holder[index] sits, as (container, index), that value first."""
    yield holder, index
    node = holder[index]
    if isinstance(node, Pairs):
        for entry in node.entries:
            yield from _slots(entry, 1)
    elif isinstance(node, list):
        for position in range(len(node)):
            yield from _slots(node, position)


STRINGS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "/", "//", "/usr/../bin", "/etc/", "a\0b", "/**", "[x]", "Block", "cap_net_raw", "TCP,udp"]),
    st.builds(
        lambda piece, times: piece * times,
        st.sampled_from(["/", "a", "é", "\0", "/a", "🦀", "\u2028", "\\", "*"]),
        st.integers(100, 50_000),
    ),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63), st.floats(), STRINGS
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(SCALARS, inner), max_size=3).map(lambda pairs: Pairs([list(pair) for pair in pairs]))
    ),
    max_leaves=6,
)


def _replace(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Put a value of any type, or a small structure, in the node's place."""
    holder[index] = draw(VALUES)


def _nest(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Wrap the node in up to 50,000 levels of lists."""
    holder[index] = Nested(draw(st.integers(1, 120) | st.integers(1, 50_000)), holder[index])


def _repeat(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Replace the node by a list of up to 20,000 copies of it, within TEXT_BUDGET."""
    size = len(emit(holder[index], itertools.count()))
    holder[index] = Repeated(holder[index], draw(st.integers(2, max(2, min(20_000, TEXT_BUDGET // size)))))


def _bomb(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Replace the node by aliases that stand for up to 10**9 values."""
    holder[index] = Bomb(draw(st.integers(1, 9)), draw(st.integers(1, 10)))


def _self_alias(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Replace the node by a list that holds itself."""
    holder[index] = SelfAlias()


def _drop(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Remove one of a mapping's keys or a list's items."""
    items = _items(holder[index])
    if items:
        del items[draw(st.integers(0, len(items) - 1))]


def _duplicate(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Repeat a mapping's key (with its value or another) or a list's item."""
    items = _items(holder[index])
    if items:
        position = draw(st.integers(0, len(items) - 1))
        copy = items[position]
        if isinstance(holder[index], Pairs):
            copy = [items[position][0], draw(st.just(items[position][1]) | VALUES)]
        items.insert(position + 1, copy)


def _rekey(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Give one of a mapping's keys a scalar of any type."""
    if isinstance(holder[index], Pairs) and holder[index].entries:
        entries = holder[index].entries
        entries[draw(st.integers(0, len(entries) - 1))][0] = draw(SCALARS)


def _add(draw: st.DrawFn, holder: list[object], index: int) -> None:
    """Add a key of any type to a mapping, or an item to a list."""
    items = _items(holder[index])
    if items is not None:
        items.append([draw(SCALARS), draw(VALUES)] if isinstance(holder[index], Pairs) else draw(VALUES))


def _items(node: object) -> list[object] | None:
    """Return a mapping's entries or a list's items, None for a scalar."""
    if isinstance(node, Pairs):
        return node.entries
    return node if isinstance(node, list) else None


# The changes that leave the rest of the document readable come more often.
GENTLE = (_replace, _drop, _duplicate, _add, _rekey, _repeat)
MUTATIONS = (*GENTLE, *GENTLE, _nest, _bomb, _self_alias)


@st.composite
def mutated_streams(draw: st.DrawFn, texts: tuple[str, ...]) -> str:
    """Draw one to three valid documents, change each a few times, and write them as one YAML stream."""
    anchors = itertools.count()
    documents = []
    for text in draw(st.lists(st.sampled_from(texts), min_size=1, max_size=3, unique=True)):
        holder = [_written(yaml.safe_load(text))]
        for _ in range(draw(st.integers(0, 3))):
            container, index = draw(st.sampled_from(list(_slots(holder, 0))))
            draw(st.sampled_from(MUTATIONS))(draw, container, index)
        documents.append(emit(holder[0], anchors))
    return "\n---\n".join(documents)


def _outcome(read: Reader, text: str) -> object:
    """Read a stream; for a refusal, check that it names the source and a field or line, and return it."""
    try:
        return read(text, source=SOURCE)
    except InputError as error:
        assert error.file == SOURCE
        assert str(error).startswith(f"{SOURCE}: ")
        assert error.field or error.line or re.search(r"\bline \d+", error.reason), f"says not where: {error}"
        return ("refused", str(error))


def check_readers(text: str) -> None:
    """Each reader reads the text or refuses it with an InputError saying where, the same way twice, in time."""
    for read in READERS:
        with time_limit():
            first = _outcome(read, text)
            assert _outcome(read, text) == first


@settings(max_examples=5 * settings.default.max_examples)  # cheap: more examples
@given(text=ARBITRARY_TEXT)
def test_any_text_is_read_or_refused_saying_where(text: str) -> None:
    """Arbitrary text and decoded bytes are read or refused with an InputError naming file and line, never more."""
    check_readers(text)


@given(text=mutated_streams(POLICY_TEXTS))
def test_mutated_policies_are_read_or_refused_saying_where(text: str) -> None:
    """Valid policies, mutated, are read or refused with an InputError naming file and field or line, never more."""
    check_readers(text)


@given(text=mutated_streams(MANIFEST_TEXTS))
def test_mutated_manifests_are_read_or_refused_saying_where(text: str) -> None:
    """Valid pod manifests, mutated, are read or refused with an InputError naming file and field or line."""
    check_readers(text)
