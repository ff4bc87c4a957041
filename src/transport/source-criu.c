// SPDX-License-Identifier: MIT
/*
 * The CRIU image set as a page source. Region i is lazy range i of
 * criu-lazy.c. Local bytes are read from their pages-*.img at flush into
 * a pre-touched arena (buf-arena.h) and handed back at reap by reference,
 * like every source's; remote ones come from the dump's page server. Nothing here knows
 * processes: a range is asked for by its region, and the pid and dump-time
 * address it stands for are the page server's business only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf-arena.h"
#include "criu-page-client.h"
#include "source-criu.h"
#include "source-internal.h"

#define QUEUE_MAX 4096
#define MAX_REQ (16u << 20)
/* Local reads land here: one request of MAX_REQ always fits. 1 GiB from
 * local images into a program here, UFFDIO_COPY in 512 KiB pieces: median
 * 0.32 s from this arena (pread first) against 0.62 s from a mapping of
 * the image, whose every page this process touched for the first time. */
#define ARENA_BYTES MAX_REQ

struct criu_source {
	struct fl_source base;
	struct criu_lazy *lazy;
	struct fl_region *regions;
	int *fds; /* per file */
	struct buf_arena arena;
	/* Local reads flushed while the arena was full: started as buffers
	 * come back. */
	struct fl_source_req *waiting[QUEUE_MAX];
	size_t nwaiting;
	struct criu_pclient *pc;
	struct fl_source_req *queued[QUEUE_MAX]; /* submitted, not flushed */
	size_t nqueued;
	struct fl_source_req *done[QUEUE_MAX]; /* local ones, flushed */
	size_t ndone;
	/* Background reads wait here until the restore has finished: before
	 * that a process's ranges may not be registered yet (CRIU sends the
	 * fd before its restorer registers them). Faults go at once. */
	struct fl_source_req *held[QUEUE_MAX];
	size_t nheld;
	bool background;
	char error[256];
};

static struct criu_source *cs(struct fl_source *s)
{
	return (struct criu_source *)s;
}

static int criu_submit(struct fl_source *s, struct fl_source_req *r)
{
	struct criu_source *c = cs(s);
	int ret = source_req_check(s, r);

	if (ret)
		return ret;
	if (r->len > s->max_req)
		return -E2BIG;
	if (c->nqueued + c->ndone + c->nheld + c->nwaiting >= QUEUE_MAX)
		return -EBUSY;
	r->result = 0;
	r->data = NULL;
	r->movable = false;
	r->unasked = false;
	r->priv = 0;
	c->queued[c->nqueued++] = r;
	return 0;
}

/* A local read, into the arena: true once done (or failed), false when
 * the arena has no room for it yet. */
static bool read_local(struct criu_source *c, struct fl_source_req *r)
{
	const struct criu_range *g = &c->lazy->ranges[r->region];
	const struct criu_file *f = &c->lazy->files[g->file];
	char *buf = fl__arena_get(&c->arena, r->len);
	size_t got = 0;

	if (!buf)
		return false;
	while (got < r->len) {
		ssize_t n = pread(c->fds[g->file], buf + got, r->len - got,
				  (off_t)(g->file_off + r->offset + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			snprintf(c->error, sizeof(c->error), "%s: reading %llu bytes at %llu: %s",
				 f->path, (unsigned long long)r->len,
				 (unsigned long long)(g->file_off + r->offset),
				 n < 0 ? strerror(e) : "the file ends before them (truncated since "
				 "it was checked?)");
			fl__arena_put(&c->arena, buf, r->len);
			r->result = -e;
			c->done[c->ndone++] = r;
			return true;
		}
		got += (size_t)n;
	}
	r->data = buf;
	r->priv = 1; /* an arena buffer until release */
	c->done[c->ndone++] = r;
	return true;
}

/* 1: done now (local); 0: in flight or waiting for room; <0: failed. */
static int start(struct criu_source *c, struct fl_source_req *r)
{
	const struct criu_range *g = &c->lazy->ranges[r->region];

	if (g->file >= 0) {
		if (read_local(c, r))
			return 1;
		c->waiting[c->nwaiting++] = r;
		return 0;
	}
	return fl__criu_pclient_submit(c->pc, r, g->pid, g->vaddr + r->offset);
}

/* Local reads that waited for room: urgent ones first, each in order. */
static void start_waiting(struct criu_source *c)
{
	uint64_t one = 1;
	size_t kept = 0, before = c->ndone;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < c->nwaiting; i++) {
			struct fl_source_req *r = c->waiting[i];

			if (!r || r->urgent != (pass == 0))
				continue;
			if (!read_local(c, r))
				break;
			c->waiting[i] = NULL;
		}
	for (size_t i = 0; i < c->nwaiting; i++)
		if (c->waiting[i])
			c->waiting[kept++] = c->waiting[i];
	c->nwaiting = kept;
	if (c->ndone > before)
		(void)!write(c->base.event_fd, &one, sizeof(one));
}

static int criu_flush(struct fl_source *s)
{
	struct criu_source *c = cs(s);
	uint64_t one = 1;
	bool local = false;
	int ret = 0;

	/* Urgent first: over the page server, a GET sent now is answered
	 * before every GET sent after it. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < c->nqueued; i++) {
			struct fl_source_req *r = c->queued[i];
			int k;

			if (!r || r->urgent != (pass == 0))
				continue;
			c->queued[i] = NULL;
			if (!r->urgent && !c->background) {
				c->held[c->nheld++] = r;
				continue;
			}
			k = start(c, r);
			if (k < 0) {
				/* The connection is gone: the request fails, as it
				 * would have in flight. */
				r->result = k;
				c->done[c->ndone++] = r;
				k = 1;
				ret = 0;
			}
			local |= k == 1;
		}
	c->nqueued = 0;
	if (local)
		(void)!write(s->event_fd, &one, sizeof(one));
	return ret;
}

static int criu_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct criu_source *c = cs(s);
	struct fl_source_req *out[QUEUE_MAX];
	uint64_t v, one = 1;
	size_t n;

	(void)!read(s->event_fd, &v, sizeof(v));
	if (c->pc)
		c->ndone += fl__criu_pclient_take(c->pc, c->done + c->ndone, QUEUE_MAX - c->ndone);
	n = fl__take_fault_first(c->done, &c->ndone, out, FL_REAP_BG_BYTES);
	if (c->ndone)
		(void)!write(s->event_fd, &one, sizeof(one)); /* the rest, next time */
	for (size_t i = 0; i < n; i++)
		done(out[i], arg);
	return (int)n;
}

static void criu_release(struct fl_source *s, struct fl_source_req *r);

static int criu_cancel(struct fl_source *s, struct fl_source_req *r)
{
	struct criu_source *c = cs(s);

	if (fl__req_list_remove(c->done, &c->ndone, r)) {
		criu_release(s, r);
		return 0;
	}
	if (fl__req_list_remove(c->queued, &c->nqueued, r) || fl__req_list_remove(c->held, &c->nheld, r) ||
	    fl__req_list_remove(c->waiting, &c->nwaiting, r))
		return 0;
	return c->pc ? fl__criu_pclient_cancel(c->pc, r) : -ENOENT;
}

static void criu_release(struct fl_source *s, struct fl_source_req *r)
{
	struct criu_source *c = cs(s);

	if (c->lazy->ranges[r->region].file < 0) {
		if (c->pc)
			fl__criu_pclient_release(c->pc, r);
	} else if (r->priv == 1) {
		fl__arena_put(&c->arena, r->data, r->len);
		r->priv = 0;
		if (c->nwaiting)
			start_waiting(c);
	}
	r->data = NULL;
}

static int64_t criu_zero_run(struct fl_source *s, uint32_t region, uint64_t offset,
			     uint64_t max)
{
	(void)offset;
	(void)max;
	/* Every range is lazy pages CRIU saw with data: never zeros. Pages
	 * CRIU never saw are outside every range, and the monitor maps them
	 * as new memory (zeros) at their fault. */
	return region < s->nregions ? 0 : -ERANGE;
}

static void criu_destroy(struct fl_source *s)
{
	struct criu_source *c = cs(s);

	fl__criu_pclient_destroy(c->pc);
	for (size_t i = 0; c->lazy && c->fds && i < c->lazy->nfiles; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	fl__arena_free(&c->arena);
	if (s->event_fd >= 0)
		close(s->event_fd);
	fl__criu_lazy_free(c->lazy);
	free(c->fds);
	free(c->regions);
	free(c);
}

static const struct fl_source_ops criu_ops = {
	.submit = criu_submit,
	.flush = criu_flush,
	.reap = criu_reap,
	.cancel = criu_cancel,
	.release = criu_release,
	.zero_run = criu_zero_run,
	.destroy = criu_destroy,
};

/* Each pages file the lazy ranges need, open for the whole restore: a
 * restore may drop the right to open files once its images are read. */
static int open_files(struct criu_source *c, char *err, size_t errlen)
{
	const struct criu_lazy *l = c->lazy;
	bool any = false;

	c->fds = malloc((l->nfiles ? l->nfiles : 1) * sizeof(*c->fds));
	if (!c->fds)
		return -ENOMEM;
	for (size_t i = 0; i < l->nfiles; i++)
		c->fds[i] = -1;
	for (size_t i = 0; i < l->nfiles; i++) {
		if (!l->files[i].need)
			continue;
		c->fds[i] = open(l->files[i].path, O_RDONLY | O_CLOEXEC);
		if (c->fds[i] < 0) {
			int e = errno;

			snprintf(err, errlen, "%s: %s", l->files[i].path, strerror(e));
			return -e;
		}
		any = true;
	}
	return any ? fl__arena_init(&c->arena, ARENA_BYTES) : 0;
}

int fl__criu_source_create(struct fl_source **out, const struct fl_criu_source_opts *o,
			   char *err, size_t errlen)
{
	struct criu_source *c = calloc(1, sizeof(*c));
	int ret;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->base.ops = &criu_ops;
	c->base.kind = o->ps_addr ? "criu-page-server" : "criu-images";
	c->base.max_req = MAX_REQ;
	c->base.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->base.event_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ret = fl__criu_lazy_load(&c->lazy, o->images_dir, o->ps_addr != NULL, err, errlen);
	if (ret)
		goto fail;
	c->regions = calloc(c->lazy->nranges ? c->lazy->nranges : 1, sizeof(*c->regions));
	if (!c->regions) {
		ret = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < c->lazy->nranges; i++) {
		const struct criu_range *g = &c->lazy->ranges[i];

		c->regions[i] = (struct fl_region){ .start = g->vaddr, .len = g->len,
						    .page_size = 4096 };
		snprintf(c->regions[i].name, sizeof(c->regions[i].name), "pid %d %#llx",
			 g->pid, (unsigned long long)g->vaddr);
	}
	c->base.regions = c->regions;
	c->base.nregions = c->lazy->nranges;
	if ((ret = open_files(c, err, errlen)))
		goto fail;
	if (o->images_read && (ret = o->images_read(o->arg, err, errlen)))
		goto fail;
	if (o->ps_addr) {
		ret = fl__criu_pclient_create(&c->pc, o->ps_addr, o->ps_port, c->base.event_fd,
					      err, errlen);
		if (ret)
			goto fail;
	}
	*out = &c->base;
	return 0;
fail:
	if (ret == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	criu_destroy(&c->base);
	return ret;
}

void fl__criu_source_start_background(struct fl_source *s)
{
	struct criu_source *c = cs(s);

	if (c->background)
		return;
	c->background = true;
	/* From now on every read goes to the page server when flushed, and it
	 * answers in order; before, a held background read would never come
	 * while the restore waits for a fault's page, so faults must hurry. */
	c->base.in_order = c->pc != NULL;
	memcpy(c->queued + c->nqueued, c->held, c->nheld * sizeof(c->held[0]));
	c->nqueued += c->nheld;
	c->nheld = 0;
	criu_flush(s);
}

const struct criu_lazy *fl__criu_source_lazy(const struct fl_source *s)
{
	return ((const struct criu_source *)s)->lazy;
}

int fl__criu_source_finish(struct fl_source *s, char *err, size_t errlen)
{
	struct criu_source *c = cs(s);

	return c->pc ? fl__criu_pclient_close(c->pc, err, errlen) : 0;
}

const char *fl__criu_source_error(const struct fl_source *s)
{
	const struct criu_source *c = (const struct criu_source *)s;

	return c->pc ? fl__criu_pclient_error(c->pc) : c->error;
}
