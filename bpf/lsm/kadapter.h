/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Structs shared by kadapter.bpf.c and the guest agent (guest_agent/bpf_types.py
 * mirrors them; tests/guest_agent/test_bpf_layout.py checks the mirror
 * against this object's BTF). Fixed-width fields, explicit padding only.
 */
#ifndef KADAPTER_H
#define KADAPTER_H

/* Bytes of a path in a rule key, NUL included. */
#define KADAPTER_PATH_MAX 256
#define KADAPTER_COMM_LEN 16

/* Rule kinds, KubeArmor's categories; each has its own ruleset and posture per container. */
#define KADAPTER_KIND_PROCESS 0
#define KADAPTER_KIND_FILE 1
#define KADAPTER_KIND_NETWORK 2
#define KADAPTER_KIND_CAPABILITIES 3
#define KADAPTER_KIND_SYSCALLS 4 /* audited only, as in KubeArmor */
#define KADAPTER_KIND_DNS 5 /* network.matchDNSQueries: its own allow list, under the network posture */
#define KADAPTER_KINDS 6

/* Actions, as reported in events. */
#define KADAPTER_ACTION_BLOCK 1
#define KADAPTER_ACTION_AUDIT 2
#define KADAPTER_ACTION_ALLOW 4

/*
 * A rule's variant: the qualifiers it was written with. rule_entry holds,
 * per action, a bit per variant present (1 << variant). readOnly narrows a
 * Block or Audit rule to writing and an Allow rule to reading; ownerOnly
 * narrows Block and Audit to others than the file's owner and Allow to
 * the owner; "pts: false" narrows Block and Audit to callers with a
 * terminal and Allow to callers without one.
 */
#define KADAPTER_VARIANT_READ_ONLY 1
#define KADAPTER_VARIANT_OWNER_ONLY 2
#define KADAPTER_VARIANT_NO_TERMINAL 4
#define KADAPTER_VARIANTS 8

/* kind_policy.flags */
#define KADAPTER_ALLOWLIST 1 /* an Allow rule exists: what no Allow rule covers hits the posture */
#define KADAPTER_POSTURE_AUDIT 2 /* the posture audits instead of blocking */
#define KADAPTER_DIRS 4 /* directory rules exist: look up every directory above the file */
#define KADAPTER_EXECNAMES 8 /* execname rules exist: look up the file's own name (no '/') */
#define KADAPTER_SOURCES 16 /* fromSource rules exist: look up the caller's executable */
#define KADAPTER_PATTERNS 32 /* matchPatterns rules exist: match the name against each (patterns.bpf.h) */
#define KADAPTER_SOURCE_DIRS 64 /* fromSource directories exist: look up each directory above the caller's executable */
#define KADAPTER_BLOCKS 128 /* a Block rule exists: what cannot be judged (a DNS query not read whole) is refused */

/* The most pattern rules one ruleset may hold: every judged name is matched against each. */
#define KADAPTER_PATTERNS_MAX 256

/*
 * Presets, by index: container_policy.presets holds a Block and an Audit
 * bit for each, container_policy.preset_rules its rule id.
 */
#define KADAPTER_PRESET_FILELESS_EXEC 0 /* running a file with no link left (memfd, unlinked) */
#define KADAPTER_PRESET_ANON_MAP_EXEC 1 /* making anonymous memory executable */
#define KADAPTER_PRESET_PROTECT_ENV 2 /* reading another process's /proc/<pid>/environ */
#define KADAPTER_PRESET_PROTECT_PROC 3 /* opening another process's /proc/<pid>/ files */
#define KADAPTER_PRESET_EXEC 4 /* exec from an interactive exec session (kubectl exec -it) */
#define KADAPTER_PRESETS 5
#define KADAPTER_PRESET_BLOCK(preset) (1U << (2 * (preset)))
#define KADAPTER_PRESET_AUDIT(preset) (2U << (2 * (preset)))

/* alert_event.operation */
#define KADAPTER_OP_EXEC 1 /* execve of the file */
#define KADAPTER_OP_MMAP 2 /* a PROT_EXEC mapping of it (loaders) */
#define KADAPTER_OP_LINK 3 /* a new hard link to it, or a link made at its name */
#define KADAPTER_OP_RENAME 4 /* moving it to another name, or another file onto its name */
#define KADAPTER_OP_MPROTECT 5 /* making a mapping of it executable */
#define KADAPTER_OP_OPEN 6
#define KADAPTER_OP_CREATE 7 /* a new file at the name (mknod, open O_CREAT) */
#define KADAPTER_OP_UNLINK 8
#define KADAPTER_OP_TRUNCATE 9 /* truncate(2) or open with O_TRUNC */
#define KADAPTER_OP_SOCKET 10 /* socket(2): args are family, type, protocol */
#define KADAPTER_OP_CAPABLE 11 /* using a capability: args[0] is its number */
#define KADAPTER_OP_SYSCALL 12 /* a system call returned: args[0] is its number, args[1] its return value */
#define KADAPTER_OP_DNS_QUERY 13 /* a message to port 53: path is its question's name, args its family and type */

/* alert_event.access */
#define KADAPTER_ACCESS_WRITE 1 /* the operation changes the file */
#define KADAPTER_ACCESS_OWNER 2 /* the caller owns the file */
#define KADAPTER_ACCESS_TERMINAL 4 /* the caller has a controlling terminal */

/* alert_event.name_flags */
#define KADAPTER_NAME_OUTSIDE 1 /* not under the container's root (memfd, another mount tree): no path rule applies */
#define KADAPTER_NAME_FILELESS 2 /* the file has no link left (memfd, unlinked) */
#define KADAPTER_NAME_LONG 4 /* longer than a path rule can be: the event's path is its first 255 bytes */
#define KADAPTER_NAME_ANONYMOUS 8 /* anonymous memory: no file at all */
#define KADAPTER_NAME_OTHER_PROCESS 16 /* another process's /proc/<pid>/ file */
#define KADAPTER_NAME_PATTERN_BOUND 32 /* patterns left unfinished at the work bound (counted as Block and Audit) */
#define KADAPTER_NAME_UNREGISTERED 64 /* exec in a container never registered: args are its pid and mnt ns ids */
#define KADAPTER_NAME_ARGS 128 /* an allowedArgs rule was judged against the exec's arguments */
#define KADAPTER_NAME_ARGS_CHANGED 256 /* the arguments changed while the exec was judged: the new program is killed */
#define KADAPTER_NAME_DNS_UNREAD 512 /* a message to port 53 not read as one whole query: refused if any rule blocks */

/*
 * network.matchProtocols names, as rule ids: a socket is looked up under
 * each name it answers to (a TCP socket is tcp, stream and all).
 */
#define KADAPTER_NET_TCP 1
#define KADAPTER_NET_UDP 2
#define KADAPTER_NET_ICMP 3
#define KADAPTER_NET_ICMPV6 4
#define KADAPTER_NET_SCTP 5
#define KADAPTER_NET_DCCP 6
#define KADAPTER_NET_RAW 7
#define KADAPTER_NET_PACKET 8
#define KADAPTER_NET_STREAM 9
#define KADAPTER_NET_DGRAM 10
#define KADAPTER_NET_SEQPACKET 11
#define KADAPTER_NET_RDM 12
#define KADAPTER_NET_ALL 13

/* What the agent sets for the whole guest, in the settings map. */
struct settings {
	__u32 fail_closed; /* refuse every exec in a container the agent never registered */
	__u32 reserved;
};

/* A container as the kernel first knew it: the pid and mount namespace ids of its init. */
struct ns_key {
	__u32 pid_ns;
	__u32 mnt_ns;
};

/* One kind's rules for a container: ruleset 0 means it has none. */
struct kind_policy {
	__u32 ruleset; /* rules live under this id; swapping it swaps them all at once */
	__u32 flags;
	__u32 patterns; /* pattern rules under the ruleset, indexes 0 to patterns - 1 */
};

struct container_policy {
	struct kind_policy kinds[KADAPTER_KINDS];
	__u32 presets;
	__u32 preset_rules[KADAPTER_PRESETS]; /* each preset's rule id, for alerts */
	__u32 reserved;
};

/*
 * A container's alert budget: at most `limit` events per second reach the
 * ring buffer, so a noisy container cannot flood the agent or the host.
 * The agent creates it at registration; the kernel counts.
 */
struct alert_budget {
	__u64 window_start_ns;
	__u32 limit;
	__u32 sent; /* in the current one-second window */
	__u64 dropped; /* since registration */
};

/*
 * What the rules of one name, directory, inode or id say, merged. A bit
 * of args (KADAPTER_ACTION_*) narrows that action's rule to its
 * allowedArgs: a Block or Audit rule then holds only for an exec whose
 * arguments are not all in its set, an Allow rule only for one whose are.
 */
struct rule_entry {
	__u8 block; /* bit (1 << variant) per variant of Block rule */
	__u8 audit;
	__u8 allow;
	__u8 args;
	__u32 block_rule; /* rule ids, so alerts can name policy, severity and message */
	__u32 audit_rule;
	__u32 allow_rule;
};

struct name_rule_key {
	__u32 ruleset;
	char path[KADAPTER_PATH_MAX]; /* or, for an execname rule, a file name */
};

/* A directory rule's value: rules for files at any depth below it, and for files directly in it. */
struct dir_rule {
	struct rule_entry any_depth;
	struct rule_entry direct;
};

/* The same file under any name: its inode as the container's mounts present it. */
struct inode_rule_key {
	__u32 ruleset;
	__u32 dev; /* the kernel's dev_t of the superblock: major << 20 | minor */
	__u64 ino;
};

/* One of a ruleset's pattern rules, by index. */
struct pattern_key {
	__u32 ruleset;
	__u32 index;
};

/* A matchPatterns rule: what it says, and its pattern (NUL-terminated; '*', '**' and '?' are wildcards). */
struct pattern_rule {
	struct rule_entry rule;
	char pattern[KADAPTER_PATH_MAX];
};

/* A directory's fromSource rulesets: for executables at any depth below it, and directly in it. */
struct source_dir {
	struct kind_policy any_depth;
	struct kind_policy direct;
};

/* A syscall's path argument: which argument holds it, and which the directory it is relative to. */
#define KADAPTER_NO_ARG 0xff

/* The syscalls.matchPaths rules of one system call: a ruleset of names and directories, and where its path is. */
struct syscall_scope {
	__u32 ruleset;
	__u32 flags;
	__u8 path_arg;
	__u8 dirfd_arg; /* KADAPTER_NO_ARG: relative to the working directory */
	__u8 exec; /* execve/execveat: once it succeeded, the path is the new executable's */
	__u8 reserved;
};

/* The most arguments an allowedArgs rule judges: an exec with more never meets it (as in KubeArmor). */
#define KADAPTER_ARGS_MAX 20

/* One argument an allowedArgs rule permits (NUL-terminated, zero after). */
struct allowed_arg_key {
	__u32 ruleset;
	__u32 rule;
	char arg[KADAPTER_PATH_MAX];
};

/* A network protocol name (KADAPTER_NET_*), a capability or a system call number. */
struct id_rule_key {
	__u32 ruleset;
	__u32 id;
};

struct alert_event {
	__u64 timestamp_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 ruleset;
	__u32 rule; /* 0: no rule matched, the posture decided */
	__u32 action; /* KADAPTER_ACTION_BLOCK or KADAPTER_ACTION_AUDIT */
	__s32 retval; /* what the hook returned */
	__u32 kind;
	__u32 operation;
	__u32 name_flags;
	__u32 access;
	__u32 args[3]; /* socket family, type and protocol; a capability; a system call and its return value */
	char comm[KADAPTER_COMM_LEN];
	char path[KADAPTER_PATH_MAX]; /* relative to the container's root */
	char process[KADAPTER_PATH_MAX]; /* the executable of the task that asked, named the same way */
	char parent_process[KADAPTER_PATH_MAX]; /* its parent's executable */
};

#endif /* KADAPTER_H */
