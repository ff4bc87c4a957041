/* SPDX-License-Identifier: MIT */
/* Shared state of the two dirty-tracking methods (dirty.c, dirty-wpfault.c). */
#ifndef FL_UFFD_DIRTY_INTERNAL_H
#define FL_UFFD_DIRTY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <faultline/uffd.h>

#include "util/bitmap.h"

#define FL_PAGE 4096UL

struct fl_dirty {
	enum fl_dirty_method method;
	struct fl_uffd uffd;
	uint64_t start, len;
	size_t pages;
	int pagemap_fd;		 /* PAGEMAP_SCAN method */
	struct page_region *vec; /* its output buffer */
	size_t vec_len;
	/* WP_FAULTS method: the handler thread records first writes here. */
	_Atomic uint64_t *live;
	uint64_t *present, *scratch; /* pages mapped at the last collect / now */
	pthread_t thread;
	bool thread_started;
	int stop_fd; /* eventfd that stops the handler */
	pthread_mutex_t lock; /* orders "record + unprotect" against collect */
	int thread_err;
	uint64_t *always;     /* pages declared pinned: dirty at every collect */
};

int fl__dirty_wpfault_start(struct fl_dirty *d);
int fl__dirty_wpfault_collect(struct fl_dirty *d, uint64_t *bitmap,
			     size_t *ndirty);
void fl__dirty_wpfault_stop(struct fl_dirty *d);

#endif
