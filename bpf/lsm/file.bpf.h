/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The file enforcer: KubeArmor file rules and the protectEnv and
 * protectProc presets.
 *
 * Opening a file is judged as reading or writing by its open mode; so is
 * every way of changing a file without opening it for write: creating it,
 * truncating it (truncate(2), O_TRUNC), unlinking it, and linking or
 * renaming another file onto its name. A file a Block rule (process or
 * file) covers may not gain another name either.
 */
#ifndef KADAPTER_FILE_BPF_H
#define KADAPTER_FILE_BPF_H

#include "judge.bpf.h"

/* The process a /proc/<pid>/ file is about, as procfs recorded it; NULL for any other file. */
static __always_inline struct pid *proc_file_pid(struct inode *inode)
{
	struct proc_inode *proc;

	if (BPF_CORE_READ(inode, i_sb, s_magic) != PROC_SUPER_MAGIC)
		return NULL;
	proc = (void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	return BPF_CORE_READ(proc, pid);
}

/*
 * protectProc and protectEnv: opening a /proc/<pid>/ file (its environ,
 * for protectEnv) of a process other than the caller's. Procfs's own
 * record of the process is compared, not the name, so a procfs mounted
 * elsewhere or seen from another pid namespace changes nothing.
 */
static __always_inline int judge_proc_file(struct judgement *j, struct dentry *dentry, struct inode *inode)
{
	struct pid *pid = proc_file_pid(inode);
	struct qstr name = BPF_CORE_READ(dentry, d_name);
	__u64 environ = 0;
	int verdict;

	if (!pid || pid == BPF_CORE_READ(bpf_get_current_task_btf(), group_leader, thread_pid))
		return 0;
	j->name_flags |= KADAPTER_NAME_OTHER_PROCESS;
	if (name.len == 7)
		bpf_probe_read_kernel(&environ, sizeof(environ), name.name);
	if (environ == ENVIRON_NAME) {
		verdict = judge_preset(j, KADAPTER_PRESET_PROTECT_ENV);
		if (verdict)
			return verdict;
	}
	return judge_preset(j, KADAPTER_PRESET_PROTECT_PROC);
}

/* Judge changing the file at (mnt, dentry) as a write; return the verdict. */
static __always_inline int judge_file_change(struct vfsmount *mnt, struct dentry *dentry, __u32 operation)
{
	struct judgement j;

	if (!judge_start(&j, KADAPTER_KIND_FILE, operation))
		return 0;
	match_file(&j, mnt, dentry, NULL);
	if (enter_source(&j))
		match_file(&j, mnt, dentry, NULL);
	j.access |= KADAPTER_ACCESS_WRITE;
	return decide(&j);
}

/* Refuse a new name for a file any Block rule covers; return the verdict. */
static __always_inline int refuse_new_names(struct vfsmount *mnt, struct dentry *dentry, __u32 operation)
{
	int verdict = refuse_new_name(KADAPTER_KIND_PROCESS, mnt, dentry, operation);

	return verdict ? verdict : refuse_new_name(KADAPTER_KIND_FILE, mnt, dentry, operation);
}

SEC("lsm/file_open")
int BPF_PROG(kadapter_file_open, struct file *file, int ret)
{
	struct dentry *dentry = file->f_path.dentry; /* direct BTF loads: every open in the guest passes here */
	struct judgement j;

	if (ret)
		return ret;
	/* Overlayfs opening the real file under the overlay file's name: the overlay file was judged. */
	if (file->f_inode != dentry->d_inode)
		return 0;
	if (!judge_start(&j, KADAPTER_KIND_FILE, KADAPTER_OP_OPEN))
		return 0;
	match_file(&j, BPF_CORE_READ(file, f_path.mnt), dentry, file);
	if (enter_source(&j))
		match_file(&j, BPF_CORE_READ(file, f_path.mnt), dentry, file);
	if (file->f_mode & FMODE_WRITE)
		j.access |= KADAPTER_ACCESS_WRITE;
	ret = decide(&j);
	return ret ? ret : judge_proc_file(&j, dentry, BPF_CORE_READ(file, f_inode));
}

SEC("lsm/path_mknod")
int BPF_PROG(kadapter_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev,
	     int ret)
{
	if (ret)
		return ret;
	return judge_file_change(BPF_CORE_READ(dir, mnt), dentry, KADAPTER_OP_CREATE);
}

SEC("lsm/path_unlink")
int BPF_PROG(kadapter_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return judge_file_change(BPF_CORE_READ(dir, mnt), dentry, KADAPTER_OP_UNLINK);
}

SEC("lsm/path_truncate")
int BPF_PROG(kadapter_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return judge_file_change(BPF_CORE_READ(path, mnt), BPF_CORE_READ(path, dentry), KADAPTER_OP_TRUNCATE);
}

SEC("lsm/path_link")
int BPF_PROG(kadapter_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	struct vfsmount *mnt = BPF_CORE_READ(new_dir, mnt);

	if (ret)
		return ret;
	ret = refuse_new_names(mnt, old_dentry, KADAPTER_OP_LINK);
	return ret ? ret : judge_file_change(mnt, new_dentry, KADAPTER_OP_LINK);
}

/* Renaming takes the file's old name away and replaces whatever the new name held: both are changes. */
SEC("lsm/path_rename")
int BPF_PROG(kadapter_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	struct vfsmount *mnt = BPF_CORE_READ(old_dir, mnt);

	if (ret)
		return ret;
	ret = refuse_new_names(mnt, old_dentry, KADAPTER_OP_RENAME);
	if (!ret && (flags & RENAME_EXCHANGE))
		ret = refuse_new_names(mnt, new_dentry, KADAPTER_OP_RENAME);
	if (!ret)
		ret = judge_file_change(mnt, old_dentry, KADAPTER_OP_RENAME);
	if (!ret)
		ret = judge_file_change(mnt, new_dentry, KADAPTER_OP_RENAME);
	return ret;
}

#endif /* KADAPTER_FILE_BPF_H */
