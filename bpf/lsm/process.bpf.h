/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The process enforcer: KubeArmor process rules and the filelessExec,
 * anonymousMapExec and exec presets.
 *
 * A rule names a file as its container sees it; exec is judged, and so is
 * every way of running a file without exec: the dynamic loader invoked as
 * a program maps it executable itself, and a readable mapping can be made
 * executable later. New names for a blocked file are refused in
 * file.bpf.h, whose hooks they share. Rules narrowed to their allowedArgs
 * are judged at exec (args.bpf.h); running the file without exec meets none.
 */
#ifndef KADAPTER_PROCESS_BPF_H
#define KADAPTER_PROCESS_BPF_H

#include "judge.bpf.h"
#include "args.bpf.h"

/* Start judging running the file, matching its rules; false when no process rule applies to the caller. */
static __always_inline int process_start(struct judgement *j, struct file *file, __u32 operation)
{
	struct vfsmount *mnt = BPF_CORE_READ(file, f_path.mnt);
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);

	if (!judge_start(j, KADAPTER_KIND_PROCESS, operation))
		return 0;
	match_file(j, mnt, dentry, file);
	if (enter_source(j))
		match_file(j, mnt, dentry, file);
	return 1;
}

/* Judge running a file: its rules first, then filelessExec for a file with no link left. */
static __always_inline int judge_run(struct judgement *j)
{
	int verdict = decide(j);

	if (verdict || !(j->name_flags & KADAPTER_NAME_FILELESS))
		return verdict;
	return judge_preset(j, KADAPTER_PRESET_FILELESS_EXEC);
}

/*
 * anonymousMapExec: memory with no file behind it made executable, by
 * mmap or later by mprotect (code written at run time: shellcode, JITs).
 */
static __always_inline int judge_anonymous_exec(__u32 operation)
{
	struct judgement j;

	if (!judge_start(&j, KADAPTER_KIND_PROCESS, operation))
		return 0;
	j.name_flags = KADAPTER_NAME_ANONYMOUS;
	return judge_preset(&j, KADAPTER_PRESET_ANON_MAP_EXEC);
}

/*
 * exec: running a program from an interactive exec session (kubectl exec
 * -it): a task that entered the container through setns, or one it
 * created, with a terminal. As in KubeArmor, sessions without a terminal
 * (exec probes, kubectl exec without -t) are not covered.
 */
static __always_inline int judge_exec_session(struct judgement *j)
{
	__u32 bits = KADAPTER_PRESET_BLOCK(KADAPTER_PRESET_EXEC) | KADAPTER_PRESET_AUDIT(KADAPTER_PRESET_EXEC);

	if (!(j->policy->presets & bits) || !(current_tag() & KADAPTER_TAG_SESSION) || !has_terminal())
		return 0;
	return judge_preset(j, KADAPTER_PRESET_EXEC);
}

/* The agent's settings for the guest (one entry, written at its start). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

/*
 * An exec in a container the agent never registered (its hook failed,
 * timed out, or ran with the agent down): a task in a pid namespace below
 * the guest's with no tag. Reported always; refused when the agent runs
 * fail-closed, so such a container cannot run anything until registered.
 */
static __always_inline int judge_unregistered(struct file *file)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct judgement j = { .kind = KADAPTER_KIND_PROCESS, .operation = KADAPTER_OP_EXEC };
	struct scratch_space *space;
	struct settings *set;
	__u32 zero = 0;
	int deny;

	if (!BPF_CORE_READ(task, thread_pid, level) || current_tag())
		return 0;
	set = bpf_map_lookup_elem(&settings, &zero);
	deny = set && set->fail_closed ? -EACCES : 0;
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (space) {
		j.key = &space->key;
		j.name_flags = KADAPTER_NAME_UNREGISTERED |
			       name_in_container(BPF_CORE_READ(file, f_path.mnt), BPF_CORE_READ(file, f_path.dentry), 0,
						 &space->name, space->key.path);
	}
	j.args[0] = BPF_CORE_READ(task, nsproxy, pid_ns_for_children, ns.inum);
	j.args[1] = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	emit(&j, 0, deny ? KADAPTER_ACTION_BLOCK : KADAPTER_ACTION_AUDIT, deny);
	return deny;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(kadapter_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct judgement j;

	if (ret)
		return ret;
	if (!process_start(&j, bprm->file, KADAPTER_OP_EXEC))
		return judge_unregistered(bprm->file);
	if (j.rule.args)
		judge_args(&j, bprm->argc);
	ret = judge_run(&j);
	return ret ? ret : judge_exec_session(&j);
}

/*
 * Making a file's pages executable without exec. Allow lists cover what
 * may be exec'd, not every library mapped, so only Block and Audit rules
 * and the preset apply here.
 */
static __always_inline int judge_exec_mapping(struct file *file, __u32 operation)
{
	struct judgement j;

	if (!process_start(&j, file, operation))
		return 0;
	j.flags &= ~KADAPTER_ALLOWLIST;
	return judge_run(&j);
}

SEC("lsm/mmap_file")
int BPF_PROG(kadapter_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags,
	     int ret)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (ret)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	if (!file)
		return judge_anonymous_exec(KADAPTER_OP_MMAP);
	/* The kernel mapping the program being exec'd: bprm_check_security has judged it. */
	if (file == BPF_CORE_READ(task, mm, exe_file))
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
	if (!(prot & PROT_EXEC) || (BPF_CORE_READ(vma, vm_flags) & VM_EXEC))
		return 0;
	if (!file)
		return judge_anonymous_exec(KADAPTER_OP_MPROTECT);
	return judge_exec_mapping(file, KADAPTER_OP_MPROTECT);
}

#endif /* KADAPTER_PROCESS_BPF_H */
