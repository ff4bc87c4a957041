// SPDX-License-Identifier: MIT
/*
 * The snapshot page source: reads from the pages file with io_uring
 * (uring-reader.c: urgent reads first, background reads capped at
 * `background_inflight`, short reads retried).
 *
 * Each finished read is checked block by block against the snapshot's
 * checksums before it is handed back; a mismatch completes the request
 * with -EBADMSG and fl_source_snapshot_error() names region and page.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot-internal.h"
#include "uring-reader.h"

struct snap_source {
	struct fl_source base;
	struct fl_snapshot *snap;
	struct uring_reader *rd;
};

static struct snap_source *ss(struct fl_source *s)
{
	return (struct snap_source *)s;
}

static int snap_locate(struct fl_source *s, uint32_t region, uint64_t offset,
		       uint64_t *pos)
{
	struct fl_snapshot *snap = ss(s)->snap;

	*pos = snap->m.where[region].file_offset + offset;
	return snap->pages_fd;
}

static int snap_check(struct fl_source *s, const struct fl_source_req *r,
		      char *err, size_t errlen)
{
	return fl__snap_check_blocks(ss(s)->snap, r->region, r->offset, r->data, r->len,
				 err, errlen);
}

static void snap_read_failed(struct fl_source *s, const struct fl_source_req *r,
			     uint64_t done, int res, char *err, size_t errlen)
{
	snprintf(err, errlen, "snapshot %s: reading region %u (%s) at offset 0x%llx: %s",
		 ss(s)->snap->dir, r->region, s->regions[r->region].name,
		 (unsigned long long)(r->offset + done),
		 res ? strerror(-res) : "the pages file ended early (it shrank after open)");
}

static const struct uring_reader_hooks snapshot_hooks = {
	.locate = snap_locate,
	.check = snap_check,
	.read_failed = snap_read_failed,
};

static int snap_submit(struct fl_source *s, struct fl_source_req *r)
{
	return fl__uring_reader_submit(ss(s)->rd, r);
}

static int snap_flush(struct fl_source *s)
{
	return fl__uring_reader_flush(ss(s)->rd);
}

static int snap_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	return fl__uring_reader_reap(ss(s)->rd, done, arg);
}

static int snap_cancel(struct fl_source *s, struct fl_source_req *r)
{
	return fl__uring_reader_cancel(ss(s)->rd, r);
}

static void snap_release(struct fl_source *s, struct fl_source_req *r)
{
	fl__uring_reader_release(ss(s)->rd, r);
}

static int64_t snap_zero_run(struct fl_source *s, uint32_t region,
			     uint64_t offset, uint64_t max)
{
	return fl_snapshot_zero_run(ss(s)->snap, region, offset, max);
}

static void snap_destroy(struct fl_source *s)
{
	fl__uring_reader_destroy(ss(s)->rd);
	free(s);
}

static const struct fl_source_ops snapshot_ops = {
	.submit = snap_submit,
	.flush = snap_flush,
	.reap = snap_reap,
	.cancel = snap_cancel,
	.release = snap_release,
	.zero_run = snap_zero_run,
	.destroy = snap_destroy,
};

int fl_source_snapshot_create(struct fl_source **out, struct fl_snapshot *snap,
			      const struct fl_source_snapshot_opts *opts)
{
	struct snap_source *m = calloc(1, sizeof(*m));
	unsigned depth = opts && opts->queue_depth ? opts->queue_depth : 256;
	unsigned bg_max = opts && opts->background_inflight ? opts->background_inflight : 16;
	int ret;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->base.ops = &snapshot_ops;
	m->base.kind = "snapshot";
	m->base.max_req = 64u << 20; /* reserved per slot, filled on use */
	m->base.regions = snap->m.regions;
	m->base.nregions = snap->m.nregions;
	m->snap = snap;
	ret = fl__uring_reader_create(&m->rd, &m->base, &snapshot_hooks, depth, bg_max,
				  NULL, 0);
	if (ret) {
		free(m);
		return ret;
	}
	*out = &m->base;
	return 0;
}

const char *fl_source_snapshot_error(const struct fl_source *s)
{
	if (!s || strcmp(s->kind, "snapshot"))
		return "";
	return fl__uring_reader_error(((const struct snap_source *)s)->rd);
}
