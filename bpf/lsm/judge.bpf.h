/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The rule tables every enforcer shares, and the one place a verdict is
 * reached and reported.
 *
 * Each container has a ruleset per kind (process, file, network,
 * capabilities); rules are found under it by name (filename.bpf.h), by
 * directory above the name, by pattern (patterns.bpf.h), by inode, or by
 * id. A hook fills a judgement
 * with what it is about, merges what the rules say, and decide() applies
 * Block, the kind's allow list and posture, and Audit, in that order.
 */
#ifndef KADAPTER_JUDGE_BPF_H
#define KADAPTER_JUDGE_BPF_H

#include "kadapter.h"
#include "kernel_consts.bpf.h"
#include "container.bpf.h"
#include "filename.bpf.h"
#include "patterns.bpf.h"
#include "realfile.bpf.h"

/* Rules by name under each container's ruleset of a kind; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct name_rule_key);
	__type(value, struct rule_entry);
} name_rules SEC(".maps");

/* Directory rules by path (ending in "/"); resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct name_rule_key);
	__type(value, struct dir_rule);
} dir_rules SEC(".maps");

/* The files of name rules by inode; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inode_rule_key);
	__type(value, struct rule_entry);
} inode_rules SEC(".maps");

/* (a kind's ruleset, an executable's name) -> the ruleset and flags of its fromSource rules; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct name_rule_key);
	__type(value, struct kind_policy);
} source_rules SEC(".maps");

/* (a kind's ruleset, a directory) -> the fromSource rulesets of executables below it; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct name_rule_key);
	__type(value, struct source_dir);
} source_dirs SEC(".maps");

/* Network protocol names, capabilities and system calls; resized at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct id_rule_key);
	__type(value, struct rule_entry);
} id_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Container id -> its alert budget; the agent may resize before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct alert_budget);
} alert_budgets SEC(".maps");

/*
 * A DNS question's name being decoded, and what its domains' rules say
 * (dns.bpf.h). Kept here rather than on the stack: a verifier that walks
 * a bpf_loop() callback once (Linux 6.1) would take the first step's
 * values for constants and drop the branches the later steps take.
 */
struct dns_state {
	__u32 at; /* the next byte of the message */
	__u32 read; /* bytes of the message read */
	__u32 label_left; /* bytes left of the current label; 0 before a length byte */
	__u32 length; /* bytes of the name written */
	__s32 done; /* 1: the name ended; -1: it cannot be read */
	struct rule_entry rule; /* the rules of the domains matched so far, merged */
};

/* Per-CPU room for the name and the lookup keys, too large for the 512-byte BPF stack. */
struct scratch_space {
	struct name_rule_key key; /* zeroed past the NUL: hash keys compare every byte */
	struct name_rule_key dir_key; /* one directory above the file at a time, or the file's own name */
	struct name_rule_key source_key; /* the caller's executable */
	struct allowed_arg_key arg_key; /* one argument of an exec, for allowedArgs */
	struct name_buffer name;
	struct pattern_state patterns;
	struct dns_state dns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_space);
} scratch SEC(".maps");

/* Keeps struct alert_event in the object's BTF for the layout test. */
const struct alert_event *unused_alert_event __attribute__((unused));

/* One operation of a task in a container under policy, and what the rules of its kind say. */
struct judgement {
	__u32 container;
	__u32 kind;
	__u32 ruleset;
	__u32 flags; /* the kind's flags, less any the hook does not apply */
	__u32 patterns; /* pattern rules under the ruleset */
	__u32 operation;
	__u32 name_flags;
	__u32 access;
	__u32 args[3];
	int deny; /* what the hook returns when it denies: -EACCES, -EPERM for a capability */
	int quiet; /* judge without reporting (the kernel probing a capability) */
	struct container_policy *policy;
	struct name_rule_key *key; /* the file's name; NULL for network and capabilities */
	struct rule_entry rule; /* every matching rule, merged */
};

/*
 * Start judging one operation of the current task: false when the task is
 * in no container, its container has no rules of this kind, or the
 * container has not reached its first exec. Until then only the runtime's
 * own code runs in it (runc setting up mounts, with every capability);
 * the first exec is judged, and records the container's root.
 */
static __always_inline int judge_start(struct judgement *j, __u32 kind, __u32 operation)
{
	struct kind_policy *kinds;

	j->container = current_container(operation == KADAPTER_OP_EXEC);
	if (!j->container)
		return 0;
	j->policy = bpf_map_lookup_elem(&containers, &j->container);
	if (!j->policy)
		return 0;
	if (!container_root(j->container, operation == KADAPTER_OP_EXEC))
		return 0;
	if (kind >= KADAPTER_KINDS)
		return 0;
	kinds = j->policy->kinds;
	j->kind = kind;
	j->ruleset = kinds[kind].ruleset;
	j->flags = kinds[kind].flags;
	j->patterns = kinds[kind].patterns;
	if (!j->ruleset)
		return 0;
	j->operation = operation;
	j->name_flags = 0;
	j->access = 0;
	j->args[0] = j->args[1] = j->args[2] = 0;
	j->deny = -EACCES;
	j->quiet = 0;
	j->key = NULL;
	__builtin_memset(&j->rule, 0, sizeof(j->rule));
	return 1;
}

/*
 * Whether one action of two merged entries stays narrowed to allowedArgs.
 * An action only one side has keeps its narrowing. When both have it,
 * the merge checks a single rule's set: Block and Audit stay narrowed
 * only if both are narrowed by the same rule, Allow only if both are
 * narrowed (by the first rule's set: an exec may meet fewer Allow rules
 * than it would, never more).
 */
static __always_inline __u8 narrowing(__u8 ours, __u8 theirs, __u32 our_rule, __u32 their_rule, __u8 our_args,
				      __u8 their_args, __u8 action)
{
	if (!theirs)
		return our_args & action;
	if (!ours)
		return their_args & action;
	if (action != KADAPTER_ACTION_ALLOW && our_rule != their_rule)
		return 0;
	return our_args & their_args & action;
}

static __always_inline void merge(struct rule_entry *into, const struct rule_entry *rule)
{
	into->args = narrowing(into->block, rule->block, into->block_rule, rule->block_rule, into->args, rule->args,
			       KADAPTER_ACTION_BLOCK) |
		     narrowing(into->audit, rule->audit, into->audit_rule, rule->audit_rule, into->args, rule->args,
			       KADAPTER_ACTION_AUDIT) |
		     narrowing(into->allow, rule->allow, into->allow_rule, rule->allow_rule, into->args, rule->args,
			       KADAPTER_ACTION_ALLOW);
	into->block |= rule->block;
	into->audit |= rule->audit;
	into->allow |= rule->allow;
	if (!into->block_rule)
		into->block_rule = rule->block_rule;
	if (!into->audit_rule)
		into->audit_rule = rule->audit_rule;
	if (!into->allow_rule)
		into->allow_rule = rule->allow_rule;
}

/*
 * Spend one event of the container's budget; false when this second's is
 * spent (the event is counted as dropped). The verdict never depends on it.
 */
static __always_inline int within_budget(__u32 container, __u64 now)
{
	struct alert_budget *budget = bpf_map_lookup_elem(&alert_budgets, &container);

	if (!budget)
		return 1;
	if (now - budget->window_start_ns >= 1000000000ULL) {
		budget->window_start_ns = now; /* racing CPUs may both reset: at worst a few extra events */
		budget->sent = 0;
	}
	if (budget->sent >= budget->limit) {
		__sync_fetch_and_add(&budget->dropped, 1);
		return 0;
	}
	__sync_fetch_and_add(&budget->sent, 1);
	return 1;
}

/* Name a task's executable relative to the container's root into out; empty for a task with no mm. */
static __always_inline void name_executable(struct task_struct *task, __u64 root, char *out)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct scratch_space *space;
	__u32 zero = 0;

	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return;
	if (!exe) {
		__builtin_memset(out, 0, KADAPTER_PATH_MAX);
		return;
	}
	name_in_container(BPF_CORE_READ(exe, f_path.mnt), BPF_CORE_READ(exe, f_path.dentry), root, &space->name, out);
}

static __always_inline void emit(const struct judgement *j, __u32 rule, __u32 action, int retval)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 root = container_root(j->container, 0);
	struct alert_event *e;

	if (j->quiet || !within_budget(j->container, now))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return;
	e->timestamp_ns = now;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ruleset = j->ruleset;
	e->rule = rule;
	e->action = action;
	e->retval = retval;
	e->kind = j->kind;
	e->operation = j->operation;
	e->name_flags = j->name_flags;
	e->access = j->access;
	e->args[0] = j->args[0];
	e->args[1] = j->args[1];
	e->args[2] = j->args[2];
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (j->key)
		__builtin_memcpy(e->path, j->key->path, sizeof(e->path));
	else
		__builtin_memset(e->path, 0, sizeof(e->path));
	name_executable(task, root, e->process);
	name_executable(BPF_CORE_READ(task, real_parent), root, e->parent_process);
	bpf_ringbuf_submit(e, 0);
}

/* The directory walk's state between bpf_loop() steps (one step per byte of the name's first 255). */
struct dir_walk {
	struct scratch_space *space;
	struct rule_entry *rule; /* where matches are merged */
	struct rule_entry direct; /* the rules of the directory last seen: the file's own directory at the end */
};

static long dir_step(__u32 index, struct dir_walk *walk)
{
	struct scratch_space *space = walk->space;
	char *name = &space->name.buf[space->name.start & NAME_MASK];
	struct dir_rule *found;
	__u32 end = index & (KADAPTER_PATH_MAX - 1);

	if (!name[end])
		return 1;
	if (name[end] != '/')
		return 0;
	/* The key is the name up to and including this '/'; the bytes after it are zero. */
	bpf_probe_read_kernel(space->dir_key.path, (end + 1) & (KADAPTER_PATH_MAX - 1), name);
	found = bpf_map_lookup_elem(&dir_rules, &space->dir_key);
	if (found) {
		merge(walk->rule, &found->any_depth);
		walk->direct = found->direct;
	} else {
		__builtin_memset(&walk->direct, 0, sizeof(walk->direct));
	}
	return 0;
}

/* Merge the rules of every directory above the named file, at any depth, and of its own directory. */
static __always_inline void match_dirs(struct judgement *j, struct scratch_space *space)
{
	struct dir_walk walk = { .space = space, .rule = &j->rule };

	__builtin_memset(&space->dir_key, 0, sizeof(space->dir_key));
	space->dir_key.ruleset = j->ruleset;
	bpf_loop(KADAPTER_PATH_MAX - 1, dir_step, &walk, 0);
	merge(&j->rule, &walk.direct);
}

/* The pattern walk's state between bpf_loop() steps (one step per pattern rule). */
struct pattern_walk {
	struct judgement *judgement;
	struct scratch_space *space;
};

static long pattern_step_rule(__u32 index, struct pattern_walk *walk)
{
	struct judgement *j = walk->judgement;
	struct pattern_key key = { .ruleset = j->ruleset, .index = index };
	struct pattern_rule *found = bpf_map_lookup_elem(&pattern_rules, &key);
	struct rule_entry closed;
	__u32 result;

	if (!found)
		return 0;
	result = match_pattern(&walk->space->patterns, &walk->space->name, found->pattern);
	if (result == PATTERN_MATCH) {
		merge(&j->rule, &found->rule);
	} else if (result == PATTERN_BOUND) {
		/* Fail closed: an unfinished Block or Audit pattern counts as matched, an Allow one does not. */
		closed = found->rule;
		closed.allow = 0;
		closed.allow_rule = 0;
		closed.args &= ~KADAPTER_ACTION_ALLOW;
		merge(&j->rule, &closed);
		j->name_flags |= KADAPTER_NAME_PATTERN_BOUND;
	}
	return 0;
}

/* Merge the rules of every pattern the whole name (not only its first 255 bytes) matches. */
static __always_inline void match_patterns(struct judgement *j, struct scratch_space *space)
{
	struct pattern_walk walk = { .judgement = j, .space = space };

	pattern_name(&space->patterns, &space->name);
	bpf_loop(j->patterns < KADAPTER_PATTERNS_MAX ? j->patterns : KADAPTER_PATTERNS_MAX, pattern_step_rule, &walk, 0);
}

/* Merge the execname rules for the file's own name, wherever the file is. */
static __always_inline void match_execname(struct judgement *j, struct dentry *dentry, struct scratch_space *space)
{
	struct qstr name = BPF_CORE_READ(dentry, d_name);
	struct rule_entry *found;

	__builtin_memset(&space->dir_key, 0, sizeof(space->dir_key));
	space->dir_key.ruleset = j->ruleset;
	bpf_probe_read_kernel(space->dir_key.path, name.len & (KADAPTER_PATH_MAX - 1), name.name);
	found = bpf_map_lookup_elem(&name_rules, &space->dir_key);
	if (found)
		merge(&j->rule, found);
}

/* Merge the rules recorded for one inode of the file. */
static __always_inline void match_inode(struct judgement *j, struct inode *inode)
{
	struct inode_rule_key key = {
		.ruleset = j->ruleset,
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
		.ino = BPF_CORE_READ(inode, i_ino),
	};
	struct rule_entry *found = bpf_map_lookup_elem(&inode_rules, &key);

	if (found)
		merge(&j->rule, found);
}

/* Merge the rules of one id (a protocol name, a capability). */
static __always_inline void match_id(struct judgement *j, __u32 id)
{
	struct id_rule_key key = { .ruleset = j->ruleset, .id = id };
	struct rule_entry *found = bpf_map_lookup_elem(&id_rules, &key);

	if (found)
		merge(&j->rule, found);
}

/*
 * Merge the rules of the file reached as (mnt, dentry), opened as file
 * when the hook has one: by name, by the directories above it, by pattern,
 * by execname, and by inode (the one the name leads to and, under overlayfs, the one
 * holding the data). Records whether the caller owns the file.
 */
static __always_inline void match_file(struct judgement *j, struct vfsmount *mnt, struct dentry *dentry,
				       struct file *file)
{
	struct scratch_space *space;
	struct rule_entry *found;
	struct inode *inode, *real;
	__u32 zero = 0;

	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return;
	j->key = &space->key;
	j->key->ruleset = j->ruleset;
	j->name_flags = name_in_container(mnt, dentry, container_root(j->container, 0), &space->name, j->key->path);
	if (!(j->name_flags & (KADAPTER_NAME_OUTSIDE | KADAPTER_NAME_LONG))) {
		found = bpf_map_lookup_elem(&name_rules, j->key);
		if (found)
			merge(&j->rule, found);
	}
	if (!(j->name_flags & KADAPTER_NAME_OUTSIDE) && (j->flags & KADAPTER_DIRS))
		match_dirs(j, space);
	if (!(j->name_flags & KADAPTER_NAME_OUTSIDE) && (j->flags & KADAPTER_PATTERNS))
		match_patterns(j, space);
	if (j->flags & KADAPTER_EXECNAMES)
		match_execname(j, dentry, space);
	inode = BPF_CORE_READ(dentry, d_inode);
	if (!inode) {
		j->access |= KADAPTER_ACCESS_OWNER; /* a file being created will be the caller's */
		return;
	}
	if (BPF_CORE_READ(inode, i_uid.val) == BPF_CORE_READ(bpf_get_current_task_btf(), cred, fsuid.val))
		j->access |= KADAPTER_ACCESS_OWNER;
	if (!BPF_CORE_READ(inode, i_nlink))
		j->name_flags |= KADAPTER_NAME_FILELESS;
	match_inode(j, inode);
	real = real_inode(file, inode);
	if (real != inode)
		match_inode(j, real);
}

/* The walk over the directories above the caller's executable, between bpf_loop() steps. */
struct source_walk {
	struct scratch_space *space;
	struct kind_policy deepest; /* the any-depth ruleset of the deepest directory with one */
	struct kind_policy direct; /* the direct ruleset of the directory last seen */
	__u32 direct_end; /* where that directory's name ends */
	__u32 last_end; /* where the last directory seen ends: the executable's own at the end */
};

static long source_dir_step(__u32 index, struct source_walk *walk)
{
	struct scratch_space *space = walk->space;
	char *name = &space->name.buf[space->name.start & NAME_MASK];
	struct source_dir *found;
	__u32 end = index & (KADAPTER_PATH_MAX - 1);

	if (!name[end])
		return 1;
	if (name[end] != '/')
		return 0;
	walk->last_end = end;
	bpf_probe_read_kernel(space->dir_key.path, (end + 1) & (KADAPTER_PATH_MAX - 1), name);
	found = bpf_map_lookup_elem(&source_dirs, &space->dir_key);
	if (!found)
		return 0;
	if (found->any_depth.ruleset)
		walk->deepest = found->any_depth;
	walk->direct = found->direct;
	walk->direct_end = end;
	return 0;
}

/*
 * The fromSource rules of the directories above the executable named in
 * space: those of its own directory if it has direct ones, else those of
 * the deepest directory covering any depth. The agent has merged into
 * each the rules of every directory that covers it too.
 */
static __always_inline struct kind_policy source_by_directory(__u32 ruleset, struct scratch_space *space)
{
	struct source_walk walk = { .space = space };

	__builtin_memset(&space->dir_key, 0, sizeof(space->dir_key));
	space->dir_key.ruleset = ruleset;
	bpf_loop(KADAPTER_PATH_MAX - 1, source_dir_step, &walk, 0);
	if (walk.direct.ruleset && walk.direct_end == walk.last_end)
		return walk.direct;
	return walk.deepest;
}

/*
 * Switch the judgement to the fromSource rules its kind has for the
 * caller's executable (the program running, or at exec the one calling
 * execve), by its name or the directories above it; false when there are
 * none. The caller matches again under them. Allow rules among them make
 * an allow list for that executable alone.
 */
static __always_inline int enter_source(struct judgement *j)
{
	struct file *exe = BPF_CORE_READ(bpf_get_current_task_btf(), mm, exe_file);
	struct scratch_space *space;
	struct kind_policy *source, by_directory;
	__u32 zero = 0, name_flags;

	if (!(j->flags & KADAPTER_SOURCES) || !exe)
		return 0;
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return 0;
	__builtin_memset(&space->source_key, 0, sizeof(space->source_key));
	space->source_key.ruleset = j->ruleset;
	name_flags = name_in_container(BPF_CORE_READ(exe, f_path.mnt), BPF_CORE_READ(exe, f_path.dentry),
				       container_root(j->container, 0), &space->name, space->source_key.path);
	if (name_flags & (KADAPTER_NAME_OUTSIDE | KADAPTER_NAME_LONG))
		return 0;
	source = bpf_map_lookup_elem(&source_rules, &space->source_key);
	if (!source && (j->flags & KADAPTER_SOURCE_DIRS)) {
		by_directory = source_by_directory(j->ruleset, space);
		if (by_directory.ruleset)
			source = &by_directory;
	}
	if (!source)
		return 0;
	j->ruleset = source->ruleset;
	j->flags = source->flags | (j->flags & (KADAPTER_ALLOWLIST | KADAPTER_POSTURE_AUDIT));
	j->patterns = source->patterns;
	return 1;
}

/* Whether the current task has a controlling terminal (an interactive session: "pts" in KubeArmor). */
static __always_inline int has_terminal(void)
{
	return BPF_CORE_READ(bpf_get_current_task_btf(), signal, tty) != NULL;
}

/*
 * The variants of a rule (bits 1 << variant) whose scope the access stays
 * within: those whose every qualifier the access meets.
 */
static __always_inline __u8 variants_within(__u32 access)
{
	__u32 met = (access & KADAPTER_ACCESS_WRITE ? 0 : KADAPTER_VARIANT_READ_ONLY) |
		    (access & KADAPTER_ACCESS_OWNER ? KADAPTER_VARIANT_OWNER_ONLY : 0) |
		    (access & KADAPTER_ACCESS_TERMINAL ? 0 : KADAPTER_VARIANT_NO_TERMINAL);
	__u8 within = 0;

#pragma unroll
	for (__u32 variant = 0; variant < KADAPTER_VARIANTS; variant++)
		if (!(variant & ~met))
			within |= 1 << variant;
	return within;
}

/* The bits of the variants with "pts: false": only for them does the caller's terminal matter. */
#define TERMINAL_VARIANTS 0xf0

/* Whether a Block or Audit rule applies: plain ones always, qualified ones when the access leaves their scope. */
static __always_inline int applies(__u8 variants, __u8 within)
{
	return variants & (1 | (__u8)~within);
}

/*
 * Decide and report: a Block rule denies; in allow-list mode an access no
 * Allow rule covers gets the kind's posture; an Audit rule reports. Return
 * the hook's verdict.
 */
static __always_inline int decide(struct judgement *j)
{
	__u8 within;

	if (((j->rule.block | j->rule.audit | j->rule.allow) & TERMINAL_VARIANTS) && has_terminal())
		j->access |= KADAPTER_ACCESS_TERMINAL;
	within = variants_within(j->access);

	if (applies(j->rule.block, within)) {
		emit(j, j->rule.block_rule, KADAPTER_ACTION_BLOCK, j->deny);
		return j->deny;
	}
	if ((j->flags & KADAPTER_ALLOWLIST) && !(j->rule.allow & within)) {
		if (j->flags & KADAPTER_POSTURE_AUDIT) {
			emit(j, 0, KADAPTER_ACTION_AUDIT, 0);
			return 0;
		}
		emit(j, 0, KADAPTER_ACTION_BLOCK, j->deny);
		return j->deny;
	}
	if (applies(j->rule.audit, within))
		emit(j, j->rule.audit_rule, KADAPTER_ACTION_AUDIT, 0);
	return 0;
}

/* Deny or report what a preset covers, if the container has it; return the verdict. */
static __always_inline int judge_preset(const struct judgement *j, __u32 preset)
{
	__u32 presets = j->policy->presets, rule = preset < KADAPTER_PRESETS ? j->policy->preset_rules[preset] : 0;

	if (presets & KADAPTER_PRESET_BLOCK(preset)) {
		emit(j, rule, KADAPTER_ACTION_BLOCK, j->deny);
		return j->deny;
	}
	if (presets & KADAPTER_PRESET_AUDIT(preset))
		emit(j, rule, KADAPTER_ACTION_AUDIT, 0);
	return 0;
}

/*
 * Refuse a new name (hard link, rename) for a file a Block rule of this
 * kind covers, in whole or in part: under overlayfs the new name would
 * lead to a copied-up inode no rule recorded. Return the verdict.
 */
static __always_inline int refuse_new_name(__u32 kind, struct vfsmount *mnt, struct dentry *dentry, __u32 operation)
{
	struct judgement j;

	if (!judge_start(&j, kind, operation))
		return 0;
	match_file(&j, mnt, dentry, NULL);
	if (enter_source(&j))
		match_file(&j, mnt, dentry, NULL);
	if (!j.rule.block)
		return 0;
	emit(&j, j.rule.block_rule, KADAPTER_ACTION_BLOCK, -EACCES);
	return -EACCES;
}

#endif /* KADAPTER_JUDGE_BPF_H */
