/* SPDX-License-Identifier: MIT */
/*
 * A thread that touches registered memory and records what it saw: the
 * proof that a resolve installed the right bytes is what the faulting
 * thread reads, not the ioctl's return code.
 */
#ifndef FL_TEST_TOUCHER_H
#define FL_TEST_TOUCHER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <faultline/uffd.h>

enum touch_how {
	TOUCH_READ = 1,	       /* copy the page out */
	TOUCH_WRITE = 2,       /* store `value` at offset 8 */
	TOUCH_READ_WRITE = 3,  /* both, read first */
};

struct toucher {
	char *addr;
	size_t len;
	enum touch_how how;
	uint64_t value;
	unsigned char *seen; /* len bytes: what the read saw */
	atomic_bool done;
	atomic_bool sigbus; /* the access ended in SIGBUS */
	pid_t tid;
	pthread_t thread;
};

void toucher_start(struct toucher *t, void *addr, size_t len, enum touch_how how,
		   uint64_t value);
void toucher_join(struct toucher *t);
void toucher_free(struct toucher *t);

/* Wait (poll, up to `ms`) for one message and decode it. */
void wait_event(int fd, struct fl_uffd_event *ev, int ms);
/* Same, asserting a page fault at `addr` whose flags include `flags`. */
void wait_fault(int fd, uint64_t addr, unsigned flags);
/* True if a message is pending within `ms`. */
bool event_pending(int fd, int ms);

/* Create a userfaultfd with all of `features` (skip if the kernel lacks any). */
void uffd_or_skip(struct fl_uffd *u, uint64_t features);

#endif
