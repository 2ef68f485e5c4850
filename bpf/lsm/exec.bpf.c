// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Enforce KubeArmor process rules inside a Kata guest.
 *
 * A rule names a file as its container sees it. Each hook matches the
 * file it is about (the one exec'd, mapped executable, linked or renamed)
 * two ways: by its name relative to the container's root, whatever root
 * the caller has (filename.bpf.h), and by inode: the inode the name leads
 * to and, under overlayfs, the one holding the data (realfile.bpf.h). So a
 * hard link, a bind mount or a chroot reaches the same rule. A blocked file
 * may not gain another name: on an overlay rootfs a link or rename forces a
 * copy-up, after which its inode is not the one the rule recorded.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "exec.h"
#include "kernel_consts.bpf.h"
#include "container.bpf.h"
#include "filename.bpf.h"
#include "realfile.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Rules by name, under each container's current ruleset id; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct exec_rule_key);
	__type(value, struct exec_rule);
} exec_rules SEC(".maps");

/* Directory rules by path (ending in "/"); resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct exec_rule_key);
	__type(value, struct dir_rule);
} exec_dirs SEC(".maps");

/* The same rules by inode; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inode_rule_key);
	__type(value, struct exec_rule);
} exec_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Container id -> its alert budget; the agent may resize before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct alert_budget);
} alert_budgets SEC(".maps");

/* Per-CPU room for the name and the lookup key, too large for the 512-byte BPF stack. */
struct exec_scratch {
	struct exec_rule_key key; /* zeroed past the NUL: hash keys compare every byte */
	struct exec_rule_key dir_key; /* one directory above the file at a time, or the file's own name */
	struct name_buffer name;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_scratch);
} scratch SEC(".maps");

/* Keeps struct exec_event in the object's BTF for the layout test. */
const struct exec_event *unused_exec_event __attribute__((unused));

/* One file as the caller's container sees it, and what its rules say. */
struct verdict_input {
	__u32 container;
	__u32 operation;
	__u32 name_flags;
	struct container_policy *policy;
	struct exec_rule_key *key;
	struct exec_rule rule; /* the name's and the inode's rules, merged */
};

/*
 * Spend one event of the container's budget; false when this second's is
 * spent (the event is counted as dropped). The verdict never depends on it.
 */
static __always_inline int within_budget(__u32 container, __u64 now)
{
	struct alert_budget *budget = bpf_map_lookup_elem(&alert_budgets, &container);

	if (!budget)
		return 1;
	if (now - budget->window_start_ns >= 1000000000ULL) {
		budget->window_start_ns = now; /* racing CPUs may both reset: at worst a few extra events */
		budget->sent = 0;
	}
	if (budget->sent >= budget->limit) {
		__sync_fetch_and_add(&budget->dropped, 1);
		return 0;
	}
	__sync_fetch_and_add(&budget->sent, 1);
	return 1;
}

/* Name a task's executable relative to the container's root into out; empty for a task with no mm. */
static __always_inline void name_executable(struct task_struct *task, __u64 root, char *out)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct exec_scratch *space;
	__u32 zero = 0;

	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return;
	if (!exe) {
		__builtin_memset(out, 0, KADAPTER_PATH_MAX);
		return;
	}
	name_in_container(BPF_CORE_READ(exe, f_path.mnt), BPF_CORE_READ(exe, f_path.dentry), root, &space->name, out);
}

static __always_inline void emit(const struct verdict_input *in, __u32 rule, __u32 action, int retval)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 root = container_root(in->container, 0);
	struct exec_event *e;

	if (!within_budget(in->container, now))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->timestamp_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ruleset = in->key->ruleset;
	e->rule = rule;
	e->action = action;
	e->retval = retval;
	e->operation = in->operation;
	e->name_flags = in->name_flags;
	e->reserved = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->path, in->key->path, sizeof(e->path));
	name_executable(task, root, e->process);
	name_executable(BPF_CORE_READ(task, real_parent), root, e->parent_process);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void merge(struct exec_rule *into, const struct exec_rule *rule)
{
	into->actions |= rule->actions;
	if (!into->block_rule)
		into->block_rule = rule->block_rule;
	if (!into->audit_rule)
		into->audit_rule = rule->audit_rule;
	if (!into->allow_rule)
		into->allow_rule = rule->allow_rule;
}

/* The directory walk's state between bpf_loop() steps (one step per byte of the name's first 255). */
struct dir_walk {
	struct exec_scratch *space;
	struct exec_rule *rule; /* where matches are merged */
	struct exec_rule direct; /* the rules of the directory last seen: the file's own directory at the end */
};

static long dir_step(__u32 index, struct dir_walk *walk)
{
	struct exec_scratch *space = walk->space;
	char *name = &space->name.buf[space->name.start & NAME_MASK];
	struct dir_rule *found;
	__u32 end = index & (KADAPTER_PATH_MAX - 1);

	if (!name[end])
		return 1;
	if (name[end] != '/')
		return 0;
	/* The key is the name up to and including this '/'; the bytes after it are zero. */
	bpf_probe_read_kernel(space->dir_key.path, (end + 1) & (KADAPTER_PATH_MAX - 1), name);
	found = bpf_map_lookup_elem(&exec_dirs, &space->dir_key);
	if (found) {
		merge(walk->rule, &found->any_depth);
		walk->direct = found->direct;
	} else {
		__builtin_memset(&walk->direct, 0, sizeof(walk->direct));
	}
	return 0;
}

/* Merge the rules of every directory above the named file, at any depth, and of its own directory. */
static __always_inline void match_dirs(struct verdict_input *in, struct exec_scratch *space)
{
	struct dir_walk walk = { .space = space, .rule = &in->rule };

	__builtin_memset(&space->dir_key, 0, sizeof(space->dir_key));
	space->dir_key.ruleset = in->key->ruleset;
	bpf_loop(KADAPTER_PATH_MAX - 1, dir_step, &walk, 0);
	merge(&in->rule, &walk.direct);
}

/* Merge the execname rules for the file's own name, wherever the file is. */
static __always_inline void match_execname(struct verdict_input *in, struct dentry *dentry,
					   struct exec_scratch *space)
{
	struct qstr name = BPF_CORE_READ(dentry, d_name);
	struct exec_rule *found;

	__builtin_memset(&space->dir_key, 0, sizeof(space->dir_key));
	space->dir_key.ruleset = in->key->ruleset;
	bpf_probe_read_kernel(space->dir_key.path, name.len & (KADAPTER_PATH_MAX - 1), name.name);
	found = bpf_map_lookup_elem(&exec_rules, &space->dir_key);
	if (found)
		merge(&in->rule, found);
}

/* Merge the rules recorded for one inode of the file. */
static __always_inline void match_inode(struct verdict_input *in, struct inode *inode)
{
	struct inode_rule_key key = {
		.ruleset = in->key->ruleset,
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
		.ino = BPF_CORE_READ(inode, i_ino),
	};
	struct exec_rule *found = bpf_map_lookup_elem(&exec_inodes, &key);

	if (found)
		merge(&in->rule, found);
}

/*
 * Fill in for a file reached as (mnt, dentry), and opened as file when the
 * hook has one; return 0 when the caller is not in a container under policy.
 */
static __always_inline int lookup_file(struct vfsmount *mnt, struct dentry *dentry, struct file *file,
				       __u32 operation, struct verdict_input *in)
{
	struct exec_scratch *space;
	struct exec_rule *found;
	struct inode *inode, *real;
	__u32 zero = 0;
	__u64 root;

	in->container = current_container();
	if (!in->container)
		return 0;
	in->policy = bpf_map_lookup_elem(&containers, &in->container);
	if (!in->policy)
		return 0;
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return 0;
	root = container_root(in->container, operation == KADAPTER_OP_EXEC);
	in->operation = operation;
	in->key = &space->key;
	in->key->ruleset = in->policy->ruleset;
	in->name_flags = name_in_container(mnt, dentry, root, &space->name, in->key->path);
	__builtin_memset(&in->rule, 0, sizeof(in->rule));
	if (!(in->name_flags & (KADAPTER_NAME_OUTSIDE | KADAPTER_NAME_LONG))) {
		found = bpf_map_lookup_elem(&exec_rules, in->key);
		if (found)
			merge(&in->rule, found);
	}
	if (!(in->name_flags & KADAPTER_NAME_OUTSIDE) && (in->policy->flags & KADAPTER_PROCESS_DIRS))
		match_dirs(in, space);
	if (in->policy->flags & KADAPTER_PROCESS_EXECNAMES)
		match_execname(in, dentry, space);
	inode = BPF_CORE_READ(dentry, d_inode);
	if (!inode)
		return 1;
	if (!BPF_CORE_READ(inode, i_nlink))
		in->name_flags |= KADAPTER_NAME_FILELESS;
	match_inode(in, inode);
	real = file ? real_inode(file, inode) : inode;
	if (real != inode)
		match_inode(in, real);
	return 1;
}

/* Deny and report when a Block rule or the filelessExec preset says so; return the verdict. */
static __always_inline int blocked(const struct verdict_input *in)
{
	if (in->rule.actions & KADAPTER_ACTION_BLOCK) {
		emit(in, in->rule.block_rule, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	if ((in->name_flags & KADAPTER_NAME_FILELESS) && (in->policy->flags & KADAPTER_FILELESS_BLOCK)) {
		emit(in, in->policy->fileless_rule, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	return 0;
}

/* Report an allowed operation that an Audit rule or the audited preset covers. */
static __always_inline void audited(const struct verdict_input *in)
{
	if (in->rule.actions & KADAPTER_ACTION_AUDIT)
		emit(in, in->rule.audit_rule, KADAPTER_ACTION_AUDIT, 0);
	else if ((in->name_flags & KADAPTER_NAME_FILELESS) && (in->policy->flags & KADAPTER_FILELESS_AUDIT))
		emit(in, in->policy->fileless_rule, KADAPTER_ACTION_AUDIT, 0);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(kadapter_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct verdict_input in;
	__u32 flags;
	struct file *file = bprm->file;

	if (ret)
		return ret;
	if (!lookup_file(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry), file, KADAPTER_OP_EXEC,
			 &in))
		return 0;
	if (blocked(&in))
		return -EACCES;

	flags = in.policy->flags;
	if ((flags & KADAPTER_PROCESS_ALLOWLIST) && !(in.rule.actions & KADAPTER_ACTION_ALLOW)) {
		if (flags & KADAPTER_POSTURE_AUDIT) {
			emit(&in, 0, KADAPTER_ACTION_AUDIT, 0);
			return 0;
		}
		emit(&in, 0, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	audited(&in);
	return 0;
}

/* Judge making a file's pages executable: Block and Audit rules and filelessExec; return the verdict. */
static __always_inline int judge_exec_mapping(struct file *file, __u32 operation)
{
	struct verdict_input in;

	if (!lookup_file(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry), file, operation, &in))
		return 0;
	if (blocked(&in))
		return -EACCES;
	audited(&in);
	return 0;
}

/*
 * Running a file without exec: the dynamic loader invoked as a program
 * (ld.so /usr/bin/apt) maps it with PROT_EXEC itself, as would any
 * user-space loader. Allow lists cover what may be exec'd, not every
 * library mapped, so only Block and Audit rules apply here.
 */
SEC("lsm/mmap_file")
int BPF_PROG(kadapter_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (ret)
		return ret;
	/* The kernel mapping the program being exec'd: bprm_check_security has judged it. */
	if (!file || !(prot & PROT_EXEC) || file == BPF_CORE_READ(task, mm, exe_file))
		return 0;
	return judge_exec_mapping(file, KADAPTER_OP_MMAP);
}

/*
 * Mapping a file readable and making it executable later. Under overlayfs
 * the mapping already holds the real file, which the name walk places
 * outside the container: such a file is matched by its real inode.
 */
SEC("lsm/file_mprotect")
int BPF_PROG(kadapter_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot, int ret)
{
	struct file *file = BPF_CORE_READ(vma, vm_file);

	if (ret)
		return ret;
	if (!file || !(prot & PROT_EXEC) || (BPF_CORE_READ(vma, vm_flags) & VM_EXEC))
		return 0;
	return judge_exec_mapping(file, KADAPTER_OP_MPROTECT);
}

/* Refuse a new name for a file a Block rule covers; return the verdict. */
static __always_inline int refuse_new_name(struct vfsmount *mnt, struct dentry *dentry, __u32 operation)
{
	struct verdict_input in;

	if (!lookup_file(mnt, dentry, NULL, operation, &in) || !(in.rule.actions & KADAPTER_ACTION_BLOCK))
		return 0;
	emit(&in, in.rule.block_rule, KADAPTER_ACTION_BLOCK, -EACCES);
	return -EACCES;
}

SEC("lsm/path_link")
int BPF_PROG(kadapter_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	if (ret)
		return ret;
	return refuse_new_name(BPF_CORE_READ(new_dir, mnt), old_dentry, KADAPTER_OP_LINK);
}

SEC("lsm/path_rename")
int BPF_PROG(kadapter_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	struct vfsmount *mnt = BPF_CORE_READ(old_dir, mnt);

	if (ret)
		return ret;
	ret = refuse_new_name(mnt, old_dentry, KADAPTER_OP_RENAME);
	if (!ret && (flags & RENAME_EXCHANGE))
		ret = refuse_new_name(mnt, new_dentry, KADAPTER_OP_RENAME);
	return ret;
}
