# SPDX-License-Identifier: Apache-2.0
"""KubeArmor policies as Kadapter reads them: the model, and validation that refuses what it cannot enforce.

Kadapter takes KubeArmor policy files unchanged. Each is first checked against
the CRD schema of its kind (adapter/schema.py), as the API server would check
it; the semantic checks here come after. Whatever Kadapter would otherwise
skip without a word (a field the schema accepts but Kadapter does not enforce
yet, a path the kernel never reports) is refused with an InputError instead,
so a policy is either enforced as written or not loaded at all. Loading a
directory is all or nothing for the same reason.
"""

from __future__ import annotations

import dataclasses
import enum
import posixpath
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from adapter.schema import validate
from adapter.yaml_reader import Field, read_documents, read_text, yaml_files

API_VERSION = "security.kubearmor.com/v1"
DEFAULT_NAMESPACE = "default"
CONTAINER_NAME_LABEL = "kubearmor.io/container.name"
# guest_agent/bpf_types.PATH_MAX is 256: paths live in the BPF maps with their trailing NUL.
MAX_PATH_BYTES = 255

# The part of the policy schema Kadapter enforces, as nested field names: None where Kadapter
# reads the whole value, else the fields it reads inside it (inside each item, for a list).
# Any other field the schema accepts is refused with NOT_ENFORCED_REASON unless its value asks
# for nothing (see _asks_for_nothing); add a field here once the guest agent enforces it.
EnforcedFields = Mapping[str, "EnforcedFields | None"]
_VERDICT = dict.fromkeys(("action", "severity", "tags", "message"))
ENFORCED: EnforcedFields = {
    "apiVersion": None,
    "kind": None,
    "metadata": None,
    "status": None,
    "spec": {
        "selector": None,
        "presets": None,
        "process": {
            "matchPaths": {"path": None, "execname": None, **_VERDICT},
            "matchDirectories": {"dir": None, "recursive": None, **_VERDICT},
            **_VERDICT,
        },
        **_VERDICT,
    },
}
# Booleans whose false is KubeArmor's default, so false asks for nothing. Any other boolean is
# refused whatever its value: for pts, false is the rule (not from a terminal) and true the default.
FALSE_IS_DEFAULT = frozenset({"ownerOnly"})
NOT_ENFORCED_REASON = (
    "not enforced by Kadapter yet; remove it or wait for support (refusing rather than silently not enforcing it)"
)
# Every spec.presets name KubeArmor knows, in its documentation's order; those that are
# not a Preset member are refused with NOT_ENFORCED_REASON. Add a Preset member (and its
# wire value in adapter/exporter.py) once the guest agent enforces one.
KUBEARMOR_PRESETS = ("filelessExec", "anonymousMapExec", "protectEnv", "protectProc", "exec")


class Action(enum.Enum):
    """What happens when a rule matches."""

    ALLOW = "Allow"
    AUDIT = "Audit"
    BLOCK = "Block"


class Preset(enum.Enum):
    """The KubeArmor presets Kadapter enforces, by their spec.presets name."""

    FILELESS_EXEC = "filelessExec"


# A preset names something to stop or report; there is nothing for Allow to permit.
PRESET_ACTIONS = (Action.AUDIT, Action.BLOCK)


class PolicyKind(enum.Enum):
    """The KubeArmor policy kinds that can select pods, and so Kata pods."""

    POLICY = "KubeArmorPolicy"
    CLUSTER_POLICY = "KubeArmorClusterPolicy"


@dataclass(frozen=True)
class ProcessRule:
    """One executable path, or a directory of them, and what to do when one is run, after inheritance."""

    path: str  # a directory ends with "/"; empty for an execname rule
    action: Action
    severity: int
    tags: tuple[str, ...]
    message: str
    recursive: bool = False  # a directory rule covering subdirectories too
    execname: str = ""  # any executable of this name, wherever it is


@dataclass(frozen=True)
class PresetRule:
    """One spec.presets entry, with the spec's severity, tags and message (a preset has none of its own)."""

    preset: Preset
    action: Action
    severity: int
    tags: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class LabelExpression:
    """One matchExpressions entry: key "label" (values "k=v") or "namespace" (cluster policies)."""

    key: str
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Selector:
    """The pods a policy selects; container_names narrows it to some containers of those pods."""

    match_labels: tuple[tuple[str, str], ...]
    container_names: tuple[str, ...]
    match_expressions: tuple[LabelExpression, ...]


@dataclass(frozen=True)
class Policy:
    """A validated KubeArmor policy, reduced to what Kadapter enforces."""

    kind: PolicyKind
    name: str
    namespace: str | None
    selector: Selector
    process_rules: tuple[ProcessRule, ...]
    source: str
    presets: tuple[PresetRule, ...] = ()


@dataclass(frozen=True)
class _Inherited:
    """The action, severity, tags and message a rule gets unless it sets its own."""

    action: Action = Action.BLOCK
    severity: int = 1
    tags: tuple[str, ...] = ()
    message: str = ""

    def override(self, level: Field) -> _Inherited:
        """Apply what one level (spec, section or rule) sets; empty or missing values inherit."""
        changes = {
            "action": _action(level.child("action")),
            "severity": _severity(level.child("severity")),
            "tags": _tags(level.child("tags")),
            "message": _message(level.child("message")),
        }
        return dataclasses.replace(self, **{key: value for key, value in changes.items() if value is not None})


def parse_policies(text: str, *, source: str) -> list[Policy]:
    """Parse and validate every policy of one YAML stream."""
    return _parse(text, source=source, seen={})


def load_policy_file(path: Path) -> list[Policy]:
    """Load and validate the policies of one file."""
    return parse_policies(read_text(path), source=str(path))


def load_policy_dir(directory: Path) -> list[Policy]:
    """Load every *.yaml and *.yml file of a directory, failing on the first invalid one."""
    seen: dict[tuple[PolicyKind, str | None, str], str] = {}
    policies: list[Policy] = []
    for path in yaml_files(directory):
        policies.extend(_parse(read_text(path), source=str(path), seen=seen))
    return policies


def _parse(text: str, *, source: str, seen: dict[tuple[PolicyKind, str | None, str], str]) -> list[Policy]:
    """Parse one stream, refusing a policy whose kind, namespace and name are already in ``seen``."""
    policies = []
    for doc in read_documents(text, source=source):
        policy = _policy(doc, source)
        key = (policy.kind, policy.namespace, policy.name)
        if key in seen:
            scope = f" in namespace {policy.namespace!r}" if policy.namespace else ""
            raise (
                doc.child("metadata")
                .child("name")
                .error(
                    f"{policy.kind.value} {policy.name!r}{scope} is defined twice; "
                    f"the other definition is in {seen[key]}"
                )
            )
        seen[key] = source
        policies.append(policy)
    return policies


def _policy(doc: Field, source: str) -> Policy:
    """Validate one document as a policy: its kind and apiVersion, the CRD schema, then Kadapter's checks."""
    if not isinstance(doc.value, dict):
        raise doc.expected("a mapping (a KubeArmor policy object)")
    kind = _kind(doc.child("kind"))
    api_version = doc.child("apiVersion")
    if api_version.string() != API_VERSION:
        raise api_version.error(f"expected {API_VERSION!r}, got {api_version.value!r}")
    validate(doc, kind.value)
    _refuse_not_enforced(doc, ENFORCED)
    metadata = doc.child("metadata")
    name = metadata.child("name").dns_subdomain()
    namespace = None
    if kind is PolicyKind.POLICY:
        given = metadata.child("namespace")
        namespace = DEFAULT_NAMESPACE if given.missing else given.dns_label()
    spec = doc.child("spec")
    selector = _selector(spec.child("selector"), kind)
    inherited = _Inherited().override(spec)
    process = spec.child("process")
    rules = _process_rules(process, inherited)
    presets = _presets(spec.child("presets"), inherited)
    if not rules and not presets:
        raise process.error(
            "no rules: Kadapter enforces spec.process.matchPaths and spec.presets, and this policy has neither"
        )
    return Policy(
        kind=kind,
        name=name,
        namespace=namespace,
        selector=selector,
        process_rules=rules,
        source=source,
        presets=presets,
    )


def _kind(field: Field) -> PolicyKind:
    """Read the kind, explaining why host and other policies are refused."""
    text = field.string()
    if text == "KubeArmorHostPolicy":
        raise field.error(
            "host policies are not for Kata pods; Kadapter reads KubeArmorPolicy and KubeArmorClusterPolicy"
        )
    try:
        return PolicyKind(text)
    except ValueError:
        raise field.error(f"unknown kind {text!r}; expected KubeArmorPolicy or KubeArmorClusterPolicy") from None


def _selector(field: Field, kind: PolicyKind) -> Selector:
    """Read spec.selector for either policy kind."""
    if field.missing:
        raise field.error("required: a selector naming the pods the policy applies to")
    labels, expressions = field.child("matchLabels"), field.child("matchExpressions")
    if kind is PolicyKind.CLUSTER_POLICY:
        if expressions.missing:
            raise expressions.error("required: cluster policies select pods by namespace or label here")
        return Selector((), (), _expressions(expressions))
    if labels.missing and expressions.missing:
        raise field.error(
            "expected matchLabels or matchExpressions, found neither "
            "(write 'matchLabels: {}' to select every pod in the namespace)"
        )
    match_labels, container_names = ((), ()) if labels.missing else _match_labels(labels)
    match_expressions = () if expressions.missing else _expressions(expressions)
    return Selector(match_labels, container_names, match_expressions)


def _match_labels(field: Field) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Split matchLabels into ordinary labels and the container-name pseudo label."""
    pairs = field.string_map()
    labels = tuple(pair for pair in pairs if pair[0] != CONTAINER_NAME_LABEL)
    containers: tuple[str, ...] = ()
    if len(labels) < len(pairs):
        text = dict(pairs)[CONTAINER_NAME_LABEL]
        names = (name.strip() for name in text.strip().removeprefix("[").removesuffix("]").split(","))
        containers = tuple(dict.fromkeys(name for name in names if name))
        if not containers:
            raise field.child(CONTAINER_NAME_LABEL).error(
                f"expected one or more container names, such as '[nginx, sidecar]', got {text!r}"
            )
    return labels, containers


def _expressions(field: Field) -> tuple[LabelExpression, ...]:
    """Read matchExpressions, whose keys and operators the schema has checked if present."""
    expressions = []
    for item in field.items():
        key, operator = item.child("key").string(), item.child("operator").string()
        values_field = item.child("values")
        values = values_field.strings()
        if not values:
            raise values_field.error("expected at least one value, got an empty list")
        for value_field, value in zip(values_field.items(), values, strict=True):
            label, equals, _ = value.partition("=")
            if key == "label" and not (label and equals):
                raise value_field.error(f"expected a label as 'key=value', got {value!r}")
        expressions.append(LabelExpression(key=key, operator=operator, values=values))
    return tuple(expressions)


def _process_rules(process: Field, inherited: _Inherited) -> tuple[ProcessRule, ...]:
    """Read spec.process into rules with their inherited action, severity, tags and message.

    A missing section has no rules (the policy may hold only presets); a section without
    matchPaths or matchDirectories is refused, since whatever else it sets would apply to nothing.
    """
    if process.missing:
        return ()
    section = inherited.override(process)
    lists = [process.child(name) for name in ("matchPaths", "matchDirectories")]
    if all(field.missing for field in lists):
        raise process.error(
            "no rules: Kadapter enforces spec.process.matchPaths and matchDirectories and this section has neither"
        )
    rules = []
    for field in lists:
        if field.missing:
            continue
        items = field.items()
        if not items:
            raise field.error("expected a non-empty list of rules, got an empty list")
        rules.extend(_rule(item, section) for item in items)
    return tuple(rules)


def _rule(item: Field, section: _Inherited) -> ProcessRule:
    """Read one matchPaths or matchDirectories entry."""
    final = section.override(item)
    verdict = {"action": final.action, "severity": final.severity, "tags": final.tags, "message": final.message}
    directory = item.child("dir")
    if directory.missing:
        path, execname = item.child("path"), item.child("execname")
        if path.missing == execname.missing:
            raise item.error("expected either path or execname")
        if path.missing:
            return ProcessRule(path="", execname=_execname(execname), **verdict)
        return ProcessRule(path=_normalised_path(path), **verdict)
    recursive = item.child("recursive")
    return ProcessRule(
        path=_normalised_path(directory), recursive=not recursive.missing and bool(recursive.of_type(bool)), **verdict
    )


def _presets(field: Field, spec: _Inherited) -> tuple[PresetRule, ...]:
    """Read spec.presets, refusing a preset listed twice (its entries could disagree on the action)."""
    if field.missing:
        return ()
    presets: dict[Preset, PresetRule] = {}
    for item in field.items():
        rule = _preset_rule(item, spec)
        if rule.preset in presets:
            raise item.child("name").error(f"preset {rule.preset.value!r} is listed twice; list each preset once")
        presets[rule.preset] = rule
    return tuple(presets.values())


def _preset_rule(item: Field, spec: _Inherited) -> PresetRule:
    """Read one spec.presets entry.

    KubeArmor gives a preset only a name and an action: a missing action
    means Block (spec.action does not apply), and severity, tags and message are the spec's.
    """
    preset = _preset(item.child("name"))
    action = _action(item.child("action"), allowed=PRESET_ACTIONS) or Action.BLOCK
    return PresetRule(preset=preset, action=action, severity=spec.severity, tags=spec.tags, message=spec.message)


def _preset(field: Field) -> Preset:
    """Read a preset name, telling KubeArmor presets Kadapter does not enforce from unknown names."""
    name = field.string()
    try:
        return Preset(name)
    except ValueError:
        if name in KUBEARMOR_PRESETS:
            raise field.error(f"preset {name!r} is {NOT_ENFORCED_REASON}") from None
        enforced = ", ".join(preset.value for preset in Preset)
        raise field.error(
            f"unknown preset {name!r}; KubeArmor's presets are {', '.join(KUBEARMOR_PRESETS)} "
            f"(Kadapter enforces {enforced})"
        ) from None


def _refuse_not_enforced(field: Field, enforced: EnforcedFields) -> None:
    """Refuse each field under ``field`` that Kadapter does not enforce, unless it asks for nothing."""
    for item in field.items() if isinstance(field.value, list) else (field,):
        for key, child in item.mapping().items():
            if key not in enforced:
                if _asks_for_nothing(key, child.value):
                    continue
                raise child.error(NOT_ENFORCED_REASON)
            inner = enforced[key]
            if inner is not None and not child.missing:
                _refuse_not_enforced(child, inner)


def _asks_for_nothing(key: str, value: object) -> bool:
    """Tell whether a value asks for nothing: null, empty, or a boolean false that is KubeArmor's default."""
    if isinstance(value, bool):
        return not value and key in FALSE_IS_DEFAULT
    return value is None or value in ("", [], {})


def _execname(field: Field) -> str:
    """Read an executable's name (the schema has refused any '/') that fits the guest's BPF maps."""
    name = field.string()
    if "\0" in name or name in (".", "..") or len(name.encode()) > MAX_PATH_BYTES:
        raise field.error(f"expected a file name of at most {MAX_PATH_BYTES} bytes, got {name!r}")
    return name


def _normalised_path(field: Field) -> str:
    """Read a normalised file or directory path (the schema has made it absolute) that fits the guest's BPF maps."""
    path = field.string()
    if "\0" in path:
        raise field.error("the path contains a NUL byte")
    if any(segment in ("", ".", "..") for segment in path[1:].removesuffix("/").split("/")) and path != "/":
        normal = "/" + posixpath.normpath(path).lstrip("/")
        if path.endswith("/") and normal != "/":
            normal += "/"
        hint = f"; write {normal!r}" if normal != "/" else ""
        raise field.error(
            f"path {path!r} is not normalised: the kernel reports files without '//', '.' or '..' "
            f"segments, so this rule would never match{hint}"
        )
    size = len(path.encode())
    if size > MAX_PATH_BYTES:
        raise field.error(
            f"path is {size} bytes of UTF-8; Kadapter's limit is {MAX_PATH_BYTES} bytes "
            "(the guest's BPF maps hold a path and its trailing NUL in 256 bytes)"
        )
    return path


def _action(field: Field, *, allowed: Collection[Action] = tuple(Action)) -> Action | None:
    """Read one of the ``allowed`` actions (the schema has checked it is an action); missing means inherit."""
    if field.missing:
        return None
    action = Action(field.string())
    if action not in allowed:
        raise field.error(f"expected one of {', '.join(choice.value for choice in allowed)}, got {action.value!r}")
    return action


def _severity(field: Field) -> int | None:
    """Read a severity (the schema has checked its range); missing means inherit."""
    return None if field.missing else field.integer()


def _tags(field: Field) -> tuple[str, ...] | None:
    """Read a list of tags; empty or missing means inherit."""
    return None if field.missing else field.strings() or None


def _message(field: Field) -> str | None:
    """Read a message; empty or missing means inherit."""
    return None if field.missing else field.string() or None
