/* SPDX-License-Identifier: MIT */
/*
 * A launcher: a child forked while the command is still single-threaded
 * and privileged, which waits for the command line and environment of a
 * program to start, then execs it. The command itself can then drop every
 * privilege before its threads start, while the program it starts later
 * (a restorer that needs CAP_SYS_PTRACE for EVENT_FORK, a VMM) still gets
 * what it needs.
 */
#ifndef FL_CLI_LAUNCHER_H
#define FL_CLI_LAUNCHER_H

#include <sys/types.h>

struct launcher {
	pid_t pid; /* the launcher, and then the program it became */
	int fd;	   /* write end of its pipe; -1 once used */
};

/* Fork the launcher. 0, or -errno. */
int launcher_start(struct launcher *l);

/* Have it exec /bin/sh -c cmd with the current environment minus
 * FAULTLINE_*, plus `extra` ("NAME=value" strings, NULL-terminated).
 * Returns the pid (now the program's, the caller's to reap), or -errno. */
pid_t launcher_exec(struct launcher *l, const char *cmd, char *const *extra);

/* Tell an unused launcher to exit, and reap it. */
void launcher_cancel(struct launcher *l);

#endif
