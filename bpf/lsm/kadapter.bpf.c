// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Enforce KubeArmor policies inside a Kata guest: one object, one enforcer
 * per rule kind. Which container a task belongs to is container.bpf.h's;
 * how a file is named, matched and judged is judge.bpf.h's.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "process.bpf.h"
#include "file.bpf.h"
#include "network.bpf.h"
#include "dns.bpf.h"
#include "capabilities.bpf.h"
#include "syscalls.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
