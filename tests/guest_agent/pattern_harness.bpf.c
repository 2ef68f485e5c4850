// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Runs bpf/lsm's pattern matching, unchanged, as BPF_PROG_TYPE_SYSCALL
 * programs (BPF_PROG_TEST_RUN), so tests/guest_agent/test_patterns.py can
 * hold it to the reference on any machine that may load BPF, one without
 * the BPF LSM included: match_one runs patterns.bpf.h's matcher on one
 * pattern, judge_patterns judge.bpf.h's walk over a ruleset's pattern_rules.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "judge.bpf.h"

/* One pattern against one name, in and out: test_patterns.HarnessCase mirrors it. */
struct harness_case {
	char pattern[KADAPTER_PATH_MAX];
	char name[NAME_BUF_MAX];
	__u32 length; /* of the name, at most NAME_MASK */
	__u32 steps; /* in: already spent on the name; out: spent after this pattern */
	__u32 result; /* out: PATTERN_MATCH, PATTERN_NO_MATCH or PATTERN_BOUND */
	__u32 reserved;
};

/* A name against a ruleset's patterns in pattern_rules: test_patterns.HarnessJudgement mirrors it. */
struct harness_judgement {
	char name[NAME_BUF_MAX];
	__u32 length;
	__u32 ruleset;
	__u32 patterns; /* as kind_policy.patterns says */
	__u32 name_flags; /* out */
	struct rule_entry rule; /* out: what the patterns say, merged */
};

/* Lay a name out in the scratch space as name_in_container() does: it ends at buf[NAME_MASK], a NUL. */
static __always_inline int lay_out(struct name_buffer *name, const char *from, __u32 length)
{
	if (length > NAME_MASK)
		return 0;
	name->buf[NAME_MASK] = '\0';
	name->start = NAME_MASK - length;
	bpf_probe_read_kernel(&name->buf[(NAME_MASK - length) & NAME_MASK], length & NAME_MASK, from);
	return 1;
}

SEC("syscall")
int match_one(struct harness_case *c)
{
	struct scratch_space *space;
	__u32 zero = 0;

	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space || !lay_out(&space->name, c->name, c->length))
		return 1;
	/* The pattern waits in the file key's bytes, as a pattern rule's waits in its map value. */
	bpf_probe_read_kernel(space->key.path, sizeof(space->key.path), c->pattern);
	pattern_name(&space->patterns, &space->name);
	space->patterns.steps = c->steps;
	c->result = match_pattern(&space->patterns, &space->name, space->key.path);
	c->steps = space->patterns.steps;
	return 0;
}

SEC("syscall")
int judge_patterns(struct harness_judgement *c)
{
	struct scratch_space *space;
	struct judgement j = {};
	__u32 zero = 0;

	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space || !lay_out(&space->name, c->name, c->length))
		return 1;
	j.ruleset = c->ruleset;
	j.patterns = c->patterns;
	match_patterns(&j, space);
	c->name_flags = j.name_flags;
	c->rule = j.rule;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
