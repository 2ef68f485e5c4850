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

SEC("lsm/bprm_check_security")
int BPF_PROG(kadapter_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct container_policy *policy;
	struct exec_scratch *scratch_space;
	struct exec_rule_key *key;
	struct exec_rule *rule;
	struct ns_key ns;
	__u32 zero = 0;
	long len;

	if (ret)
		return ret;

	ns.pid_ns = BPF_CORE_READ(task, nsproxy, pid_ns_for_children, ns.inum);
	ns.mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	policy = bpf_map_lookup_elem(&containers, &ns);
	if (!policy)
		return 0;

	scratch_space = bpf_map_lookup_elem(&scratch, &zero);
	if (!scratch_space)
		return 0;
	key = &scratch_space->key;
	__builtin_memset(key, 0, sizeof(*key));
	key->ruleset = policy->ruleset;
	/* A path longer than any rule cannot match one; the key's path stays empty.
	 * f_path became const in 6.12; the helper still takes it non-const. */
	len = bpf_d_path((struct path *)&bprm->file->f_path, scratch_space->d_path, sizeof(scratch_space->d_path));
	if (len > 0)
		bpf_probe_read_kernel_str(key->path, sizeof(key->path), scratch_space->d_path);
	rule = len > 0 ? bpf_map_lookup_elem(&exec_rules, key) : NULL;

	if (rule && (rule->actions & KADAPTER_ACTION_BLOCK)) {
		emit(&ns, key, rule->block_rule, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	if ((policy->flags & KADAPTER_PROCESS_ALLOWLIST) && !(rule && (rule->actions & KADAPTER_ACTION_ALLOW))) {
		if (policy->flags & KADAPTER_POSTURE_AUDIT) {
			emit(&ns, key, 0, KADAPTER_ACTION_AUDIT, 0);
			return 0;
		}
		emit(&ns, key, 0, KADAPTER_ACTION_BLOCK, -EACCES);
		return -EACCES;
	}
	if (rule && (rule->actions & KADAPTER_ACTION_AUDIT))
		emit(&ns, key, rule->audit_rule, KADAPTER_ACTION_AUDIT, 0);
	return 0;
}
