// SPDX-License-Identifier: MIT
/* The snapshot page source: io_uring reads, urgent before background,
 * completions signalled on event_fd, every page checked as it arrives. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "snaptest.h"
#include "reap.h"

static void *pages(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static void open_fixture(char *dir, size_t dlen, char *snap, size_t slen,
			 struct snaptest *t, struct fl_snapshot **s)
{
	char err[512] = "";

	snaptest_dir(dir, dlen, snap, slen);
	snaptest_make(snap, t);
	if (fl_snapshot_open(snap, s, err, sizeof(err)))
		fail_msg("open: %s", err);
}

static void test_every_page_read_through_io_uring_equals_the_original(const struct fl_case *c)
{
	char dir[256], snap[300];
	struct snaptest t;
	struct fl_snapshot *s;
	struct fl_source *src;
	static struct fl_source_req reqs[1024];
	static struct reaped got;
	unsigned char *buf[SNAPTEST_NREGIONS];
	int n = 0;

	(void)c;
	open_fixture(dir, sizeof(dir), snap, sizeof(snap), &t, &s);
	assert_int_equal(fl_source_snapshot_create(&src, s, NULL), 0);
	assert_string_equal(src->kind, "snapshot");
	assert_int_equal(src->nregions, SNAPTEST_NREGIONS);
	assert_true(src->event_fd >= 0);
	/* One request per page, urgent and background mixed, zero pages too. */
	for (uint32_t r = 0; r < SNAPTEST_NREGIONS; r++) {
		const struct fl_region *g = &src->regions[r];

		buf[r] = pages(g->len);
		memset(buf[r], 0xEE, g->len);
		for (uint64_t off = 0; off < g->len; off += g->page_size) {
			reqs[n] = (struct fl_source_req){ .region = r, .offset = off, .len = g->page_size,
							  .urgent = n % 3 == 0,
							  .result = 77, .cookie = buf[r] + off };
			assert_int_equal(fl_source_submit(src, &reqs[n]), 0);
			n++;
		}
	}
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, n);
	assert_int_equal(got.n, n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(reqs[i].result, 0);
	}
	for (uint32_t r = 0; r < SNAPTEST_NREGIONS; r++) {
		assert_memory_equal(buf[r], t.data[r], src->regions[r].len);
		munmap(buf[r], src->regions[r].len);
	}
	/* zero_run through the interface agrees with the pattern. */
	for (uint64_t b = 0; b < 64; b++)
		assert_int_equal(fl_source_zero_run(src, 0, b * 4096, 4096), snaptest_zero(0, b) ? 4096 : 0);
	assert_int_equal(fl_source_zero_run(src, 1, 0, UINT64_MAX), 32 * 4096);
	assert_int_equal(fl_source_zero_run(src, 2, 2 << 20, UINT64_MAX), 2 << 20);
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

static void test_whole_region_reads_larger_than_a_page(const struct fl_case *c)
{
	char dir[256], snap[300];
	struct snaptest t;
	struct fl_snapshot *s;
	struct fl_source *src;
	struct fl_source_req req[SNAPTEST_NREGIONS];
	struct reaped got = { .n = 0 };

	(void)c;
	open_fixture(dir, sizeof(dir), snap, sizeof(snap), &t, &s);
	assert_int_equal(fl_source_snapshot_create(&src, s, NULL), 0);
	for (uint32_t r = 0; r < SNAPTEST_NREGIONS; r++) {
		req[r] = (struct fl_source_req){ .region = r, .len = src->regions[r].len,
						 .cookie = pages(src->regions[r].len) };
		assert_int_equal(fl_source_submit(src, &req[r]), 0);
	}
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, SNAPTEST_NREGIONS);
	for (uint32_t r = 0; r < SNAPTEST_NREGIONS; r++) {
		assert_int_equal(req[r].result, 0);
		assert_memory_equal(req[r].cookie, t.data[r], src->regions[r].len);
		munmap(req[r].cookie, src->regions[r].len);
	}
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

static void test_urgent_request_completes_before_queued_background_ones(const struct fl_case *c)
{
	/* One 16 MiB region; 240 background 64 KiB reads queued, then one
	 * urgent page. At most background_inflight background reads may
	 * complete before it. */
	enum { BG = 240, CHUNK = 65536, INFLIGHT = 8 };
	struct fl_region r = { 0x10000000, BG * CHUNK, 4096, 3, "big" };
	struct fl_source_snapshot_opts opts = { .queue_depth = 256, .background_inflight = INFLIGHT };
	static struct fl_source_req bg[BG], urgent;
	static struct reaped got;
	char dir[256], snap[300], err[512] = "";
	unsigned char *data = pages(r.len), *buf = pages(r.len), *ubuf = pages(4096);
	const void *d[1] = { data };
	struct fl_snapshot *s;
	struct fl_source *src;
	int before = -1;

	(void)c;
	for (uint64_t b = 0; b < r.len / 4096; b++)
		snaptest_fill(data + b * 4096, 4096, b, 9, 0);
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(fl_snapshot_write(snap, &r, 1, d, 0, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	assert_int_equal(fl_source_snapshot_create(&src, s, &opts), 0);
	for (int i = 0; i < BG; i++) {
		bg[i] = (struct fl_source_req){ .region = 0, .offset = (uint64_t)i * CHUNK,
						.len = CHUNK, .cookie = buf + (uint64_t)i * CHUNK };
		assert_int_equal(fl_source_submit(src, &bg[i]), 0);
	}
	urgent = (struct fl_source_req){ .region = 0, .offset = r.len - 4096, .len = 4096,
					 .cookie = ubuf, .urgent = true };
	assert_int_equal(fl_source_submit(src, &urgent), 0);
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, BG + 1);
	for (int i = 0; i < got.n; i++)
		if (got.order[i] == &urgent)
			before = i;
	assert_true(before >= 0);
	if (before > INFLIGHT)
		fail_msg("the urgent read completed after %d background reads", before);
	assert_int_equal(urgent.result, 0);
	assert_memory_equal(ubuf, data + r.len - 4096, 4096);
	/* The held-back background reads were all started and completed. */
	for (int i = 0; i < BG; i++)
		assert_int_equal(bg[i].result, 0);
	assert_memory_equal(buf, data, r.len);
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_rm(dir);
}

/*
 * Reads done are handed over a bounded piece at a time, fault reads
 * first: the monitor installs what a reap gives it before it reads its
 * userfaultfds again. 16 background reads of 256 KiB, all done, then one
 * urgent page: the first reap gives the urgent page and at most 512 KiB
 * of the rest, and the event fd stays readable until all are handed
 * over, every byte right.
 */
static void test_done_reads_are_handed_over_fault_first_in_bounded_pieces(const struct fl_case *c)
{
	enum { BG = 16, CHUNK = 262144 };
	struct fl_region r = { 0x10000000, BG * CHUNK, 4096, 3, "big" };
	struct fl_source_snapshot_opts opts = { .queue_depth = 32, .background_inflight = BG };
	static struct fl_source_req bg[BG], urgent;
	static struct reaped got;
	char dir[256], snap[300], err[512] = "";
	unsigned char *data = pages(r.len), *buf = pages(r.len), *ubuf = pages(4096);
	const void *d[1] = { data };
	struct fl_snapshot *s;
	struct fl_source *src;
	struct pollfd pfd;
	int rounds = 0;

	(void)c;
	for (uint64_t b = 0; b < r.len / 4096; b++)
		snaptest_fill(data + b * 4096, 4096, b, 9, 0);
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(fl_snapshot_write(snap, &r, 1, d, 0, err, sizeof(err)), 0);
	assert_int_equal(fl_snapshot_open(snap, &s, err, sizeof(err)), 0);
	assert_int_equal(fl_source_snapshot_create(&src, s, &opts), 0);
	for (int i = 0; i < BG; i++) {
		bg[i] = (struct fl_source_req){ .region = 0, .offset = (uint64_t)i * CHUNK,
						.len = CHUNK, .cookie = buf + (uint64_t)i * CHUNK };
		assert_int_equal(fl_source_submit(src, &bg[i]), 0);
	}
	assert_int_equal(fl_source_flush(src), 0);
	urgent = (struct fl_source_req){ .region = 0, .offset = r.len - 4096, .len = 4096,
					 .cookie = ubuf, .urgent = true };
	assert_int_equal(fl_source_submit(src, &urgent), 0);
	assert_int_equal(fl_source_flush(src), 0);
	usleep(200000); /* every read done before the first reap */
	got.src = src;
	pfd = (struct pollfd){ .fd = src->event_fd, .events = POLLIN };
	while (got.n < BG + 1) {
		int before = got.n;
		uint64_t bytes = 0;

		assert_int_equal(poll(&pfd, 1, 5000), 1);
		assert_true(fl_source_reap(src, collect, &got) > 0);
		for (int i = before; i < got.n; i++)
			bytes += got.order[i]->urgent ? 0 : got.order[i]->len;
		if (!rounds++)
			assert_ptr_equal(got.order[0], &urgent);
		if (bytes > 512u << 10)
			fail_msg("reap %d handed over %llu bytes of background reads", rounds,
				 (unsigned long long)bytes);
	}
	assert_true(rounds >= BG / 2);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	assert_int_equal(urgent.result, 0);
	assert_memory_equal(ubuf, data + r.len - 4096, 4096);
	for (int i = 0; i < BG; i++)
		assert_int_equal(bg[i].result, 0);
	assert_memory_equal(buf, data, r.len);
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_rm(dir);
}

static void test_full_queue_is_ebusy_and_out_of_bounds_is_erange(const struct fl_case *c)
{
	char dir[256], snap[300];
	struct snaptest t;
	struct fl_snapshot *s;
	struct fl_source *src;
	struct fl_source_snapshot_opts opts = { .queue_depth = 4 };
	struct fl_source_req req[5], bad;
	unsigned char *buf = pages(5 * 4096);
	struct reaped got = { .n = 0 };

	(void)c;
	open_fixture(dir, sizeof(dir), snap, sizeof(snap), &t, &s);
	assert_int_equal(fl_source_snapshot_create(&src, s, &opts), 0);
	for (int i = 0; i < 5; i++)
		req[i] = (struct fl_source_req){ .region = 0, .offset = (uint64_t)i * 4096,
						 .len = 4096, .cookie = buf + i * 4096 };
	for (int i = 0; i < 4; i++)
		assert_int_equal(fl_source_submit(src, &req[i]), 0);
	assert_int_equal(fl_source_submit(src, &req[4]), -EBUSY);
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, 4);
	assert_int_equal(fl_source_submit(src, &req[4]), 0); /* room again */
	bad = (struct fl_source_req){ .region = 3, .len = 4096, .cookie = buf };
	assert_int_equal(fl_source_submit(src, &bad), -ERANGE);
	bad = (struct fl_source_req){ .region = 0, .offset = 64 * 4096, .len = 4096, .cookie = buf };
	assert_int_equal(fl_source_submit(src, &bad), -ERANGE);
	bad = (struct fl_source_req){ .region = 2, .offset = 4096, .len = 4096, .cookie = buf };
	assert_int_equal(fl_source_submit(src, &bad), -ERANGE); /* not a whole 2 MiB page */
	bad = (struct fl_source_req){ .region = 0, .len = 0, .cookie = buf };
	assert_int_equal(fl_source_submit(src, &bad), -ERANGE);
	/* Destroy with a request queued and not flushed. */
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

static void test_event_fd_is_readable_only_with_completions(const struct fl_case *c)
{
	char dir[256], snap[300];
	struct snaptest t;
	struct fl_snapshot *s;
	struct fl_source *src;
	struct fl_source_req req;
	struct pollfd p;
	struct reaped got = { .n = 0 };
	unsigned char *buf = pages(4096);

	(void)c;
	open_fixture(dir, sizeof(dir), snap, sizeof(snap), &t, &s);
	assert_int_equal(fl_source_snapshot_create(&src, s, NULL), 0);
	p = (struct pollfd){ .fd = src->event_fd, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 0), 0);
	got.src = src;
	req = (struct fl_source_req){ .region = 0, .len = 4096, .cookie = buf, .urgent = true };
	assert_int_equal(fl_source_submit(src, &req), 0);
	assert_int_equal(fl_source_flush(src), 0);
	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_int_equal(fl_source_reap(src, collect, &got), 1);
	assert_int_equal(poll(&p, 1, 0), 0); /* reap drained it */
	assert_int_equal(fl_source_reap(src, collect, &got), 0);
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

static void test_corrupt_page_completes_with_ebadmsg_naming_region_and_page(const struct fl_case *c)
{
	char dir[256], snap[300], path[400];
	struct snaptest t;
	struct fl_snapshot *s;
	struct fl_source *src;
	struct fl_source_req req[3];
	struct reaped got = { .n = 0 };
	unsigned char *buf = pages(3 * 4096), b;
	int fd;

	(void)c;
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	snaptest_make(snap, &t);
	/* Region 2 starts at 2 MiB in pages; flip a byte in its block 1. */
	snprintf(path, sizeof(path), "%s/pages", snap);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (2 << 20) + 4096 + 5), 1);
	b ^= 1;
	assert_int_equal(pwrite(fd, &b, 1, (2 << 20) + 4096 + 5), 1);
	close(fd);
	{
		char err[512] = "";

		if (fl_snapshot_open(snap, &s, err, sizeof(err)))
			fail_msg("open: %s", err);
	}
	assert_int_equal(fl_source_snapshot_create(&src, s, NULL), 0);
	assert_string_equal(fl_source_snapshot_error(src), "");
	req[0] = (struct fl_source_req){ .region = 0, .offset = 0, .len = 4096, .cookie = buf };
	req[1] = (struct fl_source_req){ .region = 2, .offset = 0, .len = 2 << 20,
					 .cookie = pages(2 << 20), .urgent = true };
	req[2] = (struct fl_source_req){ .region = 0, .offset = 4096, .len = 4096, .cookie = buf + 4096 };
	for (int i = 0; i < 3; i++)
		assert_int_equal(fl_source_submit(src, &req[i]), 0);
	assert_int_equal(fl_source_flush(src), 0);
	reap_all(src, &got, 3);
	assert_int_equal(req[0].result, 0);
	assert_int_equal(req[1].result, -EBADMSG);
	assert_int_equal(req[2].result, 0);
	if (!strstr(fl_source_snapshot_error(src), "region 2 (guest-ram) page 0 (address 0x40001000"))
		fail_msg("error does not name region and page: %s", fl_source_snapshot_error(src));
	fl_source_destroy(src);
	fl_snapshot_close(s);
	snaptest_free(&t);
	snaptest_rm(dir);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_every_page_read_through_io_uring_equals_the_original);
	FL_ADD(test_whole_region_reads_larger_than_a_page);
	FL_ADD(test_urgent_request_completes_before_queued_background_ones);
	FL_ADD(test_done_reads_are_handed_over_fault_first_in_bounded_pieces);
	FL_ADD(test_full_queue_is_ebusy_and_out_of_bounds_is_erange);
	FL_ADD(test_event_fd_is_readable_only_with_completions);
	FL_ADD(test_corrupt_page_completes_with_ebadmsg_naming_region_and_page);
	return fl_run_cases(cases, n, argc, argv);
}
