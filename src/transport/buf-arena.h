/* SPDX-License-Identifier: MIT */
/*
 * A fixed arena of page buffers, touched once at creation and reused for
 * ever: a read lands in memory that is already there and already known to
 * the hypervisor. On these nested guests the first touch of a new mapping
 * costs about 5 us a page, whoever makes it; a copy out of a fresh
 * mapping of a file paid it once per page of the file, a copy out of
 * this arena pays it once for the arena's life.
 */
#ifndef FL_BUF_ARENA_H
#define FL_BUF_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define ARENA_PAGE 4096u

struct buf_arena {
	char *base;
	size_t pages;
	uint64_t *used; /* one bit a page */
	size_t hint;    /* where the last allocation ended */
};

/* An arena of `bytes` (a multiple of ARENA_PAGE), faulted in now. */
int fl__arena_init(struct buf_arena *a, size_t bytes);
void fl__arena_free(struct buf_arena *a);
/* `len` bytes (rounded up to pages) in one piece, or NULL when no free
 * run is that long. */
char *fl__arena_get(struct buf_arena *a, size_t len);
void fl__arena_put(struct buf_arena *a, const char *p, size_t len);

#endif
