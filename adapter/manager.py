# SPDX-License-Identifier: Apache-2.0
"""The Manager: each Kata pod's desired policy set, kept up to date one watch event at a time.

It sits between the Watcher, which lists and watches the API server and hands over plain
events, and the Exporter, which pushes each pod's set to that pod's agent. In between it is
pure (no network, no gRPC), so tests drive it with plain events. Objects are read by the same
parsers as local mode (adapter/policy.py, adapter/pods.py) and matched by the same selection
code (adapter/selection.py), so a cluster and a directory of files agree by construction.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NewType, TypeVar

import yaml

from adapter.errors import InputError
from adapter.events import ObjectRef, Resource, WatchEvent
from adapter.pods import (
    Inventory,
    Namespace,
    Pod,
    Posture,
    Postures,
    is_kata_handler,
    parse_manifests,
)
from adapter.policy import Policy, parse_policies
from adapter.selection import PodPolicy, policies_for_pod

PodUid = NewType("PodUid", str)
# A pod in one of these phases never runs a container again.
FINISHED_PHASES = ("Succeeded", "Failed")
# PyYAML's C emitter when it has one, as adapter/yaml_reader.py uses its C parser.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True)
class DesiredPod:
    """What one Kata pod should enforce: what its agent gets in one ApplyPolicies call."""

    pod: Pod
    policies: tuple[PodPolicy, ...]
    postures: Postures
    generation: int  # changes exactly when digest does, and only upwards
    digest: str  # SHA-256 of what the agent gets, the same in every process


class GenerationIssuer:
    """Issues generations: wall-clock nanoseconds, each larger than the last one issued.

    The clock seeds it, so a restarted adapter starts above what it issued before and no
    agent refuses its sets as older; counting on from the last one keeps the generations
    strictly increasing within the process when the clock stands still or steps back.
    """

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        """Return a generation larger than any this issuer returned before."""
        with self._lock:
            self._last = max(self._clock(), self._last + 1)
            return self._last


# The process's issuer: every generation the adapter sends should come from it.
new_generation = GenerationIssuer()


def kata_handlers(patterns: Iterable[str]) -> Callable[[str], bool]:
    """Build the test for Kata handlers from configured names or globs such as 'kata-*'.

    Without configuration the Manager uses adapter.pods.is_kata_handler (kata and kata-*), as local mode does.
    """
    globs = tuple(patterns)
    return lambda handler: any(fnmatch.fnmatchcase(handler, glob) for glob in globs)


class Manager:
    """The desired state of the node's Kata pods, updated by one watch event at a time.

    One consumer applies the events in order (it is not thread-safe); what it hands out is immutable.
    """

    def __init__(
        self,
        *,
        default_posture: Posture,
        is_kata: Callable[[str], bool] = is_kata_handler,
        generations: Callable[[], int] = new_generation,
    ) -> None:
        self._default = Postures.everywhere(default_posture)
        self._is_kata = is_kata
        self._generations = generations
        self._policies: dict[str | None, dict[str, Policy]] = {}  # namespace (None: cluster policies) → name → policy
        self._namespaces: dict[str, Namespace] = {}
        self._runtime_classes: dict[str, str] = {}  # name → handler
        self._pods: dict[PodUid, Pod] = {}  # the node's unfinished pods, Kata or not
        self._handlers: dict[PodUid, str] = {}  # the handler each pod's sandbox runs under, once known
        self._desired: dict[PodUid, DesiredPod] = {}
        self._errors: dict[ObjectRef, InputError] = {}

    def apply(self, event: WatchEvent) -> set[PodUid]:
        """Take in one event; return the pods whose desired set changed, recomputing only those it can affect.

        A returned pod whose desired() is None is gone (deleted, finished, or not Kata): drop its
        session. An invalid object changes nothing: its last valid version stays, and errors()
        says why until a valid version or its deletion arrives.
        """
        ref = ObjectRef.of(event)
        try:
            affected = self._store(event, ref)
        except InputError as error:
            self._errors[ref] = _without_line(error)
            return set()
        self._errors.pop(ref, None)
        return self._recompute(affected)

    def desired(self, uid: PodUid) -> DesiredPod | None:
        """Return a Kata pod's desired set, or None for a pod that is not (or no longer) a Kata pod of the node."""
        return self._desired.get(uid)

    def pods(self) -> Mapping[PodUid, DesiredPod]:
        """Return every Kata pod's desired set (a read-only view)."""
        return MappingProxyType(self._desired)

    def errors(self) -> Mapping[ObjectRef, InputError]:
        """Return why each refused object was refused, for status and logs (a read-only view)."""
        return MappingProxyType(self._errors)

    def _store(self, event: WatchEvent, ref: ObjectRef) -> Collection[PodUid]:
        """Record what an event says of its object, parsing before changing anything; return the pods affected."""
        gone = event.type == "DELETED"
        match event.kind:
            case Resource.POD:
                return self._store_pod(event, ref, gone=gone)
            case Resource.NAMESPACE:
                _put(self._namespaces, ref.name, None if gone else _manifest(event, ref).namespaces[0])
                return self._pods_where(lambda pod: pod.namespace == ref.name)
            case Resource.RUNTIME_CLASS:
                handler = None if gone else _manifest(event, ref).runtime_classes[0].handler
                _put(self._runtime_classes, ref.name, handler)
                return self._pods_where(lambda pod: pod.runtime_class == ref.name)
            case Resource.KUBEARMOR_POLICY | Resource.KUBEARMOR_CLUSTER_POLICY:
                _put(self._policies.setdefault(ref.namespace, {}), ref.name, None if gone else _policy(event, ref))
                return self._pods_where(lambda pod: ref.namespace in (None, pod.namespace))

    def _store_pod(self, event: WatchEvent, ref: ObjectRef, *, gone: bool) -> tuple[PodUid]:
        """Record a pod, or forget it once deleted or finished."""
        uid = PodUid(event.obj["metadata"]["uid"])
        if gone or event.obj.get("status", {}).get("phase") in FINISHED_PHASES:
            self._pods.pop(uid, None)
            self._handlers.pop(uid, None)
        else:
            self._pods[uid] = _manifest(event, ref).pods[0]
        return (uid,)

    def _pods_where(self, affected: Callable[[Pod], bool]) -> list[PodUid]:
        """List the known pods an event can affect."""
        return [uid for uid, pod in self._pods.items() if affected(pod)]

    def _recompute(self, uids: Iterable[PodUid]) -> set[PodUid]:
        """Decide the pods' sets again and return those whose content changed, or that are gone."""
        changed = set()
        for uid in uids:
            previous = self._desired.pop(uid, None)
            desired = self._decide(uid, previous)
            if desired is not None:
                self._desired[uid] = desired
            if (None if previous is None else previous.digest) != (None if desired is None else desired.digest):
                changed.add(uid)
        return changed

    def _decide(self, uid: PodUid, previous: DesiredPod | None) -> DesiredPod | None:
        """Decide a pod's set, or None if it is no Kata pod of the node; the generation stays while the content does."""
        pod = self._pods.get(uid)
        handler = None if pod is None else self._handler(uid, pod)
        if pod is None or handler is None or not self._is_kata(handler):
            return None
        candidates = (*self._policies.get(pod.namespace, {}).values(), *self._policies.get(None, {}).values())
        policies = policies_for_pod(pod, candidates)
        namespace = self._namespaces.get(pod.namespace)
        postures = self._default if namespace is None else self._default.overridden(namespace.postures)
        digest = _digest(pod, policies, postures)
        if previous is not None and previous.digest == digest:
            return DesiredPod(pod, policies, postures, generation=previous.generation, digest=digest)
        return DesiredPod(pod, policies, postures, generation=self._generations(), digest=digest)

    def _handler(self, uid: PodUid, pod: Pod) -> str | None:
        """Return the handler a pod's sandbox runs under, fixed once its RuntimeClass is first known.

        A RuntimeClass's handler cannot be changed, and a running sandbox keeps its runtime when its
        RuntimeClass is deleted, so the pod stays a Kata pod, and protected, for its whole life.
        """
        if uid not in self._handlers and pod.runtime_class in self._runtime_classes:
            self._handlers[uid] = self._runtime_classes[pod.runtime_class]
        return self._handlers.get(uid)


def _put(store: dict[_K, _V], key: _K, value: _V | None) -> None:
    """Set a key, or remove it when the value is None (its object was deleted)."""
    if value is None:
        store.pop(key, None)
    else:
        store[key] = value


def _manifest(event: WatchEvent, ref: ObjectRef) -> Inventory:
    """Read a Pod, Namespace or RuntimeClass with local mode's parser."""
    return parse_manifests(_as_yaml(event), source=str(ref))


def _policy(event: WatchEvent, ref: ObjectRef) -> Policy:
    """Read a KubeArmorPolicy or KubeArmorClusterPolicy with local mode's parser."""
    (policy,) = parse_policies(_as_yaml(event), source=str(ref))
    return policy


def _as_yaml(event: WatchEvent) -> str:
    """Write an event's object as YAML for the parsers, with the kind and apiVersion list items lack.

    Not json.dumps: PyYAML (YAML 1.1) does not read every JSON string back as it was (it refuses
    an emoji escaped as a surrogate pair and folds a raw U+0085 into a space), while it reads back
    exactly what its own emitter wrote.
    """
    obj = {"apiVersion": event.kind.api_version, "kind": event.kind.value, **event.obj}
    return yaml.dump(obj, Dumper=_DUMPER, sort_keys=False)


def _without_line(error: InputError) -> InputError:
    """Drop the line number: it would point into the YAML written by _as_yaml, which nobody sees."""
    return InputError(file=error.file, field=error.field, reason=error.reason)


def _digest(pod: Pod, policies: tuple[PodPolicy, ...], postures: Postures) -> str:
    """Fingerprint what a pod's agent gets.

    repr() of these frozen dataclasses of tuples, strings, numbers and enums is the same in every
    process, unlike hash(), which Python salts per process.
    """
    content = (pod.namespace, pod.name, pod.uid, policies, postures)
    return hashlib.sha256(repr(content).encode()).hexdigest()
