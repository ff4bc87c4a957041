// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"

static int skip_fd = -1; /* in a case's process: where fl_skip writes */
static const struct fl_case *current;

void fl_skip(const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (skip_fd >= 0 && write(skip_fd, reason, strlen(reason)) < 0)
		_exit(3);
	_exit(0);
}

static void cmocka_entry(void **state)
{
	(void)state;
	current->fn(current);
}

static void run_child(const struct fl_case *c, int pipe_wr)
{
	struct CMUnitTest t = { .name = c->name, .test_func = cmocka_entry };

	skip_fd = pipe_wr;
	current = c;
	/* cmocka's own report goes to stderr: stdout carries only TAP. */
	dup2(STDERR_FILENO, STDOUT_FILENO);
	alarm(c->timeout ? c->timeout : 60);
	/* exit(), not _exit(): LeakSanitizer checks at exit in sanitizer builds. */
	exit(_cmocka_run_group_tests(c->name, &t, 1, NULL, NULL) ? 1 : 0);
}

static int run_one(const struct fl_case *c, size_t num)
{
	char reason[256] = "";
	int fds[2], status = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		close(fds[0]);
		run_child(c, fds[1]);
	}
	close(fds[1]);
	/* Wait for the case itself, not for EOF on the pipe: processes the
	 * case forked may still hold it. Then end its whole process group. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	kill(-pid, SIGKILL);
	n = read(fds[0], reason, sizeof(reason) - 1);
	reason[n > 0 ? n : 0] = 0;
	close(fds[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && reason[0]) {
		printf("ok %zu - %s # SKIP %s\n", num, c->name, reason);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("ok %zu - %s\n", num, c->name);
		return 0;
	}
	if (WIFSIGNALED(status))
		printf("not ok %zu - %s # killed by signal %d%s\n", num, c->name,
		       WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
	else
		printf("not ok %zu - %s\n", num, c->name);
	return 1;
}

int fl_run_cases(struct fl_case *cases, size_t n, int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	size_t selected = 0, num = 0;
	int failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < n; i++)
		selected += !filter || strstr(cases[i].name, filter);
	printf("1..%zu\n", selected);
	for (size_t i = 0; i < n; i++)
		if (!filter || strstr(cases[i].name, filter))
			failed += run_one(&cases[i], ++num);
	free(cases);
	return failed ? 1 : 0;
}

struct fl_case *fl_case_add(struct fl_case **cases, size_t *n,
			    void (*fn)(const struct fl_case *), const void *a,
			    const void *b, const char *fmt, ...)
{
	struct fl_case *c;
	va_list ap;

	*cases = realloc(*cases, (*n + 1) * sizeof(**cases));
	if (!*cases)
		abort();
	c = &(*cases)[(*n)++];
	memset(c, 0, sizeof(*c));
	c->fn = fn;
	c->a = a;
	c->b = b;
	va_start(ap, fmt);
	vsnprintf(c->name, sizeof(c->name), fmt, ap);
	va_end(ap);
	return c;
}

long fl_env_long(const char *name, long def)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v || !*v)
		return def;
	x = strtol(v, &end, 0);
	return *end ? def : x;
}
