/* SPDX-License-Identifier: MIT */
/*
 * faultline/source.h - where pages come from.
 *
 * The monitor talks to a page source through this one small interface:
 * "give me these pages of this region, urgent or not, and tell me where
 * they are when they are here". A snapshot directory, a raw memory file, a
 * remote page server and an in-memory source are implementations; the
 * monitor never knows which one it has.
 */
#ifndef FAULTLINE_SOURCE_H
#define FAULTLINE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_REGION_NAME_MAX 64

/* One memory region of a program, as the source knows it. */
struct fl_region {
	uint64_t start;	    /* address in the program when it was saved */
	uint64_t len;	    /* bytes, a multiple of page_size */
	uint32_t page_size; /* 4096, or 2 MiB for hugetlb */
	uint32_t prot;	    /* PROT_READ | PROT_WRITE | PROT_EXEC */
	char name[FL_REGION_NAME_MAX]; /* "[heap]", a file path, "guest-ram" */
};

/*
 * One read: pages [offset, offset + len) of a region.
 *
 * The life of a request, the same for every source (the model is
 * io_uring's): the caller fills the first block and submits; from then the
 * source owns the request until it comes back, exactly once, through
 * reap(), with result set; on success `data` points at the bytes, in a
 * buffer the source owns, valid until the caller calls release(). cancel()
 * ends a request early: after it returns, no completion of it runs and its
 * bytes reach nobody. A source that has the bytes at hand (memory) still
 * completes through reap(): the caller has one code path.
 *
 * Pages that arrive without being asked for (a pushed stream) come through
 * reap() too, as requests the source allocated (`unasked` set, `cookie`
 * NULL); the caller installs them as they land and releases them like any
 * other.
 */
struct fl_source_req {
	/* Set by the caller before submit (by the source for unasked ones). */
	uint32_t region; /* index into the source's region table */
	uint64_t offset; /* byte offset in the region, page aligned */
	uint64_t len;	 /* bytes, a multiple of the region's page size */
	bool urgent;	 /* a thread is blocked on it: goes before background */
	void *cookie;	 /* the caller's */
	/* Set by the source at completion. */
	int result;	  /* 0, or -errno: no bytes (-EBADMSG checksum failure,
			     -EIO, -ECONNRESET source gone, -ETIMEDOUT) */
	const void *data; /* the bytes (result 0), until release() */
	bool movable;	  /* data is page-aligned private anonymous memory
			     owned by the source alone: the caller may take its
			     pages with UFFDIO_MOVE instead of copying them */
	bool unasked;	  /* pushed by the source: nobody submitted it */
	/* Set by the caller before release(): no process needs these bytes
	 * again (each page of the range is in place, or no longer wanted).
	 * A source that keeps a copy may then drop it. */
	bool installed;
	/* The source's own bookkeeping. */
	uint64_t priv;
};

struct fl_source;

typedef void (*fl_source_done_fn)(struct fl_source_req *req, void *arg);

struct fl_source_ops {
	/* Queue a request (not started until flush). -EBUSY: the queue is
	 * full, reap first. -ERANGE: the request is out of bounds; -E2BIG:
	 * longer than max_req. */
	int (*submit)(struct fl_source *s, struct fl_source_req *req);
	/* Start everything queued, urgent requests first. */
	int (*flush)(struct fl_source *s);
	/* Hand finished requests to done(). Returns how many, or -errno.
	 * Never blocks. A source may hand over a bounded batch (urgent ones
	 * first) and leave event_fd readable for the rest, so that faults
	 * are read between batches. done() may submit, flush, cancel and
	 * release, but not reap. */
	int (*reap)(struct fl_source *s, fl_source_done_fn done, void *arg);
	/* Withdraw a submitted request that has not been handed to done()
	 * yet: it never will be. Returns 0, or -ENOENT if it is not the
	 * source's any more (already handed back). */
	int (*cancel)(struct fl_source *s, struct fl_source_req *req);
	/* The caller is done with a completed request's data (it may have
	 * moved its pages away if `movable`). Unasked requests are freed. */
	void (*release)(struct fl_source *s, struct fl_source_req *req);
	/* Length in bytes of the run of known-zero pages (holes) starting at
	 * offset, at most max; 0 if offset holds data. Zero runs are mapped
	 * with UFFDIO_ZEROPAGE and never read. */
	int64_t (*zero_run)(struct fl_source *s, uint32_t region,
			    uint64_t offset, uint64_t max);
	/* Cancels whatever is still the source's, then frees it. */
	void (*destroy)(struct fl_source *s);
};

struct fl_source {
	const struct fl_source_ops *ops;
	const char *kind; /* "snapshot", "memory", "remote", "rawfile" */
	const struct fl_region *regions;
	size_t nregions;
	/* Readable when reap() has completions. Always valid. */
	int event_fd;
	/* The longest request submit() takes, in bytes (at least 2 MiB). */
	uint64_t max_req;
	/* Reads complete strictly in the order they were flushed (CRIU's page
	 * server): a second, urgent read of a page already in flight cannot
	 * arrive sooner, so a fault there just waits for the first. A source
	 * that holds some reads back unflushed leaves it false meanwhile. */
	bool in_order;
};

static inline int fl_source_submit(struct fl_source *s, struct fl_source_req *r)
{
	return s->ops->submit(s, r);
}

static inline int fl_source_flush(struct fl_source *s)
{
	return s->ops->flush(s);
}

static inline int fl_source_reap(struct fl_source *s, fl_source_done_fn done,
				 void *arg)
{
	return s->ops->reap(s, done, arg);
}

static inline int fl_source_cancel(struct fl_source *s, struct fl_source_req *r)
{
	return s->ops->cancel(s, r);
}

static inline void fl_source_release(struct fl_source *s, struct fl_source_req *r)
{
	s->ops->release(s, r);
}

static inline int64_t fl_source_zero_run(struct fl_source *s, uint32_t region,
					 uint64_t offset, uint64_t max)
{
	return s->ops->zero_run(s, region, offset, max);
}

static inline void fl_source_destroy(struct fl_source *s)
{
	if (s)
		s->ops->destroy(s);
}

/* An in-memory source over caller-owned buffers (tests, embedded use):
 * region i's bytes are data[i]; a NULL data[i] is all zeros. Completes
 * at flush, but through reap() like every source; data points into
 * data[i] (never movable). */
int fl_source_memory_create(struct fl_source **out,
			    const struct fl_region *regions, size_t n,
			    const void *const *data);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_SOURCE_H */
