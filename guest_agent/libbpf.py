# SPDX-License-Identifier: Apache-2.0
"""The slice of libbpf the agent uses, bound with ctypes to Debian's libbpf.so.1.

The BPF objects are compiled at build time (CO-RE), so the guest needs only
this shared library: no compiler, no kernel headers. This is the one module
that touches libbpf; everything above it deals in map names and bytes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

PINNED_LINKS = "links"  # where, under a pin directory, the attached programs' links are pinned

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_LIBBPF_WARN = 0  # enum libbpf_print_level


CValue = ctypes.Structure | ctypes.c_int | ctypes.c_uint32 | ctypes.c_uint8  # map keys and values: fixed-size C data
CStruct = TypeVar("CStruct", bound=ctypes.Structure | ctypes.c_uint32)


class BpfError(OSError):
    """A libbpf call failed; carries errno and what was being done."""


def _load_library() -> ctypes.CDLL:
    """Open libbpf.so.1 and declare the signatures used here."""
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    p, i, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
    signatures = {
        "libbpf_set_print": (p, [_PRINT_FN]),
        "bpf_object__open_file": (p, [ctypes.c_char_p, p]),
        "bpf_object__load": (i, [p]),
        "bpf_object__close": (None, [p]),
        "bpf_object__find_map_by_name": (p, [p, ctypes.c_char_p]),
        "bpf_object__next_map": (p, [p, p]),
        "bpf_map__name": (ctypes.c_char_p, [p]),
        "bpf_map__is_internal": (ctypes.c_bool, [p]),
        "bpf_map__set_pin_path": (i, [p, ctypes.c_char_p]),
        "bpf_link__pin": (i, [p, ctypes.c_char_p]),
        "bpf_link__unpin": (i, [p]),
        "bpf_map_get_next_key": (i, [i, p, p]),
        "bpf_object__next_program": (p, [p, p]),
        "bpf_object__find_program_by_name": (p, [p, ctypes.c_char_p]),
        "bpf_program__name": (ctypes.c_char_p, [p]),
        "bpf_program__attach": (p, [p]),
        "bpf_link__destroy": (i, [p]),
        "bpf_map__fd": (i, [p]),
        "bpf_map__set_max_entries": (i, [p, u32]),
        "bpf_map_update_elem": (i, [i, p, p, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (i, [i, p, p]),
        "bpf_map_delete_elem": (i, [i, p]),
        "bpf_map_update_batch": (i, [i, p, p, ctypes.POINTER(u32), p]),
        "bpf_map_delete_batch": (i, [i, p, ctypes.POINTER(u32), p]),
        "ring_buffer__new": (p, [i, _SAMPLE_FN, p, p]),
        "ring_buffer__poll": (i, [p, i]),
        "ring_buffer__free": (None, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


_lib = _load_library()
_libc = ctypes.CDLL(None)


@_PRINT_FN
def _forward_libbpf_log(level: int, fmt: bytes, args: int) -> int:
    """Route libbpf's own messages (verifier logs included) to Python logging."""
    buffer = ctypes.create_string_buffer(1 << 16)  # verifier logs arrive as one message
    _libc.vsnprintf(buffer, ctypes.c_size_t(len(buffer)), ctypes.c_char_p(fmt), ctypes.c_void_p(args))
    text = buffer.value.decode(errors="replace").rstrip()
    log.log(logging.WARNING if level == _LIBBPF_WARN else logging.DEBUG, "libbpf: %s", text)
    return 0


_lib.libbpf_set_print(_forward_libbpf_log)


def _check(result: int, doing: str) -> int:
    """Raise BpfError for libbpf's negative-errno convention."""
    if result < 0:
        raise BpfError(-result, f"{doing}: {os.strerror(-result)}")
    return result


def _check_pointer(pointer: int | None, doing: str) -> int:
    """Raise BpfError when libbpf returned NULL (errno says why)."""
    if not pointer:
        code = ctypes.get_errno() or errno.EINVAL
        raise BpfError(code, f"{doing}: {os.strerror(code)}")
    return pointer


class BpfMap:
    """A map of a loaded object, used with fixed-size keys and values as bytes."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd

    def update(self, key: CValue, value: CValue) -> None:
        """Insert or replace one element."""
        result = _lib.bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(value), 0)
        _check(result, f"update map {self.name}")

    def lookup(self, key: CValue, value: CValue) -> bool:
        """Read one element into value; return False when it is not there."""
        result = _lib.bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(value))
        if result == -errno.ENOENT:
            return False
        _check(result, f"look up in map {self.name}")
        return True

    def update_batch(self, keys: Sequence[CValue], values: Sequence[CValue]) -> None:
        """Insert or replace many elements in one system call per batch; on failure none stays written."""
        if not keys:
            return
        count = ctypes.c_uint32(len(keys))
        key_array = (type(keys[0]) * len(keys))(*keys)
        value_array = (type(values[0]) * len(values))(*values)
        result = _lib.bpf_map_update_batch(self.fd, key_array, value_array, ctypes.byref(count), None)
        if result < 0:
            self.delete_batch(keys[: count.value])
            _check(result, f"update map {self.name} ({len(keys)} elements)")

    def delete_batch(self, keys: Sequence[ctypes.Structure]) -> None:
        """Delete many elements, skipping any that are not there."""
        if not keys:
            return
        count = ctypes.c_uint32(len(keys))
        key_array = (type(keys[0]) * len(keys))(*keys)
        if _lib.bpf_map_delete_batch(self.fd, key_array, ctypes.byref(count), None) < 0:
            for key in keys[count.value :]:  # stopped at a missing key: the rest one by one
                self.delete(key)

    def delete(self, key: CValue) -> bool:
        """Delete one element; return False when it was not there."""
        result = _lib.bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if result == -errno.ENOENT:
            return False
        _check(result, f"delete from map {self.name}")
        return True

    def keys(self, key_type: type[CStruct]) -> list[CStruct]:
        """Return every key, read as key_type (a map changing meanwhile may be read in part)."""
        found: list[CStruct] = []
        key, following = key_type(), key_type()
        previous = None
        while _lib.bpf_map_get_next_key(self.fd, previous, ctypes.byref(following)) == 0:
            found.append(following)
            key, following = following, key_type()
            previous = ctypes.byref(key)
        return found


class RingBuffer:
    """Consume a BPF ring buffer, handing each record's bytes to a callback."""

    def __init__(self, ring: BpfMap, on_record: Callable[[bytes], None]) -> None:
        def sample(_ctx: int, data: int, size: int) -> int:
            on_record(ctypes.string_at(data, size))
            return 0

        self._callback = _SAMPLE_FN(sample)  # kept alive as long as the ring buffer
        self._ring = _check_pointer(
            _lib.ring_buffer__new(ring.fd, self._callback, None, None), f"open ring buffer {ring.name}"
        )

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for records and consume them; return how many."""
        result = _lib.ring_buffer__poll(self._ring, timeout_ms)
        if result == -errno.EINTR:
            return 0
        return _check(result, "poll ring buffer")

    def close(self) -> None:
        """Free the ring buffer."""
        if self._ring:
            _lib.ring_buffer__free(self._ring)
            self._ring = 0


class BpfObject:
    """An opened, loaded and attached BPF object file.

    With a pin directory (in bpffs) its maps and links outlive the process:
    the programs stay attached and keep enforcing when the agent dies. The
    next instance reuses the pinned maps (libbpf checks their layout), so
    the kernel's state carries over, and attaches its own programs before
    unpinning the previous ones: for a moment both run, never neither.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_entries: dict[str, int] | None = None,
        on_demand: frozenset[str] | set[str] = frozenset(),
        pin_dir: Path | None = None,
    ) -> None:
        """Open, size, load and attach the object; the programs named in on_demand wait for attach()."""
        self.path = path
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self._obj = _check_pointer(_lib.bpf_object__open_file(str(path).encode(), None), f"open {path}")
        self._links: dict[str, int] = {}
        self._on_demand = on_demand
        self._link_dir = pin_dir / PINNED_LINKS if pin_dir else None
        try:
            for name, entries in (max_entries or {}).items():
                _check(_lib.bpf_map__set_max_entries(self._map_pointer(name), entries), f"resize map {name}")
            if pin_dir:
                self._pin_maps(pin_dir / "maps")
            _check(_lib.bpf_object__load(self._obj), f"load {path} (the libbpf log above says why)")
            previous = sorted(self._link_dir.iterdir()) if self._link_dir and self._link_dir.exists() else []
            self._attach_all()
            for pin in previous:  # ours run now: the previous instance's programs may go
                pin.unlink()
        except BpfError:
            for name in list(self._links):  # what of ours attached goes; the previous instance's stays in force
                self.detach(name)
            self.close()
            raise

    def _pin_maps(self, directory: Path) -> None:
        """Have libbpf reuse each map pinned in directory, or pin it there once loaded."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        bpf_map = _lib.bpf_object__next_map(self._obj, None)
        while bpf_map:
            if not _lib.bpf_map__is_internal(bpf_map):
                pin = directory / _lib.bpf_map__name(bpf_map).decode()
                _check(_lib.bpf_map__set_pin_path(bpf_map, str(pin).encode()), f"pin path of {pin.name}")
            bpf_map = _lib.bpf_object__next_map(self._obj, bpf_map)

    def _map_pointer(self, name: str) -> int:
        return _check_pointer(_lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"find map {name}")

    def _attach_all(self) -> None:
        """Attach every program not on demand by its section name (lsm/<hook>, tp_btf/<tracepoint>)."""
        program = _lib.bpf_object__next_program(self._obj, None)
        while program:
            name = _lib.bpf_program__name(program).decode()
            if name not in self._on_demand:
                self.attach(name)
            program = _lib.bpf_object__next_program(self._obj, program)

    def attach(self, name: str) -> None:
        """Attach the named program, unless it is attached; pin its link if the object is pinned."""
        if name in self._links:
            return
        program = _check_pointer(_lib.bpf_object__find_program_by_name(self._obj, name.encode()), f"find {name}")
        link = _check_pointer(_lib.bpf_program__attach(program), f"attach program {name}")
        self._links[name] = link
        if self._link_dir:
            self._link_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            pin = self._link_dir / f"{name}-{os.getpid()}-{time.monotonic_ns()}"  # bpffs refuses dots in names
            _check(_lib.bpf_link__pin(link, str(pin).encode()), f"pin the link of {name}")

    def detach(self, name: str) -> None:
        """Detach the named program, if it is attached (unpinning its link)."""
        link = self._links.pop(name, None)
        if link:
            if self._link_dir:
                _lib.bpf_link__unpin(link)
            _lib.bpf_link__destroy(link)

    def map(self, name: str) -> BpfMap:
        """Return the named map of the loaded object."""
        return BpfMap(name, _check(_lib.bpf_map__fd(self._map_pointer(name)), f"fd of map {name}"))

    def close(self) -> None:
        """Detach all programs and free the object (the kernel drops the maps)."""
        for link in self._links.values():
            _lib.bpf_link__destroy(link)
        self._links.clear()
        if self._obj:
            _lib.bpf_object__close(self._obj)
            self._obj = 0
