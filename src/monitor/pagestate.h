/* SPDX-License-Identifier: MIT */
/*
 * Per-page state of a region, two bits a page: a 1 GiB region costs 64 KiB.
 */
#ifndef FL_MONITOR_PAGESTATE_H
#define FL_MONITOR_PAGESTATE_H

#include <stddef.h>
#include <stdint.h>

enum page_state {
	PS_MISSING = 0,	  /* owed, nobody asked the source yet */
	PS_REQUESTED = 1, /* a read from the source is in flight */
	PS_PRESENT = 2,	  /* installed in the program */
	PS_ZERO = 3,	  /* removed (MADV_DONTNEED): zeros now, never fetched */
};

struct pagestate {
	uint64_t *bits;
	size_t pages;
	size_t owed; /* pages MISSING or REQUESTED */
};

int fl__ps_init(struct pagestate *ps, size_t pages);
void fl__ps_free(struct pagestate *ps);

static inline enum page_state ps_get(const struct pagestate *ps, size_t i)
{
	return (enum page_state)((ps->bits[i / 32] >> (2 * (i % 32))) & 3);
}

void fl__ps_set(struct pagestate *ps, size_t i, enum page_state s);
void fl__ps_set_range(struct pagestate *ps, size_t first, size_t n, enum page_state s);
/* A new state array holding pages [first, first+n) of src. */
int fl__ps_slice(struct pagestate *dst, const struct pagestate *src, size_t first, size_t n);
/* Length of the run of pages in state s starting at i, at most max. */
size_t fl__ps_run(const struct pagestate *ps, size_t i, enum page_state s, size_t max);
/* First page >= from in state s, or ps->pages. */
size_t fl__ps_find(const struct pagestate *ps, size_t from, enum page_state s);

#endif
