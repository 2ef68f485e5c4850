/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The capabilities enforcer: KubeArmor capabilities.matchCapabilities.
 *
 * The capability LSM runs first, so this hook sees only uses the task's
 * capability sets allow; denying one makes the task act as if it lacked
 * the capability (-EPERM). Only checks of the calling task's own
 * credentials are judged: the kernel also asks about other credentials
 * (a socket opener's, another task's) and about credentials it put on for
 * the task (overlayfs acting as its mounter, access(2) checking as the
 * real uid), which are not the task using its capabilities.
 * Checks the kernel makes quietly (CAP_OPT_NOAUDIT, probing whether to
 * take a privileged path) are judged the same but not reported.
 */
#ifndef KADAPTER_CAPABILITIES_BPF_H
#define KADAPTER_CAPABILITIES_BPF_H

#include "judge.bpf.h"

SEC("lsm/capable")
int BPF_PROG(kadapter_capable, const struct cred *cred, struct user_namespace *ns, int cap, unsigned int opts,
	     int ret)
{
	struct judgement j;

	if (ret)
		return ret;
	if (cred != BPF_CORE_READ(bpf_get_current_task_btf(), real_cred))
		return 0;
	if (!judge_start(&j, KADAPTER_KIND_CAPABILITIES, KADAPTER_OP_CAPABLE))
		return 0;
	j.args[0] = cap;
	j.deny = -EPERM;
	j.quiet = !!(opts & CAP_OPT_NOAUDIT);
	match_id(&j, cap);
	if (enter_source(&j))
		match_id(&j, cap);
	return decide(&j);
}

#endif /* KADAPTER_CAPABILITIES_BPF_H */
