// SPDX-License-Identifier: MIT
/*
 * The raw-file page source: guest memory as a VMM writes it (Firecracker's
 * memory snapshot), regions at known offsets of one plain file, no
 * manifest, no checksums. Read with io_uring like the snapshot source
 * (source-snapshot.c): urgent reads enter the ring before any background
 * read, and at most `bg_max` background reads are in the kernel at once.
 *
 * Zeros: the file's holes are found once at open with SEEK_DATA/SEEK_HOLE
 * and kept as a bitmap of 4 KiB blocks that hold data; zero_run() answers
 * from it without a system call, and the monitor maps those runs with
 * UFFDIO_ZEROPAGE without reading them.
 *
 * Short files: a region that does not fit in the file is refused at open.
 * Serving it anyway would install zeros for pages the program owns (a read
 * past EOF returns 0 bytes, a missing page would be "a hole"). For the same
 * reason a read that comes back short (the file shrank after open) fails
 * the request with -EIO instead of padding it.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faultline/source.h>

#define BLOCK 4096u
#define READ_MAX (1u << 30) /* one SQE reads at most this (its length is 32-bit) */
#define DEPTH 256u
#define BG_MAX 16u

struct slot {
	struct fl_source_req *req;
	uint64_t done; /* bytes read so far */
	int next;      /* in a queue, or the free list; -1 ends */
};

struct queue {
	int head, tail;
};

struct raw_source {
	struct fl_source base;
	char *path;
	int fd;
	uint64_t file_size;
	struct fl_region *regions;
	uint64_t *file_offset;
	uint64_t *first_block;	/* each region's first bit in data_map */
	uint64_t *data_map;	/* 1 = the 4 KiB block holds data */
	struct io_uring ring;
	bool ring_ok;
	unsigned bg_inflight, inflight;
	struct slot slots[DEPTH];
	int free;
	struct queue urgent, background;
	bool bg_held;
	struct fl_source_req *finished[DEPTH];
	char err[512];
};

static struct raw_source *rs(struct fl_source *s)
{
	return (struct raw_source *)s;
}

static void set_bits(uint64_t *map, uint64_t from, uint64_t to)
{
	for (uint64_t b = from; b < to; b++)
		map[b / 64] |= 1ull << (b % 64);
}

static void push(struct raw_source *m, struct queue *q, int i, bool front)
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

static int pop(struct raw_source *m, struct queue *q)
{
	int i = q->head;

	if (i >= 0) {
		q->head = m->slots[i].next;
		if (q->head < 0)
			q->tail = -1;
	}
	return i;
}

static int raw_submit(struct fl_source *s, struct fl_source_req *r)
{
	struct raw_source *m = rs(s);
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

static bool start_read(struct raw_source *m, int i)
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
	io_uring_prep_read(sqe, m->fd, (char *)r->buf + sl->done,
			   left < READ_MAX ? (unsigned)left : READ_MAX,
			   m->file_offset[r->region] + r->offset + sl->done);
	io_uring_sqe_set_data64(sqe, (uint64_t)i);
	m->inflight++;
	if (!r->urgent)
		m->bg_inflight++;
	return true;
}

static int raw_flush(struct fl_source *s)
{
	struct raw_source *m = rs(s);
	int i, ret;

	while ((i = pop(m, &m->urgent)) >= 0)
		if (!start_read(m, i)) {
			push(m, &m->urgent, i, true);
			break;
		}
	while (m->bg_inflight < BG_MAX && (i = pop(m, &m->background)) >= 0)
		if (!start_read(m, i)) {
			push(m, &m->background, i, true);
			break;
		}
	m->bg_held = m->background.head >= 0;
	ret = io_uring_submit(&m->ring);
	return ret < 0 ? ret : 0;
}

static int raw_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct raw_source *m = rs(s);
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

		io_uring_cqe_seen(&m->ring, cqe);
		m->inflight--;
		if (!r->urgent)
			m->bg_inflight--;
		if (res == -EAGAIN || res == -EINTR || (res > 0 && sl->done + (unsigned)res < r->len)) {
			if (res > 0) /* short read: go on from there */
				sl->done += (unsigned)res;
			push(m, r->urgent ? &m->urgent : &m->background, i, true);
			requeued = true;
			continue;
		}
		if (res > 0) {
			r->result = 0;
		} else {
			r->result = res ? res : -EIO;
			snprintf(m->err, sizeof(m->err),
				 "memory file %s: reading region %u (%s) at file offset %llu: %s",
				 m->path, r->region, s->regions[r->region].name,
				 (unsigned long long)(m->file_offset[r->region] + r->offset + sl->done),
				 res ? strerror(-res)
				     : "the file ended early (it shrank after it was opened)");
		}
		m->finished[n++] = r;
		sl->req = NULL;
		sl->next = m->free;
		m->free = i;
	}
	if (requeued || m->bg_held) {
		int ret = raw_flush(s);

		if (ret < 0)
			return ret;
	}
	/* Slots are free before done() runs: it may submit and flush again. */
	for (int k = 0; k < n; k++)
		done(m->finished[k], arg);
	return n;
}

static int64_t raw_zero_run(struct fl_source *s, uint32_t region, uint64_t offset,
			    uint64_t max)
{
	struct raw_source *m = rs(s);
	const struct fl_region *g;
	uint64_t b, end, first;

	if (region >= s->nregions)
		return -ERANGE;
	g = &s->regions[region];
	if (offset >= g->len)
		return 0;
	if (max > g->len - offset)
		max = g->len - offset;
	first = m->first_block[region];
	b = first + offset / BLOCK;
	end = first + (offset + max) / BLOCK;
	while (b < end) {
		uint64_t word = m->data_map[b / 64] >> (b % 64);

		if (word) {
			b += __builtin_ctzll(word);
			break;
		}
		b += 64 - b % 64;
	}
	if (b > end)
		b = end;
	/* In whole pages of the region, from the start of offset's block. */
	b = (b - first) * BLOCK;
	offset &= ~(uint64_t)(BLOCK - 1);
	return (int64_t)((b - offset) & ~(uint64_t)(g->page_size - 1));
}

static void raw_destroy(struct fl_source *s)
{
	struct raw_source *m = rs(s);

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
	if (m->fd >= 0)
		close(m->fd);
	free(m->path);
	free(m->regions);
	free(m->file_offset);
	free(m->first_block);
	free(m->data_map);
	free(m);
}

static const struct fl_source_ops rawfile_ops = {
	.submit = raw_submit,
	.flush = raw_flush,
	.reap = raw_reap,
	.zero_run = raw_zero_run,
	.destroy = raw_destroy,
};

/* Each region in bounds of the file, aligned, with a page size we serve. */
static int check_regions(struct raw_source *m, char *err, size_t errlen)
{
	for (size_t i = 0; i < m->base.nregions; i++) {
		const struct fl_region *g = &m->regions[i];
		uint64_t off = m->file_offset[i];

		if (g->page_size != 4096 && g->page_size != (2u << 20)) {
			snprintf(err, errlen, "memory file %s: region %zu (%s): page size %u "
				 "(4096 or 2097152 expected)", m->path, i, g->name, g->page_size);
			return -EINVAL;
		}
		if (!g->len || g->len % g->page_size || off % BLOCK) {
			snprintf(err, errlen, "memory file %s: region %zu (%s): %llu bytes at "
				 "file offset %llu: the size must be a non-zero multiple of the "
				 "%u-byte page and the offset 4 KiB aligned", m->path, i, g->name,
				 (unsigned long long)g->len, (unsigned long long)off, g->page_size);
			return -EINVAL;
		}
		if (off > m->file_size || g->len > m->file_size - off) {
			snprintf(err, errlen, "memory file %s: region %zu (%s) needs bytes "
				 "%llu..%llu but the file has only %llu bytes: it was truncated, "
				 "or it is not the memory file of this snapshot",
				 m->path, i, g->name, (unsigned long long)off,
				 (unsigned long long)(off + g->len), (unsigned long long)m->file_size);
			return -ERANGE;
		}
	}
	return 0;
}

/* Find each region's data extents once, so zero_run() needs no lseek. */
static int map_data(struct raw_source *m, char *err, size_t errlen)
{
	uint64_t blocks = 0;

	for (size_t i = 0; i < m->base.nregions; i++) {
		m->first_block[i] = blocks;
		blocks += m->regions[i].len / BLOCK;
	}
	m->data_map = calloc(blocks / 64 + 1, sizeof(uint64_t));
	if (!m->data_map)
		return -ENOMEM;
	for (size_t i = 0; i < m->base.nregions; i++) {
		uint64_t off = m->file_offset[i], end = off + m->regions[i].len;
		off_t pos = (off_t)off;

		while ((uint64_t)pos < end) {
			off_t d = lseek(m->fd, pos, SEEK_DATA), h;

			if (d < 0 && errno == ENXIO)
				break; /* holes to the end of the file */
			if (d < 0)
				goto io_err;
			if ((uint64_t)d >= end)
				break;
			h = lseek(m->fd, d, SEEK_HOLE);
			if (h < 0)
				goto io_err;
			if ((uint64_t)h > end)
				h = (off_t)end;
			/* A block that is partly data is data. */
			set_bits(m->data_map, m->first_block[i] + ((uint64_t)d - off) / BLOCK,
				 m->first_block[i] + ((uint64_t)h - off + BLOCK - 1) / BLOCK);
			pos = h;
		}
	}
	return 0;
io_err: {
	int e = errno;

	snprintf(err, errlen, "memory file %s: cannot find its holes (SEEK_DATA): %s",
		 m->path, strerror(e));
	return -e;
}
}

int fl_source_rawfile_create(struct fl_source **out, const char *path,
			     const struct fl_region *regions, const uint64_t *file_offset,
			     size_t n, char *err, size_t errlen)
{
	struct raw_source *m = calloc(1, sizeof(*m));
	struct stat st;
	int ret;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->base.ops = &rawfile_ops;
	m->base.kind = "memory-file";
	m->base.event_fd = -1;
	m->fd = -1;
	m->path = strdup(path);
	m->regions = calloc(n ? n : 1, sizeof(*m->regions));
	m->file_offset = calloc(n ? n : 1, sizeof(*m->file_offset));
	m->first_block = calloc(n ? n : 1, sizeof(*m->first_block));
	if (!m->path || !m->regions || !m->file_offset || !m->first_block) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (!n) {
		snprintf(err, errlen, "memory file %s: no regions to serve", path);
		ret = -EINVAL;
		goto fail;
	}
	memcpy(m->regions, regions, n * sizeof(*regions));
	memcpy(m->file_offset, file_offset, n * sizeof(*file_offset));
	m->base.regions = m->regions;
	m->base.nregions = n;
	m->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m->fd < 0 || fstat(m->fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open memory file %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "memory file %s is not a regular file", path);
		ret = -EINVAL;
		goto fail;
	}
	m->file_size = (uint64_t)st.st_size;
	ret = check_regions(m, err, errlen);
	if (ret)
		goto fail;
	ret = map_data(m, err, errlen);
	if (ret)
		goto fail;
	m->urgent.head = m->urgent.tail = -1;
	m->background.head = m->background.tail = -1;
	for (unsigned i = 0; i < DEPTH; i++)
		m->slots[i].next = i + 1 < DEPTH ? (int)i + 1 : -1;
	m->free = 0;
	/* One SQE per slot at most: the rings can never overflow. */
	ret = io_uring_queue_init(DEPTH, &m->ring, 0);
	if (ret) {
		snprintf(err, errlen, "cannot set up io_uring: %s", strerror(-ret));
		goto fail;
	}
	m->ring_ok = true;
	m->base.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->base.event_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = io_uring_register_eventfd(&m->ring, m->base.event_fd);
	if (ret) {
		snprintf(err, errlen, "cannot register an eventfd with io_uring: %s",
			 strerror(-ret));
		goto fail;
	}
	*out = &m->base;
	return 0;
fail:
	raw_destroy(&m->base);
	return ret;
}

const char *fl_source_rawfile_error(const struct fl_source *s)
{
	if (!s || s->ops != &rawfile_ops)
		return "";
	return ((const struct raw_source *)s)->err;
}

uint64_t fl_source_rawfile_size(const struct fl_source *s)
{
	if (!s || s->ops != &rawfile_ops)
		return 0;
	return ((const struct raw_source *)s)->file_size;
}
