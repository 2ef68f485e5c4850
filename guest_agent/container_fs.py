# SPDX-License-Identifier: Apache-2.0
"""A container's files as the agent reaches them: through its init process's /proc entry.

Rules name files as the container sees them, from its own root and through
its own mounts (volumes, tmpfs), which the agent's mount namespace does not
have. /proc/<pid>/root leads into the container's mount tree. At prestart
the runtime has not yet pivoted into the rootfs, so the rootfs is then
reached below that root at the bundle's rootfs path.

Two things are read here for the rule compiler: where a path really leads
(symlinks resolved inside the container, never against the agent's root)
and the identity of the file it names, as the kernel's hooks see it: the
superblock's dev_t and the inode number. stat() is not enough: on an
overlay whose layers sit on different file systems, st_dev of a file names
its layer, not the overlay the kernel hands to the hooks; the mount's
major:minor in mountinfo and the inode number in fdinfo are the kernel's own.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import stat
from collections import deque
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

MAX_SYMLINKS = 40  # the kernel's own limit for one lookup
_MINOR_BITS = 20  # the kernel's dev_t: major << 20 | minor
_RESOLV_CONF_MAX = 65536  # bytes of a container's resolv.conf read
_MAPPINGS_PER_READ = 1024  # files mapped at once for one read of /proc/self/maps (the map count limit is 65530)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


class FileIdentity(NamedTuple):
    """A file whatever its name: the kernel's dev_t of its superblock and its inode number."""

    dev: int
    ino: int


class ContainerView:
    """Resolve paths and identify files inside one container."""

    def __init__(self, root: Path, mountinfo: Path) -> None:
        self.root = root
        self._mountinfo = mountinfo
        # What each path below root is, as first seen: a symlink's target, or None. A view lives for one
        # compilation; thousands of rules under one directory then cost one readlink each, not one per component.
        self._links: dict[str, str | None] = {}
        self._identities: dict[str, tuple[FileIdentity, ...]] = {}

    @classmethod
    def of_process(cls, pid: int, rootfs: Path | None) -> ContainerView:
        """Return the view of the container whose init is pid, before or after its pivot into rootfs."""
        proc = Path("/proc", str(pid))
        root = proc / "root"
        try:
            before_pivot = os.path.samestat(os.stat(root), os.stat("/"))
        except OSError:  # the init is gone, so is the container: its files cannot be read, only named
            before_pivot = False
        if rootfs is not None and before_pivot:
            root = root / str(rootfs).lstrip("/")  # still in prestart: the rootfs hangs below the guest's root
        return cls(root, proc / "mountinfo")

    def resolve(self, path: str) -> str | None:
        """Follow symlinks in an absolute path the way a process with this root would.

        Components that do not exist are kept as written. Returns None on a
        symlink loop or an unreadable directory.
        """
        pending = deque(part for part in path.split("/") if part)
        resolved: list[str] = []
        links = 0
        while pending:
            part = pending.popleft()
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            resolved.append(part)
            try:
                target = self._readlink("/".join(resolved))
            except OSError:
                return None
            if target is None:
                continue  # not a symlink, or not there (yet)
            resolved.pop()
            links += 1
            if links > MAX_SYMLINKS:
                return None
            if target.startswith("/"):
                resolved.clear()
            pending.extendleft(reversed([piece for piece in target.split("/") if piece]))
        return "/" + "/".join(resolved)

    def search_domains(self) -> tuple[str, ...]:
        """Return the search domains of the container's resolver (resolv.conf's last search line), in lower case.

        A resolver asks for a short name followed by each of them first (Kubernetes writes the
        pod's namespace.svc.cluster.local, svc.cluster.local and cluster.local), so a DNS rule
        covers those names too.
        """
        resolved = self.resolve("/etc/resolv.conf")
        text = _read_regular_file(self.root / resolved.lstrip("/"), _RESOLV_CONF_MAX) if resolved else None
        lines = text.splitlines() if text else []
        domains: list[str] = []
        for line in lines:
            words = line.split()
            if words and words[0] in ("search", "domain"):
                domains = [word.strip(".").lower() for word in words[1:] if word.strip(".")]
        return tuple(dict.fromkeys(domains))

    def _readlink(self, relative: str) -> str | None:
        """Return the target of the symlink at root/relative, None if it is not one or does not exist."""
        if relative not in self._links:
            try:
                self._links[relative] = os.readlink(f"{self.root}/{relative}")
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                    raise
                self._links[relative] = None
        return self._links[relative]

    def identities(self, resolved_path: str) -> tuple[FileIdentity, ...]:
        """Return the identities of the file at a path already resolved by resolve(); () if there is none.

        The inode the path leads to (for link and rename), and for a regular
        file the inode holding its data, which overlayfs keeps underneath
        (for exec and mmap; bpf/lsm/realfile.bpf.h). Often both are one.
        """
        if resolved_path not in self._identities:
            self.read_identities((resolved_path,))
        return self._identities[resolved_path]

    def read_identities(self, resolved_paths: Iterable[str]) -> None:
        """Read the identities of many files at once, for identities() to return.

        A file's data inode is found in /proc/self/maps, as long as the
        agent's address space: read once per batch of files mapped, not once
        per file, it no longer dominates compiling thousands of file rules.
        """
        unread = [path for path in dict.fromkeys(resolved_paths) if path not in self._identities]
        for start in range(0, len(unread), _MAPPINGS_PER_READ):
            self._read_batch(unread[start : start + _MAPPINGS_PER_READ])

    def _read_batch(self, paths: Sequence[str]) -> None:
        """Record the identities of up to _MAPPINGS_PER_READ files, each mapped for one page until they are read."""
        own: dict[str, tuple[FileIdentity, ...] | None] = {}
        mapped: dict[str, int] = {}  # a regular file's path -> where one page of it is mapped
        try:
            for path in paths:
                own[path] = self._own_identity(path, mapped)
            data = _mapped_identities(mapped.values()) if mapped else {}
        finally:
            for address in mapped.values():
                _libc.munmap(ctypes.c_void_p(address), 1)
        for path, inode in own.items():
            data_inode = (data.get(mapped[path]),) if path in mapped else ()
            if inode is None or None in data_inode:  # unreadable, or its mapping went missing
                self._identities[path] = ()
            else:
                self._identities[path] = tuple(dict.fromkeys((*inode, *data_inode)))

    def _own_identity(self, path: str, mapped: dict[str, int]) -> tuple[FileIdentity, ...] | None:
        """Return the identity of the inode a path leads to (if its mount is known); None if it cannot be read.

        A regular file is also mapped (its address recorded in mapped) for its data's identity.
        """
        try:
            fd = os.open(self.root / path.lstrip("/"), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            info = _fdinfo(fd)
            dev = self._mount_devices.get(info.get("mnt_id", -1))
            if stat.S_ISREG(os.fstat(fd).st_mode):  # never open a device or a FIFO for real
                mapped[path] = _map_page(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        return (FileIdentity(dev, info["ino"]),) if dev is not None and "ino" in info else ()

    @cached_property
    def _mount_devices(self) -> dict[int, int]:
        """Map the container's mount ids to their superblocks' kernel dev_t."""
        devices = {}
        try:
            lines = self._mountinfo.read_text().splitlines()
        except OSError:
            return {}
        for line in lines:
            fields = line.split()
            major, minor = fields[2].split(":")
            devices[int(fields[0])] = int(major) << _MINOR_BITS | int(minor)
        return devices


def _map_page(path_fd: int) -> int:
    """Map one page of a file (through its O_PATH handle); return the address.

    overlayfs hands a mapping the real upper or lower file, so the mapping
    names the inode that holds the data, which no stat() call reports.
    """
    data_fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)  # reopen the O_PATH handle
    try:
        address = _libc.mmap(None, 1, mmap.PROT_READ, mmap.MAP_PRIVATE, data_fd, 0)
    finally:
        os.close(data_fd)
    if address == _MAP_FAILED:
        raise OSError(ctypes.get_errno(), "mmap for the file's identity failed")
    return address


def _mapped_identities(addresses: Iterable[int]) -> dict[int, FileIdentity]:
    """Return the identity of the file mapped at each address, as the kernel lists it in /proc/self/maps."""
    wanted = set(addresses)
    found = {}
    for line in Path("/proc/self/maps").read_text().splitlines():
        address = int(line.partition("-")[0], 16)
        if address in wanted:
            device, inode = line.split()[3:5]
            major, minor = (int(part, 16) for part in device.split(":"))
            found[address] = FileIdentity(major << _MINOR_BITS | minor, int(inode))
    return found


def _read_regular_file(path: Path, limit: int) -> str | None:
    """Read the start of a file the container controls: None unless it is a regular file.

    The file is checked through an O_PATH handle before it is opened for reading, so a FIFO (which
    would block) or a device (whose open may do something) swapped in for it is never opened.
    """
    try:
        handle = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)  # the very file checked
        try:
            return os.read(fd, limit).decode(errors="replace")
        finally:
            os.close(fd)
    except OSError:
        return None
    finally:
        os.close(handle)


def _fdinfo(fd: int) -> dict[str, int]:
    """Read the mount id and inode number of an open file from /proc/self/fdinfo."""
    fields = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("mnt_id", "ino"):
            fields[name] = int(value)
    return fields
