# SPDX-License-Identifier: Apache-2.0
"""A Kubernetes API server double that the real, unpatched `kubernetes` client can list and watch.

The Watcher's promises (no missed update across a dropped connection, a relist
on 410 Gone, bookmarks moving the resume point) are about the list/watch
protocol, so its tests need a server that keeps that protocol's rules rather
than a mocked client: one global resourceVersion counter, as etcd keeps; lists
as `{kind: XList, metadata: {resourceVersion}, items}`, whose built-in items
come without apiVersion and kind as the real server sends them, in pages when
asked (`limit`, then `continue` tokens serving the first page's snapshot until
compaction expires them with 410 Gone, as etcd's revisions do); watches as
chunked JSON lines that start after the given resourceVersion, report objects
entering and leaving a fieldSelector as ADDED and DELETED, send BOOKMARKs on
request, end after timeoutSeconds, and answer a resourceVersion older than the
kept history with an ERROR event (Status 410 Expired).

Tests change objects with create/replace/delete (or over HTTP: POST, PUT,
DELETE), and break things on purpose: compact() forgets history,
drop_connections() cuts every open connection, outage() answers 503 until it
ends, a server not yet start()ed refuses connections, and before_answer() runs
a test's hook at a chosen request (between two pages of a list, say). Every request is
recorded, so a test can tell a resumed watch from a relist, and
wait_watching() tells when a client's watch is open.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import datetime
import functools
import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import kubernetes.client

Body = dict[str, Any]
Predicate = Callable[[Body], bool]
# How long send_bookmarks() and wait_watching() wait for the watches.
WATCH_WAIT_SECONDS = 5.0
TRUE_VALUES = ("true", "1")
# How often the serving loop checks for close(): the time close() may take.
SHUTDOWN_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Resource:
    """One API resource the double serves."""

    group_version: str  # "v1" for the core group
    plural: str
    kind: str
    namespaced: bool
    built_in: bool  # the real server strips apiVersion and kind from the items of a built-in kind's list

    @property
    def prefix(self) -> str:
        """Return the path its URLs start with."""
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


RESOURCES = (
    Resource("v1", "pods", "Pod", namespaced=True, built_in=True),
    Resource("v1", "namespaces", "Namespace", namespaced=False, built_in=True),
    Resource("node.k8s.io/v1", "runtimeclasses", "RuntimeClass", namespaced=False, built_in=True),
    Resource("security.kubearmor.com/v1", "kubearmorpolicies", "KubeArmorPolicy", namespaced=True, built_in=False),
    Resource(
        "security.kubearmor.com/v1",
        "kubearmorclusterpolicies",
        "KubeArmorClusterPolicy",
        namespaced=False,
        built_in=False,
    ),
)
_BY_KIND = {resource.kind: resource for resource in RESOURCES}


class KubeAPIError(Exception):
    """A request the API server refuses, with the HTTP code and Status reason it answers."""

    def __init__(self, code: HTTPStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    def status(self) -> Body:
        """Build the Status object the server sends for it."""
        return _status(self.code, self.reason, str(self))


@dataclass(frozen=True)
class Request:
    """One request the server received, as a test asks about it."""

    method: str
    plural: str  # "" for a path no resource serves
    watch: bool
    query: dict[str, str]


@dataclass(frozen=True)
class _Change:
    """One committed change, kept as history for watches: the object after it, and before it."""

    version: int
    resource: Resource
    type: str  # ADDED, MODIFIED or DELETED
    obj: Body
    old: Body | None


@dataclass(eq=False)
class _Connection:
    """An open client connection, which drop_connections() can cut."""

    sock: socket.socket
    dropped: bool = False


@dataclass(eq=False)
class _Watch:
    """An open watch: whether it takes bookmarks and the last bookmark round it has written."""

    connection: _Connection
    resource: Resource
    bookmarks: bool
    bookmarked: int
    ended: bool = False


class _Store:
    """The objects, their history and the open connections, guarded by one condition that wakes watches."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.version = 1
        self.oldest = 1  # a watch from before this version gets 410 Gone
        self.objects: dict[tuple[str, str, str], Body] = {}  # (kind, namespace or "", name) → object
        self.history: list[_Change] = []
        self.connections: set[_Connection] = set()
        self.watches: set[_Watch] = set()
        self.bookmark_round = 0
        self.outage = False
        self.closing = False
        self.requests: list[Request] = []
        self.before_answer: Callable[[Request], None] | None = None

    def create(self, obj: Body, *, uid: str | None = None) -> Body:
        """Store a new object, stamping uid, creationTimestamp and resourceVersion; return it as stored.

        uid: the one to stamp instead of a fresh one, where a test's runtime already names the object by it
        (the test guest's containers carry their pod's uid in their CRI annotations).
        """
        resource, key, stored = _identify(obj)
        metadata = stored["metadata"]
        metadata.pop("resourceVersion", None)
        metadata["uid"] = uid or str(uuid.uuid4())
        metadata["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.changed:
            if key in self.objects:
                raise KubeAPIError(HTTPStatus.CONFLICT, "AlreadyExists", f"{resource.kind} {key[2]!r} already exists")
            return self._commit(resource, "ADDED", key, stored)

    def replace(self, obj: Body) -> Body:
        """Replace an object, keeping its uid and creationTimestamp; a resourceVersion given must be the current one."""
        resource, key, stored = _identify(obj)
        metadata = stored["metadata"]
        with self.changed:
            current = self._existing(resource, key)["metadata"]
            given = metadata.get("resourceVersion")
            if given and given != current["resourceVersion"]:
                raise KubeAPIError(
                    HTTPStatus.CONFLICT, "Conflict", f"{resource.kind} {key[2]!r} has changed since version {given}"
                )
            metadata.update(uid=current["uid"], creationTimestamp=current["creationTimestamp"])
            return self._commit(resource, "MODIFIED", key, stored)

    def delete(self, resource: Resource, namespace: str | None, name: str) -> Body:
        """Delete an object; return it as the DELETED event carries it (with the deletion's resourceVersion)."""
        key = _key(resource, namespace, name)
        with self.changed:
            return self._commit(resource, "DELETED", key, copy.deepcopy(self._existing(resource, key)))

    def get(self, resource: Resource, namespace: str | None, name: str) -> Body:
        """Return a copy of a stored object."""
        key = _key(resource, namespace, name)
        with self.changed:
            return copy.deepcopy(self._existing(resource, key))

    def list(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> Body:
        """Build an XList of the objects a request sees, in key order: all, or a page of them.

        A first page (limit) is read at the current resourceVersion; its continue token carries that
        version and the last key served, and each next page is read from the same snapshot.
        """
        matches = _matcher(resource, namespace, query)
        version, after = _read_continue(query["continue"]) if "continue" in query else (None, None)
        with self.changed:
            if version is not None and version < self.oldest:
                raise KubeAPIError(HTTPStatus.GONE, "Expired", "the continue token is too old (compacted)")
            version = self.version if version is None else version
            seen = [(key, obj) for key, obj in self.snapshot(version) if key[0] == resource.kind and matches(obj)]
            listed = [(key, copy.deepcopy(obj)) for key, obj in seen if after is None or key > after]
        limit = int(query.get("limit") or 0)
        metadata: Body = {"resourceVersion": str(version)}
        if 0 < limit < len(listed):
            listed = listed[:limit]
            metadata["continue"] = _write_continue(version, listed[-1][0])
        items = [obj for _, obj in listed]
        if resource.built_in:
            for item in items:
                del item["apiVersion"], item["kind"]
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.group_version,
            "metadata": metadata,
            "items": items,
        }

    def snapshot(self, version: int) -> list[tuple[tuple[str, str, str], Body]]:
        """Return every object as it was at a resourceVersion, in key order (the caller holds the lock).

        The changes made since are undone from the history, which reaches back to the oldest version.
        """
        objects = dict(self.objects)
        for change in reversed(self.history):
            if change.version <= version:
                break
            metadata = change.obj["metadata"]
            key = _key(change.resource, metadata.get("namespace"), metadata["name"])
            if change.old is None:
                del objects[key]
            else:
                objects[key] = change.old
        return sorted(objects.items())

    def current(self, resource: Resource, matches: Predicate) -> list[Body]:
        """List the stored objects of a resource that a request sees, in key order (the caller holds the lock)."""
        return [obj for (kind, _, _), obj in sorted(self.objects.items()) if kind == resource.kind and matches(obj)]

    def _existing(self, resource: Resource, key: tuple[str, str, str]) -> Body:
        """Return a stored object (the caller holds the lock)."""
        if key not in self.objects:
            raise KubeAPIError(HTTPStatus.NOT_FOUND, "NotFound", f"{resource.plural} {key[2]!r} not found")
        return self.objects[key]

    def _commit(self, resource: Resource, change: str, key: tuple[str, str, str], obj: Body) -> Body:
        """Record a change under the next resourceVersion and wake the watches (the caller holds the lock)."""
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        old = self.objects.get(key)
        if change == "DELETED":
            del self.objects[key]
        else:
            self.objects[key] = obj
        self.history.append(_Change(self.version, resource, change, obj, old))
        self.changed.notify_all()
        return copy.deepcopy(obj)


class FakeKubeAPI:
    """A list/watch API server on 127.0.0.1, bound at once (so its URL is known) and serving after start()."""

    def __init__(self) -> None:
        self._store = _Store()
        self._httpd = _HTTPServer(self._store)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the base URL a client connects to."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def resource_version(self) -> int:
        """Return the resourceVersion of the last change."""
        with self._store.changed:
            return self._store.version

    def start(self) -> FakeKubeAPI:
        """Listen and serve; until then connections are refused, as by an API server that is down."""
        self._httpd.server_activate()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="fake-kube-api", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and cut every open connection."""
        with self._store.changed:
            self._store.closing = True
        self.drop_connections()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def api_client(self) -> kubernetes.client.ApiClient:
        """Return a client of the official library pointed at this server."""
        return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=self.url))

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig (JSON is YAML) whose current context is this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    def create(self, obj: Body, *, uid: str | None = None) -> Body:
        """Store a new object (its kind says where): its uid (fresh unless given), timestamp, resourceVersion."""
        return self._store.create(obj, uid=uid)

    def replace(self, obj: Body) -> Body:
        """Replace an object, keeping its uid and creationTimestamp."""
        return self._store.replace(obj)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> Body:
        """Delete an object; return it as the DELETED event carries it."""
        return self._store.delete(_resource(kind), namespace, name)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Body:
        """Return a stored object."""
        return self._store.get(_resource(kind), namespace, name)

    def compact(self) -> int:
        """Forget the history up to now, as etcd compaction does: a watch from an older version gets 410 Gone."""
        store = self._store
        with store.changed:
            store.oldest = store.version
            store.history.clear()
            store.changed.notify_all()
            return store.oldest

    def drop_connections(self) -> None:
        """Cut every open connection without ending its response, as a crashed server or a broken network does."""
        with self._store.changed:
            connections = list(self._store.connections)
            for connection in connections:
                connection.dropped = True
            self._store.changed.notify_all()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Cut every connection, then answer every request with 503 until the block ends."""
        with self._store.changed:
            self._store.outage = True
        self.drop_connections()
        try:
            yield
        finally:
            with self._store.changed:
                self._store.outage = False

    def send_bookmarks(self) -> int:
        """Send a BOOKMARK on every open watch that allows them, and wait until each has written it.

        Returns the resourceVersion the bookmarks carry (with no concurrent change: every watch's).
        """
        store = self._store
        with store.changed:
            store.bookmark_round += 1
            current = store.bookmark_round
            targets = [watch for watch in store.watches if watch.bookmarks]
            store.changed.notify_all()
            written = store.changed.wait_for(
                lambda: all(watch.bookmarked >= current or watch.ended for watch in targets),
                timeout=WATCH_WAIT_SECONDS,
            )
            if not written:
                raise TimeoutError("a watch did not write its bookmark")
            return store.version

    def wait_watching(self, plural: str, timeout: float = WATCH_WAIT_SECONDS) -> None:
        """Wait until a watch of a resource is open (and so would receive a bookmark)."""
        store = self._store
        with store.changed:
            if not store.changed.wait_for(
                lambda: any(watch.resource.plural == plural for watch in store.watches), timeout=timeout
            ):
                raise TimeoutError(f"nobody watches {plural}")

    def before_answer(self, hook: Callable[[Request], None] | None) -> None:
        """Call hook with each request before answering it, to change the server at an exact point of an exchange."""
        with self._store.changed:
            self._store.before_answer = hook

    def requests(self, plural: str, *, watch: bool) -> list[Request]:
        """List the requests received for one resource, watches or the others, oldest first."""
        with self._store.changed:
            return [r for r in self._store.requests if r.plural == plural and r.watch == watch]

    def count(self, plural: str, *, watch: bool) -> int:
        """Count the requests received for one resource, watches or the others."""
        return len(self.requests(plural, watch=watch))


class _HTTPServer(ThreadingHTTPServer):
    """The HTTP side: binds at once, listens on start(), and does not wait for watch threads when closed."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, store: _Store) -> None:
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self.store = store
        self.server_bind()

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse lookup of the host name, which nothing here needs."""
        socketserver.TCPServer.server_bind(self)


class _Handler(BaseHTTPRequestHandler):
    """One connection: requests in turn, kept alive between them, as the client's connection pool expects."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        """Register the connection so that drop_connections() can cut it."""
        super().setup()
        self.link = _Connection(self.connection)
        with self.server.store.changed:
            self.server.store.connections.add(self.link)

    def finish(self) -> None:
        """Forget the connection."""
        with self.server.store.changed:
            self.server.store.connections.discard(self.link)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """List, watch or read one object."""
        self._serve("GET")

    def do_POST(self) -> None:
        """Create."""
        self._serve("POST")

    def do_PUT(self) -> None:
        """Replace."""
        self._serve("PUT")

    def do_DELETE(self) -> None:
        """Delete."""
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        """Record and route one request, answering a refusal with a Status object."""
        store = self.server.store
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        route = _route(url.path)
        watch = method == "GET" and query.get("watch") in TRUE_VALUES
        request = Request(method, route[0].plural if route else "", watch, query)
        with store.changed:
            store.requests.append(request)
            hook = store.before_answer
        if hook is not None:
            hook(request)
        with store.changed:
            outage = store.outage
        try:
            body = self._read_body()
            if outage:
                raise KubeAPIError(HTTPStatus.SERVICE_UNAVAILABLE, "ServiceUnavailable", "the API server is down")
            if route is None:
                raise KubeAPIError(HTTPStatus.NOT_FOUND, "NotFound", f"no resource is served at {url.path}")
            resource, namespace, name = route
            if watch and name is None:
                self._watch(resource, namespace, query)
            else:
                code, answer = _answer(store, method, route, query, body)
                self._send_json(code, answer)
        except KubeAPIError as error:
            self._send_json(error.code, error.status())
        except OSError:  # the client went away, or drop_connections() cut it
            self.close_connection = True

    def _read_body(self) -> Body | None:
        """Read a JSON request body, if there is one."""
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as error:
            raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", f"the body is not JSON: {error}") from None
        if not isinstance(body, dict):
            raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", "the body is not a JSON object")
        return body

    def _watch(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> None:
        """Stream the changes after the given resourceVersion as JSON lines until timeoutSeconds or a cut."""
        store = self.server.store
        matches = _matcher(resource, namespace, query)
        since = _version(query.get("resourceVersion"))
        timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        with store.changed:
            bookmarks = query.get("allowWatchBookmarks") in TRUE_VALUES
            watch = _Watch(self.link, resource, bookmarks, store.bookmark_round)
            store.watches.add(watch)
            store.changed.notify_all()
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if _Stream(self, store, watch, resource, matches).run(since, timeout):
                self.send_chunk(b"")
            else:
                self.close_connection = True
        finally:
            with store.changed:
                watch.ended = True
                store.watches.discard(watch)
                store.changed.notify_all()

    def send_chunk(self, data: bytes) -> None:
        """Write one chunk of a chunked response (an empty one ends it)."""
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def _send_json(self, code: HTTPStatus, body: Body) -> None:
        """Answer with one JSON object."""
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class _Stream:
    """One watch response being written."""

    handler: _Handler
    store: _Store
    watch: _Watch
    resource: Resource
    matches: Predicate

    def run(self, since: int | None, timeout: float | None) -> bool:
        """Write events after ``since`` (None: the current objects first, as ADDED) until the watch ends.

        Returns whether the response should end properly (False: the connection was cut).
        """
        store = self.store
        deadline = None if timeout is None else time.monotonic() + timeout
        with store.changed:
            if since is None:
                lines = [_event("ADDED", obj) for obj in store.current(self.resource, self.matches)]
                position: int | None = store.version
            else:
                lines, position = self._pending(since)
        while True:
            for line in lines:
                self.handler.send_chunk(line)
            if position is None:
                return True  # expired: the response ends after the ERROR event
            with store.changed:
                store.changed.wait_for(functools.partial(self._due, position, deadline), timeout=_remaining(deadline))
                if self.watch.connection.dropped or store.closing:
                    return False
                lines, position = self._pending(position)
            if _remaining(deadline) == 0.0:
                for line in lines:
                    self.handler.send_chunk(line)
                return True

    def _due(self, position: int, deadline: float | None) -> bool:
        """Tell whether the watch has something to do (the caller holds the lock)."""
        store, watch = self.store, self.watch
        return (
            store.version > position
            or store.oldest > position
            or (watch.bookmarks and watch.bookmarked < store.bookmark_round)
            or watch.connection.dropped
            or store.closing
            or _remaining(deadline) == 0.0
        )

    def _pending(self, position: int) -> tuple[list[bytes], int | None]:
        """Collect the lines due after ``position`` and the position after them (None: expired; lock held)."""
        store, watch = self.store, self.watch
        if position < store.oldest:
            return [_expired(position, store.oldest)], None
        start = bisect.bisect_right(store.history, position, key=lambda change: change.version)
        lines = [
            line
            for change in store.history[start:]
            if change.resource == self.resource
            for line in _seen_through(change, self.matches)
        ]
        if watch.bookmarks and watch.bookmarked < store.bookmark_round:
            bookmark = {"kind": self.resource.kind, "apiVersion": self.resource.group_version}
            lines.append(_event("BOOKMARK", {**bookmark, "metadata": {"resourceVersion": str(store.version)}}))
            watch.bookmarked = store.bookmark_round
            store.changed.notify_all()  # send_bookmarks() waits for this
        return lines, max(position, store.version)


def _answer(
    store: _Store,
    method: str,
    route: tuple[Resource, str | None, str | None],
    query: dict[str, str],
    body: Body | None,
) -> tuple[HTTPStatus, Body]:
    """Serve everything but a watch: a list, or one object read, created, replaced or deleted."""
    resource, namespace, name = route
    if method == "GET":
        return HTTPStatus.OK, store.list(resource, namespace, query) if name is None else store.get(*route)
    if method == "DELETE" and name is not None:
        return HTTPStatus.OK, store.delete(*route)
    if method not in ("POST", "PUT") or (method == "POST") != (name is None):
        raise KubeAPIError(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", f"{method} is not served here")
    if body is None:
        raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", f"{method} needs a body")
    body.setdefault("kind", resource.kind)
    metadata = body.setdefault("metadata", {})
    if namespace is not None:
        metadata["namespace"] = namespace
    if name is None:
        return HTTPStatus.CREATED, store.create(body)
    if metadata.setdefault("name", name) != name:
        raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", "the name in the body differs from the URL's")
    return HTTPStatus.OK, store.replace(body)


def _route(path: str) -> tuple[Resource, str | None, str | None] | None:
    """Find the resource, namespace and object name a path names (name None: the collection)."""
    for resource in RESOURCES:
        if not path.startswith(resource.prefix + "/"):
            continue
        parts = path[len(resource.prefix) + 1 :].split("/")
        if resource.namespaced and len(parts) in (3, 4) and parts[0] == "namespaces" and parts[2] == resource.plural:
            return resource, parts[1], parts[3] if len(parts) == 4 else None
        if parts[0] == resource.plural and (len(parts) == 1 or (len(parts) == 2 and not resource.namespaced)):
            return resource, None, parts[1] if len(parts) == 2 else None
    return None


def _resource(kind: str) -> Resource:
    """Find the resource that serves a kind."""
    if kind not in _BY_KIND:
        raise KubeAPIError(HTTPStatus.NOT_FOUND, "NotFound", f"the server does not serve kind {kind!r}")
    return _BY_KIND[kind]


def _key(resource: Resource, namespace: str | None, name: str) -> tuple[str, str, str]:
    """Key an object as the store does; a namespaced object named without a namespace is in "default"."""
    return resource.kind, (namespace or "default") if resource.namespaced else "", name


def _identify(obj: Body) -> tuple[Resource, tuple[str, str, str], Body]:
    """Find an object's resource and key; return a copy with apiVersion and a namespaced object's namespace set."""
    resource = _resource(obj.get("kind", ""))
    stored = copy.deepcopy(obj)
    if stored.setdefault("apiVersion", resource.group_version) != resource.group_version:
        raise KubeAPIError(
            HTTPStatus.BAD_REQUEST, "BadRequest", f"{resource.kind} is served as {resource.group_version}"
        )
    metadata = stored.setdefault("metadata", {})
    if not metadata.get("name"):
        raise KubeAPIError(HTTPStatus.UNPROCESSABLE_ENTITY, "Invalid", "metadata.name: Required value")
    if resource.namespaced:
        metadata.setdefault("namespace", "default")
    else:
        metadata.pop("namespace", None)
    return resource, _key(resource, metadata.get("namespace"), metadata["name"]), stored


def _matcher(resource: Resource, namespace: str | None, query: dict[str, str]) -> Predicate:
    """Build the test of which objects a request sees: its namespace and fieldSelector."""
    if "labelSelector" in query:
        raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", "this double does not implement labelSelector")
    terms = []
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        negated = "!=" in term
        path, equals, value = term.replace("!=", "=").replace("==", "=").partition("=")
        if not equals or not path:
            raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", f"invalid field selector term {term!r}")
        terms.append((path.split("."), value, negated))

    def matches(obj: Body) -> bool:
        if resource.namespaced and namespace is not None and obj["metadata"].get("namespace") != namespace:
            return False
        return all((_field(obj, path) == value) != negated for path, value, negated in terms)

    return matches


def _field(obj: Body, path: list[str]) -> str:
    """Read a field by its dotted path, as a field selector compares it: missing is the empty string."""
    value: Any = obj
    for part in path:
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def _seen_through(change: _Change, matches: Predicate) -> list[bytes]:
    """Describe a change as a watch with a selector sees it: an object entering it is ADDED, one leaving DELETED."""
    was = change.old is not None and matches(change.old)
    if change.type == "DELETED":
        return [_event("DELETED", change.obj)] if was else []
    now = matches(change.obj)
    if was and now:
        return [_event("MODIFIED", change.obj)]
    if now:
        return [_event("ADDED", change.obj)]
    return [_event("DELETED", change.obj)] if was else []


def _event(kind: str, obj: Body) -> bytes:
    """Encode one watch event as a JSON line."""
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _expired(since: int, oldest: int) -> bytes:
    """Encode the ERROR event a watch from a compacted resourceVersion gets."""
    message = f"too old resource version: {since} ({oldest})"
    return _event("ERROR", _status(HTTPStatus.GONE, "Expired", message))


def _status(code: HTTPStatus, reason: str, message: str) -> Body:
    """Build a failure Status object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": int(code),
    }


def _write_continue(version: int, key: tuple[str, str, str]) -> str:
    """Write a continue token: the snapshot's resourceVersion and the last key served, opaque to clients."""
    return base64.urlsafe_b64encode(json.dumps([version, key]).encode()).decode()


def _read_continue(token: str) -> tuple[int, tuple[str, str, str]]:
    """Read a continue token back."""
    try:
        version, (kind, namespace, name) = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(version), (str(kind), str(namespace), str(name))
    except ValueError:
        raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", f"invalid continue token {token!r}") from None


def _version(text: str | None) -> int | None:
    """Read a watch's resourceVersion; unset or "0" means "from the current state", as on a real server."""
    if not text or text == "0":
        return None
    if not text.isdigit():
        raise KubeAPIError(HTTPStatus.BAD_REQUEST, "BadRequest", f"invalid resourceVersion {text!r}")
    return int(text)


def _remaining(deadline: float | None) -> float | None:
    """Return the seconds left until a deadline (0.0 once passed), or None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
