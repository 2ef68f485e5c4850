/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * allowedArgs: process rules narrowed to the arguments an exec passes.
 *
 * A rule with allowedArgs is met by an exec whose arguments after argv[0]
 * are between 1 and KADAPTER_ARGS_MAX and each one of the rule's (as in
 * KubeArmor). At bprm_check_security the kernel has copied the arguments
 * into the new program's memory, which no helper can read yet, so they
 * are read from the caller's memory as execve(2) or execveat(2) passed
 * them; another thread may rewrite that memory once the kernel has copied
 * it. So every judgement that relied on the arguments meeting a rule is
 * recorded, and at bprm_committed_creds, when the new program's memory is
 * the task's own and no instruction of it has run, the kernel's copy is
 * judged again: a program whose real arguments do not meet the rule is
 * killed (or, for an Audit rule, reported). Reading the caller's memory
 * fails closed: an unreadable argument, another system call or another
 * architecture meets no rule.
 *
 * An interpreter started for a script (#!) gets new arguments from the
 * kernel; the script's own arguments stay the last ones, which is where
 * both checks look for them.
 */
#ifndef KADAPTER_ARGS_BPF_H
#define KADAPTER_ARGS_BPF_H

#include "judge.bpf.h"

/* (ruleset, rule id, argument) -> 1 for each argument a rule's allowedArgs lists; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct allowed_arg_key);
	__type(value, __u8);
} allowed_args SEC(".maps");

/* A judgement of one exec that relied on its arguments meeting a rule. */
struct args_assumption {
	__u32 ruleset;
	__u32 rule;
	__u32 argc; /* the kernel's count when judged: the rule's arguments are the last argc - 1 */
	__u32 action; /* what the exec gets if they do not: KADAPTER_ACTION_BLOCK (killed) or _AUDIT */
	__u32 alert_rule; /* the rule the alert names (0: the posture) */
};

#define ASSUMPTIONS_MAX 8

/* The assumptions of the exec a task is in (several for a script: its file's and its interpreter's). */
struct exec_assumptions {
	__u32 count;
	struct args_assumption assumed[ASSUMPTIONS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct exec_assumptions);
} exec_assumptions SEC(".maps");

/* Reading an exec's arguments between bpf_loop() steps. */
struct args_walk {
	struct allowed_arg_key *key;
	const char *const *argv; /* the caller's argv; NULL: the strings lie one after another from pos */
	unsigned long pos;
	__u32 skip; /* strings to pass over before the judged ones */
	int met;
};

/* Pass over one chunk of the strings before the judged ones; a string ends within a chunk or it goes on. */
static long skip_step(__u32 index, struct args_walk *walk)
{
	long length;

	if (!walk->skip)
		return 1;
	length = bpf_probe_read_user_str(walk->key->arg, sizeof(walk->key->arg), (const void *)walk->pos);
	if (length <= 0) {
		walk->met = 0;
		return 1;
	}
	if (length < KADAPTER_PATH_MAX) {
		walk->pos += length;
		walk->skip--;
	} else {
		walk->pos += KADAPTER_PATH_MAX - 1; /* the next read starts at the byte the helper cut */
	}
	return 0;
}

/* Judge one argument: the walk stops, unmet, at the first one the rule does not list. */
static long arg_step(__u32 index, struct args_walk *walk)
{
	struct allowed_arg_key *key = walk->key;
	const char *arg = (const char *)walk->pos;
	long length;

	if (walk->argv && bpf_probe_read_user(&arg, sizeof(arg), &walk->argv[(index + 1) & 0xff]))
		goto unmet;
	__builtin_memset(key->arg, 0, sizeof(key->arg));
	length = bpf_probe_read_user_str(key->arg, sizeof(key->arg), arg);
	if (length <= 1 || length >= KADAPTER_PATH_MAX || !bpf_map_lookup_elem(&allowed_args, key))
		goto unmet;
	walk->pos += length;
	return 0;
unmet:
	walk->met = 0;
	return 1;
}

/* The most chunks passed over before the judged arguments: argv[0] and a script's interpreter line, at any length. */
#define SKIP_STEPS (1 << 14)

/* Whether argc - 1 arguments, after skip strings (from pos) or argv[1] on (from the caller's argv), all meet a rule. */
static __always_inline int args_meet(__u32 ruleset, __u32 rule, __u32 argc, const char *const *argv,
				     unsigned long pos, __u32 skip)
{
	struct args_walk walk = { .argv = argv, .pos = pos, .skip = skip, .met = 1 };
	struct scratch_space *space;
	__u32 zero = 0;

	if (argc < 2 || argc > KADAPTER_ARGS_MAX + 1)
		return 0;
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return 0;
	walk.key = &space->arg_key;
	if (skip) {
		bpf_loop(SKIP_STEPS, skip_step, &walk, 0);
		if (walk.skip)
			return 0;
	}
	walk.key->ruleset = ruleset;
	walk.key->rule = rule;
	if (walk.met)
		bpf_loop(argc - 1, arg_step, &walk, 0);
	return walk.met;
}

/* The caller's argv as execve(2) or execveat(2) received it; NULL for anything else. */
static __always_inline const char *const *caller_argv(void)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long call = BPF_CORE_READ(regs, orig_ax);

	if (call == 59) /* execve(filename, argv, envp) */
		return (const char *const *)BPF_CORE_READ(regs, si);
	if (call == 322) /* execveat(dirfd, filename, argv, envp, flags) */
		return (const char *const *)BPF_CORE_READ(regs, dx);
#endif
	return NULL;
}

/* Record that the exec passed on the assumption its arguments meet a rule; false when that cannot be recorded. */
static __always_inline int assume(const struct judgement *j, __u32 rule, __u32 argc, __u32 action, __u32 alert_rule)
{
	struct exec_assumptions *exec;
	struct args_assumption *slot;

	exec = bpf_task_storage_get(&exec_assumptions, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!exec || exec->count >= ASSUMPTIONS_MAX)
		return 0;
	slot = &exec->assumed[exec->count & (ASSUMPTIONS_MAX - 1)];
	slot->ruleset = j->ruleset;
	slot->rule = rule;
	slot->argc = argc;
	slot->action = action;
	slot->alert_rule = alert_rule;
	exec->count++;
	return 1;
}

/*
 * Apply the exec's arguments to the narrowed rules of a judgement: a Block
 * or Audit rule they meet no longer holds, an Allow rule they do not meet
 * no longer covers the exec.
 */
static __always_inline void judge_args(struct judgement *j, __u32 argc)
{
	const char *const *argv = caller_argv();
	__u32 posture = j->flags & KADAPTER_POSTURE_AUDIT ? KADAPTER_ACTION_AUDIT : KADAPTER_ACTION_BLOCK;

	j->name_flags |= KADAPTER_NAME_ARGS;
	if (!argv)
		argc = 0;
	if ((j->rule.args & KADAPTER_ACTION_BLOCK) && args_meet(j->ruleset, j->rule.block_rule, argc, argv, 0, 0) &&
	    assume(j, j->rule.block_rule, argc, KADAPTER_ACTION_BLOCK, j->rule.block_rule))
		j->rule.block = 0;
	if ((j->rule.args & KADAPTER_ACTION_AUDIT) && args_meet(j->ruleset, j->rule.audit_rule, argc, argv, 0, 0) &&
	    assume(j, j->rule.audit_rule, argc, KADAPTER_ACTION_AUDIT, j->rule.audit_rule))
		j->rule.audit = 0;
	if ((j->rule.args & KADAPTER_ACTION_ALLOW) &&
	    !(args_meet(j->ruleset, j->rule.allow_rule, argc, argv, 0, 0) &&
	      assume(j, j->rule.allow_rule, argc, posture, 0)))
		j->rule.allow = 0;
}

/* A new exec starts with no assumptions (one that failed may have left some). */
SEC("lsm/bprm_creds_for_exec")
int BPF_PROG(kadapter_bprm_creds_for_exec, struct linux_binprm *bprm, int ret)
{
	struct exec_assumptions *exec = bpf_task_storage_get(&exec_assumptions, bpf_get_current_task_btf(), 0, 0);

	if (exec)
		exec->count = 0;
	return ret;
}

/* Report a broken assumption, naming the program the exec started. */
static __always_inline void report_changed(const struct args_assumption *assumed, struct linux_binprm *bprm)
{
	struct judgement j = {
		.kind = KADAPTER_KIND_PROCESS,
		.operation = KADAPTER_OP_EXEC,
		.ruleset = assumed->ruleset,
		.deny = -EACCES,
	};
	struct file *file = BPF_CORE_READ(bprm, file);
	struct scratch_space *space;
	__u32 zero = 0;

	j.container = current_container(0);
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!j.container || !space)
		return;
	j.key = &space->key;
	j.name_flags = KADAPTER_NAME_ARGS | KADAPTER_NAME_ARGS_CHANGED |
		       name_in_container(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry),
					 container_root(j.container, 0), &space->name, space->key.path);
	if (assumed->action == KADAPTER_ACTION_BLOCK)
		emit(&j, assumed->alert_rule, KADAPTER_ACTION_BLOCK, -EACCES);
	else
		emit(&j, assumed->alert_rule, KADAPTER_ACTION_AUDIT, 0);
}

/*
 * The exec is past its point of no return and the new program's memory is
 * the task's: judge the kernel's copy of the arguments (from bprm->p, one
 * string after another) against every assumption the exec passed on.
 */
SEC("lsm/bprm_committed_creds")
int BPF_PROG(kadapter_bprm_committed_creds, struct linux_binprm *bprm)
{
	struct exec_assumptions *exec = bpf_task_storage_get(&exec_assumptions, bpf_get_current_task_btf(), 0, 0);
	struct args_assumption assumed;
	__u32 argc = BPF_CORE_READ(bprm, argc);
	unsigned long start = BPF_CORE_READ(bprm, p);
	int kill = 0;

	if (!exec)
		return 0;
	for (__u32 index = 0; index < ASSUMPTIONS_MAX; index++) {
		if (index >= exec->count)
			break;
		assumed = exec->assumed[index];
		if (assumed.argc > argc ||
		    !args_meet(assumed.ruleset, assumed.rule, assumed.argc, NULL, start, argc + 1 - assumed.argc)) {
			report_changed(&assumed, bprm);
			kill |= assumed.action == KADAPTER_ACTION_BLOCK;
		}
	}
	exec->count = 0;
	if (kill)
		bpf_send_signal(9); /* SIGKILL, before the new program runs an instruction */
	return 0;
}

#endif /* KADAPTER_ARGS_BPF_H */
