/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * KubeArmor's matchPatterns, matched against a file's whole name as the
 * container sees it (up to PATH_MAX, not just the 255 bytes a rule key
 * holds). The globs are AppArmor's, as KubeArmor documents them: '*' is
 * any run of characters but '/', '**' any run at all, '?' one character
 * but '/'; every other byte stands for itself, and the pattern must cover
 * the whole name. The agent has refused what is not implemented ('[...]',
 * '{a,b}', '\') and written runs of three or more '*' as '**'. A '**'
 * between slashes still needs both slashes, as in AppArmor: /etc/, '**'
 * and /x.conf in one pattern match /etc/a/x.conf, not /etc/x.conf.
 *
 * The matcher walks name and pattern together, keeping two places to go back
 * to on a mismatch: the last '*' (it takes one more character, never a
 * '/') and, when that cannot, the last '**' (it takes one more character
 * of any kind, and the '*'s after it start over). Placing what follows a
 * wildcard as early as possible never loses a match, so no other choice
 * needs remembering (tests/guest_agent/test_patterns.py holds the same
 * algorithm in Python, checked against a regular-expression oracle).
 *
 * Its state lives in the per-CPU scratch map, not on the stack: a verifier
 * that walks a bpf_loop() callback once (Linux 6.1) then knows nothing of
 * it and checks every branch, instead of only those the first step takes.
 */
#ifndef KADAPTER_PATTERNS_BPF_H
#define KADAPTER_PATTERNS_BPF_H

#include "kadapter.h"
#include "filename.bpf.h"

/*
 * Matcher steps (a wildcard passed, a byte compared, a backtrack) one
 * name may cost, shared by all the patterns it is matched against. A
 * name that contains no backtracking costs about its length plus the
 * pattern's; the bound only stops a pathological name or pattern set.
 */
#define KADAPTER_PATTERN_STEPS 65536
#define PATTERN_MASK (KADAPTER_PATH_MAX - 1)
#define PATTERN_NONE 0xffffffffU /* no '*' or '**' to go back to */

/* What matching one pattern came to. */
#define PATTERN_MATCH 1
#define PATTERN_NO_MATCH 2
#define PATTERN_BOUND 3 /* the name's steps ran out first: the caller fails closed */

/* Pattern rules by (ruleset, index); resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pattern_key);
	__type(value, struct pattern_rule);
} pattern_rules SEC(".maps");

/* The matcher's state, in per-CPU map memory (see above). Offsets are into the name and the pattern. */
struct pattern_state {
	char pattern[KADAPTER_PATH_MAX]; /* the pattern being matched, copied from its rule */
	__u32 start; /* the name is buf[start] to buf[start + length - 1] of the name buffer */
	__u32 length;
	__u32 steps; /* spent on this name so far, by all its patterns */
	__u32 result;
	__u32 p; /* next pattern byte */
	__u32 n; /* next name byte */
	__u32 star_p; /* the pattern just after the last '*', or PATTERN_NONE */
	__u32 star_n; /* the name up to here is taken by the time that '*' ends */
	__u32 any_p; /* the same for the last '**' */
	__u32 any_n;
};

struct pattern_match {
	struct pattern_state *state;
	struct name_buffer *name;
};

/* One matcher step; stop (1) once the pattern matched, cannot match, or the name's steps are spent. */
static long pattern_step(__u32 index, struct pattern_match *m)
{
	struct pattern_state *s = m->state;
	const char *name = m->name->buf;
	__u32 p = s->p, n = s->n, at_end = s->n >= s->length;
	char want, c;

	if (s->steps >= KADAPTER_PATTERN_STEPS)
		return 1; /* s->result stays PATTERN_BOUND */
	s->steps++;
	want = s->pattern[p & PATTERN_MASK];
	if (want == '*') {
		if (s->pattern[(p + 1) & PATTERN_MASK] == '*') {
			if (!s->pattern[(p + 2) & PATTERN_MASK]) {
				s->result = PATTERN_MATCH; /* a final '**' takes whatever is left */
				return 1;
			}
			s->any_p = p + 2;
			s->any_n = n;
			s->star_p = PATTERN_NONE;
			s->p = p + 2;
			return 0;
		}
		s->star_p = p + 1;
		s->star_n = n;
		s->p = p + 1;
		return 0;
	}
	c = at_end ? 0 : name[(s->start + n) & NAME_MASK];
	if (want && !at_end && (want == c || (want == '?' && c != '/'))) {
		s->p = p + 1;
		s->n = n + 1;
		return 0;
	}
	if (!want && at_end) {
		s->result = PATTERN_MATCH;
		return 1;
	}
	/* A mismatch: the last '*' takes one more byte if it can, else the last '**' does. */
	if (s->star_p != PATTERN_NONE && s->star_n < s->length && name[(s->start + s->star_n) & NAME_MASK] != '/') {
		s->star_n++;
		s->p = s->star_p;
		s->n = s->star_n;
		return 0;
	}
	if (s->any_p != PATTERN_NONE && s->any_n < s->length) {
		s->any_n++;
		s->p = s->any_p;
		s->n = s->any_n;
		s->star_p = PATTERN_NONE;
		return 0;
	}
	s->result = PATTERN_NO_MATCH;
	return 1;
}

/* Start matching patterns against the name last built in name (name_in_container), with a fresh step budget. */
static __always_inline void pattern_name(struct pattern_state *s, const struct name_buffer *name)
{
	s->start = name->start & NAME_MASK;
	s->length = NAME_MASK - s->start;
	s->steps = 0;
}

/* Match one pattern against the name pattern_name() set: PATTERN_MATCH, PATTERN_NO_MATCH or PATTERN_BOUND. */
static __always_inline __u32 match_pattern(struct pattern_state *s, struct name_buffer *name, const char *pattern)
{
	struct pattern_match m = { .state = s, .name = name };

	__builtin_memcpy(s->pattern, pattern, KADAPTER_PATH_MAX);
	s->pattern[PATTERN_MASK] = '\0';
	s->p = 0;
	s->n = 0;
	s->star_p = PATTERN_NONE;
	s->star_n = 0;
	s->any_p = PATTERN_NONE;
	s->any_n = 0;
	s->result = PATTERN_BOUND;
	bpf_loop(KADAPTER_PATTERN_STEPS, pattern_step, &m, 0);
	return s->result;
}

#endif /* KADAPTER_PATTERNS_BPF_H */
