// SPDX-License-Identifier: Apache-2.0
/*
 * The hot paths Kadapter's BPF-LSM programs sit on, timed from inside a
 * container: fork+exec+wait of a program, open()+close() of a file, and
 * socket()+close() of a UDP socket.
 * Run under QEMU -icount the guest clock counts instructions, so the
 * numbers compare kernel work, not the host's load.
 *
 * usage: lsm-bench exec ITERATIONS PROGRAM | open ITERATIONS FILE | socket ITERATIONS -
 * prints: <mode> <iterations> <nanoseconds per iteration>
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int run_exec(const char *program)
{
	char *const argv[] = { (char *)program, NULL };
	int status;
	pid_t child = fork();

	if (child < 0)
		return -1;
	if (child == 0) {
		execv(program, argv);
		_exit(127);
	}
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return -1;
	return 0;
}

static int run_open(const char *file)
{
	int fd = open(file, O_RDONLY);

	return fd < 0 ? -1 : close(fd);
}

static int run_socket(const char *unused)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	(void)unused;
	return fd < 0 ? -1 : close(fd);
}

int main(int argc, char **argv)
{
	int (*step)(const char *);
	long iterations, i;
	double start;

	if (argc != 4) {
		fprintf(stderr, "usage: %s exec|open|socket ITERATIONS PATH\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "exec") == 0)
		step = run_exec;
	else if (strcmp(argv[1], "open") == 0)
		step = run_open;
	else if (strcmp(argv[1], "socket") == 0)
		step = run_socket;
	else
		step = NULL;
	iterations = atol(argv[2]);
	if (!step || iterations <= 0) {
		fprintf(stderr, "%s: unknown mode or bad iteration count\n", argv[0]);
		return 2;
	}
	if (step(argv[3])) { /* warm caches once; also proves the path works */
		perror(argv[3]);
		return 1;
	}
	start = now_ns();
	for (i = 0; i < iterations; i++)
		if (step(argv[3])) {
			perror(argv[3]);
			return 1;
		}
	printf("%s %ld %.1f\n", argv[1], iterations, (now_ns() - start) / iterations);
	return 0;
}
