// SPDX-License-Identifier: MIT
/* The raw-file page source: regions at file offsets read with io_uring,
 * holes answered as zero runs, regions that do not fit the file refused at
 * open, and a file that shrinks later failing reads instead of zeroing. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/source-rawfile.h>

#include "runner.h"
#include "reap.h"

#define MIB (1ull << 20)
#define FILE_SIZE (8 * MIB)

static uint8_t byte_at(uint64_t off)
{
	return (uint8_t)(off * 2654435761u >> 13) | 1; /* never 0: data is data */
}

/* MiB 2 and 5 are holes; everything else data. */
static bool hole(uint64_t off)
{
	return off / MIB == 2 || off / MIB == 5;
}

static void make_file(char *path, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	uint8_t *page = malloc(4096);
	int fd;

	snprintf(path, len, "%s/fl-rawfile-XXXXXX", tmp ? tmp : "/var/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0 && page);
	assert_int_equal(ftruncate(fd, FILE_SIZE), 0);
	for (uint64_t off = 0; off < FILE_SIZE; off += 4096) {
		if (hole(off))
			continue;
		for (int i = 0; i < 4096; i++)
			page[i] = byte_at(off + (uint64_t)i);
		assert_int_equal(pwrite(fd, page, 4096, (off_t)off), 4096);
	}
	close(fd);
	free(page);
}

/* Two regions like a VM with a gap: MiB 0..4 and MiB 4..8 of the file. */
static const struct fl_region two[2] = {
	{ .start = 0x100000000, .len = 4 * MIB, .page_size = 4096, .name = "low" },
	{ .start = 0x200000000, .len = 4 * MIB, .page_size = 4096, .name = "high" },
};
static const uint64_t two_off[2] = { 0, 4 * MIB };

static void test_every_page_of_two_regions_reads_as_the_file(const struct fl_case *c)
{
	char path[256], err[512] = "";
	struct fl_source *src;
	static struct fl_source_req reqs[2048];
	static struct reaped got;
	uint8_t *buf[2];
	int n = 0;

	(void)c;
	make_file(path, sizeof(path));
	if (fl_source_rawfile_create(&src, path, two, two_off, 2, err, sizeof(err)))
		fail_msg("%s", err);
	assert_string_equal(src->kind, "memory-file");
	assert_int_equal(src->nregions, 2);
	assert_int_equal(fl_source_rawfile_size(src), FILE_SIZE);
	for (uint32_t r = 0; r < 2; r++) {
		buf[r] = mmap(NULL, two[r].len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(buf[r], 0xEE, two[r].len);
		for (uint64_t off = 0; off < two[r].len; off += 4096) {
			reqs[n] = (struct fl_source_req){ .region = r, .offset = off, .len = 4096,
							  .cookie = buf[r] + off, .urgent = off % 3 == 0 };
			while (fl_source_submit(src, &reqs[n]) == -EBUSY) {
				assert_int_equal(fl_source_flush(src), 0);
				reap_all(src, &got, got.n + 1);
			}
			n++;
		}
	}
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(reqs[i].result, 0);
	for (uint32_t r = 0; r < 2; r++)
		for (uint64_t off = 0; off < two[r].len; off++) {
			uint64_t f = two_off[r] + off;

			if (buf[r][off] != (hole(f) ? 0 : byte_at(f)))
				fail_msg("region %u offset %llu: %#x", r, (unsigned long long)off,
					 buf[r][off]);
		}
	fl_source_destroy(src);
	unlink(path);
}

static void test_holes_are_zero_runs_and_data_is_not(const struct fl_case *c)
{
	char path[256], err[512] = "";
	struct fl_source *src;

	(void)c;
	make_file(path, sizeof(path));
	if (fl_source_rawfile_create(&src, path, two, two_off, 2, err, sizeof(err)))
		fail_msg("%s", err);
	/* Region 0 holds file MiB 0..4: MiB 2 is a hole. */
	assert_int_equal(fl_source_zero_run(src, 0, 0, 4 * MIB), 0);
	assert_int_equal(fl_source_zero_run(src, 0, 2 * MIB, 4 * MIB), MIB);
	assert_int_equal(fl_source_zero_run(src, 0, 2 * MIB + 8192, 100 * 4096), 100 * 4096);
	/* Region 1 holds file MiB 4..8: MiB 5 (its MiB 1) is a hole. */
	assert_int_equal(fl_source_zero_run(src, 1, 0, MIB), 0);
	assert_int_equal(fl_source_zero_run(src, 1, MIB, 3 * MIB), MIB);
	assert_int_equal(fl_source_zero_run(src, 2, 0, MIB), -ERANGE);
	fl_source_destroy(src);
	unlink(path);
}

static void test_region_past_the_end_of_the_file_is_refused_naming_sizes(const struct fl_case *c)
{
	char path[256], err[512] = "";
	struct fl_source *src = NULL;
	const uint64_t off[2] = { 0, 6 * MIB }; /* 6..10 MiB of an 8 MiB file */

	(void)c;
	make_file(path, sizeof(path));
	assert_int_equal(fl_source_rawfile_create(&src, path, two, off, 2, err, sizeof(err)),
			 -ERANGE);
	assert_null(src);
	assert_non_null(strstr(err, "region 1 (high)"));
	assert_non_null(strstr(err, "6291456..10485760"));
	assert_non_null(strstr(err, "only 8388608 bytes"));
	/* A truncated file: the same regions that fitted no longer do. */
	assert_int_equal(truncate(path, 6 * MIB), 0);
	assert_int_equal(fl_source_rawfile_create(&src, path, two, two_off, 2, err, sizeof(err)),
			 -ERANGE);
	assert_non_null(strstr(err, "truncated"));
	unlink(path);
}

static void test_bad_region_shapes_are_refused(const struct fl_case *c)
{
	char path[256], err[512] = "";
	struct fl_source *src = NULL;
	struct fl_region r = { .len = MIB, .page_size = 8192, .name = "odd" };
	uint64_t off = 0;

	(void)c;
	make_file(path, sizeof(path));
	assert_int_equal(fl_source_rawfile_create(&src, path, &r, &off, 1, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "page size 8192"));
	r.page_size = 4096;
	off = 100;
	assert_int_equal(fl_source_rawfile_create(&src, path, &r, &off, 1, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "4 KiB aligned"));
	assert_int_equal(fl_source_rawfile_create(&src, "/nonexistent/mem", &r, &off, 1, err,
						  sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/mem"));
	unlink(path);
}

static void test_file_that_shrinks_after_open_fails_reads_never_zeros(const struct fl_case *c)
{
	char path[256], err[512] = "";
	struct fl_source *src;
	static struct reaped got;
	struct fl_source_req req;
	uint8_t *buf = malloc(4096);

	(void)c;
	make_file(path, sizeof(path));
	if (fl_source_rawfile_create(&src, path, two, two_off, 2, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(truncate(path, 4 * MIB), 0);
	req = (struct fl_source_req){ .region = 1, .offset = 2 * MIB, .len = 4096, .cookie = buf,
				      .urgent = true };
	assert_int_equal(fl_source_submit(src, &req), 0);
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, 1);
	assert_int_equal(req.result, -EIO);
	assert_non_null(strstr(fl_source_rawfile_error(src), "ended early"));
	fl_source_destroy(src);
	free(buf);
	unlink(path);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_every_page_of_two_regions_reads_as_the_file);
	FL_ADD(test_holes_are_zero_runs_and_data_is_not);
	FL_ADD(test_region_past_the_end_of_the_file_is_refused_naming_sizes);
	FL_ADD(test_bad_region_shapes_are_refused);
	FL_ADD(test_file_that_shrinks_after_open_fails_reads_never_zeros);
	return fl_run_cases(cases, n, argc, argv);
}
