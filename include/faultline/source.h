/* SPDX-License-Identifier: MIT */
/*
 * faultline/source.h - where pages come from.
 *
 * The monitor talks to a page source through this one small interface:
 * "give me these pages of this region, urgent or not, and tell me when they
 * are in this buffer". A snapshot directory, a remote page server and an
 * in-memory source are implementations; the monitor never knows which one
 * it has.
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

/* One read: pages [offset, offset + len) of a region into buf. */
struct fl_source_req {
	uint32_t region; /* index into the source's region table */
	uint64_t offset; /* byte offset in the region, page aligned */
	uint64_t len;	 /* bytes, a multiple of the region's page size */
	void *buf;	 /* page-aligned, len bytes */
	bool urgent;	 /* a thread is blocked on it: goes before background */
	int result;	 /* at completion: 0 (all of buf filled) or -errno */
	void *cookie;	 /* the caller's */
};

struct fl_source;

typedef void (*fl_source_done_fn)(struct fl_source_req *req, void *arg);

struct fl_source_ops {
	/* Queue a request (not started until flush). -EBUSY: the queue is
	 * full, reap first. -EINVAL/-ERANGE: the request is out of bounds. */
	int (*submit)(struct fl_source *s, struct fl_source_req *req);
	/* Start everything queued, urgent requests first. */
	int (*flush)(struct fl_source *s);
	/* Hand each finished request to done(). Returns how many, or -errno.
	 * Never blocks. */
	int (*reap)(struct fl_source *s, fl_source_done_fn done, void *arg);
	/* Length in bytes of the run of known-zero pages (holes) starting at
	 * offset, at most max; 0 if offset holds data. Zero runs are mapped
	 * with UFFDIO_ZEROPAGE and never read. */
	int64_t (*zero_run)(struct fl_source *s, uint32_t region,
			    uint64_t offset, uint64_t max);
	void (*destroy)(struct fl_source *s);
};

struct fl_source {
	const struct fl_source_ops *ops;
	const char *kind; /* "snapshot", "memory", "remote" */
	const struct fl_region *regions;
	size_t nregions;
	/* Readable when reap() has completions; -1 when flush() completes
	 * everything before it returns (reap right after flush). */
	int event_fd;
	/* A background read completes only when all its pages are here, and
	 * they come in the order the far end streams them (the remote
	 * source): a fault on one of its pages gets an urgent read of its own
	 * rather than waiting for the whole background read. */
	bool hurry_joined;
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
 * synchronously (event_fd == -1). */
int fl_source_memory_create(struct fl_source **out,
			    const struct fl_region *regions, size_t n,
			    const void *const *data);

/* A raw memory file: region i's bytes are at file_offset[i] (4 KiB
 * aligned) in the file at path, with nothing around them, as a VMM writes
 * guest memory (Firecracker's memory snapshot). Holes in the file
 * (SEEK_DATA/SEEK_HOLE, found once at open) are served as zeros and never
 * read; the rest is read with io_uring. Every region must lie inside the
 * file: a region past its end is refused at open (-ERANGE, err naming the
 * region and both sizes), and a read that finds the file shorter than at
 * open completes with -EIO, never with zeros. regions are copied. */
int fl_source_rawfile_create(struct fl_source **out, const char *path,
			     const struct fl_region *regions,
			     const uint64_t *file_offset, size_t n,
			     char *err, size_t errlen);

/* The last read error of a raw-file source ("" if none). */
const char *fl_source_rawfile_error(const struct fl_source *s);

/* Size in bytes of the raw file a raw-file source serves. */
uint64_t fl_source_rawfile_size(const struct fl_source *s);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_SOURCE_H */
