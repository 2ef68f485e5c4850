/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel constants the programs use: macros do not survive into BTF, so vmlinux.h lacks them. */
#ifndef KADAPTER_KERNEL_CONSTS_BPF_H
#define KADAPTER_KERNEL_CONSTS_BPF_H

#define ENOMEM 12
#define EACCES 13
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define RENAME_EXCHANGE (1 << 1)
#define BPF_NOEXIST 1
#define BPF_F_NO_PREALLOC (1U << 0)
#define OVERLAYFS_SUPER_MAGIC 0x794c7630

#endif /* KADAPTER_KERNEL_CONSTS_BPF_H */
