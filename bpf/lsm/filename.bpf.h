/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Name a file the way a policy author does: relative to the container's
 * root, whatever root, mount namespace or mounts the caller has set up.
 *
 * bpf_d_path() names a file relative to the caller's root, so after
 * `chroot /usr` the file /usr/bin/apt is "/bin/apt", and under an allow
 * list a chroot would let any file pass for an allowed one. Here the walk
 * goes up dentries and mounts until it meets the container's root dentry.
 * Mount copies made by unshare share their dentries with the originals, so
 * a private mount namespace changes nothing, and a file of the rootfs is
 * named by its place in the rootfs however it is bind-mounted or
 * pivot_root'ed into view; files of other file systems (volumes, tmpfs)
 * are named through the mounts that hold them. A file whose walk never
 * meets the root dentry (a memfd, another file system's tree set up after
 * pivot_root elsewhere) has no name in the container: path rules do not
 * apply to it, its inode identity still does.
 */
#ifndef KADAPTER_FILENAME_BPF_H
#define KADAPTER_FILENAME_BPF_H

#include "kadapter.h"

#define NAME_BUF_MAX 4096 /* the kernel's PATH_MAX: the longest name built */
#define NAME_MASK (NAME_BUF_MAX - 1)
#define NAME_MAX_DEPTH (NAME_BUF_MAX / 2) /* dentries and mounts walked; a deeper file gets no name */

struct name_buffer {
	char buf[2 * NAME_BUF_MAX]; /* built backwards ending at buf[NAME_MASK]; room for masked writes */
	long start; /* the last name built begins at buf[start] */
};

/* The walk's state between bpf_loop() steps (one step per dentry or mount crossed). */
struct name_walk {
	struct dentry *dentry;
	struct mount *mnt;
	__u64 root;
	struct super_block *root_sb; /* the rootfs's own file system */
	struct name_buffer *space;
	long pos; /* the name so far starts at space->buf[pos] */
	__u32 flags;
	__u32 done;
};

/* Put one dentry's name and a '/' in front of the name so far; false when it would pass PATH_MAX. */
static __always_inline int prepend_name(struct name_walk *walk, struct dentry *dentry)
{
	struct qstr name = BPF_CORE_READ(dentry, d_name);

	if (name.len >= walk->pos)
		return 0;
	walk->pos -= name.len;
	bpf_probe_read_kernel(&walk->space->buf[walk->pos & NAME_MASK], name.len & (KADAPTER_PATH_MAX - 1),
			      name.name);
	walk->pos--;
	walk->space->buf[walk->pos & NAME_MASK] = '/';
	return 1;
}

static long name_step(__u32 index, struct name_walk *walk)
{
	struct dentry *dentry = walk->dentry, *parent;
	struct mount *mnt = walk->mnt, *up;

	if ((__u64)dentry == walk->root) {
		walk->flags = 0;
		walk->done = 1;
		return 1;
	}
	/* A bind mount of part of the rootfs does not rename its files: go on up its dentries. */
	if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root) &&
	    !(BPF_CORE_READ(dentry, d_sb) == walk->root_sb && BPF_CORE_READ(dentry, d_parent) != dentry)) {
		up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt) {
			/* Top of a mount tree: outside the container. A file mounted on its own keeps its name. */
			if (walk->pos == NAME_MASK)
				prepend_name(walk, dentry);
			walk->done = 1;
			return 1;
		}
		walk->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		walk->mnt = up;
		return 0;
	}
	if (!prepend_name(walk, dentry)) {
		walk->done = 1; /* longer than PATH_MAX */
		return 1;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	if (parent == dentry) {
		walk->done = 1; /* a detached dentry (memfd and other pseudo files): its name is all there is */
		return 1;
	}
	walk->dentry = parent;
	return 0;
}

/*
 * Name (mnt, dentry) relative to root: the whole name stays in space (from
 * space->start, up to PATH_MAX), and its first KADAPTER_PATH_MAX - 1 bytes
 * go into out (zeroed first, NUL-terminated). Return KADAPTER_NAME_* flags:
 * outside, the name is what the walk found (for alerts) and matches no
 * rule; long, it is too long for a path rule but directory rules apply.
 */
static __always_inline __u32 name_in_container(struct vfsmount *vfsmnt, struct dentry *dentry, __u64 root,
					       struct name_buffer *space, char *out)
{
	struct name_walk walk = {
		.dentry = dentry,
		.mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt),
		.root = root,
		.root_sb = root ? BPF_CORE_READ((struct dentry *)root, d_sb) : NULL,
		.space = space,
		.pos = NAME_MASK,
		.flags = KADAPTER_NAME_OUTSIDE,
	};
	long length;

	space->buf[NAME_MASK] = '\0';
	bpf_loop(NAME_MAX_DEPTH, name_step, &walk, 0);
	if (!walk.done)
		walk.flags = KADAPTER_NAME_OUTSIDE; /* deeper than NAME_MAX_DEPTH */
	if (walk.pos == NAME_MASK) {
		walk.pos--;
		space->buf[walk.pos & NAME_MASK] = '/';
	}
	space->start = walk.pos & NAME_MASK;
	length = NAME_MASK - walk.pos;
	if (length >= KADAPTER_PATH_MAX) {
		walk.flags |= KADAPTER_NAME_LONG;
		length = KADAPTER_PATH_MAX - 1;
	}
	__builtin_memset(out, 0, KADAPTER_PATH_MAX);
	bpf_probe_read_kernel(out, length & (KADAPTER_PATH_MAX - 1), &space->buf[walk.pos & NAME_MASK]);
	return walk.flags;
}

#endif /* KADAPTER_FILENAME_BPF_H */
