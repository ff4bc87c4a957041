// SPDX-License-Identifier: MIT
/* Every kind of damage to a snapshot is refused, and the error names the
 * cause; damage to page data is caught when the page is read. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snaptest.h"
#include "snapshot-internal.h"

static void file_path(char *p, size_t len, const char *snap, const char *name)
{
	snprintf(p, len, "%s/%s", snap, name);
}

static void flip_byte(const char *snap, const char *name, off_t at)
{
	char path[512];
	unsigned char b;
	int fd;

	file_path(path, sizeof(path), snap, name);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static off_t file_size(const char *snap, const char *name)
{
	char path[512];
	struct stat st;

	file_path(path, sizeof(path), snap, name);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void truncate_to(const char *snap, const char *name, off_t len)
{
	char path[512];

	file_path(path, sizeof(path), snap, name);
	assert_int_equal(truncate(path, len), 0);
}

/* Decode the manifest, let edit() change it, write it back with valid
 * checksums: the damage is in the content, not the bytes. */
static void forge(const char *snap, void (*edit)(struct snap_manifest *m))
{
	char path[512], err[256];
	unsigned char buf[65536];
	struct snap_manifest m;
	void *out;
	size_t outlen;
	ssize_t n;
	int fd;

	file_path(path, sizeof(path), snap, "manifest.pb");
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	n = pread(fd, buf, sizeof(buf), 0);
	assert_true(n > 0);
	if (fl__snap_manifest_decode(buf, (size_t)n, &m, err, sizeof(err)))
		fail_msg("decode: %s", err);
	edit(&m);
	assert_int_equal(fl__snap_manifest_encode(&m, &out, &outlen), 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, out, outlen, 0), (ssize_t)outlen);
	close(fd);
	free(out);
	fl__snap_manifest_free(&m);
}

static void overlap_regions(struct snap_manifest *m) { m->regions[1].start = m->regions[0].start + 4096; }
static void unsort_regions(struct snap_manifest *m) { m->regions[1].start = 0x1000; }
static void overlap_offsets(struct snap_manifest *m) { m->where[1].file_offset = m->where[0].file_offset + 4096; }
static void unalign_offset(struct snap_manifest *m) { m->where[2].file_offset += 4096; }
static void unalign_region(struct snap_manifest *m) { m->regions[0].start += 100; }
static void past_pages_end(struct snap_manifest *m) { m->regions[2].len *= 4; }
static void bad_page_size(struct snap_manifest *m) { m->regions[0].page_size = 12288; }
static void newer_version(struct snap_manifest *m) { m->version = FL_SNAPSHOT_VERSION + 1; }
static void swap_region_checksum(struct snap_manifest *m) { m->where[0].checksum ^= 1; }
static void bad_checksums_size(struct snap_manifest *m) { m->checksums_size -= 4; }

struct damage {
	const char *name;
	void (*apply)(const char *snap);
	int err;
	const char *says; /* the error names the cause */
};

static void d_no_manifest(const char *snap) { truncate_to(snap, "manifest.pb", 0); char p[512]; file_path(p, sizeof(p), snap, "manifest.pb"); unlink(p); }
static void d_manifest_in_header(const char *snap) { truncate_to(snap, "manifest.pb", 20); }
static void d_manifest_truncated(const char *snap) { truncate_to(snap, "manifest.pb", file_size(snap, "manifest.pb") - 5); }
static void d_manifest_appended(const char *snap) { truncate_to(snap, "manifest.pb", file_size(snap, "manifest.pb") + 3); }
static void d_bad_magic(const char *snap) { flip_byte(snap, "manifest.pb", 2); }
static void d_header_flip(const char *snap) { flip_byte(snap, "manifest.pb", 17); }
static void d_manifest_flip(const char *snap) { flip_byte(snap, "manifest.pb", file_size(snap, "manifest.pb") - 7); }
static void d_pages_truncated(const char *snap) { truncate_to(snap, "pages", file_size(snap, "pages") - 8192); }
static void d_pages_appended(const char *snap) { truncate_to(snap, "pages", file_size(snap, "pages") + 4096); }
static void d_pages_missing(const char *snap) { char p[512]; file_path(p, sizeof(p), snap, "pages"); unlink(p); }
static void d_checksums_truncated(const char *snap) { truncate_to(snap, "checksums", file_size(snap, "checksums") - 4); }
static void d_checksums_flip(const char *snap) { flip_byte(snap, "checksums", 9); }
static void d_hole_punched(const char *snap)
{
	char p[512];
	int fd;

	file_path(p, sizeof(p), snap, "pages");
	fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	/* Block 3 of region 0 holds data. */
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * 4096, 4096), 0);
	close(fd);
}
static void d_overlap(const char *s) { forge(s, overlap_regions); }
static void d_unsorted(const char *s) { forge(s, unsort_regions); }
static void d_overlap_offsets(const char *s) { forge(s, overlap_offsets); }
static void d_unaligned_offset(const char *s) { forge(s, unalign_offset); }
static void d_unaligned_region(const char *s) { forge(s, unalign_region); }
static void d_past_pages_end(const char *s) { forge(s, past_pages_end); }
static void d_bad_page_size(const char *s) { forge(s, bad_page_size); }
static void d_newer_version(const char *s) { forge(s, newer_version); }
static void d_region_checksum(const char *s) { forge(s, swap_region_checksum); }
static void d_checksums_size(const char *s) { forge(s, bad_checksums_size); }

static const struct damage damages[] = {
	{ "missing_manifest", d_no_manifest, -ENOENT, "cannot open manifest.pb" },
	{ "manifest_shorter_than_header", d_manifest_in_header, -EBADMSG, "shorter than its 32-byte header" },
	{ "truncated_manifest", d_manifest_truncated, -EBADMSG, "truncated" },
	{ "bytes_after_manifest", d_manifest_appended, -EBADMSG, "stray bytes" },
	{ "bad_magic", d_bad_magic, -EBADMSG, "bad magic" },
	{ "header_byte_flipped", d_header_flip, -EBADMSG, "header's checksum" },
	{ "manifest_byte_flipped", d_manifest_flip, -EBADMSG, "manifest's checksum does not match" },
	{ "newer_version", d_newer_version, -EPROTONOSUPPORT, "upgrade faultline" },
	{ "overlapping_regions", d_overlap, -EBADMSG, "regions 0 and 1 overlap" },
	{ "unsorted_regions", d_unsorted, -EBADMSG, "not sorted" },
	{ "overlapping_file_offsets", d_overlap_offsets, -EBADMSG, "overlap in pages" },
	{ "unaligned_file_offset", d_unaligned_offset, -EBADMSG, "not aligned to its page size" },
	{ "unaligned_region", d_unaligned_region, -EBADMSG, "not multiples of its page size" },
	{ "region_past_pages_end", d_past_pages_end, -EBADMSG, "extend past" },
	{ "bad_page_size", d_bad_page_size, -EBADMSG, "page size 12288" },
	{ "region_checksum_wrong", d_region_checksum, -EBADMSG, "region 0 ([heap]): its checksums do not match" },
	{ "checksums_size_wrong", d_checksums_size, -EBADMSG, "checksums size" },
	{ "truncated_pages", d_pages_truncated, -EBADMSG, "truncated" },
	{ "pages_appended", d_pages_appended, -EBADMSG, "longer than" },
	{ "missing_pages", d_pages_missing, -ENOENT, "cannot open pages" },
	{ "truncated_checksums", d_checksums_truncated, -EBADMSG, "checksums is" },
	{ "checksums_byte_flipped", d_checksums_flip, -EBADMSG, "does not match its CRC32C" },
	{ "data_page_punched_to_hole", d_hole_punched, -EBADMSG, "truncated or punched" },
};

static void test_damaged_snapshot_is_refused_at_open(const struct fl_case *c)
{
	const struct damage *d = c->a;
	char dir[256], snap[300], err[512] = "";
	struct snaptest t;
	struct fl_snapshot *s = (void *)1;

	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	snaptest_make(snap, &t);
	d->apply(snap);
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), d->err);
	assert_null(s);
	if (!strstr(err, d->says))
		fail_msg("error \"%s\" does not say \"%s\"", err, d->says);
	/* It names the snapshot too. */
	assert_non_null(strstr(err, snap));
	snaptest_free(&t);
	snaptest_rm(dir);
}

static void test_flipped_byte_in_a_page_fails_that_read_naming_region_and_page(const struct fl_case *c)
{
	char dir[256], snap[300], err[512] = "";
	struct snaptest t;
	struct fl_snapshot *s;
	unsigned char buf[4 * 4096];
	uint64_t bad = 0;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	snaptest_make(snap, &t);
	flip_byte(snap, "pages", 9 * 4096 + 77); /* region 0, page 9 */
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_read(s, 0, 8 * 4096, buf, sizeof(buf), err, sizeof(err)), -EBADMSG);
	if (!strstr(err, "region 0 ([heap]) page 9 (address 0x10009000"))
		fail_msg("error does not name region and page: %s", err);
	assert_non_null(strstr(err, "fails its checksum"));
	/* Its neighbours still read. */
	assert_int_equal(fl_snapshot_read(s, 0, 10 * 4096, buf, 4096, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_read(s, 0, 8 * 4096, buf, 4096, err, sizeof(err)), 0);
	/* verify counts exactly one bad block and names it. */
	err[0] = 0;
	assert_int_equal(fl_snapshot_verify(s, &bad, NULL, NULL, err, sizeof(err)), -EBADMSG);
	assert_int_equal(bad, 1);
	assert_non_null(strstr(err, "page 9"));
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(damages) / sizeof(damages[0]); i++)
		fl_case_add(&cases, &n, test_damaged_snapshot_is_refused_at_open, &damages[i], NULL,
			    "test_damaged_snapshot_is_refused_at_open/%s", damages[i].name);
	fl_case_add(&cases, &n, test_flipped_byte_in_a_page_fails_that_read_naming_region_and_page,
		    NULL, NULL, "test_flipped_byte_in_a_page_fails_that_read_naming_region_and_page");
	return fl_run_cases(cases, n, argc, argv);
}
