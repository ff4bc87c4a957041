// SPDX-License-Identifier: MIT
/*
 * A page source over buffers in memory: for tests and embedded use.
 *
 * It has every byte at hand, yet keeps the contract of every source
 * (faultline/source.h): flush() finishes the queued requests, urgent ones
 * first, and signals event_fd; reap() hands them back. So a monitor over
 * it runs the same joins, deferrals and cancels as over a remote source.
 * Data is handed out by reference into the caller's buffers (or a
 * read-only zero mapping): never movable.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/source.h>

#include "source-internal.h"

#define QUEUE_MAX 4096
#define MAX_REQ (64u << 20)

struct memory_source {
	struct fl_source base;
	struct fl_region *regions;
	const void **data;
	void *zeros; /* MAX_REQ bytes of read-only zero pages */
	struct fl_source_req *queue[QUEUE_MAX];
	bool ready[QUEUE_MAX]; /* flushed: handed back at the next reap */
	size_t queued;
};

static struct memory_source *ms(struct fl_source *s)
{
	return (struct memory_source *)s;
}

static int mem_submit(struct fl_source *s, struct fl_source_req *r)
{
	struct memory_source *m = ms(s);
	int ret = source_req_check(s, r);

	if (ret)
		return ret;
	if (r->len > s->max_req)
		return -E2BIG;
	if (m->queued == QUEUE_MAX)
		return -EBUSY;
	r->result = 0;
	r->data = NULL;
	r->movable = false;
	r->unasked = false;
	m->ready[m->queued] = false;
	m->queue[m->queued++] = r;
	return 0;
}

static int mem_flush(struct fl_source *s)
{
	struct memory_source *m = ms(s);
	uint64_t one = 1;
	bool any = false;

	for (size_t i = 0; i < m->queued; i++) {
		struct fl_source_req *r = m->queue[i];
		const char *src = m->data[r->region];

		if (m->ready[i])
			continue;
		r->data = src ? src + r->offset : m->zeros;
		m->ready[i] = any = true;
	}
	if (any)
		(void)!write(s->event_fd, &one, sizeof(one));
	return 0;
}

static int mem_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct memory_source *m = ms(s);
	struct fl_source_req *out[QUEUE_MAX];
	size_t keep = 0, n = 0;
	uint64_t v;

	(void)!read(s->event_fd, &v, sizeof(v));
	/* Urgent first, then background, each in submission order. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < m->queued; i++)
			if (m->ready[i] && m->queue[i]->urgent == (pass == 0))
				out[n++] = m->queue[i];
	for (size_t i = 0; i < m->queued; i++)
		if (!m->ready[i]) {
			m->queue[keep] = m->queue[i];
			m->ready[keep++] = false;
		}
	m->queued = keep;
	/* Taken off the queue before done() runs: it may submit again. */
	for (size_t i = 0; i < n; i++)
		done(out[i], arg);
	return (int)n;
}

static int mem_cancel(struct fl_source *s, struct fl_source_req *r)
{
	struct memory_source *m = ms(s);

	for (size_t i = 0; i < m->queued; i++)
		if (m->queue[i] == r) {
			memmove(&m->queue[i], &m->queue[i + 1],
				(m->queued - i - 1) * sizeof(m->queue[0]));
			memmove(&m->ready[i], &m->ready[i + 1],
				(m->queued - i - 1) * sizeof(m->ready[0]));
			m->queued--;
			return 0;
		}
	return -ENOENT;
}

static void mem_release(struct fl_source *s, struct fl_source_req *r)
{
	(void)s; /* the bytes are the caller's own buffers */
	r->data = NULL;
}

static int64_t mem_zero_run(struct fl_source *s, uint32_t region,
			    uint64_t offset, uint64_t max)
{
	const struct fl_region *g;

	if (region >= s->nregions)
		return -ERANGE;
	g = &s->regions[region];
	if (offset >= g->len)
		return 0;
	if (ms(s)->data[region])
		return 0;
	return (int64_t)(g->len - offset < max ? g->len - offset : max);
}

static void mem_destroy(struct fl_source *s)
{
	struct memory_source *m = ms(s);

	if (m->base.event_fd >= 0)
		close(m->base.event_fd);
	if (m->zeros && m->zeros != MAP_FAILED)
		munmap(m->zeros, MAX_REQ);
	free(m->regions);
	free(m->data);
	free(m);
}

static const struct fl_source_ops memory_ops = {
	.submit = mem_submit,
	.flush = mem_flush,
	.reap = mem_reap,
	.cancel = mem_cancel,
	.release = mem_release,
	.zero_run = mem_zero_run,
	.destroy = mem_destroy,
};

int fl_source_memory_create(struct fl_source **out,
			    const struct fl_region *regions, size_t n,
			    const void *const *data)
{
	struct memory_source *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->base.ops = &memory_ops;
	m->base.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	m->regions = calloc(n ? n : 1, sizeof(*regions));
	m->data = calloc(n ? n : 1, sizeof(*data));
	m->zeros = mmap(NULL, MAX_REQ, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			-1, 0);
	if (!m->regions || !m->data || m->zeros == MAP_FAILED || m->base.event_fd < 0) {
		mem_destroy(&m->base);
		return -ENOMEM;
	}
	memcpy(m->regions, regions, n * sizeof(*regions));
	memcpy(m->data, data, n * sizeof(*data));
	m->base.kind = "memory";
	m->base.regions = m->regions;
	m->base.nregions = n;
	m->base.max_req = MAX_REQ;
	*out = &m->base;
	return 0;
}
