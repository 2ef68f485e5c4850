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

/* A container: its pid and mount namespace ids, as in /proc/PID/ns/{pid,mnt}. */
struct ns_key {
	__u32 pid_ns;
	__u32 mnt_ns;
};

struct container_policy {
	__u32 ruleset; /* rules live under this id; swapping it swaps them all at once */
	__u32 flags;
};

struct exec_rule_key {
	__u32 ruleset;
	char path[KADAPTER_PATH_MAX];
};

struct exec_rule {
	__u32 actions;
	__u32 block_rule; /* rule ids, so alerts can name policy, severity and message */
	__u32 audit_rule;
	__u32 allow_rule;
};

struct exec_event {
	__u64 timestamp_ns;
	__u32 pid_ns;
	__u32 mnt_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 ruleset;
	__u32 rule; /* 0: no rule matched, the posture decided */
	__u32 action; /* KADAPTER_ACTION_BLOCK or KADAPTER_ACTION_AUDIT */
	__s32 retval; /* what the hook returned */
	char comm[KADAPTER_COMM_LEN];
	char path[KADAPTER_PATH_MAX];
	__u32 reserved;
};

#endif /* KADAPTER_EXEC_H */
