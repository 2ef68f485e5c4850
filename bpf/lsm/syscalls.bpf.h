/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The syscalls enforcer: KubeArmor syscalls.matchSyscalls and
 * syscalls.matchPaths, which KubeArmor audits and never blocks; so does
 * this.
 *
 * A system call is judged when it returns, so its alert carries the
 * result. A matchPaths rule names the file the call's path argument
 * names: an absolute argument as it is, a relative one joined to the
 * directory it is relative to (the working directory, or the directory
 * file descriptor of an *at call), named from the container's root. The
 * argument's own "." and ".." and symlinks are not resolved: it is the
 * name the caller asked for. The agent attaches this program only while
 * some container has syscalls rules, since it runs on every system call
 * in the guest.
 */
#ifndef KADAPTER_SYSCALLS_BPF_H
#define KADAPTER_SYSCALLS_BPF_H

#include "judge.bpf.h"

#define AT_FDCWD -100
#define TS_COMPAT 0x0002 /* x86: the task is in a 32-bit system call */

/* The matchPaths rules of each system call under a ruleset; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct id_rule_key);
	__type(value, struct syscall_scope);
} syscall_scopes SEC(".maps");

static __always_inline long syscall_number(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
#else
	return BPF_CORE_READ(regs, orig_ax);
#endif
}

static __always_inline unsigned long syscall_arg(struct pt_regs *regs, __u32 index)
{
	switch (index) {
	case 0:
		return PT_REGS_PARM1_CORE_SYSCALL(regs);
	case 1:
		return PT_REGS_PARM2_CORE_SYSCALL(regs);
	case 2:
		return PT_REGS_PARM3_CORE_SYSCALL(regs);
	case 3:
		return PT_REGS_PARM4_CORE_SYSCALL(regs);
	default:
		return PT_REGS_PARM5_CORE_SYSCALL(regs);
	}
}

/* The directory a relative path argument starts from: the working directory or an open directory. */
static __always_inline int base_directory(struct pt_regs *regs, const struct syscall_scope *scope,
					  struct vfsmount **mnt, struct dentry **dentry)
{
	struct task_struct *task = bpf_get_current_task_btf();
	int dirfd = scope->dirfd_arg == KADAPTER_NO_ARG ? AT_FDCWD : (int)syscall_arg(regs, scope->dirfd_arg);
	struct fdtable *fdt;
	struct file **fds, *file = NULL;

	if (dirfd == AT_FDCWD) {
		*mnt = BPF_CORE_READ(task, fs, pwd.mnt);
		*dentry = BPF_CORE_READ(task, fs, pwd.dentry);
		return 1;
	}
	fdt = BPF_CORE_READ(task, files, fdt);
	if (dirfd < 0 || dirfd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[dirfd]);
	if (!file)
		return 0;
	*mnt = BPF_CORE_READ(file, f_path.mnt);
	*dentry = BPF_CORE_READ(file, f_path.dentry);
	return 1;
}

/*
 * Name the file the call's path argument names into space->key.path, and
 * into space->name for the directory walk; false when there is none or it
 * is longer than a rule can be.
 */
static __always_inline int syscall_path(struct judgement *j, struct scratch_space *space, struct pt_regs *regs,
					const struct syscall_scope *scope, long ret)
{
	struct file *exe = BPF_CORE_READ(bpf_get_current_task_btf(), mm, exe_file);
	__u64 root = container_root(j->container, 0);
	char *argument = space->dir_key.path, *path = space->key.path;
	struct vfsmount *mnt;
	struct dentry *dentry;
	long length, base;

	if (scope->exec && ret == 0) {
		/* The old program's memory, argument included, is gone; the executable is what ran. */
		if (!exe)
			return 0;
		j->name_flags = name_in_container(BPF_CORE_READ(exe, f_path.mnt), BPF_CORE_READ(exe, f_path.dentry), root,
						  &space->name, path);
		return !(j->name_flags & (KADAPTER_NAME_OUTSIDE | KADAPTER_NAME_LONG));
	}
	length = bpf_probe_read_user_str(argument, KADAPTER_PATH_MAX,
					 (const char *)syscall_arg(regs, scope->path_arg));
	if (length <= 1)
		return 0;
	length--; /* without the NUL */
	if (argument[0] == '/') {
		__builtin_memset(path, 0, KADAPTER_PATH_MAX);
		bpf_probe_read_kernel(path, length & (KADAPTER_PATH_MAX - 1), argument);
	} else {
		if (!base_directory(regs, scope, &mnt, &dentry))
			return 0;
		j->name_flags = name_in_container(mnt, dentry, root, &space->name, path);
		if (j->name_flags & (KADAPTER_NAME_OUTSIDE | KADAPTER_NAME_LONG))
			return 0;
		base = NAME_MASK - space->name.start;
		if (base == 1)
			base = 0; /* the root: "/" and the argument's "/" are one */
		if (base + 1 + length >= KADAPTER_PATH_MAX)
			return 0;
		path[base & (KADAPTER_PATH_MAX - 1)] = '/';
		bpf_probe_read_kernel(&path[(base + 1) & (KADAPTER_PATH_MAX - 1)], length & (KADAPTER_PATH_MAX - 1),
				      argument);
		length += base + 1;
	}
	/* The directory walk reads the name from space->name, ending at its last byte. */
	space->name.start = (NAME_MASK - length) & NAME_MASK;
	bpf_probe_read_kernel(&space->name.buf[space->name.start], (length + 1) & (KADAPTER_PATH_MAX - 1), path);
	return 1;
}

/* Merge the rules of the system call, and of the file its path argument names under its matchPaths rules. */
static __always_inline void match_syscall(struct judgement *j, struct pt_regs *regs, long number, long ret)
{
	struct id_rule_key key = { .ruleset = j->ruleset, .id = number };
	__u32 ruleset = j->ruleset, flags = j->flags, zero = 0;
	struct syscall_scope *scope;
	struct scratch_space *space;
	struct rule_entry *found;

	match_id(j, number);
	scope = bpf_map_lookup_elem(&syscall_scopes, &key);
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!scope || !space || !syscall_path(j, space, regs, scope, ret))
		return;
	j->key = &space->key;
	j->ruleset = space->key.ruleset = scope->ruleset;
	j->flags = scope->flags;
	found = bpf_map_lookup_elem(&name_rules, &space->key);
	if (found)
		merge(&j->rule, found);
	if (j->flags & KADAPTER_DIRS)
		match_dirs(j, space);
	j->ruleset = ruleset;
	j->flags = flags;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(kadapter_sys_exit, struct pt_regs *regs, long ret)
{
	long number = syscall_number(regs);
	struct judgement j;

#if defined(__TARGET_ARCH_x86)
	/* Numbered by the ia32 table, which rules do not use. */
	if (BPF_CORE_READ(bpf_get_current_task_btf(), thread_info.status) & TS_COMPAT)
		return 0;
#endif
	if (!judge_start(&j, KADAPTER_KIND_SYSCALLS, KADAPTER_OP_SYSCALL))
		return 0;
	j.args[0] = number;
	j.args[1] = ret;
	match_syscall(&j, regs, number, ret);
	if (enter_source(&j))
		match_syscall(&j, regs, number, ret);
	decide(&j);
	return 0;
}

#endif /* KADAPTER_SYSCALLS_BPF_H */
