// SPDX-License-Identifier: MIT
/* A page source over buffers in memory: for tests and embedded use. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/source.h>

#include "source-internal.h"

#define QUEUE_MAX 256

struct memory_source {
	struct fl_source base;
	struct fl_region *regions;
	const void **data;
	struct fl_source_req *queue[QUEUE_MAX];
	size_t queued, done; /* [0, done) finished, [done, queued) waiting */
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
	if (m->queued == QUEUE_MAX)
		return -EBUSY;
	m->queue[m->queued++] = r;
	return 0;
}

static int mem_flush(struct fl_source *s)
{
	struct memory_source *m = ms(s);

	/* Urgent first: they are copied before any background request. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = m->done; i < m->queued; i++) {
			struct fl_source_req *r = m->queue[i];
			const char *src = m->data[r->region];

			if (r->urgent != (pass == 0) || r->result == 1)
				continue;
			if (src)
				memcpy(r->buf, src + r->offset, r->len);
			else
				memset(r->buf, 0, r->len);
			r->result = 1; /* marks "copied" until reaped */
		}
	return 0;
}

static int mem_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct memory_source *m = ms(s);
	int n = 0;
	size_t keep = 0;

	for (size_t i = 0; i < m->queued; i++) {
		struct fl_source_req *r = m->queue[i];

		if (r->result == 1) {
			r->result = 0;
			done(r, arg);
			n++;
		} else {
			m->queue[keep++] = r;
		}
	}
	m->queued = keep;
	m->done = 0;
	return n;
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

	free(m->regions);
	free(m->data);
	free(m);
}

static const struct fl_source_ops memory_ops = {
	.submit = mem_submit,
	.flush = mem_flush,
	.reap = mem_reap,
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
	m->regions = calloc(n ? n : 1, sizeof(*regions));
	m->data = calloc(n ? n : 1, sizeof(*data));
	if (!m->regions || !m->data) {
		mem_destroy(&m->base);
		return -ENOMEM;
	}
	memcpy(m->regions, regions, n * sizeof(*regions));
	memcpy(m->data, data, n * sizeof(*data));
	m->base.ops = &memory_ops;
	m->base.kind = "memory";
	m->base.regions = m->regions;
	m->base.nregions = n;
	m->base.event_fd = -1;
	*out = &m->base;
	return 0;
}
