// SPDX-License-Identifier: MIT
/* A fixed, pre-touched arena of page buffers: see buf-arena.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "buf-arena.h"

static bool used(const struct buf_arena *a, size_t i)
{
	return a->used[i / 64] >> (i % 64) & 1;
}

static void mark(struct buf_arena *a, size_t i, size_t n, bool on)
{
	for (size_t k = i; k < i + n; k++) {
		if (on)
			a->used[k / 64] |= 1ull << (k % 64);
		else
			a->used[k / 64] &= ~(1ull << (k % 64));
	}
}

int fl__arena_init(struct buf_arena *a, size_t bytes)
{
	memset(a, 0, sizeof(*a));
	a->pages = bytes / ARENA_PAGE;
	a->used = calloc((a->pages + 63) / 64, sizeof(uint64_t));
	a->base = mmap(NULL, a->pages * ARENA_PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (!a->used || a->base == MAP_FAILED) {
		a->base = NULL;
		fl__arena_free(a);
		return -ENOMEM;
	}
	/* Written, not just mapped: the touch that makes each page known to
	 * the hypervisor is this one, not the first read into it. */
	memset(a->base, 0, a->pages * ARENA_PAGE);
	return 0;
}

void fl__arena_free(struct buf_arena *a)
{
	if (a->base)
		munmap(a->base, a->pages * ARENA_PAGE);
	free(a->used);
	memset(a, 0, sizeof(*a));
}

/* First fit from where the last one ended, then from the start: buffers
 * are mostly given back in the order they were taken. */
static size_t find(const struct buf_arena *a, size_t from, size_t to, size_t n)
{
	size_t run = 0;

	for (size_t i = from; i < to; i++) {
		run = used(a, i) ? 0 : run + 1;
		if (run == n)
			return i + 1 - n;
	}
	return SIZE_MAX;
}

char *fl__arena_get(struct buf_arena *a, size_t len)
{
	size_t n = (len + ARENA_PAGE - 1) / ARENA_PAGE, i;

	if (!n || n > a->pages)
		return NULL;
	i = find(a, a->hint, a->pages, n);
	if (i == SIZE_MAX)
		i = find(a, 0, a->pages, n);
	if (i == SIZE_MAX)
		return NULL;
	mark(a, i, n, true);
	a->hint = i + n < a->pages ? i + n : 0;
	return a->base + i * ARENA_PAGE;
}

void fl__arena_put(struct buf_arena *a, const char *p, size_t len)
{
	size_t n = (len + ARENA_PAGE - 1) / ARENA_PAGE;

	mark(a, (size_t)(p - a->base) / ARENA_PAGE, n, false);
}
