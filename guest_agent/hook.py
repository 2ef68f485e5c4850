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

from guest_agent.registration import DEFAULT_SOCKET, Registration, leave_pending, pending_directory, send

# containerd's CRI annotations first, then CRI-O's.
CONTAINER_NAME = ("io.kubernetes.cri.container-name", "io.kubernetes.container.name")
POD_NAMESPACE = ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
POD_NAME = ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
POD_UID = ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid")
CONTAINER_TYPE = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")


# The kernel's PID_MAX_LIMIT on 64-bit: no process id is larger.
PID_MAX = 4_194_304


class HookInputError(ValueError):
    """The OCI state or bundle is not what the runtime spec promises."""


def parse_state(text: str) -> dict[str, Any]:
    """Parse and check the OCI state JSON a runtime writes to a hook's stdin."""
    state = _json(text, "OCI state on stdin")
    if not isinstance(state, dict):
        raise HookInputError("OCI state must be a JSON object")
    for field, kind in (("id", str), ("bundle", str)):
        if not isinstance(state.get(field), kind) or not state[field]:
            raise HookInputError(f"OCI state field {field!r} missing or not a {kind.__name__}")
    pid = state.get("pid", 0)
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise HookInputError("OCI state field 'pid' is not an integer")
    if not 0 <= pid <= PID_MAX:
        raise HookInputError(f"OCI state field 'pid' is out of range (0 to {PID_MAX})")
    if not isinstance(state.get("annotations", {}), dict):
        raise HookInputError("OCI state field 'annotations' is not an object")
    return state


def _json(text: str | bytes, what: str) -> object:
    """Parse JSON, turning each way it can fail into a HookInputError that says what was read."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # ValueError: also bad UTF-8, and integers of 4,300 digits or more
        raise HookInputError(f"{what} is not JSON: {error}") from error


def _first(annotations: dict[str, Any], keys: tuple[str, ...]) -> str:
    """Return the first of these annotations that is set, '' when none is."""
    key = next((key for key in keys if key in annotations), None)
    if key is None:
        return ""
    if not isinstance(annotations[key], str):
        raise HookInputError(f"annotation {key!r} is not a string")
    return annotations[key]


def registration_for(hook_type: str, state: dict[str, Any], config: dict[str, Any]) -> Registration | None:
    """Build what to tell the agent for this hook call, or None when nothing is to be done.

    ``state`` is what parse_state returned, ``config`` the bundle's config.json as a JSON object.
    """
    if hook_type == "poststop":
        return Registration(operation="unregister", container_id=state["id"])
    if hook_type != "prestart":
        return None
    if not state.get("pid"):
        raise HookInputError("prestart state has no pid")
    annotations = _annotations(state, config)
    return Registration(
        operation="register",
        container_id=state["id"],
        container_name=_first(annotations, CONTAINER_NAME),
        pod_namespace=_first(annotations, POD_NAMESPACE),
        pod_name=_first(annotations, POD_NAME),
        pod_uid=_first(annotations, POD_UID),
        pid=state["pid"],
        rootfs=str(Path(state["bundle"], _root_path(config))),
        # The pause container is registered too, so a fail-closed agent lets it run; it gets no rules.
        sandbox=_first(annotations, CONTAINER_TYPE) == "sandbox",
    )


def _annotations(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Merge the annotations of config.json and of the state, the state's first (a runtime may leave out either)."""
    from_config = config.get("annotations", {})
    if not isinstance(from_config, dict):
        raise HookInputError("config.json field 'annotations' is not an object")
    return {**from_config, **state.get("annotations", {})}


def _root_path(config: dict[str, Any]) -> str:
    """Read config.json's root.path: absolute, or relative to the bundle; the runtime spec's default is rootfs."""
    root = config.get("root", {})
    if not isinstance(root, dict):
        raise HookInputError("config.json field 'root' is not an object")
    path = root.get("path", "rootfs")
    if not isinstance(path, str) or not path:
        raise HookInputError("config.json field 'root.path' missing or not a str")
    return path


def _read_config(bundle: str) -> dict[str, Any]:
    """Read the bundle's config.json (annotations, rootfs); {} when the bundle is gone."""
    path = Path(bundle, "config.json")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:  # ValueError: a NUL in the bundle's path
        raise HookInputError(f"{path}: {error}") from error
    config = _json(data, str(path))
    if not isinstance(config, dict):
        raise HookInputError(f"{path} must be a JSON object")
    return config


def deliver(registration: Registration, socket_path: str) -> None:
    """Send a registration; one no agent could take is left pending for the next agent, and still fails.

    kata-agent starts the container whatever the hook returns: left pending, it is registered (and its
    policy enforced) when an agent comes back, unless a fail-closed guest has refused its init's exec.
    """
    try:
        send(registration, socket_path)
    except OSError as error:
        if registration.operation != "register":
            raise
        try:
            left = leave_pending(registration, pending_directory(socket_path))
        except (OSError, ValueError) as not_left:
            raise OSError(f"{error}; not left for the next agent either: {not_left}") from error
        raise OSError(f"{error}; left for the next agent in {left}") from error


def main(argv: list[str] | None = None) -> int:
    """Run as an OCI hook: `kadapter-hook prestart|poststop`, state on stdin; 1, and why on stderr, on failure."""
    args = sys.argv[1:] if argv is None else argv
    hook_type = args[0] if args else ""
    try:
        state = parse_state(sys.stdin.read())
        config = _read_config(state["bundle"]) if hook_type == "prestart" else {}  # poststop needs only the id
        registration = registration_for(hook_type, state, config)
        if registration:
            deliver(registration, os.environ.get("KADAPTER_HOOK_SOCKET", DEFAULT_SOCKET))
    except (HookInputError, OSError, RuntimeError, ValueError) as error:
        print(f"kadapter-hook {hook_type}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
