// SPDX-License-Identifier: MIT
/*
 * Opening a snapshot: everything that can be checked cheaply is checked
 * before a single page is served (a truncated or corrupt snapshot restored
 * into a running program would corrupt it silently). Page data itself is
 * checked as it is read: fl__snap_check_blocks() here, used by the synchronous
 * reads, verify, and the io_uring source.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data-map.h"
#include "snapshot-internal.h"

#define ERR(...) fl__snap_err(err, errlen, __VA_ARGS__)

static const char zero_block[FL_SNAPSHOT_BLOCK];

/* data_map has a bit per checksummed block. */
_Static_assert(FL_SNAPSHOT_BLOCK == DATA_MAP_BLOCK, "a data-map block is a snapshot block");

static int read_whole(int dirfd, const char *name, void **buf, size_t *len,
		      size_t max, const char *dir, char *err, size_t errlen)
{
	struct stat st;
	char *b;
	size_t got = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0) {
		ret = -errno;
		ERR("snapshot %s: cannot open %s: %s%s", dir, name, strerror(-ret),
		    ret == -ENOENT ? " (not a snapshot, or an incomplete one: take it again)" : "");
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		goto fail_msg;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		ERR("snapshot %s: %s is %lld bytes, more than the %zu it can be: the snapshot is corrupt",
		    dir, name, (long long)st.st_size, max);
		return -EBADMSG;
	}
	b = malloc(st.st_size ? st.st_size : 1);
	if (!b) {
		close(fd);
		ERR("snapshot %s: out of memory reading %s", dir, name);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			free(b);
			goto fail_msg;
		}
		got += n;
	}
	close(fd);
	*buf = b;
	*len = got;
	return 0;
fail_msg:
	close(fd);
	ERR("snapshot %s: reading %s: %s", dir, name, strerror(-ret));
	return ret;
}

/* Find each region's data extents once, so zero_run() needs no lseek. */
static int map_data(struct fl_snapshot *s, char *err, size_t errlen)
{
	const struct snap_manifest *m = &s->m;

	s->data_map = calloc(m->blocks / 64 + 1, sizeof(uint64_t));
	if (!s->data_map) {
		ERR("snapshot %s: out of memory", s->dir);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->nregions; i++) {
		int ret = fl__data_map_scan(s->data_map, m->where[i].first_block, s->pages_fd,
					m->where[i].file_offset, m->regions[i].len);

		if (ret) {
			ERR("snapshot %s: finding holes in " SNAP_PAGES ": %s", s->dir,
			    strerror(-ret));
			return ret;
		}
	}
	/* A hole must have been a zero page when it was written. */
	for (size_t i = 0; i < m->nregions; i++) {
		uint64_t first = m->where[i].first_block, n = m->regions[i].len / FL_SNAPSHOT_BLOCK;

		for (uint64_t b = first; b < first + n; b++)
			if (!fl__bitmap_test(s->data_map, b) && s->csums[b] != s->zero_crc) {
				ERR("snapshot %s: region %zu (%s): the page at 0x%llx is a hole in " SNAP_PAGES
				    " but its checksum says it held data: the pages file was truncated or punched; take the snapshot again",
				    s->dir, i, m->regions[i].name,
				    (unsigned long long)(m->regions[i].start + (b - first) * FL_SNAPSHOT_BLOCK));
				return -EBADMSG;
			}
	}
	return 0;
}

int fl_snapshot_open(const char *dir, struct fl_snapshot **out, char *err,
		     size_t errlen)
{
	struct fl_snapshot *s;
	void *buf = NULL;
	size_t len;
	struct stat st;
	char why[400];
	int dirfd, ret;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		ERR("out of memory");
		return -ENOMEM;
	}
	s->pages_fd = -1;
	s->zero_crc = fl_crc32c(0, zero_block, sizeof(zero_block));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = -errno;
		ERR("snapshot %s: cannot open the directory: %s", dir, strerror(-ret));
		goto fail;
	}
	ret = read_whole(dirfd, SNAP_MANIFEST, &buf, &len,
			 SNAP_HEADER_SIZE + SNAP_MANIFEST_MAX + 1, dir, err, errlen);
	if (ret)
		goto fail;
	ret = fl__snap_manifest_decode(buf, len, &s->m, why, sizeof(why));
	free(buf);
	buf = NULL;
	if (ret) {
		ERR("snapshot %s: %s", dir, why);
		goto fail;
	}

	/* checksums: its size and CRC are in the manifest. */
	ret = read_whole(dirfd, SNAP_CHECKSUMS, &buf, &len, s->m.checksums_size + 1,
			 dir, err, errlen);
	if (ret)
		goto fail;
	ret = -EBADMSG;
	if (len != s->m.checksums_size) {
		ERR("snapshot %s: " SNAP_CHECKSUMS " is %zu bytes, the manifest says %llu: it was truncated or replaced; take the snapshot again",
		    dir, len, (unsigned long long)s->m.checksums_size);
		goto fail;
	}
	if (fl_crc32c(0, buf, len) != s->m.checksums_crc) {
		ERR("snapshot %s: " SNAP_CHECKSUMS " does not match its CRC32C in the manifest: it is corrupt; take the snapshot again", dir);
		goto fail;
	}
	for (size_t i = 0; i < s->m.nregions; i++) {
		const unsigned char *p = (const unsigned char *)buf + 4 * s->m.where[i].first_block;

		if (fl_crc32c(0, p, s->m.regions[i].len / FL_SNAPSHOT_BLOCK * 4) != s->m.where[i].checksum) {
			ERR("snapshot %s: region %zu (%s): its checksums do not match the manifest", dir, i,
			    s->m.regions[i].name);
			goto fail;
		}
	}
	s->csums = malloc(len ? len : 1);
	if (!s->csums) {
		ret = -ENOMEM;
		ERR("snapshot %s: out of memory", dir);
		goto fail;
	}
	for (uint64_t b = 0; b < s->m.blocks; b++)
		s->csums[b] = snap_le32((const unsigned char *)buf + 4 * b);
	free(buf);
	buf = NULL;

	s->pages_fd = openat(dirfd, SNAP_PAGES, O_RDONLY | O_CLOEXEC);
	if (s->pages_fd < 0 || fstat(s->pages_fd, &st)) {
		ret = -errno;
		ERR("snapshot %s: cannot open " SNAP_PAGES ": %s", dir, strerror(-ret));
		goto fail;
	}
	ret = -EBADMSG;
	if ((uint64_t)st.st_size < s->m.pages_size) {
		ERR("snapshot %s: " SNAP_PAGES " is %llu bytes but the regions need %llu: it is truncated; take the snapshot again",
		    dir, (unsigned long long)st.st_size, (unsigned long long)s->m.pages_size);
		goto fail;
	}
	if ((uint64_t)st.st_size > s->m.pages_size) {
		ERR("snapshot %s: " SNAP_PAGES " is %llu bytes, longer than the %llu the manifest describes: it was replaced or appended to",
		    dir, (unsigned long long)st.st_size, (unsigned long long)s->m.pages_size);
		goto fail;
	}
	ret = map_data(s, err, errlen);
	if (ret)
		goto fail;
	close(dirfd);
	*out = s;
	return 0;
fail:
	free(buf);
	if (dirfd >= 0)
		close(dirfd);
	fl_snapshot_close(s);
	return ret;
}

void fl_snapshot_close(struct fl_snapshot *s)
{
	if (!s)
		return;
	if (s->pages_fd >= 0)
		close(s->pages_fd);
	fl__snap_manifest_free(&s->m);
	free(s->csums);
	free(s->data_map);
	free(s->dir);
	free(s);
}

const struct fl_region *fl_snapshot_regions(const struct fl_snapshot *s, size_t *n)
{
	if (n)
		*n = s->m.nregions;
	return s->m.regions;
}

const char *fl_snapshot_dir(const struct fl_snapshot *s)
{
	return s->dir;
}

const char *fl_snapshot_origin(const struct fl_snapshot *s)
{
	return s->m.origin;
}

uint64_t fl_snapshot_created(const struct fl_snapshot *s)
{
	return s->m.created;
}

uint64_t fl_snapshot_data_bytes(const struct fl_snapshot *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i < s->m.nregions; i++)
		n += s->m.where[i].data_bytes;
	return n;
}

int64_t fl_snapshot_zero_run(const struct fl_snapshot *s, uint32_t region,
			     uint64_t offset, uint64_t max)
{
	if (region >= s->m.nregions)
		return -ERANGE;
	return fl__data_map_zero_run(s->data_map, s->m.where[region].first_block,
				 &s->m.regions[region], offset, max);
}

int fl__snap_check_blocks(const struct fl_snapshot *s, uint32_t r, uint64_t offset,
		      const void *buf, uint64_t len, char *err, size_t errlen)
{
	const struct fl_region *g = &s->m.regions[r];
	uint64_t first = s->m.where[r].first_block + offset / FL_SNAPSHOT_BLOCK;
	const unsigned char *p = buf;

	for (uint64_t o = 0; o < len; o += FL_SNAPSHOT_BLOCK)
		if (fl_crc32c(0, p + o, FL_SNAPSHOT_BLOCK) != s->csums[first + o / FL_SNAPSHOT_BLOCK]) {
			uint64_t at = offset + o;

			ERR("snapshot %s: region %u (%s) page %llu (address 0x%llx, byte 0x%llx of " SNAP_PAGES
			    ") fails its checksum: the pages file is corrupt; take the snapshot again",
			    s->dir, r, g->name, (unsigned long long)(at / g->page_size),
			    (unsigned long long)(g->start + at),
			    (unsigned long long)(s->m.where[r].file_offset + at));
			return -EBADMSG;
		}
	return 0;
}

static int read_range(const struct fl_snapshot *s, uint32_t r, uint64_t offset,
		      void *buf, uint64_t len)
{
	uint64_t pos = s->m.where[r].file_offset + offset;
	char *p = buf;

	while (len) {
		ssize_t n = pread(s->pages_fd, p, len, (off_t)pos);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file shrank after open */
		p += n;
		pos += n;
		len -= n;
	}
	return 0;
}

int fl_snapshot_read(const struct fl_snapshot *s, uint32_t region,
		     uint64_t offset, void *buf, uint64_t len, char *err,
		     size_t errlen)
{
	const struct fl_region *g;
	int ret;

	if (region >= s->m.nregions)
		return -ERANGE;
	g = &s->m.regions[region];
	if (offset % FL_SNAPSHOT_BLOCK || len % FL_SNAPSHOT_BLOCK ||
	    offset > g->len || len > g->len - offset)
		return -ERANGE;
	ret = read_range(s, region, offset, buf, len);
	if (ret) {
		ERR("snapshot %s: reading region %u (%s): %s", s->dir, region, g->name, strerror(-ret));
		return ret;
	}
	return fl__snap_check_blocks(s, region, offset, buf, len, err, errlen);
}

int fl_snapshot_verify(const struct fl_snapshot *s, uint64_t *bad_blocks,
		       void (*progress)(uint64_t done, uint64_t total, void *arg),
		       void *arg, char *err, size_t errlen)
{
	enum { CHUNK = 1 << 20 };
	uint64_t total = 0, done = 0, bad = 0, next_report = 0;
	char *buf = malloc(CHUNK);
	int ret = 0;

	if (!buf) {
		ERR("out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->m.nregions; i++)
		total += s->m.regions[i].len;
	for (uint32_t r = 0; r < s->m.nregions; r++) {
		uint64_t len = s->m.regions[r].len;

		for (uint64_t off = 0; off < len;) {
			uint64_t n = len - off < CHUNK ? len - off : CHUNK;
			int64_t z = fl_snapshot_zero_run(s, r, off, n);

			/* Holes were checked against their checksums at open. */
			if (z >= FL_SNAPSHOT_BLOCK) {
				n = (uint64_t)z;
			} else {
				int e;

				ret = read_range(s, r, off, buf, n);
				if (ret) {
					ERR("snapshot %s: reading region %u (%s): %s", s->dir, r,
					    s->m.regions[r].name, strerror(-ret));
					goto out;
				}
				/* Count every bad block; report the first. */
				for (uint64_t o = 0; o < n; o += FL_SNAPSHOT_BLOCK) {
					e = fl__snap_check_blocks(s, r, off + o, buf + o, FL_SNAPSHOT_BLOCK,
							      bad ? NULL : err, errlen);
					if (e)
						bad++;
				}
			}
			off += n;
			done += n;
			if (progress && done >= next_report) {
				progress(done, total, arg);
				next_report = done + (64u << 20);
			}
		}
	}
	if (progress)
		progress(done, total, arg);
	ret = bad ? -EBADMSG : 0;
out:
	if (bad_blocks)
		*bad_blocks = bad;
	free(buf);
	return ret;
}
