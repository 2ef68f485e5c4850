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
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

MAX_SYMLINKS = 40  # the kernel's own limit for one lookup
_MINOR_BITS = 20  # the kernel's dev_t: major << 20 | minor

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
        try:
            fd = os.open(self.root / resolved_path.lstrip("/"), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return ()
        found = []
        try:
            info = _fdinfo(fd)
            dev = self._mount_devices.get(info.get("mnt_id", -1))
            if dev is not None and "ino" in info:
                found.append(FileIdentity(dev, info["ino"]))
            if stat.S_ISREG(os.fstat(fd).st_mode):  # never open a device or a FIFO for real
                found.append(_mapped_identity(fd))
        except OSError:
            return ()
        finally:
            os.close(fd)
        return tuple(dict.fromkeys(found))

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


def _mapped_identity(path_fd: int) -> FileIdentity:
    """Map one page of a file and read the identity the kernel gives the mapping in /proc/self/maps.

    overlayfs hands a mapping the real upper or lower file, so this names
    the inode that holds the data, which no stat() call reports.
    """
    data_fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)  # reopen the O_PATH handle
    try:
        address = _libc.mmap(None, 1, mmap.PROT_READ, mmap.MAP_PRIVATE, data_fd, 0)
    finally:
        os.close(data_fd)
    if address == _MAP_FAILED:
        raise OSError(ctypes.get_errno(), "mmap for the file's identity failed")
    try:
        prefix = f"{address:x}-"
        for line in Path("/proc/self/maps").read_text().splitlines():
            if line.startswith(prefix):
                device, inode = line.split()[3:5]
                major, minor = (int(part, 16) for part in device.split(":"))
                return FileIdentity(major << _MINOR_BITS | minor, int(inode))
    finally:
        _libc.munmap(ctypes.c_void_p(address), 1)
    raise OSError(errno.ENOENT, "the mapping is missing from /proc/self/maps")


def _fdinfo(fd: int) -> dict[str, int]:
    """Read the mount id and inode number of an open file from /proc/self/fdinfo."""
    fields = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("mnt_id", "ino"):
            fields[name] = int(value)
    return fields
