/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel constants the programs use: macros do not survive into BTF, so vmlinux.h lacks them. */
#ifndef KADAPTER_KERNEL_CONSTS_BPF_H
#define KADAPTER_KERNEL_CONSTS_BPF_H

#define EPERM 1
#define ENOMEM 12
#define EACCES 13
#define FMODE_WRITE 0x2
#define CAP_OPT_NOAUDIT (1 << 1)
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define RENAME_EXCHANGE (1 << 1)
#define BPF_NOEXIST 1
#define BPF_F_NO_PREALLOC (1U << 0)
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define PROC_SUPER_MAGIC 0x9fa0
#define ENVIRON_NAME 0x006e6f7269766e65ULL /* "environ\0" read as a little-endian __u64 */

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define IPPROTO_ICMPV6 58
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define SOCK_RDM 4
#define SOCK_SEQPACKET 5
#define SOCK_PACKET 10
#define DNS_PORT 53

#endif /* KADAPTER_KERNEL_CONSTS_BPF_H */
