/* SPDX-License-Identifier: MIT */
/* The keeper of `faultline monitor`: a small process that outlives the
 * monitor and starts another where it died (keeper.c). */
#ifndef FL_CLI_KEEPER_H
#define FL_CLI_KEEPER_H

#include <stdbool.h>

struct cli_keeper {
	/* The monitor. Runs in a child that shares the keeper's fd table,
	 * with SIGUSR1 and SIGUSR2 blocked (it unblocks what it handles, once
	 * it does); restarts is 0 the first time. Returns the exit status. */
	int (*body)(void *arg, unsigned restarts);
	void *arg;
	int journal_fd; /* fl_monitor_journal_create() */
	int verbose;
};

/* Take the signals a user may send (SIGTERM, SIGINT, SIGHUP, SIGUSR1,
 * SIGUSR2) for the monitor: call before anything makes the keeper visible
 * (its sockets), so that none arriving early ends the keeper. Those sent
 * before a monitor runs reach the next one. cli_keeper_run() calls it. */
void cli_keeper_signals(void);

/* Run monitors until one exits (its status is returned) or dies of a
 * signal the keeper was asked to stop with. One that dies of anything
 * else is replaced, at most a few times in a short while; after that the
 * processes the journal names are ended (their pages can no longer
 * come) and the keeper fails. */
int cli_keeper_run(const struct cli_keeper *k);

/* In a monitor started again: close every fd of the dead one (they share
 * the table) but stdio, the journal's and the processes' it names, and
 * the `n` in keep. 0, or -errno with the reason in err. */
int cli_keeper_close_strays(int journal_fd, const int *keep, size_t n, char *err,
			    size_t errlen);

#endif
