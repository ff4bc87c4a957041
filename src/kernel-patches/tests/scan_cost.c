// SPDX-License-Identifier: GPL-2.0
/*
 * scan_cost: what a PAGEMAP_SCAN round costs a WP_ASYNC dirty tracker, in
 * ms per GiB tracked, with and without DMA pins in the process. A figure for
 * the cover letter of patch 2, not a test: it passes whenever it could
 * measure, and is not in the harness' default list (run.sh --tests
 * scan_cost). Under QEMU TCG the absolute times are those of an emulated
 * CPU; compare the unpatched and the patched kernel, and the rows, not the
 * numbers with a real machine's.
 *
 * Rows (median of ROUNDS):
 *   clean       a round that finds nothing written
 *   all-dirty   every page written since the last round: report + re-protect
 *               each, the path where patch 2 looks for pins
 * each measured in a process that never pinned anything ("no pins") and
 * again after pinning one page outside the tracked range with an io_uring
 * fixed buffer ("pinned mm": MMF_HAS_PINNED is set, so patch 2 looks at the
 * folio of every page it re-protects).
 */
#include "fl_kabi.h"
#include "fl_ring.h"

#include <fcntl.h>
#include <time.h>

#define PG 4096UL
#define MIB 128UL
#define ROUNDS 7

static int pagemap_fd;
static char *mem;
static struct page_region *vec;
static const size_t len = MIB << 20, vlen = (MIB << 20) / PG;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long round_(void)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = (unsigned long)mem,
		.end = (unsigned long)mem + len,
		.vec = (unsigned long)vec,
		.vec_len = vlen,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);

	FL_CHECK(n >= 0, "PAGEMAP_SCAN: %s", strerror(errno));
	return n;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* median ms per GiB of a round, dirtying every page first if `dirty` */
static double measure(int dirty)
{
	double t[ROUNDS], t0;

	for (int r = 0; r < ROUNDS; r++) {
		if (dirty)
			for (size_t off = 0; off < len; off += PG)
				mem[off]++;
		t0 = now();
		round_();
		t[r] = (now() - t0) * 1e3 * (1024.0 / MIB);
	}
	qsort(t, ROUNDS, sizeof(t[0]), cmp);
	return t[ROUNDS / 2];
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	struct uffdio_register reg = { 0 };
	double clean0, dirty0, clean1, dirty1;
	char *pinbuf;
	int uffd, ret;

	fl_test_name = "scan_cost";
	setvbuf(stdout, NULL, _IONBF, 0);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	uffd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK);
	if (pagemap_fd < 0 || uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		FL_SKIP("no pagemap or WP_ASYNC userfaultfd: %s", strerror(errno));
	if (ring_setup())
		FL_SKIP("io_uring unavailable: %s", strerror(errno));
	vec = calloc(vlen, sizeof(*vec));
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pinbuf = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FL_CHECK(vec && mem != MAP_FAILED && pinbuf != MAP_FAILED, "allocation failed");
	madvise(mem, len, MADV_NOHUGEPAGE); /* tracking is at 4 KiB */
	memset(mem, 1, len);
	reg.range.start = (unsigned long)mem;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	FL_CHECK(!ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER: %s", strerror(errno));
	round_(); /* the first round reports everything: discard */

	clean0 = measure(0);
	dirty0 = measure(1);
	pinbuf[0] = 1;
	ret = ring_pin(pinbuf, PG);
	FL_CHECK(!ret, "IORING_REGISTER_BUFFERS: %s", strerror(-ret));
	clean1 = measure(0);
	dirty1 = measure(1);
	FL_PASS("ms per GiB (%lu MiB, median of %d): no pins: clean %.1f all-dirty %.1f; "
		"pinned mm: clean %.1f all-dirty %.1f", MIB, ROUNDS, clean0, dirty0, clean1, dirty1);
}
