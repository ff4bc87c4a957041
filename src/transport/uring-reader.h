/* SPDX-License-Identifier: MIT */
/*
 * A batched io_uring reader of page requests (struct fl_source_req) from
 * files: the engine under the file-backed page sources (source-snapshot.c,
 * source-rawfile.c). It queues, orders, submits, retries and completes
 * reads; the source says where a region's bytes are in which file and what
 * a finished read still needs (the snapshot checks checksums).
 */
#ifndef FL_URING_READER_H
#define FL_URING_READER_H

#include <stddef.h>
#include <stdint.h>

#include <faultline/source.h>

struct uring_reader;

struct uring_reader_hooks {
	/* The fd holding byte `offset` of region, and that byte's position
	 * in it. Called for every SQE, so cheap. */
	int (*locate)(struct fl_source *s, uint32_t region, uint64_t offset,
		      uint64_t *pos);
	/* r's bytes are all in r->data: 0, or -errno with err saying why.
	 * NULL: a full read is good as it is. */
	int (*check)(struct fl_source *s, const struct fl_source_req *r,
		     char *err, size_t errlen);
	/* Describe a failed read of r at byte `done` of it, naming the
	 * source: res is -errno, or 0 when the file ended early. */
	void (*read_failed)(struct fl_source *s, const struct fl_source_req *r,
			    uint64_t done, int res, char *err, size_t errlen);
};

/* A reader for source s (its regions bound submit()), queueing up to depth
 * requests with at most bg_max background reads in the kernel at once,
 * each of at most s->max_req bytes (set it first). Sets s->event_fd. On failure -errno, and err (if not NULL) says which
 * step failed. */
int fl__uring_reader_create(struct uring_reader **out, struct fl_source *s,
			const struct uring_reader_hooks *hooks, unsigned depth,
			unsigned bg_max, char *err, size_t errlen);

/* The fl_source_ops of the same names, for s's reader. */
int fl__uring_reader_submit(struct uring_reader *u, struct fl_source_req *r);
int fl__uring_reader_flush(struct uring_reader *u);
int fl__uring_reader_reap(struct uring_reader *u, fl_source_done_fn done, void *arg);
int fl__uring_reader_cancel(struct uring_reader *u, struct fl_source_req *r);
void fl__uring_reader_release(struct uring_reader *u, struct fl_source_req *r);

/* The last read error ("" if none). */
const char *fl__uring_reader_error(const struct uring_reader *u);

/* Waits for the reads in flight (into its own buffers), then frees everything and closes the
 * eventfd. NULL is fine. */
void fl__uring_reader_destroy(struct uring_reader *u);

#endif
