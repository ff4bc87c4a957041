// SPDX-License-Identifier: MIT
/*
 * Reading page requests from files with io_uring (uring-reader.h).
 *
 * Ordering: flush() puts every queued urgent read into the ring before any
 * background read, and keeps at most `bg_max` background reads in the
 * kernel at once, so a faulting thread's page never waits behind a long
 * background backlog (page-cache hits complete inside io_uring_enter;
 * misses go to io-wq workers in the order they were submitted).
 *
 * Completions: an eventfd registered with the ring (the source's event_fd)
 * becomes readable when a read completes; reap() first drains the eventfd
 * and then the completion queue, so a completion that lands in between
 * re-arms it. A read that returns -EAGAIN/-EINTR, or fewer bytes than
 * asked, goes back to the front of its queue and continues from where it
 * stopped. A read that returns 0 bytes found the file shorter than at open:
 * the request fails with -EIO rather than being padded with zeros.
 */
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "source-internal.h"
#include "uring-reader.h"

#define READ_MAX (1u << 30) /* one SQE reads at most this (its length is 32-bit) */
#define DEPTH_MAX 32768u

struct slot {
	struct fl_source_req *req;
	uint64_t done;	/* bytes read so far */
	int next;	/* in a queue, or the free list; -1 ends */
};

struct queue {
	int head, tail;
};

struct uring_reader {
	struct fl_source *src;
	const struct uring_reader_hooks *hooks;
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

static void push(struct uring_reader *u, struct queue *q, int i, bool front)
{
	if (q->head < 0) {
		u->slots[i].next = -1;
		q->head = q->tail = i;
	} else if (front) {
		u->slots[i].next = q->head;
		q->head = i;
	} else {
		u->slots[i].next = -1;
		u->slots[q->tail].next = i;
		q->tail = i;
	}
}

static int pop(struct uring_reader *u, struct queue *q)
{
	int i = q->head;

	if (i >= 0) {
		q->head = u->slots[i].next;
		if (q->head < 0)
			q->tail = -1;
	}
	return i;
}

static struct queue *queue_of(struct uring_reader *u, const struct fl_source_req *r)
{
	return r->urgent ? &u->urgent : &u->background;
}

int uring_reader_submit(struct uring_reader *u, struct fl_source_req *r)
{
	int i, ret = source_req_check(u->src, r);

	if (ret)
		return ret;
	if (u->free < 0)
		return -EBUSY;
	i = u->free;
	u->free = u->slots[i].next;
	u->slots[i].req = r;
	u->slots[i].done = 0;
	r->result = 0;
	push(u, queue_of(u, r), i, false);
	return 0;
}

static bool start_read(struct uring_reader *u, int i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	struct slot *sl = &u->slots[i];
	struct fl_source_req *r = sl->req;
	uint64_t left = r->len - sl->done, pos;
	int fd;

	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
		if (!sqe)
			return false;
	}
	fd = u->hooks->locate(u->src, r->region, r->offset + sl->done, &pos);
	io_uring_prep_read(sqe, fd, (char *)r->buf + sl->done,
			   left < READ_MAX ? (unsigned)left : READ_MAX, pos);
	io_uring_sqe_set_data64(sqe, (uint64_t)i);
	u->inflight++;
	if (!r->urgent)
		u->bg_inflight++;
	return true;
}

int uring_reader_flush(struct uring_reader *u)
{
	int i, ret;

	while ((i = pop(u, &u->urgent)) >= 0)
		if (!start_read(u, i)) {
			push(u, &u->urgent, i, true);
			break;
		}
	while (u->bg_inflight < u->bg_max && (i = pop(u, &u->background)) >= 0)
		if (!start_read(u, i)) {
			push(u, &u->background, i, true);
			break;
		}
	u->bg_held = u->background.head >= 0;
	ret = io_uring_submit(&u->ring);
	return ret < 0 ? ret : 0;
}

int uring_reader_reap(struct uring_reader *u, fl_source_done_fn done, void *arg)
{
	const struct uring_reader_hooks *h = u->hooks;
	struct io_uring_cqe *cqe;
	uint64_t count;
	bool requeued = false;
	int n = 0;

	/* Drain first: a completion posted after this read re-arms it. */
	if (read(u->src->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return -errno;
	while (!io_uring_peek_cqe(&u->ring, &cqe)) {
		int i = (int)io_uring_cqe_get_data64(cqe), res = cqe->res;
		struct slot *sl = &u->slots[i];
		struct fl_source_req *r = sl->req;

		io_uring_cqe_seen(&u->ring, cqe);
		u->inflight--;
		if (!r->urgent)
			u->bg_inflight--;
		if (res > 0)
			sl->done += (unsigned)res;
		if (res == -EAGAIN || res == -EINTR || (res > 0 && sl->done < r->len)) {
			/* Retry, or a short read: go on from there. */
			push(u, queue_of(u, r), i, true);
			requeued = true;
			continue;
		}
		if (res > 0) {
			r->result = h->check ? h->check(u->src, r, u->err, sizeof(u->err)) : 0;
		} else {
			r->result = res ? res : -EIO;
			h->read_failed(u->src, r, sl->done, res, u->err, sizeof(u->err));
		}
		u->finished[n++] = r;
		sl->req = NULL;
		sl->next = u->free;
		u->free = i;
	}
	if (requeued || u->bg_held) {
		int ret = uring_reader_flush(u);

		if (ret < 0)
			return ret;
	}
	/* Slots are free before done() runs: it may submit and flush again
	 * (but not reap: finished[] is in use). */
	for (int k = 0; k < n; k++)
		done(u->finished[k], arg);
	return n;
}

const char *uring_reader_error(const struct uring_reader *u)
{
	return u ? u->err : "";
}

void uring_reader_destroy(struct uring_reader *u)
{
	if (!u)
		return;
	if (u->ring_ok) {
		/* The kernel may still be writing into callers' buffers. */
		while (u->inflight) {
			struct io_uring_cqe *cqe;

			if (io_uring_wait_cqe(&u->ring, &cqe))
				break;
			io_uring_cqe_seen(&u->ring, cqe);
			u->inflight--;
		}
		io_uring_queue_exit(&u->ring);
	}
	if (u->src->event_fd >= 0)
		close(u->src->event_fd);
	u->src->event_fd = -1;
	free(u->slots);
	free(u->finished);
	free(u);
}

int uring_reader_create(struct uring_reader **out, struct fl_source *s,
			const struct uring_reader_hooks *hooks, unsigned depth,
			unsigned bg_max, char *err, size_t errlen)
{
	struct uring_reader *u;
	int ret;

	*out = NULL;
	s->event_fd = -1;
	if (!depth || depth > DEPTH_MAX || !bg_max)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		goto oom;
	u->src = s;
	u->hooks = hooks;
	u->depth = depth;
	u->bg_max = bg_max;
	u->urgent.head = u->urgent.tail = -1;
	u->background.head = u->background.tail = -1;
	u->slots = calloc(depth, sizeof(*u->slots));
	u->finished = calloc(depth, sizeof(*u->finished));
	if (!u->slots || !u->finished)
		goto oom;
	for (unsigned i = 0; i < depth; i++)
		u->slots[i].next = i + 1 < depth ? (int)i + 1 : -1;
	u->free = 0;
	/* One SQE per slot at most: the rings can never overflow. */
	ret = io_uring_queue_init(depth, &u->ring, 0);
	if (ret) {
		if (err)
			snprintf(err, errlen, "cannot set up io_uring: %s", strerror(-ret));
		goto fail;
	}
	u->ring_ok = true;
	s->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->event_fd < 0) {
		ret = -errno;
		if (err)
			snprintf(err, errlen, "eventfd: %s", strerror(-ret));
		goto fail;
	}
	ret = io_uring_register_eventfd(&u->ring, s->event_fd);
	if (ret) {
		if (err)
			snprintf(err, errlen, "cannot register an eventfd with io_uring: %s",
				 strerror(-ret));
		goto fail;
	}
	*out = u;
	return 0;
oom:
	ret = -ENOMEM;
	if (err)
		snprintf(err, errlen, "out of memory");
fail:
	uring_reader_destroy(u);
	return ret;
}
