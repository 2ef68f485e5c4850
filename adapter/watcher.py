# SPDX-License-Identifier: Apache-2.0
"""The Watcher: every change to the objects that decide what Kata pods enforce, as plain events.

First of the node daemon's three boxes (Watcher → Manager → Exporter). It only
watches: for each resource adapter/kube_resources.py names (Pods of this node
only), it lists, then watches from the list's resourceVersion, and hands every
change to a sink as an adapter.events.WatchEvent carrying the object as the API
server's JSON, cut to the fields kube_resources names for its kind (the Watcher
itself remembers only each object's identity). Deciding what the events mean is
the Manager's job, so the Manager's tests need no API server and these need no
policies.

A watch is a stream that breaks: the server ends it every timeout_seconds, a
connection drops, the API server restarts. The Watcher then resumes from the
last resourceVersion it saw (bookmarks move it along while nothing it watches
changes), so nothing is missed and nothing is listed again. Only when the
server no longer has that version (410 Gone, after etcd compaction) does it
list again, and it reports what changed meanwhile by comparing the new list
with what it knew, deletions included. Errors (API server down, RBAC missing,
CRD not installed) are logged and retried with exponential back-off; a
resource's thread ends only when stop() asks.

Objects are read as raw JSON (the list's body, the watch event's raw_object),
never through the client's model classes, which refuse objects they do not
expect and would add a second reading of the schema. The requests are not made
through the client's generated API classes either: in kubernetes 37, importing
CoreV1Api imports the 250 pydantic models its methods are annotated with, 20 MB
for a daemon that never builds one (see _Collection).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from adapter import kube_resources
from adapter.events import EventType, Resource, WatchEvent
from adapter.kube_resources import IDENTITY, KubeResource, project

log = logging.getLogger(__name__)

Body = dict[str, Any]
Sink = Callable[[WatchEvent], None]
Timeout = float | tuple[float, float] | None  # the client's _request_timeout: total, or (connect, read)
HTTP_GONE = 410
# The kubelet sets it in every container: the process runs in a pod and can use its service account.
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
# How often stop() pokes a watch that is still being opened (Watch.stop() can only interrupt an open one).
STOP_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class WatchSettings:
    """How long requests last and how the Watcher backs off; tests shorten them."""

    timeout_seconds: int = 300  # the server ends each watch after this, and the Watcher resumes it
    request_timeout: float = 30.0  # connecting, reading a list, and how long past its end a watch may stay silent
    backoff_initial: float = 0.5  # first wait after an error, doubling up to backoff_max; also the least time per watch
    backoff_max: float = 30.0
    # Objects per list request. A page is parsed whole before its objects are cut to what is kept, so this
    # bounds what a list costs beyond that: 100 pods of a Deployment are some 2 MB as parsed JSON.
    list_page: int = 100


def load_api_client(kubeconfig: Path | None) -> client.ApiClient:
    """Connect as the pod's service account when running in a pod, else through a kubeconfig.

    An explicit kubeconfig always wins; without one, outside a pod, $KUBECONFIG or ~/.kube/config is read.
    """
    if kubeconfig is None and SERVICE_HOST_ENV in os.environ:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(
        config_file=None if kubeconfig is None else str(kubeconfig), persist_config=False
    )


class Watcher:
    """Lists and watches every resource of kube_resources.WATCHED, each in its own thread, until stop().

    ``sink`` is called from those threads (give it a queue.Queue's put to consume the events in one
    place); each resource's events arrive in the order the API server made the changes.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        node_name: str,
        sink: Sink,
        settings: WatchSettings = WatchSettings(),
    ) -> None:
        self._stopping = threading.Event()
        self._feeds = [
            _Feed(
                resource,
                api_client,
                field_selector=f"spec.nodeName={node_name}" if resource == kube_resources.POD else None,
                sink=sink,
                settings=settings,
                stopping=self._stopping,
            )
            for resource in kube_resources.WATCHED
        ]

    def start(self) -> Watcher:
        """Start listing and watching."""
        for feed in self._feeds:
            feed.thread.start()
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until every resource's first list has been delivered; tell whether it has.

        Until then the sink has seen only part of the cluster (pods, say, but not yet the
        policies that select them), so nothing should be pushed to an agent.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return all(
            feed.synced.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            for feed in self._feeds
        )

    def alive(self) -> bool:
        """Tell whether every resource's thread runs: they end only when stop() asks, or on a bug."""
        return all(feed.thread.is_alive() for feed in self._feeds)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop every thread, interrupting open watches and back-off waits; tell whether all ended in time."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for feed in self._feeds:
            while feed.thread.is_alive() and time.monotonic() < deadline:
                feed.interrupt()
                feed.thread.join(STOP_POLL_SECONDS)
        return not any(feed.thread.is_alive() for feed in self._feeds)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Feed:
    """One resource: its list and watch loop, what it last listed or saw, and where to resume."""

    def __init__(
        self,
        resource: KubeResource,
        api_client: client.ApiClient,
        *,
        field_selector: str | None,
        sink: Sink,
        settings: WatchSettings,
        stopping: threading.Event,
    ) -> None:
        self._resource = resource
        self._kind = Resource(resource.kind)
        self._type_meta = {"apiVersion": resource.api_version, "kind": resource.kind}
        self._collection = _Collection(api_client, resource.path, field_selector)
        self._sink = sink
        self._settings = settings
        self._stopping = stopping
        self._watch = watch.Watch(return_type=object)  # object: events stay JSON, no model classes
        # (namespace, name) → the identity of each object known, all a relist compares (kube_resources.IDENTITY)
        self._known: dict[tuple[str, str], Body] = {}
        self._version: str | None = None  # where to resume; None: list first
        self._last_start = float("-inf")
        self._retrying = tenacity.Retrying(
            wait=tenacity.wait_exponential_jitter(
                multiplier=settings.backoff_initial, max=settings.backoff_max, jitter=settings.backoff_initial
            ),
            stop=lambda _state: stopping.is_set(),
            sleep=stopping.wait,
            before_sleep=self._log_failure,
            retry_error_callback=lambda _state: None,  # stopping: end quietly
        )
        self.synced = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch-{resource.plural}", daemon=True)

    def interrupt(self) -> None:
        """Break off the watch being read, if any (from another thread)."""
        self._watch.stop()

    def _run(self) -> None:
        """Run rounds until stopped; a failed round is retried with back-off, which a good one resets."""
        while not self._stopping.is_set():
            self._retrying(self._round)

    def _round(self) -> None:
        """List if there is nothing to resume from, then watch until the server ends the watch."""
        # A server that ends watches at once must not make this a busy loop.
        self._stopping.wait(self._last_start + self._settings.backoff_initial - time.monotonic())
        if self._stopping.is_set():
            return
        self._last_start = time.monotonic()
        if self._version is None:
            self._relist()
        try:
            self._watch_until_ended()
        except ApiException as error:
            if error.status != HTTP_GONE:
                raise
            log.info("%s: resourceVersion %s is gone (%s); listing again", self._kind.value, self._version, error)
            self._version = None

    def _relist(self) -> None:
        """List everything, and report what differs from what was known: all of it the first time.

        An object gone meanwhile is reported DELETED with what the Watcher remembers of it: its identity.
        """
        fresh, version = self._list()
        stale, self._known = self._known, {key: project(body, IDENTITY) for key, body in fresh.items()}
        self._version = version
        for key, old in stale.items():
            if key not in fresh or _uid(fresh[key]) != _uid(old):
                self._emit("DELETED", old)
        for key, new in fresh.items():
            old = stale.get(key)
            if old is None or _uid(old) != _uid(new):
                self._emit("ADDED", new)
            elif _version(old) != _version(new):
                self._emit("MODIFIED", new)
        self.synced.set()

    def _list(self) -> tuple[dict[tuple[str, str], Body], str]:
        """List every object, page after page of one snapshot; return what is kept of each, and the version.

        A continue token that expires before the last page (410 Gone) fails the list as any error does:
        after the back-off, the list starts again from the first page.
        """
        fresh: dict[tuple[str, str], Body] = {}
        token: str | None = None
        while True:
            kept, version, token = self._page(token)
            fresh.update((_key(body), body) for body in kept)
            if token is None:
                return fresh, version

    def _page(self, token: str | None) -> tuple[list[Body], str, str | None]:
        """Fetch one page: what is kept of its objects, the list's resourceVersion, the next page's token or None.

        The page's body and its objects as parsed are garbage once this returns: only what is kept lives on.
        """
        settings = self._settings
        response = self._collection(
            limit=settings.list_page, continue_from=token, _request_timeout=settings.request_timeout
        )
        try:
            page = json.loads(response.data)
        finally:
            response.release_conn()
        metadata = page["metadata"]
        return (
            [self._kept(item) for item in page["items"]],
            metadata["resourceVersion"],
            metadata.get("continue") or None,
        )

    def _watch_until_ended(self) -> None:
        """Watch from the resume point, moving it with every event and bookmark, until the stream ends."""
        settings = self._settings
        events = self._watch.stream(
            self._collection,
            resource_version=self._version,
            allow_watch_bookmarks=True,
            timeout_seconds=settings.timeout_seconds,  # also keeps Watch.stream from resuming on its own
            _request_timeout=(settings.request_timeout, settings.timeout_seconds + settings.request_timeout),
        )
        for event in events:
            if self._stopping.is_set():
                return
            body, change = event["raw_object"], event["type"]
            if change in ("ADDED", "MODIFIED", "DELETED"):
                body = self._kept(body)
                if change == "DELETED":
                    self._known.pop(_key(body), None)
                else:
                    self._known[_key(body)] = project(body, IDENTITY)
                self._emit(change, body)
            elif change != "BOOKMARK":
                log.warning("%s: ignoring a watch event of type %r", self._kind.value, change)
                continue
            self._version = _version(body)

    def _kept(self, body: Body) -> Body:
        """Keep what the daemon reads of an object, with the apiVersion and kind that list items come without."""
        return self._resource.project({**self._type_meta, **body})

    def _emit(self, change: EventType, body: Body) -> None:
        """Hand one event to the sink; a failing sink is logged, and the watch goes on."""
        try:
            self._sink(WatchEvent(self._kind, change, body))
        except Exception:
            log.exception("%s: the event sink failed on %s %s", self._kind.value, change, _key(body))

    def _log_failure(self, state: tenacity.RetryCallState) -> None:
        """Log why a round failed and when the next one starts."""
        assert state.outcome is not None and state.next_action is not None
        log.warning(
            "%s: list/watch failed (%s); retrying in %.1f s, %s",
            self._kind.value,
            state.outcome.exception(),
            state.next_action.sleep,
            "listing again" if self._version is None else f"resuming from resourceVersion {self._version}",
        )


@dataclass(frozen=True)
class _Collection:
    """GET on a resource's collection in every namespace: a list, or with watch=True a watch.

    It answers the HTTP response unread, for the caller to read the list's JSON or kubernetes.watch
    to stream the watch's lines; an error status raises ApiException, as the client's calls do. The
    request is built as each of the client's generated API methods builds it (ApiClient.param_serialize
    then call_api, which also apply the kubeconfig's or the service account's credentials), without
    importing those methods' classes and the models they are annotated with.
    """

    api_client: client.ApiClient
    path: str
    field_selector: str | None

    def __call__(
        self,
        *,
        watch: bool = False,
        resource_version: str | None = None,
        allow_watch_bookmarks: bool = False,
        timeout_seconds: int | None = None,
        limit: int | None = None,
        continue_from: str | None = None,
        _request_timeout: Timeout = None,
        _preload_content: bool = False,  # kubernetes.watch passes False; the response is never read here anyway
    ) -> urllib3.BaseHTTPResponse:
        """Send the request; the parameters are the client's own (continue_from is its _continue)."""
        query = {
            "watch": watch or None,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": allow_watch_bookmarks or None,
            "timeoutSeconds": timeout_seconds,
            "fieldSelector": self.field_selector,
            "limit": limit,
            "continue": continue_from,
        }
        method, url, headers, body, post_params = self.api_client.param_serialize(
            method="GET",
            resource_path=self.path,
            query_params=[(name, value) for name, value in query.items() if value is not None],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(method, url, headers, body, post_params, _request_timeout=_request_timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response


def _key(body: Body) -> tuple[str, str]:
    """Identify an object within its resource: namespace ("" when cluster-scoped) and name."""
    metadata = body["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


def _uid(body: Body) -> str | None:
    """Return an object's uid, which tells a re-created object from the one deleted under the same name."""
    return body["metadata"].get("uid")


def _version(body: Body) -> str:
    """Return an object's (or a bookmark's) resourceVersion."""
    return body["metadata"]["resourceVersion"]
