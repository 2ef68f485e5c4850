// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Enforce KubeArmor process rules on exec inside a Kata guest.
 *
 * The rule is matched against the path of the file the kernel is about to
 * execute (bprm->file), never against the name the caller passed: symlinks,
 * relative names, /proc/self/fd/N and interpreter lines all resolve to the
 * same file object. Paths are as seen from the caller's root, which for a
 * container is its own rootfs, the view policy authors write paths in.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "exec.h"

#define EACCES 13
#define PROT_EXEC 0x4

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Containers under policy; the agent may resize before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ns_key);
	__type(value, struct container_policy);
} containers SEC(".maps");

/* Rules of every container, under each container's current ruleset id; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct exec_rule_key);
	__type(value, struct exec_rule);
} exec_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/*
 * Per-CPU room for the lookup key, too large for the 512-byte BPF stack.
 * bpf_d_path() builds the path at the end of its buffer before moving it
 * to the front, so it writes into d_path and the path is copied into a
 * zeroed key: hash keys must not carry stale bytes after the NUL.
 */
struct exec_scratch {
	struct exec_rule_key key;
	char d_path[KADAPTER_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_scratch);
} scratch SEC(".maps");

/* Keeps struct exec_event in the object's BTF for the layout test. */
const struct exec_event *unused_exec_event __attribute__((unused));

static __always_inline void emit(const struct ns_key *ns, const struct exec_rule_key *key, __u32 rule,
				 __u32 action, int retval)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct exec_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->timestamp_ns = bpf_ktime_get_boot_ns();
	e->pid_ns = ns->pid_ns;
	e->mnt_ns = ns->mnt_ns;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ruleset = key->ruleset;
	e->rule = rule;
	e->action = action;
	e->retval = retval;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->path, key->path, sizeof(e->path));
	e->reserved = 0;
	bpf_ringbuf_submit(e, 0);
}

#define DELETED_SUFFIX " (deleted)"
#define DELETED_SUFFIX_LEN (sizeof(DELETED_SUFFIX) - 1)
#define PATH_MASK (KADAPTER_PATH_MAX - 1)

/*
 * d_path() names an unlinked file "<path> (deleted)". Without this, opening
 * a blocked binary, unlinking it and executing /proc/self/fd/N would dodge
 * its rule. Strip the suffix only when the dentry really is unlinked (the
 * same test d_path uses), so a file created with that literal name does not
 * pass for the original.
 */
static __always_inline void strip_deleted_suffix(struct file *file, char *path, long len)
{
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	long end = len - 1; /* index of the NUL */
	int i;

	if (BPF_CORE_READ(dentry, d_hash.pprev) || BPF_CORE_READ(dentry, d_parent) == dentry)
		return; /* hashed, or a root: not unlinked */
	if (end < (long)DELETED_SUFFIX_LEN || end > PATH_MASK)
		return;
#pragma unroll
	for (i = 0; i < DELETED_SUFFIX_LEN; i++)
		if (path[(end - DELETED_SUFFIX_LEN + i) & PATH_MASK] != DELETED_SUFFIX[i])
			return;
	path[(end - DELETED_SUFFIX_LEN) & PATH_MASK] = '\0';
}

/* What the caller's container and its rules say about one file. */
struct verdict_input {
	struct ns_key ns;
	struct container_policy *policy;
	struct exec_rule_key *key;
	struct exec_rule *rule;
};

/* Fill in; return 0 when the caller is not in a container under policy. */
static __always_inline int lookup_file(struct file *file, struct verdict_input *in)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct exec_scratch *space;
	__u32 zero = 0;
	long len;

	in->ns.pid_ns = BPF_CORE_READ(task, nsproxy, pid_ns_for_children, ns.inum);
	in->ns.mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	in->policy = bpf_map_lookup_elem(&containers, &in->ns);
	if (!in->policy)
		return 0;
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return 0;
	in->key = &space->key;
	__builtin_memset(in->key, 0, sizeof(*in->key));
	in->key->ruleset = in->policy->ruleset;
	/* A path longer than any rule cannot match one; the key's path stays empty.
	 * f_path became const in 6.12; the helper still takes it non-const. */
	len = bpf_d_path((struct path *)&file->f_path, space->d_path, sizeof(space->d_path));
	if (len > 0) {
		strip_deleted_suffix(file, space->d_path, len);
		bpf_probe_read_kernel_str(in->key->path, sizeof(in->key->path), space->d_path);
	}
	in->rule = len > 0 ? bpf_map_lookup_elem(&exec_rules, in->key) : NULL;
	return 1;
}

static __always_inline int blocked(const struct verdict_input *in)
{
	if (in->rule && (in->rule->actions & KADAPTER_ACTION_BLOCK)) {
		emit(&in->ns, in->key, in->rule->block_rule, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(kadapter_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct verdict_input in;
	__u32 flags;

	if (ret)
		return ret;
	if (!lookup_file(bprm->file, &in))
		return 0;
	if (blocked(&in))
		return -EACCES;

	flags = in.policy->flags;
	if ((flags & KADAPTER_PROCESS_ALLOWLIST) && !(in.rule && (in.rule->actions & KADAPTER_ACTION_ALLOW))) {
		if (flags & KADAPTER_POSTURE_AUDIT) {
			emit(&in.ns, in.key, 0, KADAPTER_ACTION_AUDIT, 0);
			return 0;
		}
		emit(&in.ns, in.key, 0, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	if (in.rule && (in.rule->actions & KADAPTER_ACTION_AUDIT))
		emit(&in.ns, in.key, in.rule->audit_rule, KADAPTER_ACTION_AUDIT, 0);
	return 0;
}

/*
 * Running a blocked binary without exec: the dynamic loader invoked as a
 * program (ld.so /usr/bin/apt) maps it with PROT_EXEC itself, as would any
 * user-space loader. Only Block rules apply here: allow lists cover what may
 * be exec'd, not every library mapped. (file_mprotect would cover mapping
 * first and adding PROT_EXEC later, but 6.1 refuses bpf_d_path() there.)
 */
SEC("lsm/mmap_file")
int BPF_PROG(kadapter_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	struct verdict_input in;

	if (ret)
		return ret;
	if (!file || !(prot & PROT_EXEC) || !lookup_file(file, &in))
		return 0;
	return blocked(&in);
}
