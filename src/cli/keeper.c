// SPDX-License-Identifier: MIT
/*
 * The keeper: the process `faultline monitor` starts as, which runs the
 * monitor in a child sharing its table of file descriptors
 * (clone(CLONE_FILES) without CLONE_VM: a separate process, one table).
 * Every userfaultfd the monitor holds is in that table the moment the
 * kernel installs it (a fork child's during the read() of its FORK
 * event), so a monitor killed at any instant loses none: the table lives
 * on in the keeper, and the next monitor, cloned the same way, finds them
 * there. What each fd is, and what its process did to its memory, is in
 * the journal (src/monitor/journal.c).
 *
 * The keeper itself only waits: it holds no state but the journal's fd,
 * and forwards the signals a user sends it to the monitor. Its caller
 * drops its capabilities first: every monitor it starts has what it has.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/monitor.h>
#include <faultline/uffd.h>

#include "cli.h"
#include "keeper.h"
#include "util/clock.h"
#include "util/procfs.h"

#define MAX_RESTARTS 5	     /* in RESTART_WINDOW_S: then give up */
#define RESTART_WINDOW_S 30

static volatile sig_atomic_t child_pid, stop_sig, held_sig;
static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2 };

/* A signal for the monitor: sent on, or, while there is none (before the
 * first, between two), kept and sent to the next. */
static void forward(int sig)
{
	pid_t c = child_pid;

	if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
		stop_sig = sig;
	else if (c <= 0)
		held_sig = sig;
	if (c > 0)
		kill(c, sig);
}

void cli_keeper_signals(void)
{
	struct sigaction sa = { .sa_handler = forward, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaction(forwarded[i], &sa, NULL);
}

static pid_t spawn(const struct cli_keeper *k, unsigned restarts)
{
	pid_t keeper = getpid();
	sigset_t hold, old;
	long pid;

	/* SIGUSR1/2 forwarded before the monitor has its handlers would end
	 * it: the monitor starts with them blocked (pending, not lost) and
	 * unblocks them once it handles them (cli_keeper.body). */
	sigemptyset(&hold);
	sigaddset(&hold, SIGUSR1);
	sigaddset(&hold, SIGUSR2);
	sigprocmask(SIG_BLOCK, &hold, &old);
	fflush(NULL); /* nothing of ours printed twice */
	/* Like fork(), but the fd table is shared, not copied. */
	pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		return (pid_t)pid;
	}
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		signal(forwarded[i], SIG_DFL);
	/* A keeper gone (killed with its process group, say): stop cleanly. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != keeper)
		_exit(CLI_FAILED);
	exit(k->body(k->arg, restarts));
}

/* The parent of pid (from /proc), or 0. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	const char *p;
	int ppid = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	p = fl__proc_stat(path, buf, sizeof(buf), NULL, 0);
	if (p)
		sscanf(p, "%*c %d", &ppid);
	return ppid;
}

/* Is pid a descendant of anc? */
static bool descends(pid_t pid, pid_t anc)
{
	for (int depth = 0; pid > 1 && depth < 64; depth++)
		if ((pid = parent_of(pid)) == anc)
			return true;
	return false;
}

/* End pid and every process below it: a fork child of a served process
 * is one of those, and the kernel may not have told us its pid. */
static void end_tree(pid_t root)
{
	struct dirent *d;
	size_t n = 0;
	DIR *dir;

	kill(root, SIGSTOP); /* no new children while we look */
	dir = opendir("/proc");
	while (dir && (d = readdir(dir))) {
		pid_t pid = (pid_t)atoi(d->d_name);

		if (pid > 1 && pid != root && descends(pid, root) && !kill(pid, SIGKILL))
			n++;
	}
	if (dir)
		closedir(dir);
	kill(root, SIGKILL);
	fprintf(stderr, "faultline monitor: keeper: ended pid %d and %zu processes below it: no "
		"monitor can serve their missing pages\n", (int)root, n);
}

/* No monitor can be started: the journal's processes can never get the
 * pages they lack. End them rather than leave them asleep or, once our
 * fds close, reading zeros. */
static void give_up(const struct cli_keeper *k)
{
	struct fl_journal_proc *procs;
	size_t n;
	char err[256];

	if (fl_monitor_journal_procs(k->journal_fd, &procs, &n, err, sizeof(err))) {
		fprintf(stderr, "faultline monitor: keeper: %s\n", err);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (procs[i].pid > 0 && !kill(procs[i].pid, 0))
			end_tree(procs[i].pid);
	free(procs);
}

int cli_keeper_run(const struct cli_keeper *k)
{
	uint64_t window = fl__now_ns();
	unsigned restarts = 0, recent = 0;

	cli_keeper_signals();
	for (;;) {
		pid_t pid;
		int st, sig;

		child_pid = 0;
		pid = spawn(k, restarts);
		if (pid < 0) {
			fprintf(stderr, "faultline monitor: keeper: cannot start a monitor: %s\n",
				strerror(errno));
			if (restarts)
				give_up(k);
			return CLI_FAILED;
		}
		child_pid = pid;
		if (stop_sig) /* asked to stop before there was a monitor */
			kill(pid, stop_sig);
		if (held_sig) {
			kill(pid, held_sig); /* blocked there until it handles it */
			held_sig = 0;
		}
		if (k->verbose)
			fprintf(stderr, "faultline monitor: keeper %d: monitor is pid %d%s\n",
				(int)getpid(), (int)pid, restarts ? " (resuming)" : "");
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		child_pid = 0;
		if (WIFEXITED(st))
			return WEXITSTATUS(st);
		sig = WTERMSIG(st);
		if (stop_sig) /* asked to stop, and it did */
			return 128 + sig;
		fprintf(stderr, "faultline monitor: keeper: the monitor (pid %d) died of signal "
			"%d (%s); starting another from the journal\n", (int)pid, sig,
			strsignal(sig));
		if (fl__now_ns() - window > RESTART_WINDOW_S * 1000000000ULL) {
			window = fl__now_ns();
			recent = 0;
		}
		if (++recent > MAX_RESTARTS) {
			fprintf(stderr, "faultline monitor: keeper: %u monitors died within %d s: "
				"giving up\n", recent, RESTART_WINDOW_S);
			give_up(k);
			return CLI_FAILED;
		}
		restarts++;
	}
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

int cli_keeper_close_strays(int journal_fd, const int *keep, size_t n, char *err,
			    size_t errlen)
{
	struct fl_journal_proc *procs;
	size_t np, nk = 0;
	int *all, ret, last = -1;

	ret = fl_monitor_journal_procs(journal_fd, &procs, &np, err, errlen);
	if (ret)
		return ret;
	all = malloc((np + n + 4) * sizeof(*all));
	if (!all) {
		free(procs);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int fd = 0; fd <= 2; fd++)
		all[nk++] = fd;
	all[nk++] = journal_fd;
	for (size_t i = 0; i < n; i++)
		all[nk++] = keep[i];
	for (size_t i = 0; i < np; i++)
		all[nk++] = procs[i].uffd;
	free(procs);
	qsort(all, nk, sizeof(*all), cmp_int);
	for (size_t i = 0; i < nk; i++) {
		if (all[i] > last + 1)
			close_range((unsigned)last + 1, (unsigned)all[i] - 1, 0);
		last = all[i];
	}
	close_range((unsigned)last + 1, ~0U, 0);
	free(all);
	return 0;
}
