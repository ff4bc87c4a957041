// SPDX-License-Identifier: MIT
/* The launcher (launcher.h). Its pipe carries NUL-terminated strings: the
 * command, then each extra environment entry, then an empty string. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "launcher.h"

#define MSG_MAX (1u << 20)

extern char **environ;

static void run(int fd)
{
	char *buf = malloc(MSG_MAX), **env;
	size_t len = 0, n = 0, k = 0;
	ssize_t got;

	/* Die with the command that started us, never outlive it idle. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!buf)
		_exit(127);
	while (len < MSG_MAX && (got = read(fd, buf + len, MSG_MAX - len)) > 0)
		len += (size_t)got;
	if (!len)
		_exit(0); /* cancelled */
	if (buf[len - 1] || len < 2)
		_exit(127);
	while (environ[n])
		n++;
	env = calloc(n + 64, sizeof(*env));
	if (!env)
		_exit(127);
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "FAULTLINE_", 10))
			env[k++] = environ[i];
	for (size_t off = strlen(buf) + 1; off < len && buf[off] && k < n + 63;
	     off += strlen(buf + off) + 1)
		env[k++] = buf + off;
	prctl(PR_SET_PDEATHSIG, 0);
	execve("/bin/sh", (char *const[]){ "sh", "-c", buf, NULL }, env);
	_exit(127);
}

int launcher_start(struct launcher *l)
{
	int p[2];

	l->pid = -1;
	l->fd = -1;
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	l->pid = fork();
	if (l->pid < 0) {
		int e = errno;

		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (l->pid == 0) {
		close(p[1]);
		run(p[0]);
	}
	close(p[0]);
	l->fd = p[1];
	return 0;
}

/* One NUL-terminated string down the pipe. */
static int put(int fd, const char *s)
{
	return cli_write_all(fd, s, strlen(s) + 1);
}

pid_t launcher_exec(struct launcher *l, const char *cmd, char *const *extra)
{
	int ret = put(l->fd, cmd);

	for (size_t i = 0; !ret && extra && extra[i]; i++)
		ret = put(l->fd, extra[i]);
	if (!ret)
		ret = put(l->fd, "");
	close(l->fd);
	l->fd = -1;
	if (ret)
		return -EPIPE;
	ret = l->pid;
	l->pid = -1; /* the caller's child now: it reaps it */
	return ret;
}

void launcher_cancel(struct launcher *l)
{
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	if (l->pid > 0) {
		waitpid(l->pid, NULL, 0);
		l->pid = -1;
	}
}
