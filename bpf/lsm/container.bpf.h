/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Which container a task belongs to, for the task's whole life.
 *
 * The agent tags a container's init process (task storage, written through
 * a pidfd) while it waits in its prestart hook. Every task it creates
 * inherits the tag in task_alloc, so no unshare, setns, chroot or exec can
 * shed it. Tasks that join the container later through setns (runc exec,
 * kata-agent's exec) carry no tag: they are found by the (pid ns, mnt ns)
 * the container had at registration and tagged on first sight, marked as
 * joining. Until a joining task execs it is still the runtime's code
 * setting up the exec (as the init is until the container's first exec),
 * so only its exec is judged; from then on everything is. Such a task and
 * its descendants stay marked as an exec session (the exec preset).
 */
#ifndef KADAPTER_CONTAINER_BPF_H
#define KADAPTER_CONTAINER_BPF_H

#include "kadapter.h"
#include "kernel_consts.bpf.h"

/* Container id -> its policy; the agent may resize before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct container_policy);
} containers SEC(".maps");

/* The namespaces a container had at registration -> its id (the setns way in). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ns_key);
	__type(value, __u32);
} container_ns SEC(".maps");

/* A tag's bit for a task that joined through setns and has not exec'd yet. */
#define KADAPTER_TAG_JOINING (1U << 31)
/* A tag's bit for a task of an exec session: one that joined through setns, and its descendants. */
#define KADAPTER_TAG_SESSION (1U << 30)
#define KADAPTER_TAG_BITS (KADAPTER_TAG_JOINING | KADAPTER_TAG_SESSION)

/* Task -> container id, with KADAPTER_TAG_BITS. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} task_container SEC(".maps");

/*
 * Container id -> its root dentry, recorded by the kernel side at the
 * container's first exec (after the runtime's pivot_root, before any
 * workload code ran). Names are made relative to it. Compared, never
 * dereferenced.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} container_roots SEC(".maps");

/* Return the current task's tag (0: in no container), tagging a task that joined through setns. */
static __always_inline __u32 current_tag(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ns_key ns;
	__u32 *tag, *found, joining;

	tag = bpf_task_storage_get(&task_container, task, 0, 0);
	if (tag)
		return *tag;
	/* Direct BTF loads (a task with no nsproxy any more reads 0): every task in the guest passes here. */
	ns.pid_ns = task->nsproxy->pid_ns_for_children->ns.inum;
	ns.mnt_ns = task->nsproxy->mnt_ns->ns.inum;
	found = bpf_map_lookup_elem(&container_ns, &ns);
	if (!found)
		return 0;
	joining = *found | KADAPTER_TAG_JOINING | KADAPTER_TAG_SESSION;
	/* Untagged, the task is found by its namespaces again next time; judged in full, since no exec could be recorded. */
	if (!bpf_task_storage_get(&task_container, task, &joining, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return *found;
	return joining;
}

/*
 * Return the current task's container id for judging an operation, or 0
 * when there is none or the task is joining and this is not its exec. A
 * joining task's exec ends its joining.
 */
static __always_inline __u32 current_container(int exec)
{
	__u32 tag = current_tag(), container = tag & ~KADAPTER_TAG_BITS, *stored;

	if (!(tag & KADAPTER_TAG_JOINING))
		return container;
	if (!exec)
		return 0;
	stored = bpf_task_storage_get(&task_container, bpf_get_current_task_btf(), 0, 0);
	if (stored)
		*stored = tag & ~KADAPTER_TAG_JOINING;
	return container;
}

/* Return the container's root dentry; the first exec in the container records it. */
static __always_inline __u64 container_root(__u32 container, int record)
{
	struct task_struct *task;
	__u64 *root, dentry;

	root = bpf_map_lookup_elem(&container_roots, &container);
	if (root)
		return *root;
	if (!record)
		return 0;
	task = bpf_get_current_task_btf();
	dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	bpf_map_update_elem(&container_roots, &container, &dentry, BPF_NOEXIST);
	return dentry;
}

/*
 * A task created by a tagged task belongs to the same container. A child
 * that cannot carry the tag (no memory) is not created: failing open here
 * would hand out an unenforced process.
 */
SEC("lsm/task_alloc")
int BPF_PROG(kadapter_task_alloc, struct task_struct *task, unsigned long clone_flags, int ret)
{
	__u32 tag;

	if (ret)
		return ret;
	tag = current_tag();
	if (!tag)
		return 0;
	if (!bpf_task_storage_get(&task_container, task, &tag, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	return 0;
}

#endif /* KADAPTER_CONTAINER_BPF_H */
