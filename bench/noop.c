// SPDX-License-Identifier: Apache-2.0
/* The program lsm-bench execs: does nothing, statically linked (no loader, no libraries). */
int main(void)
{
	return 0;
}
