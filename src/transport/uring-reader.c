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
 * Buffers: the reader owns one buffer per slot (max_req bytes of private
 * anonymous memory, reserved lazily), reads into it, and hands it back by
 * reference with the completion; the slot stays taken until release(), so
 * a caller installs straight from it. Its pages are offered for moving
 * away (UFFDIO_MOVE) only when FAULTLINE_MOVE is set: a moved-out buffer
 * is fresh memory at its next read, and on these machines the first touch
 * of fresh memory costs more than the copy MOVE saves. bench's lazy
 * restore, in-process, same run: 1 GiB all present in 4.10 s moving
 * (0.26 GB/s, fault p99 31 ms) against 0.45 s copying from the reused
 * buffers (2.39 GB/s, p99 2.8 ms); 4 GiB 22.2 s against 1.68 s.
 *
 * Cancel: a queued read is dropped; a read in the kernel is left to finish
 * into the slot's own buffer and the slot is freed at its completion,
 * which is never handed back. Nothing else ever sees its bytes.
 *
 * Completions: an eventfd registered with the ring (the source's event_fd)
 * becomes readable when a read completes; reap() first drains the eventfd
 * and then the completion queue, so a completion that lands in between
 * re-arms it. A read that returns -EAGAIN/-EINTR, or fewer bytes than
 * asked, goes back to the front of its queue and continues from where it
 * stopped. A read that returns 0 bytes found the file shorter than at open:
 * the request fails with -EIO rather than being padded with zeros. A reap
 * hands over every urgent read done and at most FL_REAP_BG_BYTES of
 * background ones (fl__take_fault_first); the rest wait for the next
 * reap, the eventfd readable for them.
 */
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "source-internal.h"
#include "uring-reader.h"

#define READ_MAX (1u << 30) /* one SQE reads at most this (its length is 32-bit) */
#define DEPTH_MAX 32768u

/* READY: read, waiting in ready[] for a reap to hand it over. */
enum slot_state { SLOT_FREE, SLOT_QUEUED, SLOT_READING, SLOT_READY, SLOT_HANDED, SLOT_CANCELLED };

struct slot {
	struct fl_source_req *req;
	char *buf;	/* max_req bytes, the reader's own */
	uint64_t done;	/* bytes read so far */
	int next;	/* in a queue, or the free list; -1 ends */
	enum slot_state state;
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
	bool move; /* FAULTLINE_MOVE: offer read buffers for UFFDIO_MOVE */
	struct slot *slots;
	char *bufs;
	size_t bufs_len;
	int free;
	struct queue urgent, background;
	bool bg_held;	/* flushed background reads held back by bg_max */
	struct fl_source_req **finished; /* scratch for reap, depth entries */
	/* Read and not handed over yet (SLOT_READY), in completion order. */
	struct fl_source_req **ready;
	size_t nready;
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

static void slot_free(struct uring_reader *u, int i)
{
	u->slots[i].req = NULL;
	u->slots[i].state = SLOT_FREE;
	u->slots[i].next = u->free;
	u->free = i;
}

/* The next slot of q still wanted: cancelled ones are freed on the way. */
static int pop_live(struct uring_reader *u, struct queue *q)
{
	int i;

	while ((i = pop(u, q)) >= 0 && u->slots[i].state == SLOT_CANCELLED)
		slot_free(u, i);
	return i;
}

int fl__uring_reader_submit(struct uring_reader *u, struct fl_source_req *r)
{
	int i, ret = source_req_check(u->src, r);

	if (ret)
		return ret;
	if (r->len > u->src->max_req)
		return -E2BIG;
	if (u->free < 0)
		return -EBUSY;
	i = u->free;
	u->free = u->slots[i].next;
	u->slots[i].req = r;
	u->slots[i].done = 0;
	u->slots[i].state = SLOT_QUEUED;
	r->result = 0;
	r->data = NULL;
	r->movable = false;
	r->unasked = false;
	r->priv = (uint64_t)i;
	push(u, queue_of(u, r), i, false);
	return 0;
}

static struct slot *slot_of(struct uring_reader *u, const struct fl_source_req *r)
{
	if (r->priv >= u->depth || u->slots[r->priv].req != r)
		return NULL;
	return &u->slots[r->priv];
}

int fl__uring_reader_cancel(struct uring_reader *u, struct fl_source_req *r)
{
	struct slot *sl = slot_of(u, r);

	if (sl && sl->state == SLOT_READY) {
		/* Read, not handed over yet: it never will be. */
		fl__req_list_remove(u->ready, &u->nready, r);
		slot_free(u, (int)r->priv);
		return 0;
	}
	if (!sl || (sl->state != SLOT_QUEUED && sl->state != SLOT_READING))
		return -ENOENT;
	/* Queued: skipped (and freed) when popped. Reading: freed when the
	 * kernel is done with its buffer. Either way never handed back. */
	sl->state = SLOT_CANCELLED;
	return 0;
}

void fl__uring_reader_release(struct uring_reader *u, struct fl_source_req *r)
{
	struct slot *sl = slot_of(u, r);

	if (sl && sl->state == SLOT_HANDED)
		slot_free(u, (int)r->priv);
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
	io_uring_prep_read(sqe, fd, sl->buf + sl->done,
			   left < READ_MAX ? (unsigned)left : READ_MAX, pos);
	io_uring_sqe_set_data64(sqe, (uint64_t)i);
	u->inflight++;
	if (!r->urgent)
		u->bg_inflight++;
	sl->state = SLOT_READING;
	return true;
}

int fl__uring_reader_flush(struct uring_reader *u)
{
	int i, ret;

	while ((i = pop_live(u, &u->urgent)) >= 0)
		if (!start_read(u, i)) {
			push(u, &u->urgent, i, true);
			break;
		}
	while (u->bg_inflight < u->bg_max && (i = pop_live(u, &u->background)) >= 0)
		if (!start_read(u, i)) {
			push(u, &u->background, i, true);
			break;
		}
	u->bg_held = u->background.head >= 0;
	ret = io_uring_submit(&u->ring);
	return ret < 0 ? ret : 0;
}

/* Into finished[]: the ready reads a reap hands over (source-internal.h
 * says which); the rest wait in ready[], the event fd readable for them. */
static int hand_over(struct uring_reader *u)
{
	size_t n = fl__take_fault_first(u->ready, &u->nready, u->finished, FL_REAP_BG_BYTES);

	for (size_t k = 0; k < n; k++)
		u->slots[u->finished[k]->priv].state = SLOT_HANDED;
	if (u->nready) {
		uint64_t one = 1;

		(void)!write(u->src->event_fd, &one, sizeof(one));
	}
	return (int)n;
}

int fl__uring_reader_reap(struct uring_reader *u, fl_source_done_fn done, void *arg)
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
		if (sl->state == SLOT_CANCELLED) {
			slot_free(u, i);
			requeued = true; /* a background place came free */
			continue;
		}
		if (res > 0)
			sl->done += (unsigned)res;
		if (res == -EAGAIN || res == -EINTR || (res > 0 && sl->done < r->len)) {
			/* Retry, or a short read: go on from there. */
			push(u, queue_of(u, r), i, true);
			requeued = true;
			continue;
		}
		if (res > 0) {
			r->data = sl->buf;
			r->result = h->check ? h->check(u->src, r, u->err, sizeof(u->err)) : 0;
			r->movable = u->move && r->result == 0;
		} else {
			r->result = res ? res : -EIO;
			h->read_failed(u->src, r, sl->done, res, u->err, sizeof(u->err));
		}
		if (r->result)
			r->data = NULL;
		sl->state = SLOT_READY;
		u->ready[u->nready++] = r;
	}
	n = hand_over(u);
	if (requeued || u->bg_held) {
		int ret = fl__uring_reader_flush(u);

		if (ret < 0)
			return ret;
	}
	/* done() may submit and flush again, and cancel or release (but not
	 * reap: finished[] is in use). A slot stays taken until release. */
	for (int k = 0; k < n; k++)
		done(u->finished[k], arg);
	return n;
}

const char *fl__uring_reader_error(const struct uring_reader *u)
{
	return u ? u->err : "";
}

void fl__uring_reader_destroy(struct uring_reader *u)
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
	if (u->bufs)
		munmap(u->bufs, u->bufs_len);
	if (u->src->event_fd >= 0)
		close(u->src->event_fd);
	u->src->event_fd = -1;
	free(u->slots);
	free(u->finished);
	free(u->ready);
	free(u);
}

int fl__uring_reader_create(struct uring_reader **out, struct fl_source *s,
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
	u->move = getenv("FAULTLINE_MOVE") != NULL;
	u->urgent.head = u->urgent.tail = -1;
	u->background.head = u->background.tail = -1;
	u->slots = calloc(depth, sizeof(*u->slots));
	u->finished = calloc(depth, sizeof(*u->finished));
	u->ready = calloc(depth, sizeof(*u->ready));
	if (!u->slots || !u->finished || !u->ready)
		goto oom;
	/* Reserved, not committed: a slot's pages come when a read fills
	 * them, and go when the caller moves them away. */
	u->bufs_len = (size_t)depth * s->max_req;
	u->bufs = mmap(NULL, u->bufs_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (u->bufs == MAP_FAILED) {
		u->bufs = NULL;
		goto oom;
	}
	for (unsigned i = 0; i < depth; i++) {
		u->slots[i].next = i + 1 < depth ? (int)i + 1 : -1;
		u->slots[i].buf = u->bufs + (size_t)i * s->max_req;
	}
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
	fl__uring_reader_destroy(u);
	return ret;
}
