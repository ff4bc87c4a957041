// SPDX-License-Identifier: MIT
/*
 * The raw-file page source: guest memory as a VMM writes it (Firecracker's
 * memory snapshot), regions at known offsets of one plain file, no
 * manifest, no checksums. Read with io_uring like the snapshot source
 * (uring-reader.c): urgent reads enter the ring before any background
 * read, and at most BG_MAX background reads are in the kernel at once.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faultline/source-rawfile.h>

#include "data-map.h"
#include "uring-reader.h"

#define BLOCK DATA_MAP_BLOCK
#define DEPTH 256u
#define BG_MAX 16u

struct raw_source {
	struct fl_source base;
	char *path;
	int fd;
	uint64_t file_size;
	struct fl_region *regions;
	uint64_t *file_offset;
	uint64_t *first_block;	/* each region's first bit in data_map */
	uint64_t *data_map;	/* 1 = the 4 KiB block holds data */
	struct uring_reader *rd;
};

static struct raw_source *rs(struct fl_source *s)
{
	return (struct raw_source *)s;
}

static int raw_locate(struct fl_source *s, uint32_t region, uint64_t offset,
		      uint64_t *pos)
{
	struct raw_source *m = rs(s);

	*pos = m->file_offset[region] + offset;
	return m->fd;
}

static void raw_read_failed(struct fl_source *s, const struct fl_source_req *r,
			    uint64_t done, int res, char *err, size_t errlen)
{
	struct raw_source *m = rs(s);

	snprintf(err, errlen, "memory file %s: reading region %u (%s) at file offset %llu: %s",
		 m->path, r->region, s->regions[r->region].name,
		 (unsigned long long)(m->file_offset[r->region] + r->offset + done),
		 res ? strerror(-res) : "the file ended early (it shrank after it was opened)");
}

/* No checksums: a full read is the page. */
static const struct uring_reader_hooks rawfile_hooks = {
	.locate = raw_locate,
	.read_failed = raw_read_failed,
};

static int raw_submit(struct fl_source *s, struct fl_source_req *r)
{
	return fl__uring_reader_submit(rs(s)->rd, r);
}

static int raw_flush(struct fl_source *s)
{
	return fl__uring_reader_flush(rs(s)->rd);
}

static int raw_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	return fl__uring_reader_reap(rs(s)->rd, done, arg);
}

static int raw_cancel(struct fl_source *s, struct fl_source_req *r)
{
	return fl__uring_reader_cancel(rs(s)->rd, r);
}

static void raw_release(struct fl_source *s, struct fl_source_req *r)
{
	fl__uring_reader_release(rs(s)->rd, r);
}

static int64_t raw_zero_run(struct fl_source *s, uint32_t region, uint64_t offset,
			    uint64_t max)
{
	struct raw_source *m = rs(s);

	if (region >= s->nregions)
		return -ERANGE;
	return fl__data_map_zero_run(m->data_map, m->first_block[region],
				 &s->regions[region], offset, max);
}

static void raw_destroy(struct fl_source *s)
{
	struct raw_source *m = rs(s);

	/* First: the kernel may still be reading from fd into callers' buffers. */
	fl__uring_reader_destroy(m->rd);
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
	.cancel = raw_cancel,
	.release = raw_release,
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
		int ret = fl__data_map_scan(m->data_map, m->first_block[i], m->fd,
					m->file_offset[i], m->regions[i].len);

		if (ret) {
			snprintf(err, errlen, "memory file %s: cannot find its holes (SEEK_DATA): %s",
				 m->path, strerror(-ret));
			return ret;
		}
	}
	return 0;
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
	m->base.max_req = 64u << 20; /* reserved per slot, filled on use */
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
	ret = fl__uring_reader_create(&m->rd, &m->base, &rawfile_hooks, DEPTH, BG_MAX,
				  err, errlen);
	if (ret)
		goto fail;
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
	return fl__uring_reader_error(((const struct raw_source *)s)->rd);
}

uint64_t fl_source_rawfile_size(const struct fl_source *s)
{
	if (!s || s->ops != &rawfile_ops)
		return 0;
	return ((const struct raw_source *)s)->file_size;
}
