# SPDX-License-Identifier: Apache-2.0
"""The CRD schema: the CustomResourceDefinitions themselves, and policies checked against them."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from adapter.errors import InputError
from adapter.policy import load_policy_file
from adapter.schema import PATTERN_MAX_LENGTH, crds, policy_schema, validate
from adapter.yaml_reader import read_documents

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CRDS = REPO / "deploy" / "crds"
EXAMPLE_POLICIES = sorted((REPO / "policies").glob("*.yaml"))
GROUP = "security.kubearmor.com"

CRD_FILES = [
    pytest.param("kubearmorpolicy.yaml", "KubeArmorPolicy", "kubearmorpolicies", "Namespaced", "ksp", id="ksp"),
    pytest.param(
        "kubearmorclusterpolicy.yaml", "KubeArmorClusterPolicy", "kubearmorclusterpolicies", "Cluster", "csp", id="csp"
    ),
]


def subschemas(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield every schema node under a schema, with a dotted path to it."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from subschemas(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            yield from subschemas(schema[key], f"{path}.{key}")


# --- the CustomResourceDefinitions --------------------------------------------------------------


@pytest.mark.parametrize(("file", "kind", "plural", "scope", "short_name"), CRD_FILES)
def test_crd_file_is_a_structurally_valid_crd(file: str, kind: str, plural: str, scope: str, short_name: str) -> None:
    """Each file in deploy/crds is an apiextensions.k8s.io/v1 CRD of one served, stored version with a schema."""
    crd = yaml.safe_load((DEPLOY_CRDS / file).read_text(encoding="utf-8"))
    assert (crd["apiVersion"], crd["kind"]) == ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == (GROUP, scope)
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [short_name],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("kind", ["KubeArmorPolicy", "KubeArmorClusterPolicy"])
def test_every_schema_node_is_typed_and_every_pattern_explained(kind: str) -> None:
    """Structural schemas type every node; a pattern carries the description its error message quotes."""
    for path, node in subschemas(policy_schema(kind)):
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        assert "pattern" not in node or node.get("description"), path


def test_the_two_kinds_share_one_schema_but_for_the_selector() -> None:
    """KubeArmorClusterPolicy differs from KubeArmorPolicy only by selecting with namespace or label expressions."""
    (namespaced, namespaced_selector), (cluster, cluster_selector) = (
        _split_selector(kind) for kind in ("KubeArmorPolicy", "KubeArmorClusterPolicy")
    )
    assert namespaced == cluster
    assert set(namespaced_selector["properties"]) == {"matchLabels", "matchExpressions"}
    assert set(cluster_selector["properties"]) == {"matchExpressions"}
    keys = [
        selector["properties"]["matchExpressions"]["items"]["properties"]["key"]["enum"]
        for selector in (namespaced_selector, cluster_selector)
    ]
    assert keys == [["label"], ["namespace", "label"]]


def _split_selector(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return a copy of a kind's schema without spec.selector, and the selector's schema."""
    schema = copy.deepcopy(dict(policy_schema(kind)))
    return schema, schema["properties"]["spec"]["properties"].pop("selector")


def test_deploy_crds_are_the_files_the_package_ships() -> None:
    """deploy/crds is the adapter package's crds directory, so kubectl and Kadapter read the same files."""
    assert DEPLOY_CRDS.resolve() == (REPO / "adapter" / "crds").resolve()
    shipped = {kind: crd["spec"]["names"]["plural"] for kind, crd in crds().items()}
    assert shipped == {"KubeArmorPolicy": "kubearmorpolicies", "KubeArmorClusterPolicy": "kubearmorclusterpolicies"}


# --- policies against the schema ----------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_POLICIES, ids=[path.name for path in EXAMPLE_POLICIES])
def test_example_policy_validates(path: Path) -> None:
    """Every example policy in policies/ passes the schema of its kind, and then Kadapter's own checks."""
    for doc in read_documents(path.read_text(encoding="utf-8"), source=str(path)):
        validate(doc, doc.child("kind").string())
    assert load_policy_file(path)


def test_examples_exist() -> None:
    """The example parametrization above is not empty."""
    assert EXAMPLE_POLICIES


SPEC = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: schema
spec:
  selector:
    matchLabels:
      app: nginx
  process:
    matchPaths:
    - path: /usr/bin/apt
"""


def schema_error(extra: str) -> InputError:
    """Validate SPEC with extra lines appended, which the schema must refuse, and return the error."""
    (doc,) = read_documents(SPEC + extra, source="p.yaml")
    with pytest.raises(InputError) as caught:
        validate(doc, "KubeArmorPolicy")
    assert caught.value.file == "p.yaml"
    return caught.value


@pytest.mark.parametrize(
    ("extra", "field", "line", "reason"),
    [
        pytest.param(
            "  network:\n    matchProtocols:\n    - protocol: tcp\n    - protocol: http\n",
            "spec.network.matchProtocols[1].protocol",
            15,
            "expected a protocol: tcp, udp, raw, icmp, icmpv6, sctp, stream, dgram, rdm, seqpacket, dccp, packet or "
            "all (lowercase or uppercase), got 'http'",
            id="protocol",
        ),
        pytest.param(
            "  severity: 11\n", "spec.severity", 12, "expected an integer from 1 to 10, got 11", id="severity-11"
        ),
        pytest.param(
            "  file:\n    matchPaths:\n    - path: etc/shadow\n",
            "spec.file.matchPaths[0].path",
            14,
            "expected an absolute path (starting with '/', not ending in '/'), got 'etc/shadow'",
            id="path-pattern",
        ),
        pytest.param(
            "  file:\n    matchDirectories:\n    - dir: /etc\n",
            "spec.file.matchDirectories[0].dir",
            14,
            "expected an absolute directory path (starting and ending with '/'), got '/etc'",
            id="dir-pattern",
        ),
        pytest.param(
            "  presets:\n  - name: filelessExec\n    actoin: Block\n",
            "spec.presets[0].actoin",
            14,
            "unknown field; expected one of: action, name",
            id="unknown-field",
        ),
        pytest.param(
            "  syscalls:\n    matchSyscalls:\n    - syscall: [unlink, unlnk]\n",
            "spec.syscalls.matchSyscalls[0].syscall[1]",
            14,
            "expected one of the 335 values of the schema (read, write, ...), got 'unlnk'",
            id="syscall-enum",
        ),
        pytest.param(
            "  capabilities:\n    matchCapabilities:\n    - action: Block\n",
            "spec.capabilities.matchCapabilities[0].capability",
            14,
            "required: expected a string",
            id="required",
        ),
        pytest.param(
            "  network:\n    action: Deny\n",
            "spec.network.action",
            13,
            "expected one of Allow, Audit, Block, got 'Deny'",
            id="section-action-enum",
        ),
        pytest.param(
            "  tags: [a, 2]\n",
            "spec.tags[1]",
            12,
            "expected a string (quote the value in YAML), got an integer",
            id="type",
        ),
        pytest.param(
            "  unknown:\n",
            "spec.unknown",
            12,
            "unknown field; expected one of: action, apparmor",
            id="null-unknown-field",
        ),
    ],
)
def test_schema_error_names_field_line_and_reason(extra: str, field: str, line: int, reason: str) -> None:
    """A schema violation is reported at the offending field, with its line and a readable reason."""
    error = schema_error(extra)
    assert (error.field, error.line) == (field, line)
    assert error.reason.startswith(reason)
    assert str(error) == f"p.yaml: {field}: {error.reason} (line {line})"


def test_first_violation_in_the_file_is_reported() -> None:
    """Of several violations, the one on the earliest line is reported, not the one the schema lists first."""
    spec_fields = list(policy_schema("KubeArmorPolicy")["properties"]["spec"]["properties"])
    assert spec_fields.index("severity") < spec_fields.index("action")
    error = schema_error("  action: Deny\n  severity: 0\n")
    assert (error.field, error.line) == ("spec.action", 12)


def test_null_fields_are_absent_but_null_unknown_fields_are_not() -> None:
    """Like the API server, the schema check drops nulls of fields it names and still refuses unknown names."""
    (doc,) = read_documents(SPEC + "  severity:\n  file:\n  tags: []\n", source="p.yaml")
    validate(doc, "KubeArmorPolicy")
    assert schema_error("  proces:\n").field == "spec.proces"


def test_mapping_keys_must_be_strings() -> None:
    """A YAML key that is not a string (here the boolean 'on') is refused before the schema sees it."""
    error = schema_error("  file:\n    on: true\n")
    assert (error.field, error.reason) == ("spec.file", "expected string keys, got a boolean key True")


def test_a_long_string_is_refused_without_trying_the_pattern() -> None:
    """A megabyte of '/' as a syscalls path (the API server takes it) is refused at once, not after hours of regex."""
    path = "/" * 1_000_000
    error = schema_error(f"  syscalls:\n    matchPaths:\n    - syscall: [unlink]\n      path: '{path}'\n")
    assert (error.field, error.line) == ("spec.syscalls.matchPaths[0].path", 15)
    assert error.reason.startswith(f"expected at most {PATTERN_MAX_LENGTH} characters")


def test_many_violations_in_a_long_list_are_reported_in_linear_time() -> None:
    """Each of 20,000 wrong tags is located by its index alone (the whole list once per violation took hours)."""
    error = schema_error("  tags: [" + ", ".join(["1"] * 20_000) + "]\n")
    assert (error.field, error.line) == ("spec.tags[0]", 12)
