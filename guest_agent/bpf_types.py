# SPDX-License-Identifier: Apache-2.0
"""ctypes mirrors of bpf/lsm/exec.h, the structs the agent shares with the kernel side.

tests/guest_agent/test_bpf_layout.py compares every field's size and offset
with the BTF of the compiled object, so a change on one side fails the build
instead of corrupting maps.
"""

import ctypes

PATH_MAX = 256
COMM_LEN = 16

ACTION_BLOCK = 1
ACTION_AUDIT = 2
ACTION_ALLOW = 4

PROCESS_ALLOWLIST = 1
POSTURE_AUDIT = 2
FILELESS_BLOCK = 4
FILELESS_AUDIT = 8
PROCESS_DIRS = 16
PROCESS_EXECNAMES = 32

OP_EXEC = 1
OP_MMAP = 2
OP_LINK = 3
OP_RENAME = 4
OP_MPROTECT = 5

NAME_OUTSIDE = 1
NAME_FILELESS = 2
NAME_LONG = 4


class NsKey(ctypes.Structure):
    """The namespaces a container had at registration: how tasks joining it through setns are recognised."""

    _fields_ = (("pid_ns", ctypes.c_uint32), ("mnt_ns", ctypes.c_uint32))


class ContainerPolicy(ctypes.Structure):
    """Which ruleset a container uses, its allow-list, posture and preset flags."""

    _fields_ = (
        ("ruleset", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("fileless_rule", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    )


class AlertBudget(ctypes.Structure):
    """A container's alert rate limit and what the kernel dropped over it."""

    _fields_ = (
        ("window_start_ns", ctypes.c_uint64),
        ("limit", ctypes.c_uint32),
        ("sent", ctypes.c_uint32),
        ("dropped", ctypes.c_uint64),
    )


class ExecRuleKey(ctypes.Structure):
    """One executable path of one ruleset."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("path", ctypes.c_char * PATH_MAX))


class InodeRuleKey(ctypes.Structure):
    """One file of one ruleset by identity: the kernel's dev_t of its superblock and its inode number."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("dev", ctypes.c_uint32), ("ino", ctypes.c_uint64))


class ExecRule(ctypes.Structure):
    """The actions policies give one path, with the rule id behind each."""

    _fields_ = (
        ("actions", ctypes.c_uint32),
        ("block_rule", ctypes.c_uint32),
        ("audit_rule", ctypes.c_uint32),
        ("allow_rule", ctypes.c_uint32),
    )


class DirRule(ctypes.Structure):
    """A directory's rules: for files at any depth below it, and for files directly in it."""

    _fields_ = (("any_depth", ExecRule), ("direct", ExecRule))


class ExecEvent(ctypes.Structure):
    """A blocked or audited exec, as the kernel reports it on the ring buffer."""

    _fields_ = (
        ("timestamp_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("ruleset", ctypes.c_uint32),
        ("rule", ctypes.c_uint32),
        ("action", ctypes.c_uint32),
        ("retval", ctypes.c_int32),
        ("operation", ctypes.c_uint32),
        ("name_flags", ctypes.c_uint32),
        ("comm", ctypes.c_char * COMM_LEN),
        ("path", ctypes.c_char * PATH_MAX),
        ("process", ctypes.c_char * PATH_MAX),
        ("parent_process", ctypes.c_char * PATH_MAX),
        ("reserved", ctypes.c_uint32),
    )
