# SPDX-License-Identifier: Apache-2.0
"""Policy validation against the CRD schema, the one source of truth for KubeArmor's policy language.

The CustomResourceDefinitions in adapter/crds (deploy/crds links there) carry the whole
KubeArmorPolicy and KubeArmorClusterPolicy language as an OpenAPI v3 schema, with KubeArmor's
types, enums, patterns and ranges: a cluster without KubeArmor installs them, and its API server
accepts or refuses policies by them. Kadapter checks every policy against the same schema before
its own checks (adapter/policy.py), so it never accepts a policy a cluster would refuse, and it
reports the first violation in the file, as every other error, with file, field path and line.

Two API server behaviours are mirrored: a null value of a field the schema names is dropped before
validation (Kadapter's reader treats null as absent too, so ``nullable`` never matters here), and a
field the schema does not name is refused (the API server drops it, or refuses it under strict
field validation; either way it would not be enforced). Other OpenAPI and ``x-kubernetes-*`` keys
are left to the validator, which ignores the ones it does not know. A pattern violation is
explained with the field's ``description``, which the CRDs write to read after "expected" (a test
checks that every pattern has one).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

from adapter.errors import InputError
from adapter.yaml_reader import Field, type_name

Schema = Mapping[str, Any]

_PYTHON_TYPES = {"boolean": bool, "integer": int, "number": float, "string": str, "array": list, "object": dict}
# An enum longer than this (such as the system call names) is summarised rather than listed.
_LISTED_CHOICES = 12
# A longer string is refused without trying the field's pattern. Python's re backtracks, and
# '^\/+.*[^\/]$' takes quadratic time on a run of '/': minutes for the megabyte the API server
# (whose Go regexp is linear) accepts in syscalls.matchPaths[].path. A path fits in 255 bytes anyway.
PATTERN_MAX_LENGTH = 4096


@functools.cache
def crds() -> dict[str, dict[str, Any]]:
    """Load the CustomResourceDefinitions shipped in adapter/crds, by the kind each defines."""
    found = {}
    for entry in resources.files("adapter").joinpath("crds").iterdir():
        if entry.name.endswith(".yaml"):
            crd = yaml.safe_load(entry.read_text(encoding="utf-8"))
            found[crd["spec"]["names"]["kind"]] = crd
    return found


def policy_schema(kind: str) -> Schema:
    """Return the openAPIV3Schema of a policy kind's only version."""
    (version,) = crds()[kind]["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def validate(doc: Field, kind: str) -> None:
    """Refuse a policy document that the CRD schema of its kind does not accept, at its first violation."""
    schema = policy_schema(kind)
    errors = [_input_error(doc, error) for error in _validator(kind).iter_errors(_json_value(doc, schema))]
    if errors:
        raise min(errors, key=lambda error: error.line or 0)


def _bounded_pattern(
    validator: Draft202012Validator, pattern: str, instance: object, schema: Schema
) -> Iterator[ValidationError]:
    """Check a pattern as the validator does, once the string is short enough to match in reasonable time."""
    if isinstance(instance, str) and len(instance) > PATTERN_MAX_LENGTH:
        reason = f"expected at most {PATTERN_MAX_LENGTH} characters (Kadapter's bound where the schema has a pattern)"
        yield ValidationError(f"{reason}, got {len(instance)}")
    else:
        yield from Draft202012Validator.VALIDATORS["pattern"](validator, pattern, instance, schema)


_BoundedValidator = validators.extend(Draft202012Validator, {"pattern": _bounded_pattern})


@functools.cache
def _validator(kind: str) -> Draft202012Validator:
    """Build the validator for a policy kind, with unknown fields refused."""
    return _BoundedValidator(_closed(policy_schema(kind)))


def _closed(schema: Schema) -> dict[str, Any]:
    """Copy a schema, refusing the fields that its properties do not name."""
    closed = dict(schema)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            closed[key] = _closed(schema[key])
    if "properties" in schema:
        closed["properties"] = {name: _closed(sub) for name, sub in schema["properties"].items()}
        closed["additionalProperties"] = False
    return closed


def _json_value(field: Field, schema: Schema) -> object:
    """Return the value the API server would validate: string keys only, nulls of named fields dropped.

    Only the parts the schema describes are walked, which also keeps recursive YAML aliases out of reach.
    """
    properties = schema.get("properties", {})
    values = schema.get("additionalProperties")
    if not isinstance(values, Mapping):
        values = {}
    if isinstance(field.value, dict) and (properties or values):
        return {
            key: _json_value(child, properties.get(key, values))
            for key, child in field.mapping().items()
            if not (child.missing and key in properties)
        }
    if isinstance(field.value, list) and "items" in schema:
        return [_json_value(item, schema["items"]) for item in field.items()]
    return field.value


def _input_error(doc: Field, error: ValidationError) -> InputError:
    """Turn one schema violation into the InputError of the field it concerns."""
    field = _field_at(doc, error.absolute_path)
    schema, value = error.schema, error.instance
    match error.validator:
        case "additionalProperties":
            key = next(key for key in value if key not in schema["properties"])
            found = field.child(key).error(f"unknown field; expected one of: {', '.join(sorted(schema['properties']))}")
        case "required":
            name = next(name for name in error.validator_value if name not in value)
            found = field.child(name).expected(_type_name(schema["properties"][name]))
        case "type":
            found = field.expected(_type_name(schema))
        case "enum":
            found = field.error(f"expected one of {_choices(error.validator_value)}, got {value!r}")
        case "pattern" if len(value) <= PATTERN_MAX_LENGTH:
            found = field.error(f"expected {schema['description']}, got {value!r}")
        case "maxLength":
            found = field.error(f"expected at most {schema['maxLength']} characters, got {len(value)}")
        case "maxItems":
            found = field.error(f"expected at most {schema['maxItems']} items, got {len(value)}")
        case "minimum" | "maximum" if {"minimum", "maximum"} <= schema.keys():
            found = field.error(
                f"expected {_type_name(schema)} from {schema['minimum']} to {schema['maximum']}, got {value!r}"
            )
        case _:
            found = field.error(error.message)
    return found


def _field_at(doc: Field, path: Iterable[str | int]) -> Field:
    """Step from a document to the field at a path of keys and list indices."""
    field = doc
    for step in path:
        field = field.child(step) if isinstance(step, str) else field.item(step)
    return field


def _type_name(schema: Schema) -> str:
    """Name the YAML type a schema asks for, such as 'a string'."""
    return type_name(_PYTHON_TYPES[schema["type"]])


def _choices(values: list[object]) -> str:
    """List an enum's values, or summarise a long one."""
    if len(values) <= _LISTED_CHOICES:
        return ", ".join(map(str, values))
    return f"the {len(values)} values of the schema ({values[0]}, {values[1]}, ...)"
