# SPDX-License-Identifier: Apache-2.0
"""kadapter-hook: the OCI hook kata-agent runs for each container in the guest.

Installed under Kata's guest_hook_path as prestart/ and poststop/ entries.
kata-agent calls it as `<path> <hook type>` with the OCI state on stdin and
an empty environment. At prestart the container's init process already sits
in its final namespaces but has not exec'd its workload yet, so once this
hook returns the container is under policy from its very first exec. The
pod's pause container is registered as such and never given rules.
Standard library only (startup time).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from guest_agent.registration import DEFAULT_SOCKET, Registration, send

# containerd's CRI annotations first, then CRI-O's.
CONTAINER_NAME = ("io.kubernetes.cri.container-name", "io.kubernetes.container.name")
POD_NAMESPACE = ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
POD_NAME = ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
POD_UID = ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid")
CONTAINER_TYPE = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")


class HookInputError(ValueError):
    """The OCI state or bundle is not what the runtime spec promises."""


def parse_state(text: str) -> dict[str, Any]:
    """Parse and check the OCI state JSON a runtime writes to a hook's stdin."""
    try:
        state = json.loads(text)
    except json.JSONDecodeError as error:
        raise HookInputError(f"OCI state on stdin is not JSON: {error}") from error
    if not isinstance(state, dict):
        raise HookInputError("OCI state must be a JSON object")
    for field, kind in (("id", str), ("bundle", str)):
        if not isinstance(state.get(field), kind) or not state[field]:
            raise HookInputError(f"OCI state field {field!r} missing or not a {kind.__name__}")
    if not isinstance(state.get("pid", 0), int) or isinstance(state.get("pid"), bool):
        raise HookInputError("OCI state field 'pid' is not an integer")
    if not isinstance(state.get("annotations", {}), dict):
        raise HookInputError("OCI state field 'annotations' is not an object")
    return state


def _first(annotations: dict[str, str], keys: tuple[str, ...]) -> str:
    return next((annotations[key] for key in keys if key in annotations), "")


def registration_for(hook_type: str, state: dict[str, Any], config: dict[str, Any]) -> Registration | None:
    """Build what to tell the agent for this hook call, or None when nothing is to be done."""
    annotations = {**config.get("annotations", {}), **state.get("annotations", {})}
    if hook_type == "poststop":
        return Registration(operation="unregister", container_id=state["id"])
    if hook_type != "prestart":
        return None
    if not state.get("pid"):
        raise HookInputError("prestart state has no pid")
    root = config.get("root", {}).get("path", "rootfs")
    return Registration(
        operation="register",
        container_id=state["id"],
        container_name=_first(annotations, CONTAINER_NAME),
        pod_namespace=_first(annotations, POD_NAMESPACE),
        pod_name=_first(annotations, POD_NAME),
        pod_uid=_first(annotations, POD_UID),
        pid=state["pid"],
        rootfs=str(Path(state["bundle"], root)),
        # The pause container is registered too, so a fail-closed agent lets it run; it gets no rules.
        sandbox=_first(annotations, CONTAINER_TYPE) == "sandbox",
    )


def _read_config(bundle: str) -> dict[str, Any]:
    """Read the bundle's config.json (annotations, rootfs); {} when the bundle is gone."""
    try:
        return json.loads(Path(bundle, "config.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        raise HookInputError(f"{bundle}/config.json: {error}") from error


def main(argv: list[str] | None = None) -> int:
    """Run as an OCI hook: `kadapter-hook prestart|poststop`, state on stdin."""
    args = sys.argv[1:] if argv is None else argv
    hook_type = args[0] if args else ""
    try:
        state = parse_state(sys.stdin.read())
        registration = registration_for(hook_type, state, _read_config(state["bundle"]))
        if registration:
            send(registration, os.environ.get("KADAPTER_HOOK_SOCKET", DEFAULT_SOCKET))
    except (HookInputError, OSError, RuntimeError, ValueError) as error:
        print(f"kadapter-hook {hook_type}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
