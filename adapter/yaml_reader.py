# SPDX-License-Identifier: Apache-2.0
"""Strict YAML reading for policies and manifests, with field paths and line numbers.

A policy Kadapter misreads is a policy it does not enforce, so every file is
read strictly: a wrong type or a duplicate key stops the load with an error
naming the file, the field (as a dotted path such as
``spec.process.matchPaths[0].path``), the line when known, and what was
expected. Policies and pod manifests share this reader; adapter/schema.py
raises its errors through it too, for what the policy schema refuses.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.reader import ReaderError

from adapter.errors import InputError

FieldPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TYPE_NAMES = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def describe(value: object) -> str:
    """Name the YAML type of a value, for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def type_name(kind: type) -> str:
    """Name a YAML type, such as 'a string' for str."""
    return dict(_TYPE_NAMES)[kind]


def format_field(path: FieldPath, *, start: str = "") -> str:
    """Render a field path as spec.a[0].b after ``start``, quoting keys that are not plain words."""
    text = start
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif _PLAIN_KEY.match(step):
            text += f".{step}" if text else step
        else:
            text += f'["{step}"]'
    return text


@dataclass(frozen=True)
class Document:
    """One non-empty YAML document of a file, able to point at its own fields."""

    source: str
    index: int | None  # position in the stream; None when the file holds one document
    node: yaml.Node

    def field_name(self, path: FieldPath) -> str:
        """Render a field path, prefixed with the document index in multi-document files."""
        return format_field(path, start="" if self.index is None else f"document[{self.index}]")

    def error(self, path: FieldPath, reason: str) -> InputError:
        """Build the error for a field of this document, with its line number."""
        return InputError(file=self.source, field=self.field_name(path), reason=reason, line=self._line(path))

    def _line(self, path: FieldPath) -> int:
        """Find the line of the deepest node along the path that exists."""
        node = self.node
        for step in path:
            child = _child_node(node, step)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1


def _child_node(node: yaml.Node, step: str | int) -> yaml.Node | None:
    """Return the node under a mapping key or sequence index, if there is one."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        return next((value for key, value in node.value if key.value == step), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step]
    return None


@dataclass(frozen=True)
class Field:
    """A value read from a document, with the path that leads to it."""

    doc: Document
    path: FieldPath
    value: object

    @property
    def missing(self) -> bool:
        """Tell whether the field is absent or null, which this reader treats alike."""
        return self.value is None

    def error(self, reason: str) -> InputError:
        """Build the error for this field."""
        return self.doc.error(self.path, reason)

    def expected(self, what: str) -> InputError:
        """Build the error for a value that is missing or of the wrong type."""
        if self.missing:
            return self.error(f"required: expected {what}")
        scalar = isinstance(self.value, bool | int | float)
        hint = " (quote the value in YAML)" if what == type_name(str) and scalar else ""
        return self.error(f"expected {what}{hint}, got {describe(self.value)}")

    def of_type(self, kind: type) -> object:
        """Read a value of one YAML type (a boolean is not an integer here)."""
        if not isinstance(self.value, kind) or (kind is int and isinstance(self.value, bool)):
            raise self.expected(type_name(kind))
        return self.value

    def mapping(self) -> dict[str, Field]:
        """Read a mapping with string keys."""
        if not isinstance(self.value, dict):
            raise self.expected("a mapping")
        fields = {}
        for key, value in self.value.items():
            if not isinstance(key, str):
                raise self.error(f"expected string keys, got {describe(key)} key {key!r}")
            fields[key] = Field(self.doc, (*self.path, key), value)
        return fields

    def child(self, key: str) -> Field:
        """Step into a key of a mapping; the child is missing when the key is absent."""
        value = self.value.get(key) if isinstance(self.value, dict) else None
        return Field(self.doc, (*self.path, key), value)

    def integer(self) -> int:
        """Read an integer (a boolean is not one here)."""
        return self.of_type(int)

    def item(self, index: int) -> Field:
        """Step into one item of a list known to have it, without reading the others."""
        return Field(self.doc, (*self.path, index), self.value[index])

    def items(self) -> list[Field]:
        """Read a list."""
        if not isinstance(self.value, list):
            raise self.expected("a list")
        return [Field(self.doc, (*self.path, index), value) for index, value in enumerate(self.value)]

    def string(self) -> str:
        """Read a string."""
        if not isinstance(self.value, str):
            raise self.expected(type_name(str))
        return self.value

    def strings(self) -> tuple[str, ...]:
        """Read a list of strings."""
        return tuple(item.string() for item in self.items())

    def string_map(self) -> tuple[tuple[str, str], ...]:
        """Read a mapping of strings to strings, such as labels, as sorted pairs."""
        return tuple(sorted((key, value.string()) for key, value in self.mapping().items()))

    def dns_label(self) -> str:
        """Read a Kubernetes DNS-1123 label, such as a namespace name."""
        return self._dns_name(_DNS_LABEL, 63, "label", "lowercase letters, digits and '-'")

    def dns_subdomain(self) -> str:
        """Read a Kubernetes DNS-1123 subdomain, such as an object name."""
        return self._dns_name(_DNS_SUBDOMAIN, 253, "subdomain", "lowercase letters, digits, '-' and '.'")

    def _dns_name(self, pattern: re.Pattern[str], limit: int, kind: str, characters: str) -> str:
        """Read a string that must match a DNS-1123 pattern within a length limit."""
        text = self.string()
        if len(text) > limit or not pattern.match(text):
            raise self.error(
                f"expected a DNS-1123 {kind} (at most {limit} {characters}, "
                f"starting and ending with a letter or digit), got {text!r}"
            )
        return text


# libyaml's parser when PyYAML has it (its wheels do): the same nodes and marks, several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A stream beyond these is refused before it is composed. libyaml's composer recurses in C without a
# limit (some 30,000 '[' crash the interpreter), and a few lines of aliases can stand for a billion
# values (the "billion laughs") that the schema validator would spend hours printing. No policy or
# manifest comes near either: a Pod nests about ten levels deep, and aliases repeat a few values.
MAX_DEPTH = 100
MAX_ALIASED_NODES = 10_000
NULL_TAG = "tag:yaml.org,2002:null"  # an empty document's


def read_documents(text: str, *, source: str) -> list[Field]:
    """Parse a YAML stream into its non-empty documents, refusing syntax errors, duplicate keys and bombs."""
    with _as_input_errors(text, source):
        _refuse_bombs(text, source)
        loader = _LOADER(text)
    try:
        with _as_input_errors(text, source):
            nodes = _compose(loader)
        present = [(index, node) for index, node in enumerate(nodes) if node.tag != NULL_TAG]
        documents = []
        for index, node in present:
            doc = Document(source, index if len(present) > 1 else None, node)
            _refuse_duplicate_keys(doc)  # before construction, which flattens merge keys (<<) into their mappings
            with _as_input_errors(text, source):
                documents.append(Field(doc, (), loader.construct_document(node)))
        return documents
    finally:
        loader.dispose()


@contextlib.contextmanager
def _as_input_errors(text: str, source: str) -> Iterator[None]:
    """Turn what PyYAML raises on bad input into an InputError naming the line."""
    try:
        yield
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, source, text) from exc
    except UnicodeEncodeError as exc:  # a lone surrogate, which a str may hold and UTF-8 cannot
        line = text.count("\n", 0, exc.start) + 1
        raise InputError(file=source, field="", reason=f"not UTF-8 text ({exc.reason})", line=line) from exc


def _compose(loader: yaml.SafeLoader) -> list[yaml.Node]:
    """Compose every document of the stream into its node graph (anchors resolved, nothing constructed)."""
    nodes = []
    while loader.check_node():
        nodes.append(loader.get_node())
    return nodes


def _refuse_bombs(text: str, source: str) -> None:
    """Refuse, from the parser's events, nesting deeper than MAX_DEPTH and aliases past MAX_ALIASED_NODES."""
    open_collections: list[tuple[str | None, int]] = []  # anchor, and nodes counted up to the collection
    sizes: dict[str, int] = {}  # anchor -> nodes its value stands for, aliases expanded
    nodes = repeated = 0
    for event in yaml.parse(text, Loader=_LOADER):
        problem = ""
        if isinstance(event, yaml.DocumentStartEvent):
            sizes.clear()  # anchors belong to their document
            repeated = 0
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_collections):
                problem = f"alias *{event.anchor} is inside the value it names, which would then be infinite"
            size = sizes.get(event.anchor, 1)  # an unknown anchor is the composer's to refuse
            nodes, repeated = nodes + size, repeated + size
            if repeated > MAX_ALIASED_NODES:
                problem = f"aliases repeat more than {MAX_ALIASED_NODES} values (a few can stand for billions)"
        elif isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            nodes += 1
            if isinstance(event, yaml.CollectionStartEvent):
                open_collections.append((event.anchor, nodes))
            elif event.anchor:
                sizes[event.anchor] = 1
            if len(open_collections) > MAX_DEPTH:
                problem = f"more than {MAX_DEPTH} levels of nesting (deeper nesting can crash the YAML parser)"
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start = open_collections.pop()
            if anchor:
                sizes[anchor] = nodes - start + 1
        if problem:
            raise InputError(file=source, field="", reason=problem, line=event.start_mark.line + 1)


def _syntax_error(exc: yaml.YAMLError, source: str, text: str) -> InputError:
    """Turn a PyYAML error into an InputError that names the line."""
    if isinstance(exc, ReaderError):  # no mark; its offset counts bytes in libyaml, characters in PyYAML
        index = text.find(chr(exc.character))  # the first character the reader does not accept
        line, column = text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)
        reason = f"invalid YAML at column {column}: character U+{exc.character:04X} ({exc.reason})"
        return InputError(file=source, field="", reason=reason, line=line)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return InputError(file=source, field="", reason=f"invalid YAML: {problem}")
    reason = f"invalid YAML at column {mark.column + 1}: {problem}"
    return InputError(file=source, field="", reason=reason, line=mark.line + 1)


def _refuse_duplicate_keys(doc: Document) -> None:
    """Refuse a mapping that repeats a key: YAML keeps the last one and silently drops the rest."""
    for node, path in _walk(doc.node, (), set()):
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise InputError(
                        file=doc.source,
                        field=doc.field_name((*path, key.value)),
                        reason="duplicate key; YAML would keep only the last one",
                        line=key.start_mark.line + 1,
                    )
                seen.add(key.value)


def _walk(node: yaml.Node, path: FieldPath, seen: set[int]) -> Iterator[tuple[yaml.MappingNode, FieldPath]]:
    """Yield every mapping node under a node once, with its path (aliases are followed once)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        yield node, path
        for key, value in node.value:
            yield from _walk(value, (*path, str(key.value)), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(item, (*path, index), seen)


def read_text(path: Path) -> str:
    """Read a UTF-8 file, turning I/O and encoding failures into InputError."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(file=str(path), field="", reason=f"not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(file=str(path), field="", reason=f"cannot read: {exc.strerror}") from exc


def yaml_files(directory: Path) -> list[Path]:
    """List the *.yaml and *.yml files of a directory, sorted, skipping hidden ones."""
    if not directory.is_dir():
        raise InputError(file=str(directory), field="", reason="not a directory")
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix in {".yaml", ".yml"} and not path.name.startswith(".") and path.is_file()
    )
