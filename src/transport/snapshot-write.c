// SPDX-License-Identifier: MIT
/*
 * Writing a snapshot: pages and checksums first, the manifest last.
 *
 * Zero blocks are never written: the pages file is extended over them with
 * ftruncate, so they stay holes that the reader finds with SEEK_HOLE and
 * the monitor maps with UFFDIO_ZEROPAGE without reading. An old manifest in
 * the directory is removed before anything else is touched and the new one
 * appears by rename() after everything it describes is on disk, so a crash
 * at any moment leaves either no snapshot or a complete one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapshot-internal.h"

struct fl_snapshot_writer {
	char *dir;
	int dirfd, pages_fd;
	unsigned flags;
	bool finished;
	char err[512];

	struct snap_manifest m;	/* regions as they are begun */
	size_t cap;		/* allocated entries of m.regions/m.where */
	uint64_t cur_off;	/* bytes appended to the last region */
	uint64_t file_end;	/* end of the last region in pages */

	uint32_t *csums;	/* one per block appended */
	uint64_t ncsums, csums_cap;
	uint32_t zero_crc;
	uint64_t bytes, data_bytes;
};

static const char zero_block[FL_SNAPSHOT_BLOCK];

static int fail(struct fl_snapshot_writer *w, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct fl_snapshot_writer *w, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->err, sizeof(w->err), fmt, ap);
	va_end(ap);
	return ret;
}

static bool all_zero(const unsigned char *p, size_t len)
{
	return p[0] == 0 && !memcmp(p, p + 1, len - 1);
}

static int write_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

int fl_snapshot_writer_create(struct fl_snapshot_writer **out, const char *dir,
			      const char *origin, unsigned flags, char *err,
			      size_t errlen)
{
	struct fl_snapshot_writer *w;
	int ret;

	*out = NULL;
	if (mkdir(dir, 0755) && errno != EEXIST) {
		ret = -errno;
		fl__snap_err(err, errlen, "cannot create snapshot directory %s: %s", dir, strerror(-ret));
		return ret;
	}
	w = calloc(1, sizeof(*w));
	if (!w || !(w->dir = strdup(dir))) {
		free(w);
		fl__snap_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	w->pages_fd = -1;
	w->flags = flags;
	w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dirfd < 0) {
		ret = -errno;
		fl__snap_err(err, errlen, "cannot open snapshot directory %s: %s", dir, strerror(-ret));
		goto fail;
	}
	if (!faccessat(w->dirfd, SNAP_MANIFEST, F_OK, 0)) {
		if (!(flags & FL_SNAPSHOT_REPLACE)) {
			ret = -EEXIST;
			fl__snap_err(err, errlen, "%s already holds a snapshot: choose another directory or remove it first", dir);
			goto fail;
		}
		/* Gone before its pages change: no window where it opens. */
		if (unlinkat(w->dirfd, SNAP_MANIFEST, 0) || fsync(w->dirfd)) {
			ret = -errno;
			fl__snap_err(err, errlen, "cannot remove the old snapshot in %s: %s", dir, strerror(-ret));
			goto fail;
		}
	}
	w->pages_fd = openat(w->dirfd, SNAP_PAGES, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->pages_fd < 0) {
		ret = -errno;
		fl__snap_err(err, errlen, "cannot create %s/" SNAP_PAGES ": %s", dir, strerror(-ret));
		goto fail;
	}
	w->m.version = FL_SNAPSHOT_VERSION;
	w->m.created = (uint64_t)time(NULL);
	snprintf(w->m.origin, sizeof(w->m.origin), "%s", origin ? origin : "");
	w->zero_crc = fl_crc32c(0, zero_block, sizeof(zero_block));
	*out = w;
	return 0;
fail:
	fl_snapshot_writer_destroy(w);
	return ret;
}

static int check_region_done(struct fl_snapshot_writer *w)
{
	size_t i = w->m.nregions - 1;

	if (w->m.nregions && w->cur_off != w->m.regions[i].len)
		return fail(w, -EINVAL, "region %zu (%s): %llu of its %llu bytes were appended",
			    i, w->m.regions[i].name, (unsigned long long)w->cur_off,
			    (unsigned long long)w->m.regions[i].len);
	return 0;
}

int fl_snapshot_writer_begin_region(struct fl_snapshot_writer *w,
				    const struct fl_region *r)
{
	size_t i = w->m.nregions;
	uint64_t off;
	int ret;

	if (w->finished)
		return fail(w, -EINVAL, "the snapshot is already finished");
	ret = check_region_done(w);
	if (ret)
		return ret;
	if (!r->page_size || r->page_size & (r->page_size - 1) ||
	    r->page_size < FL_SNAPSHOT_BLOCK || r->page_size > SNAP_PAGE_SIZE_MAX)
		return fail(w, -EINVAL, "region %zu (%.*s): page size %u is not a power of two from 4 KiB to 1 GiB",
			    i, FL_REGION_NAME_MAX, r->name, r->page_size);
	if (!r->len || r->len % r->page_size || r->start % r->page_size ||
	    r->start >= SNAP_ADDR_LIMIT || r->len > SNAP_ADDR_LIMIT - r->start)
		return fail(w, -EINVAL, "region %zu (%.*s): 0x%llx + 0x%llx is empty, outside the address space or not aligned to its page size %u",
			    i, FL_REGION_NAME_MAX, r->name, (unsigned long long)r->start,
			    (unsigned long long)r->len, r->page_size);
	if (r->prot & ~7u)
		return fail(w, -EINVAL, "region %zu: protection 0x%x has bits other than read, write, exec", i, r->prot);
	if (strnlen(r->name, FL_REGION_NAME_MAX) == FL_REGION_NAME_MAX)
		return fail(w, -EINVAL, "region %zu: its name is not NUL-terminated within %d bytes", i, FL_REGION_NAME_MAX);
	if (i) {
		const struct fl_region *p = &w->m.regions[i - 1];

		if (r->start < p->start + p->len)
			return fail(w, -EINVAL, "region %zu (%s) at 0x%llx overlaps or comes before region %zu (%s) at 0x%llx-0x%llx: regions go in address order",
				    i, r->name, (unsigned long long)r->start, i - 1, p->name,
				    (unsigned long long)p->start, (unsigned long long)(p->start + p->len));
	}
	if (i == SNAP_REGIONS_MAX)
		return fail(w, -E2BIG, "more than %u regions", SNAP_REGIONS_MAX);
	if (i == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		void *a = realloc(w->m.regions, cap * sizeof(*w->m.regions));

		if (!a)
			return fail(w, -ENOMEM, "out of memory");
		w->m.regions = a;
		a = realloc(w->m.where, cap * sizeof(*w->m.where));
		if (!a)
			return fail(w, -ENOMEM, "out of memory");
		w->m.where = a;
		w->cap = cap;
	}
	off = (w->file_end + r->page_size - 1) & ~(uint64_t)(r->page_size - 1);
	w->m.regions[i] = *r;
	memset(&w->m.where[i], 0, sizeof(w->m.where[i]));
	w->m.where[i].file_offset = off;
	w->m.where[i].first_block = w->ncsums;
	w->m.nregions++;
	w->file_end = off + r->len;
	w->cur_off = 0;
	return 0;
}

static int push_crc(struct fl_snapshot_writer *w, uint32_t crc)
{
	if (w->ncsums == w->csums_cap) {
		uint64_t cap = w->csums_cap ? 2 * w->csums_cap : 1024;
		uint32_t *a = realloc(w->csums, cap * sizeof(*a));

		if (!a)
			return fail(w, -ENOMEM, "out of memory for checksums");
		w->csums = a;
		w->csums_cap = cap;
	}
	w->csums[w->ncsums++] = crc;
	return 0;
}

int fl_snapshot_writer_append(struct fl_snapshot_writer *w, const void *data,
			      uint64_t len)
{
	size_t i = w->m.nregions - 1;
	const unsigned char *p = data;
	uint64_t base, run = 0, run_start = 0;
	int ret;

	if (w->finished || !w->m.nregions)
		return fail(w, -EINVAL, "append without a region begun");
	if (len % FL_SNAPSHOT_BLOCK || len > w->m.regions[i].len - w->cur_off)
		return fail(w, -EINVAL, "region %zu (%s): appending %llu bytes at %llu of %llu: not a multiple of 4 KiB or past its end",
			    i, w->m.regions[i].name, (unsigned long long)len,
			    (unsigned long long)w->cur_off, (unsigned long long)w->m.regions[i].len);
	base = w->m.where[i].file_offset + w->cur_off;
	/* Write each run of non-zero blocks with one pwrite. */
	for (uint64_t o = 0; o <= len; o += FL_SNAPSHOT_BLOCK) {
		bool zero = o == len || !p || all_zero(p + o, FL_SNAPSHOT_BLOCK);

		if (o < len) {
			ret = push_crc(w, zero ? w->zero_crc : fl_crc32c(0, p + o, FL_SNAPSHOT_BLOCK));
			if (ret)
				return ret;
		}
		if (!zero) {
			if (!run)
				run_start = o;
			run += FL_SNAPSHOT_BLOCK;
			continue;
		}
		if (run) {
			ret = write_all(w->pages_fd, p + run_start, run, (off_t)(base + run_start));
			if (ret)
				return fail(w, ret, "writing %s/" SNAP_PAGES ": %s", w->dir, strerror(-ret));
			w->m.where[i].data_bytes += run;
			w->data_bytes += run;
			run = 0;
		}
	}
	w->cur_off += len;
	w->bytes += len;
	return 0;
}

static int write_file(struct fl_snapshot_writer *w, const char *name,
		      const void *buf, size_t len)
{
	int fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int ret;

	if (fd < 0)
		return fail(w, -errno, "cannot create %s/%s: %s", w->dir, name, strerror(errno));
	ret = write_all(fd, buf, len, 0);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (ret)
		return fail(w, ret, "writing %s/%s: %s", w->dir, name, strerror(-ret));
	return 0;
}

int fl_snapshot_writer_finish(struct fl_snapshot_writer *w)
{
	unsigned char *cs = NULL;
	void *man = NULL;
	size_t manlen;
	int ret;

	if (w->finished)
		return 0;
	ret = check_region_done(w);
	if (ret)
		return ret;
	/* The tail of the file may be holes: give it its full size. */
	if (ftruncate(w->pages_fd, (off_t)w->file_end) || fsync(w->pages_fd))
		return fail(w, -errno, "writing %s/" SNAP_PAGES ": %s", w->dir, strerror(errno));

	cs = malloc(w->ncsums ? w->ncsums * 4 : 1);
	if (!cs)
		return fail(w, -ENOMEM, "out of memory");
	for (uint64_t b = 0; b < w->ncsums; b++)
		snap_put_le32(cs + 4 * b, w->csums[b]);
	for (size_t i = 0; i < w->m.nregions; i++) {
		struct snap_region *r = &w->m.where[i];

		r->checksum = fl_crc32c(0, cs + 4 * r->first_block,
					w->m.regions[i].len / FL_SNAPSHOT_BLOCK * 4);
	}
	w->m.pages_size = w->file_end;
	w->m.checksums_size = w->ncsums * 4;
	w->m.checksums_crc = fl_crc32c(0, cs, w->ncsums * 4);
	ret = write_file(w, SNAP_CHECKSUMS, cs, w->ncsums * 4);
	if (ret)
		goto out;

	ret = fl__snap_manifest_encode(&w->m, &man, &manlen);
	if (ret) {
		fail(w, ret, "out of memory encoding the manifest");
		goto out;
	}
	ret = write_file(w, SNAP_MANIFEST ".tmp", man, manlen);
	if (ret)
		goto out;
	if (renameat(w->dirfd, SNAP_MANIFEST ".tmp", w->dirfd, SNAP_MANIFEST) || fsync(w->dirfd)) {
		ret = fail(w, -errno, "cannot put %s/" SNAP_MANIFEST " in place: %s", w->dir, strerror(errno));
		goto out;
	}
	w->finished = true;
out:
	free(cs);
	free(man);
	return ret;
}

void fl_snapshot_writer_progress(const struct fl_snapshot_writer *w,
				 uint64_t *bytes, uint64_t *data_bytes)
{
	if (bytes)
		*bytes = w->bytes;
	if (data_bytes)
		*data_bytes = w->data_bytes;
}

const char *fl_snapshot_writer_error(const struct fl_snapshot_writer *w)
{
	return w->err;
}

void fl_snapshot_writer_destroy(struct fl_snapshot_writer *w)
{
	if (!w)
		return;
	if (!w->finished && w->dirfd >= 0 && w->pages_fd >= 0) {
		unlinkat(w->dirfd, SNAP_MANIFEST ".tmp", 0);
		unlinkat(w->dirfd, SNAP_CHECKSUMS, 0);
		unlinkat(w->dirfd, SNAP_PAGES, 0);
	}
	if (w->pages_fd >= 0)
		close(w->pages_fd);
	if (w->dirfd >= 0)
		close(w->dirfd);
	fl__snap_manifest_free(&w->m);
	free(w->csums);
	free(w->dir);
	free(w);
}

static int by_start(const void *a, const void *b, void *arg)
{
	const struct fl_region *r = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;

	return r[i].start < r[j].start ? -1 : r[i].start > r[j].start;
}

int fl_snapshot_write(const char *dir, const struct fl_region *regions,
		      size_t n, const void *const *data, unsigned flags,
		      char *err, size_t errlen)
{
	struct fl_snapshot_writer *w;
	size_t *order = malloc((n ? n : 1) * sizeof(*order));
	char origin[64];
	int ret;

	if (!order) {
		fl__snap_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(origin, sizeof(origin), "pid %d (fl_snapshot_write)", (int)getpid());
	ret = fl_snapshot_writer_create(&w, dir, origin, flags, err, errlen);
	if (ret) {
		free(order);
		return ret;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), by_start, (void *)regions);
	for (size_t k = 0; k < n && !ret; k++) {
		size_t i = order[k];

		ret = fl_snapshot_writer_begin_region(w, &regions[i]);
		if (!ret)
			ret = fl_snapshot_writer_append(w, data[i], regions[i].len);
	}
	if (!ret)
		ret = fl_snapshot_writer_finish(w);
	if (ret)
		fl__snap_err(err, errlen, "%s", w->err);
	fl_snapshot_writer_destroy(w);
	free(order);
	return ret;
}
