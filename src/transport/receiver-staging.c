// SPDX-License-Identifier: MIT
/*
 * The receiver's staging memory: how pages come into it and go back.
 *
 * On these machines (a guest whose page faults each exit to its host) the
 * first touch of a fresh page costs about 10 us, while the kernel fills
 * the same page in about 0.7 us when asked to populate a range in one
 * call. So a frame's staging range is populated with MADV_POPULATE_WRITE
 * before the socket's bytes are copied in: one call per frame instead of
 * one trap per page (1 GiB of receive went from 4.7 to about 1 CPU-second).
 *
 * Staging handed back (release() with `installed`) is not zapped at once
 * either: each MADV_DONTNEED flushes the TLBs of every CPU running the
 * receiver, the receiving threads' included, so pages to drop are marked
 * and dropped in runs once DROP_BATCH_BYTES have gathered. Staging thus
 * holds at most that much beyond what is in flight.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "receiver-internal.h"
#include "util/bitmap.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Staging dropped at most this late: the bound on memory it holds beyond
 * what is in flight, and few enough TLB flushes that they do not show. */
#define DROP_BATCH_BYTES (8ull << 20)

void fl__rx_staging_populate(struct fl_receiver *r, uint32_t region, uint64_t offset,
			     uint64_t len)
{
	struct rx_region *g = &r->rg[region];

	/* Every write to staging comes through here first: what is never
	 * staged is never zapped (a zap flushes the TLB of every CPU that
	 * runs one of our threads, even where nothing was mapped). */
	for (uint64_t p = offset / g->page; p < (offset + len) / g->page; p++)
		fl__bitmap_set_atomic(g->staged, p);
	/* A single page is as cheap to fault as to populate. A kernel without
	 * MADV_POPULATE_WRITE (before 5.14) says EINVAL, and the copy faults
	 * the pages in as before: nothing is lost but time. */
	if (len >= 2 * g->page && !r->no_populate)
		(void)madvise(g->staging + offset, len, MADV_POPULATE_WRITE);
}

/* Whether any page of the range may hold bytes in staging. */
static bool any_staged(struct rx_region *g, uint64_t offset, uint64_t len)
{
	for (uint64_t p = offset / g->page; p < (offset + len) / g->page; p++)
		if (fl__bitmap_test_atomic(g->staged, p))
			return true;
	return false;
}

void fl__rx_staging_zap(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len)
{
	struct rx_region *g = &r->rg[region];

	if (!any_staged(g, offset, len))
		return;
	madvise(g->staging + offset, len, MADV_DONTNEED);
	for (uint64_t p = offset / g->page; p < (offset + len) / g->page; p++)
		fl__bitmap_clear_atomic(g->staged, p);
}

/* Under droplock: zap each run of marked pages, clear the marks. */
static void drop_marked(struct fl_receiver *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct rx_region *g = &r->rg[i];
		size_t p = 0;

		while (p < g->pages) {
			size_t start;

			if (!g->drop[p / 64]) { /* skip clear words */
				p = (p / 64 + 1) * 64;
				continue;
			}
			if (!fl__bitmap_test_atomic(g->drop, p)) {
				p++;
				continue;
			}
			start = p;
			while (p < g->pages && fl__bitmap_test_atomic(g->drop, p)) {
				fl__bitmap_clear_atomic(g->staged, p);
				fl__bitmap_clear_atomic(g->drop, p++);
			}
			madvise(g->staging + start * g->page, (p - start) * g->page,
				MADV_DONTNEED);
		}
	}
	r->drop_pending = 0;
}

void fl__rx_staging_drop(struct fl_receiver *r, uint32_t region, uint64_t offset,
			 uint64_t len, bool held)
{
	struct rx_region *g = &r->rg[region];

	if (!any_staged(g, offset, len)) /* received into the ring, installed from there */
		return;
	pthread_mutex_lock(&r->droplock);
	for (uint64_t p = offset / g->page; p < (offset + len) / g->page; p++)
		if (fl__bitmap_test_atomic(g->staged, p)) {
			fl__bitmap_set_atomic(g->drop, p);
			r->drop_pending += g->page;
		}
	if (r->drop_pending >= DROP_BATCH_BYTES)
		drop_marked(r);
	pthread_mutex_unlock(&r->droplock);
	if (held)
		atomic_fetch_add(&r->staging_dropped, len);
}

/* ------------------------------------------------------------ the ring */

/* After the switch-over, the pushed stream is received into a ring that
 * is reused, not into staging at each page's place: on these machines the
 * kernel's first write to a user address costs about 9 us a page however
 * the page was populated (its shadow mapping is built then), and writing
 * again where it wrote before runs at memory speed (1 GiB received into
 * fresh staging: 0.45 GB/s; into a reused 64 MiB ring: 2.5 to 3.7 GB/s,
 * the same loopback stream). The monitor installs from the ring; what it
 * could not install is copied to staging when the frame is handed back,
 * and only then are its pages marked here, so staging stays the one place
 * a later request reads from. */
#define RING_BYTES (16ull << 20)
/* A frame waits at most this long for room, then lands in staging (the
 * monitor may be gone, or not reading: the stream must go on). */
#define RING_WAIT_MS 50

static bool ring_fit(struct rx_ring *g, size_t len, size_t *at)
{
	size_t tail;

	if (len > g->size || g->count == RX_RING_ENTS)
		return false;
	if (!g->count) {
		*at = 0;
		return true;
	}
	tail = g->ent[g->first].start;
	if (g->head > tail) { /* used: [tail, head) */
		if (g->head + len <= g->size)
			*at = g->head;
		else if (len <= tail)
			*at = 0;
		else
			return false;
		return true;
	}
	/* Wrapped, used: [tail, size) and [0, head); head == tail is full. */
	if (g->head < tail && g->head + len <= tail) {
		*at = g->head;
		return true;
	}
	return false;
}

char *fl__rx_ring_reserve(struct fl_receiver *r, size_t len)
{
	struct rx_ring *g = &r->ring;
	struct timespec until;
	char *p = NULL;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += RING_WAIT_MS * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&g->lock);
	if (!g->mem && !g->broken) {
		g->mem = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (g->mem == MAP_FAILED) {
			g->mem = NULL;
			g->broken = true; /* staging it is, then */
		}
		g->size = RING_BYTES;
	}
	while (g->mem) {
		size_t at;

		if (ring_fit(g, len, &at)) {
			g->reserved = at;
			p = g->mem + at;
			break;
		}
		/* Nobody handed anything back since the last wait ran out:
		 * do not wait again until somebody does. */
		if (g->stalled ||
		    pthread_cond_timedwait(&g->cond, &g->lock, &until) == ETIMEDOUT) {
			g->stalled = true;
			g->fallbacks++;
			break;
		}
	}
	pthread_mutex_unlock(&g->lock);
	return p;
}

void fl__rx_ring_commit(struct fl_receiver *r, size_t len)
{
	struct rx_ring *g = &r->ring;

	pthread_mutex_lock(&g->lock);
	g->ent[(g->first + g->count) % RX_RING_ENTS] =
		(struct rx_ring_ent){ .start = g->reserved, .len = len, .left = len };
	g->count++;
	g->head = g->reserved + len;
	g->frames++;
	pthread_mutex_unlock(&g->lock);
}

bool fl__rx_ring_owns(const struct fl_receiver *r, const void *p)
{
	const struct rx_ring *g = &r->ring;

	return g->mem && (const char *)p >= g->mem && (const char *)p < g->mem + g->size;
}

void fl__rx_ring_free(struct fl_receiver *r, const void *p, size_t len)
{
	struct rx_ring *g = &r->ring;
	size_t at = (size_t)((const char *)p - g->mem);

	pthread_mutex_lock(&g->lock);
	for (unsigned i = 0; i < g->count; i++) {
		struct rx_ring_ent *e = &g->ent[(g->first + i) % RX_RING_ENTS];

		if (e->left && at >= e->start && at < e->start + e->len) {
			e->left -= len < e->left ? len : e->left;
			break;
		}
	}
	while (g->count && !g->ent[g->first].left) {
		g->first = (g->first + 1) % RX_RING_ENTS;
		g->count--;
	}
	g->stalled = false;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

void fl__rx_ring_init(struct fl_receiver *r)
{
	pthread_mutex_init(&r->ring.lock, NULL);
	pthread_cond_init(&r->ring.cond, NULL);
}

void fl__rx_ring_destroy(struct fl_receiver *r)
{
	if (r->ring.mem)
		munmap(r->ring.mem, r->ring.size);
	pthread_mutex_destroy(&r->ring.lock);
	pthread_cond_destroy(&r->ring.cond);
}
