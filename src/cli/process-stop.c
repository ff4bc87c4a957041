// SPDX-License-Identifier: MIT
/*
 * Stopping a process for a consistent snapshot.
 *
 * PTRACE_SEIZE + PTRACE_INTERRUPT stops a thread without sending it a
 * signal, so neither the process nor its parent sees anything. ptrace
 * works per thread: every thread in /proc/PID/task is seized, and the list
 * is read again until no new thread appeared (a running thread may clone
 * while we attach; once all are stopped none can). A thread that reports a
 * signal-delivery-stop instead of the interrupt had a signal arriving: it
 * is delivered again on detach so nothing is lost.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "process-stop.h"
#include "util/procfs.h"

#define PRIV_HINT "stopping and reading another process needs ptrace access: run as its user " \
	"(with kernel.yama.ptrace_scope allowing it) or as root / with CAP_SYS_PTRACE"

static bool have(const struct stopped *s, pid_t tid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->t[i].tid == tid)
			return true;
	return false;
}

static char state_of(pid_t pid)
{
	char path[64], buf[512];
	const char *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	p = fl__proc_stat(path, buf, sizeof(buf), NULL, 0);
	return p ? p[0] : 0;
}

/* Seize and interrupt one thread; wait until it is stopped. */
static int seize(struct stopped *s, pid_t tid)
{
	int st;

	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL))
		return -errno;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		void *a = realloc(s->t, cap * sizeof(*s->t));

		if (!a) {
			ptrace(PTRACE_DETACH, tid, NULL, NULL);
			return -ENOMEM;
		}
		s->t = a;
		s->cap = cap;
	}
	s->t[s->n++] = (struct stopped_thread){ .tid = tid };
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL))
		return -errno;
	for (;;) {
		if (waitpid(tid, &st, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			s->n--; /* gone: nothing to detach */
			return -ESRCH;
		}
		if (WIFSTOPPED(st)) {
			/* Not our interrupt: a signal on its way in. */
			if (st >> 16 == 0 && WSTOPSIG(st) != SIGTRAP)
				s->t[s->n - 1].signal = WSTOPSIG(st);
			return 0;
		}
	}
}

static int stop_with_sigstop(pid_t pid, struct stopped *s, char *err, size_t errlen)
{
	struct timespec ms = { 0, 1000000 };

	s->ptraced = false;
	s->was_stopped = state_of(pid) == 'T';
	if (kill(pid, SIGSTOP)) {
		int e = errno;

		snprintf(err, errlen, "cannot stop pid %d: %s%s", (int)pid, strerror(e),
			 e == EPERM ? ": " PRIV_HINT : "");
		return -e;
	}
	for (int i = 0; i < 5000; i++) {
		char c = state_of(pid);

		if (c == 'T' || c == 't')
			return 0;
		if (c == 0 || c == 'Z' || c == 'X') {
			snprintf(err, errlen, "pid %d exited while it was being stopped", (int)pid);
			return -ESRCH;
		}
		nanosleep(&ms, NULL);
	}
	snprintf(err, errlen, "pid %d did not stop within 5 s of SIGSTOP (in uninterruptible sleep?)", (int)pid);
	kill(pid, SIGCONT);
	return -ETIMEDOUT;
}

int process_stop(pid_t pid, struct stopped *s, char *err, size_t errlen)
{
	char path[64];
	bool added;
	int ret;

	memset(s, 0, sizeof(*s));
	s->pid = pid;
	s->ptraced = true;
	if (kill(pid, 0) && errno == ESRCH) {
		snprintf(err, errlen, "no process with pid %d", (int)pid);
		return -ESRCH;
	}
	ret = seize(s, pid);
	if (ret == -EPERM && kill(pid, 0) == 0) {
		/* Traceable by us in principle, but already traced (a debugger)? */
		char st[64];
		FILE *f;
		long tracer = 0;

		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		f = fopen(path, "re");
		while (f && fgets(st, sizeof(st), f))
			if (sscanf(st, "TracerPid: %ld", &tracer) == 1)
				break;
		if (f)
			fclose(f);
		if (tracer) {
			free(s->t);
			s->t = NULL;
			s->n = s->cap = 0;
			return stop_with_sigstop(pid, s, err, errlen);
		}
	}
	if (ret) {
		snprintf(err, errlen, "cannot stop pid %d: %s%s", (int)pid, strerror(-ret),
			 ret == -EPERM ? ": " PRIV_HINT : ret == -ESRCH ? " (it exited)" : "");
		process_release(s, STOP_RESUME);
		return ret;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	do {
		DIR *d = opendir(path);
		struct dirent *e;

		added = false;
		if (!d) {
			ret = -errno;
			break;
		}
		while ((e = readdir(d))) {
			pid_t tid = (pid_t)atoi(e->d_name);

			if (tid <= 0 || have(s, tid))
				continue;
			ret = seize(s, tid);
			if (ret == -ESRCH)
				continue; /* the thread exited meanwhile */
			if (ret)
				break;
			added = true;
		}
		closedir(d);
	} while (added && !ret);
	if (ret && ret != -ESRCH) {
		snprintf(err, errlen, "cannot stop every thread of pid %d: %s", (int)pid, strerror(-ret));
		process_release(s, STOP_RESUME);
		return ret;
	}
	return 0;
}

int process_release(struct stopped *s, enum stop_end how)
{
	int ret = 0;

	if (how == STOP_KILL) {
		if (kill(s->pid, SIGKILL))
			ret = -errno;
		/* As tracer we are told of each thread's death first: take it,
		 * so the real parent gets its notification. */
		for (size_t i = 0; s->ptraced && i < s->n; i++)
			while (waitpid(s->t[i].tid, NULL, __WALL) < 0 && errno == EINTR)
				;
	} else {
		/* Pending before detach: the threads stop again as a group. */
		if (how == STOP_LEAVE_STOPPED && s->ptraced && kill(s->pid, SIGSTOP))
			ret = -errno;
		for (size_t i = 0; s->ptraced && i < s->n; i++)
			if (ptrace(PTRACE_DETACH, s->t[i].tid, NULL,
				   (void *)(long)s->t[i].signal) && errno != ESRCH)
				ret = -errno;
		if (how == STOP_RESUME && !s->ptraced && !s->was_stopped && kill(s->pid, SIGCONT))
			ret = -errno;
	}
	free(s->t);
	s->t = NULL;
	s->n = s->cap = 0;
	return ret;
}
