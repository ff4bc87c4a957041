// SPDX-License-Identifier: MIT
/*
 * The CRIU image set as a page source. Region i is lazy range i of
 * criu-lazy.c. Local bytes come by reference from a read-only mapping of
 * their pages-*.img (completed at flush, handed back at reap, like every
 * source); remote ones from the dump's page server. Nothing here knows
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

#include "criu-page-client.h"
#include "source-criu.h"
#include "source-internal.h"

#define QUEUE_MAX 4096
#define MAX_REQ (16u << 20)

struct criu_source {
	struct fl_source base;
	struct criu_lazy *lazy;
	struct fl_region *regions;
	void **maps; /* per file */
	size_t *map_len;
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
	if (c->nqueued + c->ndone + c->nheld >= QUEUE_MAX)
		return -EBUSY;
	r->result = 0;
	r->data = NULL;
	r->movable = false;
	r->unasked = false;
	r->priv = 0;
	c->queued[c->nqueued++] = r;
	return 0;
}

static int start(struct criu_source *c, struct fl_source_req *r)
{
	const struct criu_range *g = &c->lazy->ranges[r->region];

	if (g->file >= 0) {
		r->data = (const char *)c->maps[g->file] + g->file_off + r->offset;
		c->done[c->ndone++] = r;
		return 1;
	}
	return fl__criu_pclient_submit(c->pc, r, g->pid, g->vaddr + r->offset);
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
	size_t n;
	uint64_t v;

	(void)!read(s->event_fd, &v, sizeof(v));
	memcpy(out, c->done, c->ndone * sizeof(out[0]));
	n = c->ndone;
	c->ndone = 0;
	if (c->pc)
		n += fl__criu_pclient_take(c->pc, out + n, QUEUE_MAX - n);
	for (size_t i = 0; i < n; i++)
		done(out[i], arg);
	return (int)n;
}

static bool drop(struct fl_source_req **list, size_t *n, struct fl_source_req *r)
{
	for (size_t i = 0; i < *n; i++)
		if (list[i] == r) {
			memmove(&list[i], &list[i + 1], (*n - i - 1) * sizeof(list[0]));
			(*n)--;
			return true;
		}
	return false;
}

static int criu_cancel(struct fl_source *s, struct fl_source_req *r)
{
	struct criu_source *c = cs(s);

	if (drop(c->queued, &c->nqueued, r) || drop(c->done, &c->ndone, r) ||
	    drop(c->held, &c->nheld, r))
		return 0;
	return c->pc ? fl__criu_pclient_cancel(c->pc, r) : -ENOENT;
}

static void criu_release(struct fl_source *s, struct fl_source_req *r)
{
	struct criu_source *c = cs(s);

	if (c->pc && c->lazy->ranges[r->region].file < 0)
		fl__criu_pclient_release(c->pc, r);
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
	for (size_t i = 0; c->lazy && c->maps && i < c->lazy->nfiles; i++)
		if (c->maps[i] && c->maps[i] != MAP_FAILED)
			munmap(c->maps[i], c->map_len[i]);
	if (s->event_fd >= 0)
		close(s->event_fd);
	fl__criu_lazy_free(c->lazy);
	free(c->maps);
	free(c->map_len);
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

static int map_files(struct criu_source *c, char *err, size_t errlen)
{
	const struct criu_lazy *l = c->lazy;

	c->maps = calloc(l->nfiles ? l->nfiles : 1, sizeof(*c->maps));
	c->map_len = calloc(l->nfiles ? l->nfiles : 1, sizeof(*c->map_len));
	if (!c->maps || !c->map_len)
		return -ENOMEM;
	for (size_t i = 0; i < l->nfiles; i++) {
		int fd, e;

		if (!l->files[i].need)
			continue;
		fd = open(l->files[i].path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			e = errno;
			snprintf(err, errlen, "%s: %s", l->files[i].path, strerror(e));
			return -e;
		}
		c->map_len[i] = l->files[i].need;
		/* Populated now, before any restore: every UFFDIO_COPY from
		 * here would otherwise take a minor fault per page in this
		 * process, on the fault path. */
		c->maps[i] = mmap(NULL, c->map_len[i], PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
		e = errno;
		close(fd);
		if (c->maps[i] == MAP_FAILED) {
			snprintf(err, errlen, "mapping %s: %s", l->files[i].path, strerror(e));
			return -e;
		}
	}
	return 0;
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
	if ((ret = map_files(c, err, errlen)))
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
