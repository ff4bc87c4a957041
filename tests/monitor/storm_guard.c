// SPDX-License-Identifier: MIT
/*
 * Reading a page that may vanish under the reader: a raider reads pages
 * that their owner may munmap or mremap away meanwhile, so its copy may
 * end in SIGSEGV. The copy is made word by word under a per-thread jump
 * buffer; a SIGSEGV anywhere else is a real crash and kills the process.
 */
#include <execinfo.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "storm.h"

/* volatile: the handler reads it, so its stores around the copy must stay. */
static __thread sigjmp_buf *volatile segv_jmp;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *j = segv_jmp;
	void *bt[32];
	char msg[160];
	int n;

	(void)uc;
	if (j) {
		segv_jmp = NULL;
		siglongjmp(*j, 1);
	}
	/* Not a raid: say where, then die of it, so that the root reports it. */
	n = snprintf(msg, sizeof(msg), "storm: pid %d thread %d: SIGSEGV at %p outside a raid\n",
		     (int)getpid(), (int)gettid(), si->si_addr);
	(void)!write(STDERR_FILENO, msg, (size_t)n);
	backtrace_symbols_fd(bt, backtrace(bt, 32), STDERR_FILENO);
	signal(sig, SIG_DFL);
}

void storm_catch_segv(void)
{
	struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER };
	void *bt[1];

	backtrace(bt, 1); /* loads libgcc now, not in the handler */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
}

size_t storm_guarded_copy(char *dst, const char *src)
{
	sigjmp_buf jb;
	volatile size_t done = 0;

	if (sigsetjmp(jb, 1))
		return done;
	segv_jmp = &jb;
	for (size_t k = 0; k < PG; k += 8) {
		uint64_t v;

		memcpy(&v, src + k, 8);
		memcpy(dst + k, &v, 8);
		done = k + 8;
	}
	segv_jmp = NULL;
	return PG;
}
