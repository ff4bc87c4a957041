// SPDX-License-Identifier: MIT
/* Writing and opening snapshots: what goes in comes out, zero pages are
 * holes, and the writer refuses what it cannot represent. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snaptest.h"

static void test_crc32c_matches_the_castagnoli_check_value(const struct fl_case *c)
{
	unsigned char big[10000];

	(void)c;
	/* The check value of CRC-32C ("123456789"), and continuation. */
	assert_int_equal(fl_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(fl_crc32c(fl_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 13);
	assert_int_equal(fl_crc32c(fl_crc32c(0, big, 4099), big + 4099, sizeof(big) - 4099),
			 fl_crc32c(0, big, sizeof(big)));
}

static void test_round_trip_reads_back_every_page(const struct fl_case *c)
{
	char dir[256], snap[300], err[512] = "";
	struct snaptest t;
	struct fl_snapshot *s;
	const struct fl_region *g;
	unsigned char *buf = malloc(4 << 20);
	size_t n;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	snaptest_make(snap, &t);
	if (fl_snapshot_open(snap, &s, err, sizeof(err)))
		fail_msg("open: %s", err);
	g = fl_snapshot_regions(s, &n);
	assert_int_equal(n, SNAPTEST_NREGIONS);
	for (unsigned r = 0; r < n; r++) {
		assert_memory_equal(&g[r], &t.regions[r], sizeof(g[r]));
		/* Whole region at once, then page by page. */
		assert_int_equal(fl_snapshot_read(s, r, 0, buf, g[r].len, err, sizeof(err)), 0);
		assert_memory_equal(buf, t.data[r], g[r].len);
		for (uint64_t off = 0; off < g[r].len; off += g[r].page_size) {
			memset(buf, 0xAA, g[r].page_size);
			assert_int_equal(fl_snapshot_read(s, r, off, buf, g[r].page_size, err, sizeof(err)), 0);
			assert_memory_equal(buf, t.data[r] + off, g[r].page_size);
		}
	}
	assert_string_equal(fl_snapshot_dir(s), snap);
	assert_non_null(strstr(fl_snapshot_origin(s), "fl_snapshot_write"));
	assert_true(fl_snapshot_created(s) > 1700000000u);
	/* 35 data blocks in region 0, 3 in region 2. */
	assert_int_equal(fl_snapshot_data_bytes(s), (35 + 3) * 4096ull);
	assert_int_equal(fl_snapshot_read(s, 3, 0, buf, 4096, NULL, 0), -ERANGE);
	assert_int_equal(fl_snapshot_read(s, 0, 64 * 4096, buf, 4096, NULL, 0), -ERANGE);
	assert_int_equal(fl_snapshot_read(s, 0, 100, buf, 4096, NULL, 0), -ERANGE);
	fl_snapshot_close(s);
	fl_snapshot_close(NULL);
	snaptest_free(&t);
	snaptest_rm(dir);
	free(buf);
}

static void test_zero_pages_are_holes_and_zero_run_finds_them(const struct fl_case *c)
{
	char dir[256], snap[300], path[400], err[512] = "";
	struct snaptest t;
	struct fl_snapshot *s;
	struct stat st;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	snaptest_make(snap, &t);
	/* Only data blocks take space on disk. */
	snprintf(path, sizeof(path), "%s/pages", snap);
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 <= 64 * 4096);
	assert_int_equal(st.st_size, (2 << 20) + (4 << 20)); /* region 2 at 2 MiB, ends in a hole */
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);

	/* Region 0: page by page, zero_run(.., 4096) says hole iff zero. */
	for (uint64_t b = 0; b < 64; b++)
		assert_int_equal(fl_snapshot_zero_run(s, 0, b * 4096, 4096),
				 snaptest_zero(0, b) ? 4096 : 0);
	/* A run is as long as the holes go, capped by max and the region. */
	assert_int_equal(fl_snapshot_zero_run(s, 0, 20 * 4096, 1 << 30), 16 * 4096);
	assert_int_equal(fl_snapshot_zero_run(s, 0, 20 * 4096, 5 * 4096), 5 * 4096);
	assert_int_equal(fl_snapshot_zero_run(s, 0, 60 * 4096, 1 << 30), 4 * 4096);
	assert_int_equal(fl_snapshot_zero_run(s, 0, 64 * 4096, 1 << 30), 0);
	assert_int_equal(fl_snapshot_zero_run(s, 1, 0, 1 << 30), 32 * 4096);
	/* 2 MiB pages: huge page 0 has data, huge page 1 is zero. */
	assert_int_equal(fl_snapshot_zero_run(s, 2, 0, 4 << 20), 0);
	assert_int_equal(fl_snapshot_zero_run(s, 2, 2 << 20, 4 << 20), 2 << 20);
	assert_int_equal(fl_snapshot_zero_run(s, 2, 2 << 20, 4096), 0); /* less than a page */
	assert_int_equal(fl_snapshot_zero_run(s, 9, 0, 4096), -ERANGE);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

static void test_regions_are_written_in_address_order_at_aligned_offsets(const struct fl_case *c)
{
	/* Given out of order: written sorted; the 2 MiB region 2 MiB aligned. */
	struct fl_region rs[2] = {
		{ 0x80000000, 2 << 20, 2 << 20, 3, "huge" },
		{ 0x1000, 4096, 4096, 1, "low" },
	};
	static unsigned char a[2 << 20], b[4096];
	const void *data[2] = { a, b };
	char dir[256], snap[300], err[512] = "";
	struct fl_snapshot *s;
	const struct fl_region *g;
	size_t n;

	(void)c;
	memset(a, 0x5A, sizeof(a));
	memset(b, 0xA5, sizeof(b));
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(fl_snapshot_write(snap, rs, 2, data, 0, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	g = fl_snapshot_regions(s, &n);
	assert_int_equal(n, 2);
	assert_string_equal(g[0].name, "low");
	assert_string_equal(g[1].name, "huge");
	assert_int_equal(fl_snapshot_read(s, 1, 0, a, 2 << 20, err, sizeof(err)), 0);
	assert_int_equal(a[12345], 0x5A);
	fl_snapshot_close(s);
	snaptest_rm(dir);
}

static void test_writer_refuses_overlap_misalignment_and_short_regions(const struct fl_case *c)
{
	struct fl_region ok = { 0x10000, 8192, 4096, 3, "a" };
	struct fl_region over = { 0x11000, 4096, 4096, 3, "b" };
	struct fl_region odd = { 0x20000, 4096, 3000, 3, "c" };
	struct fl_region unaligned = { 0x20800, 4096, 4096, 3, "d" };
	struct fl_region huge_unaligned = { 0x201000, 2 << 20, 2 << 20, 3, "e" };
	static unsigned char page[8192];
	char dir[256], snap[300], err[512] = "", path[400];
	struct fl_snapshot_writer *w;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(fl_snapshot_writer_create(&w, snap, "test", 0, err, sizeof(err)), 0);
	assert_string_equal(fl_snapshot_writer_error(w), "");
	assert_int_equal(fl_snapshot_writer_append(w, page, 4096), -EINVAL); /* no region */
	assert_int_equal(fl_snapshot_writer_begin_region(w, &odd), -EINVAL);
	assert_non_null(strstr(fl_snapshot_writer_error(w), "page size 3000"));
	assert_int_equal(fl_snapshot_writer_begin_region(w, &unaligned), -EINVAL);
	assert_int_equal(fl_snapshot_writer_begin_region(w, &huge_unaligned), -EINVAL);
	assert_int_equal(fl_snapshot_writer_begin_region(w, &ok), 0);
	assert_int_equal(fl_snapshot_writer_append(w, page, 100), -EINVAL);
	assert_int_equal(fl_snapshot_writer_append(w, page, 4096), 0);
	/* The region is not complete: neither a next region nor finish. */
	assert_int_equal(fl_snapshot_writer_begin_region(w, &over), -EINVAL);
	assert_non_null(strstr(fl_snapshot_writer_error(w), "4096 of its 8192 bytes"));
	assert_int_equal(fl_snapshot_writer_finish(w), -EINVAL);
	assert_int_equal(fl_snapshot_writer_append(w, page, 8192), -EINVAL); /* past the end */
	assert_int_equal(fl_snapshot_writer_append(w, page, 4096), 0);
	assert_int_equal(fl_snapshot_writer_begin_region(w, &over), -EINVAL);
	assert_non_null(strstr(fl_snapshot_writer_error(w), "overlaps"));
	/* Abandoned: nothing left behind that could open. */
	fl_snapshot_writer_destroy(w);
	snprintf(path, sizeof(path), "%s/pages", snap);
	assert_int_equal(access(path, F_OK), -1);
	snaptest_rm(dir);
}

static void test_existing_snapshot_is_kept_unless_replace(const struct fl_case *c)
{
	struct fl_region r = { 0x10000, 4096, 4096, 3, "a" };
	static unsigned char one[4096] = { 1 }, two[4096] = { 2 };
	const void *d1[1] = { one }, *d2[1] = { two };
	char dir[256], snap[300], err[512] = "";
	unsigned char buf[4096];
	struct fl_snapshot *s;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(fl_snapshot_write(snap, &r, 1, d1, 0, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_write(snap, &r, 1, d2, 0, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "already holds a snapshot"));
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_read(s, 0, 0, buf, 4096, err, sizeof(err)), 0);
	assert_int_equal(buf[0], 1);
	fl_snapshot_close(s);
	assert_int_equal(fl_snapshot_write(snap, &r, 1, d2, FL_SNAPSHOT_REPLACE, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_read(s, 0, 0, buf, 4096, err, sizeof(err)), 0);
	assert_int_equal(buf[0], 2);
	fl_snapshot_close(s);
	snaptest_rm(dir);
}

static void test_verify_passes_on_a_good_snapshot(const struct fl_case *c)
{
	char dir[256], snap[300], err[512] = "";
	struct snaptest t;
	struct fl_snapshot *s;
	uint64_t bad = 99;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	snaptest_make(snap, &t);
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_verify(s, &bad, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(bad, 0);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_crc32c_matches_the_castagnoli_check_value);
	FL_ADD(test_round_trip_reads_back_every_page);
	FL_ADD(test_zero_pages_are_holes_and_zero_run_finds_them);
	FL_ADD(test_regions_are_written_in_address_order_at_aligned_offsets);
	FL_ADD(test_writer_refuses_overlap_misalignment_and_short_regions);
	FL_ADD(test_existing_snapshot_is_kept_unless_replace);
	FL_ADD(test_verify_passes_on_a_good_snapshot);
	return fl_run_cases(cases, n, argc, argv);
}
