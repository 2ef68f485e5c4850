// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Runs bpf/lsm/patterns.bpf.h's matcher, unchanged, as a BPF_PROG_TYPE_SYSCALL
 * program (BPF_PROG_TEST_RUN), so tests/guest_agent/test_patterns.py can hold
 * the kernel's matcher to the reference on any machine that may load BPF,
 * one without the BPF LSM included.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "patterns.bpf.h"

/* One case, in and out: test_patterns.HarnessCase mirrors it. */
struct harness_case {
	char pattern[KADAPTER_PATH_MAX];
	char name[NAME_BUF_MAX];
	__u32 length; /* of the name, at most NAME_MASK */
	__u32 steps; /* in: already spent on the name; out: spent after this pattern */
	__u32 result; /* out: PATTERN_MATCH, PATTERN_NO_MATCH or PATTERN_BOUND */
	__u32 reserved;
};

struct harness_space {
	struct name_buffer name;
	struct pattern_state state;
	char pattern[KADAPTER_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct harness_space);
} harness SEC(".maps");

SEC("syscall")
int match_one(struct harness_case *c)
{
	struct harness_space *space;
	__u32 zero = 0, length = c->length;

	space = bpf_map_lookup_elem(&harness, &zero);
	if (!space || length > NAME_MASK)
		return 1;
	/* Lay the name out as name_in_container() does: it ends at buf[NAME_MASK], a NUL. */
	space->name.buf[NAME_MASK] = '\0';
	space->name.start = NAME_MASK - length;
	bpf_probe_read_kernel(&space->name.buf[(NAME_MASK - length) & NAME_MASK], length & NAME_MASK, c->name);
	bpf_probe_read_kernel(space->pattern, sizeof(space->pattern), c->pattern);
	pattern_name(&space->state, &space->name);
	space->state.steps = c->steps;
	c->result = match_pattern(&space->state, &space->name, space->pattern);
	c->steps = space->state.steps;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
