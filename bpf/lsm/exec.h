/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Structs shared by exec.bpf.c and the guest agent (guest_agent/bpf_types.py
 * mirrors them; tests/guest_agent/test_bpf_layout.py checks the mirror
 * against this object's BTF). Fixed-width fields, explicit padding only.
 */
#ifndef KADAPTER_EXEC_H
#define KADAPTER_EXEC_H

/* Bytes of a path in a rule key, NUL included. */
#define KADAPTER_PATH_MAX 256
#define KADAPTER_COMM_LEN 16

/* Rule actions: bits, since several policies may name the same path. */
#define KADAPTER_ACTION_BLOCK 1
#define KADAPTER_ACTION_AUDIT 2
#define KADAPTER_ACTION_ALLOW 4

/* container_policy.flags */
#define KADAPTER_PROCESS_ALLOWLIST 1 /* an Allow rule exists: unmatched execs hit the posture */
#define KADAPTER_POSTURE_AUDIT 2 /* posture audits instead of blocking */
#define KADAPTER_FILELESS_BLOCK 4 /* filelessExec preset: deny executing files with no link left */
#define KADAPTER_FILELESS_AUDIT 8 /* filelessExec preset: report it */
#define KADAPTER_PROCESS_DIRS 16 /* directory rules exist: look up every directory above the file */
#define KADAPTER_PROCESS_EXECNAMES 32 /* execname rules exist: look up the file's own name (no '/') */

/* exec_event.operation */
#define KADAPTER_OP_EXEC 1 /* execve of the file */
#define KADAPTER_OP_MMAP 2 /* a PROT_EXEC mapping of it (loaders) */
#define KADAPTER_OP_LINK 3 /* a new hard link to it */
#define KADAPTER_OP_RENAME 4 /* moving it to another name */
#define KADAPTER_OP_MPROTECT 5 /* making a mapping of it executable */

/* exec_event.name_flags */
#define KADAPTER_NAME_OUTSIDE 1 /* not under the container's root (memfd, another mount tree): no path rule applies */
#define KADAPTER_NAME_FILELESS 2 /* the file has no link left (memfd, unlinked) */
#define KADAPTER_NAME_LONG 4 /* longer than a path rule can be: the event's path is its first 255 bytes */

/* A container as the kernel first knew it: the pid and mount namespace ids of its init. */
struct ns_key {
	__u32 pid_ns;
	__u32 mnt_ns;
};

struct container_policy {
	__u32 ruleset; /* rules live under this id; swapping it swaps them all at once */
	__u32 flags;
	__u32 fileless_rule; /* the preset's rule id, for alerts */
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

struct exec_rule_key {
	__u32 ruleset;
	char path[KADAPTER_PATH_MAX]; /* or, for an execname rule, a file name */
};

struct exec_rule {
	__u32 actions;
	__u32 block_rule; /* rule ids, so alerts can name policy, severity and message */
	__u32 audit_rule;
	__u32 allow_rule;
};

/* A directory rule's value: rules for files at any depth below it, and for files directly in it. */
struct dir_rule {
	struct exec_rule any_depth;
	struct exec_rule direct;
};

/* The same file under any name: its inode as the container's mounts present it. */
struct inode_rule_key {
	__u32 ruleset;
	__u32 dev; /* the kernel's dev_t of the superblock: major << 20 | minor */
	__u64 ino;
};


struct exec_event {
	__u64 timestamp_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 ruleset;
	__u32 rule; /* 0: no rule matched, the posture decided */
	__u32 action; /* KADAPTER_ACTION_BLOCK or KADAPTER_ACTION_AUDIT */
	__s32 retval; /* what the hook returned */
	__u32 operation;
	__u32 name_flags;
	char comm[KADAPTER_COMM_LEN];
	char path[KADAPTER_PATH_MAX]; /* relative to the container's root */
	char process[KADAPTER_PATH_MAX]; /* the executable of the task that asked, named the same way */
	char parent_process[KADAPTER_PATH_MAX]; /* its parent's executable */
	__u32 reserved;
};

#endif /* KADAPTER_EXEC_H */
