# SPDX-License-Identifier: Apache-2.0
"""ctypes mirrors of bpf/lsm/kadapter.h, the structs the agent shares with the kernel side.

tests/guest_agent/test_bpf_layout.py compares every field's size and offset
with the BTF of the compiled object, so a change on one side fails the build
instead of corrupting maps.
"""

import ctypes
import enum

PATH_MAX = 256
COMM_LEN = 16


class Kind(enum.IntEnum):
    """KubeArmor's rule categories; a container has a ruleset of each."""

    PROCESS = 0
    FILE = 1
    NETWORK = 2
    CAPABILITIES = 3
    SYSCALLS = 4  # audited only, as in KubeArmor
    DNS = 5  # network.matchDNSQueries: its own allow list, under the network posture


ACTION_BLOCK = 1
ACTION_AUDIT = 2
ACTION_ALLOW = 4

VARIANT_READ_ONLY = 1
VARIANT_OWNER_ONLY = 2
VARIANT_NO_TERMINAL = 4
VARIANTS = 8

ALLOWLIST = 1
POSTURE_AUDIT = 2
DIRS = 4
EXECNAMES = 8
SOURCES = 16
PATTERNS = 32
SOURCE_DIRS = 64
BLOCKS = 128

PATTERNS_MAX = 256  # pattern rules one ruleset may hold (KADAPTER_PATTERNS_MAX)
ARGS_MAX = 20  # arguments an allowedArgs rule judges (KADAPTER_ARGS_MAX)


class Preset(enum.IntEnum):
    """KubeArmor's presets as the kernel side numbers them: the index of their bits and rule id."""

    FILELESS_EXEC = 0
    ANON_MAP_EXEC = 1
    PROTECT_ENV = 2
    PROTECT_PROC = 3
    EXEC = 4


def preset_bits(preset: Preset, *, block: bool, audit: bool) -> int:
    """Return a preset's Block and Audit bits in ContainerPolicy.presets."""
    return (1 if block else 0) << 2 * preset | (2 if audit else 0) << 2 * preset


OP_EXEC = 1
OP_MMAP = 2
OP_LINK = 3
OP_RENAME = 4
OP_MPROTECT = 5
OP_OPEN = 6
OP_CREATE = 7
OP_UNLINK = 8
OP_TRUNCATE = 9
OP_SOCKET = 10
OP_CAPABLE = 11
OP_SYSCALL = 12
OP_DNS_QUERY = 13

NO_ARG = 0xFF  # SyscallScope.dirfd_arg: the path is relative to the working directory

ACCESS_WRITE = 1
ACCESS_OWNER = 2
ACCESS_TERMINAL = 4

NAME_OUTSIDE = 1
NAME_FILELESS = 2
NAME_LONG = 4
NAME_ANONYMOUS = 8
NAME_OTHER_PROCESS = 16
NAME_PATTERN_BOUND = 32
NAME_UNREGISTERED = 64
NAME_ARGS = 128
NAME_ARGS_CHANGED = 256
NAME_DNS_UNREAD = 512

# network.matchProtocols names as the kernel side numbers them (kadapter.h KADAPTER_NET_*).
NETWORK_PROTOCOLS = {
    name: number
    for number, name in enumerate(
        ("tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "raw", "packet", "stream", "dgram", "seqpacket", "rdm", "all"),
        start=1,
    )
}


class Settings(ctypes.Structure):
    """What the agent sets for the whole guest."""

    _fields_ = (("fail_closed", ctypes.c_uint32), ("reserved", ctypes.c_uint32))


class NsKey(ctypes.Structure):
    """The namespaces a container had at registration: how tasks joining it through setns are recognised."""

    _fields_ = (("pid_ns", ctypes.c_uint32), ("mnt_ns", ctypes.c_uint32))


class KindPolicy(ctypes.Structure):
    """One kind's ruleset of a container (0: none), its allow-list, posture and lookup flags, and its pattern count."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("patterns", ctypes.c_uint32))


class ContainerPolicy(ctypes.Structure):
    """A container's ruleset of each kind and its presets."""

    _fields_ = (
        ("kinds", KindPolicy * len(Kind)),
        ("presets", ctypes.c_uint32),
        ("preset_rules", ctypes.c_uint32 * len(Preset)),
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


class RuleEntry(ctypes.Structure):
    """What the rules of one name, directory, inode or id say: per action, a bit per variant; the rule ids.

    args has an ACTION_* bit for each action whose rule is narrowed to its allowedArgs.
    """

    _fields_ = (
        ("block", ctypes.c_uint8),
        ("audit", ctypes.c_uint8),
        ("allow", ctypes.c_uint8),
        ("args", ctypes.c_uint8),
        ("block_rule", ctypes.c_uint32),
        ("audit_rule", ctypes.c_uint32),
        ("allow_rule", ctypes.c_uint32),
    )


class NameRuleKey(ctypes.Structure):
    """One path (or execname) of one ruleset."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("path", ctypes.c_char * PATH_MAX))


class DirRule(ctypes.Structure):
    """A directory's rules: for files at any depth below it, and for files directly in it."""

    _fields_ = (("any_depth", RuleEntry), ("direct", RuleEntry))


class InodeRuleKey(ctypes.Structure):
    """One file of one ruleset by identity: the kernel's dev_t of its superblock and its inode number."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("dev", ctypes.c_uint32), ("ino", ctypes.c_uint64))


class PatternKey(ctypes.Structure):
    """One of a ruleset's pattern rules, by index (0 to its KindPolicy.patterns - 1)."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("index", ctypes.c_uint32))


class PatternRule(ctypes.Structure):
    """A matchPatterns rule: what it says, and its glob."""

    _fields_ = (("rule", RuleEntry), ("pattern", ctypes.c_char * PATH_MAX))


class SourceDir(ctypes.Structure):
    """A directory's fromSource rulesets: for executables at any depth below it, and directly in it."""

    _fields_ = (("any_depth", KindPolicy), ("direct", KindPolicy))


class SyscallScope(ctypes.Structure):
    """One system call's matchPaths ruleset, and which of its arguments hold the path and its directory fd."""

    _fields_ = (
        ("ruleset", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("path_arg", ctypes.c_uint8),
        ("dirfd_arg", ctypes.c_uint8),
        ("exec", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8),
    )


class AllowedArgKey(ctypes.Structure):
    """One argument a rule's allowedArgs lists, under the ruleset the rule is in."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("rule", ctypes.c_uint32), ("arg", ctypes.c_char * PATH_MAX))


class IdRuleKey(ctypes.Structure):
    """A network protocol name, a capability or a system call number of one ruleset."""

    _fields_ = (("ruleset", ctypes.c_uint32), ("id", ctypes.c_uint32))


class AlertEvent(ctypes.Structure):
    """A blocked or audited operation, as the kernel reports it on the ring buffer."""

    _fields_ = (
        ("timestamp_ns", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("ruleset", ctypes.c_uint32),
        ("rule", ctypes.c_uint32),
        ("action", ctypes.c_uint32),
        ("retval", ctypes.c_int32),
        ("kind", ctypes.c_uint32),
        ("operation", ctypes.c_uint32),
        ("name_flags", ctypes.c_uint32),
        ("access", ctypes.c_uint32),
        ("args", ctypes.c_uint32 * 3),
        ("comm", ctypes.c_char * COMM_LEN),
        ("path", ctypes.c_char * PATH_MAX),
        ("process", ctypes.c_char * PATH_MAX),
        ("parent_process", ctypes.c_char * PATH_MAX),
    )
