// SPDX-License-Identifier: MIT
/*
 * The snapshot page source: reads from the pages file with io_uring.
 *
 * Ordering: flush() puts every queued urgent read into the ring before any
 * background read, and keeps at most `background_inflight` background reads
 * in the kernel at once, so a faulting thread's page never waits behind a
 * long background backlog (page-cache hits complete inside io_uring_enter;
 * misses go to io-wq workers in the order they were submitted).
 *
 * Completions: an eventfd registered with the ring (event_fd) becomes
 * readable when a read completes; reap() first drains the eventfd and then
 * the completion queue, so a completion that lands in between re-arms it.
 * Each finished read is checked block by block against the snapshot's
 * checksums before it is handed back; a mismatch completes the request
 * with -EBADMSG and fl_source_snapshot_error() names region and page.
 */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "snapshot-internal.h"

#define READ_MAX (1u << 30) /* one SQE reads at most this (its length is 32-bit) */

struct slot {
	struct fl_source_req *req;
	uint64_t done;	/* bytes read so far */
	int next;	/* in a queue, or the free list; -1 ends */
};

struct queue {
	int head, tail;
};

struct snap_source {
	struct fl_source base;
	struct fl_snapshot *snap;
	struct io_uring ring;
	bool ring_ok;
	unsigned depth, bg_max, bg_inflight, inflight;
	struct slot *slots;
	int free;
	struct queue urgent, background;
	bool bg_held;	/* flushed background reads held back by bg_max */
	struct fl_source_req **finished; /* scratch for reap, depth entries */
	char err[512];
};

static struct snap_source *ss(struct fl_source *s)
{
	return (struct snap_source *)s;
}

static void push(struct snap_source *m, struct queue *q, int i, bool front)
{
	if (q->head < 0) {
		m->slots[i].next = -1;
		q->head = q->tail = i;
	} else if (front) {
		m->slots[i].next = q->head;
		q->head = i;
	} else {
		m->slots[i].next = -1;
		m->slots[q->tail].next = i;
		q->tail = i;
	}
}

static int pop(struct snap_source *m, struct queue *q)
{
	int i = q->head;

	if (i >= 0) {
		q->head = m->slots[i].next;
		if (q->head < 0)
			q->tail = -1;
	}
	return i;
}

static int snap_submit(struct fl_source *s, struct fl_source_req *r)
{
	struct snap_source *m = ss(s);
	const struct fl_region *g;
	int i;

	if (r->region >= s->nregions)
		return -ERANGE;
	g = &s->regions[r->region];
	if (!r->len || r->offset % g->page_size || r->len % g->page_size ||
	    r->offset > g->len || r->len > g->len - r->offset)
		return -ERANGE;
	if (m->free < 0)
		return -EBUSY;
	i = m->free;
	m->free = m->slots[i].next;
	m->slots[i].req = r;
	m->slots[i].done = 0;
	r->result = 0;
	push(m, r->urgent ? &m->urgent : &m->background, i, false);
	return 0;
}

static bool start_read(struct snap_source *m, int i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&m->ring);
	struct slot *sl = &m->slots[i];
	struct fl_source_req *r = sl->req;
	uint64_t left = r->len - sl->done;

	if (!sqe) {
		io_uring_submit(&m->ring);
		sqe = io_uring_get_sqe(&m->ring);
		if (!sqe)
			return false;
	}
	io_uring_prep_read(sqe, m->snap->pages_fd, (char *)r->buf + sl->done,
			   left < READ_MAX ? (unsigned)left : READ_MAX,
			   m->snap->m.where[r->region].file_offset + r->offset + sl->done);
	io_uring_sqe_set_data64(sqe, (uint64_t)i);
	m->inflight++;
	if (!r->urgent)
		m->bg_inflight++;
	return true;
}

static int snap_flush(struct fl_source *s)
{
	struct snap_source *m = ss(s);
	int i, ret;

	while ((i = pop(m, &m->urgent)) >= 0)
		if (!start_read(m, i)) {
			push(m, &m->urgent, i, true);
			break;
		}
	while (m->bg_inflight < m->bg_max && (i = pop(m, &m->background)) >= 0)
		if (!start_read(m, i)) {
			push(m, &m->background, i, true);
			break;
		}
	m->bg_held = m->background.head >= 0;
	ret = io_uring_submit(&m->ring);
	return ret < 0 ? ret : 0;
}

static int snap_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct snap_source *m = ss(s);
	struct io_uring_cqe *cqe;
	uint64_t count;
	bool requeued = false;
	int n = 0;

	/* Drain first: a completion posted after this read re-arms it. */
	if (read(s->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return -errno;
	while (!io_uring_peek_cqe(&m->ring, &cqe)) {
		int i = (int)io_uring_cqe_get_data64(cqe), res = cqe->res;
		struct slot *sl = &m->slots[i];
		struct fl_source_req *r = sl->req;
		const struct fl_region *g = &s->regions[r->region];

		io_uring_cqe_seen(&m->ring, cqe);
		m->inflight--;
		if (!r->urgent)
			m->bg_inflight--;
		if (res == -EAGAIN || res == -EINTR) {
			push(m, r->urgent ? &m->urgent : &m->background, i, true);
			requeued = true;
			continue;
		}
		if (res > 0) {
			sl->done += (unsigned)res;
			if (sl->done < r->len) { /* short read: go on from there */
				push(m, r->urgent ? &m->urgent : &m->background, i, true);
				requeued = true;
				continue;
			}
			r->result = snap_check_blocks(m->snap, r->region, r->offset, r->buf,
						      r->len, m->err, sizeof(m->err));
		} else {
			r->result = res ? res : -EIO;
			snprintf(m->err, sizeof(m->err),
				 "snapshot %s: reading region %u (%s) at offset 0x%llx: %s",
				 m->snap->dir, r->region, g->name,
				 (unsigned long long)(r->offset + sl->done),
				 res ? strerror(-res) : "the pages file ended early (it shrank after open)");
		}
		m->finished[n++] = r;
		sl->req = NULL;
		sl->next = m->free;
		m->free = i;
	}
	if (requeued || m->bg_held) {
		int ret = snap_flush(s);

		if (ret < 0)
			return ret;
	}
	/* Slots are free before done() runs: it may submit and flush again
	 * (but not reap: finished[] is in use). */
	for (int k = 0; k < n; k++)
		done(m->finished[k], arg);
	return n;
}

static int64_t snap_zero_run(struct fl_source *s, uint32_t region,
			     uint64_t offset, uint64_t max)
{
	return fl_snapshot_zero_run(ss(s)->snap, region, offset, max);
}

static void snap_destroy(struct fl_source *s)
{
	struct snap_source *m = ss(s);

	if (m->ring_ok) {
		/* The kernel may still be writing into callers' buffers. */
		while (m->inflight) {
			struct io_uring_cqe *cqe;

			if (io_uring_wait_cqe(&m->ring, &cqe))
				break;
			io_uring_cqe_seen(&m->ring, cqe);
			m->inflight--;
		}
		io_uring_queue_exit(&m->ring);
	}
	if (s->event_fd >= 0)
		close(s->event_fd);
	free(m->slots);
	free(m->finished);
	free(m);
}

static const struct fl_source_ops snapshot_ops = {
	.submit = snap_submit,
	.flush = snap_flush,
	.reap = snap_reap,
	.zero_run = snap_zero_run,
	.destroy = snap_destroy,
};

int fl_source_snapshot_create(struct fl_source **out, struct fl_snapshot *snap,
			      const struct fl_source_snapshot_opts *opts)
{
	struct snap_source *m = calloc(1, sizeof(*m));
	int ret;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->base.ops = &snapshot_ops;
	m->base.kind = "snapshot";
	m->base.regions = snap->m.regions;
	m->base.nregions = snap->m.nregions;
	m->base.event_fd = -1;
	m->snap = snap;
	m->depth = opts && opts->queue_depth ? opts->queue_depth : 256;
	m->bg_max = opts && opts->background_inflight ? opts->background_inflight : 16;
	if (m->depth > 32768) {
		ret = -EINVAL;
		goto fail;
	}
	m->urgent.head = m->urgent.tail = -1;
	m->background.head = m->background.tail = -1;
	m->slots = calloc(m->depth, sizeof(*m->slots));
	m->finished = calloc(m->depth, sizeof(*m->finished));
	if (!m->slots || !m->finished) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < m->depth; i++)
		m->slots[i].next = i + 1 < m->depth ? (int)i + 1 : -1;
	m->free = 0;
	/* One SQE per slot at most: the rings can never overflow. */
	ret = io_uring_queue_init(m->depth, &m->ring, 0);
	if (ret)
		goto fail;
	m->ring_ok = true;
	m->base.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->base.event_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = io_uring_register_eventfd(&m->ring, m->base.event_fd);
	if (ret)
		goto fail;
	*out = &m->base;
	return 0;
fail:
	snap_destroy(&m->base);
	return ret;
}

const char *fl_source_snapshot_error(const struct fl_source *s)
{
	if (!s || strcmp(s->kind, "snapshot"))
		return "";
	return ((const struct snap_source *)s)->err;
}
