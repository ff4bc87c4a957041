/* SPDX-License-Identifier: MIT */
/* Stopping another process while its memory is read, and letting it go. */
#ifndef FL_CLI_PROCESS_STOP_H
#define FL_CLI_PROCESS_STOP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct stopped_thread {
	pid_t tid;
	int signal; /* to deliver on detach (caught in signal-delivery-stop) */
};

struct stopped {
	pid_t pid;
	bool ptraced; /* else stopped with SIGSTOP */
	bool was_stopped; /* already in a job-control stop (SIGSTOP fallback) */
	struct stopped_thread *t;
	size_t n, cap;
};

enum stop_end { STOP_RESUME, STOP_LEAVE_STOPPED, STOP_KILL };

/* Stop every thread of pid: PTRACE_SEIZE + PTRACE_INTERRUPT (invisible to
 * the process and its parent), or SIGSTOP if it cannot be traced (it
 * already is). -errno with err saying why and what privilege is needed. */
int process_stop(pid_t pid, struct stopped *s, char *err, size_t errlen);

/* Resume it, leave it stopped (SIGSTOP, as if by job control) or kill it;
 * frees s. */
int process_release(struct stopped *s, enum stop_end how);

#endif
