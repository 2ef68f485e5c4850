/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The inode that holds an open file's data.
 *
 * On an overlay rootfs the inode a hook sees is overlayfs's own, and its
 * number is not stable across a copy-up: a hard link made in the container
 * gets a new overlay inode while the old name keeps the cached one. The
 * upper or lower file overlayfs opened underneath is shared by every name,
 * and it is what /proc/<pid>/maps shows for a mapping of the file, so the
 * agent can record the same identity from user space.
 */
#ifndef KADAPTER_REALFILE_BPF_H
#define KADAPTER_REALFILE_BPF_H

#include "kernel_consts.bpf.h"

/* Since 6.13 file->private_data of an overlay file is a struct ovl_file (overlay module BTF). */
struct ovl_file___kadapter {
	struct file *realfile;
} __attribute__((preserve_access_index));

/* Overlayfs's inode around the VFS one; __upperdentry is set once the file is copied up. */
struct ovl_inode___kadapter {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
} __attribute__((preserve_access_index));

/* The upper file's inode of a copied-up overlay inode, else the inode itself. */
static __always_inline struct inode *upper_inode(struct inode *inode)
{
	struct ovl_inode___kadapter *ovl;
	struct dentry *upper;

	if (!bpf_core_type_exists(struct ovl_inode___kadapter))
		return inode;
	ovl = (void *)inode - bpf_core_field_offset(struct ovl_inode___kadapter, vfs_inode);
	upper = BPF_CORE_READ(ovl, __upperdentry);
	return upper ? BPF_CORE_READ(upper, d_inode) : inode;
}

/*
 * The inode holding the data of a file: the real
 * file overlayfs opened (when file is open), else the upper file of a
 * copied-up one. Hooks that run before overlayfs opens the real file
 * (file_open, path hooks) rely on the second: a hard link made in the
 * container copies the file up, and both names then lead to that upper file.
 */
static __always_inline struct inode *real_inode(struct file *file, struct inode *inode)
{
	void *private;
	struct file *real;

	if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return inode;
	private = file ? BPF_CORE_READ(file, private_data) : NULL; /* up to 6.12: the real file itself */
	if (!private)
		return upper_inode(inode);
	real = private;
	if (bpf_core_type_exists(struct ovl_file___kadapter))
		real = BPF_CORE_READ((struct ovl_file___kadapter *)private, realfile);
	return real ? BPF_CORE_READ(real, f_inode) : inode;
}

#endif /* KADAPTER_REALFILE_BPF_H */
