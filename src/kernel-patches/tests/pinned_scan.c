// SPDX-License-Identifier: GPL-2.0
/*
 * pinned_scan: a UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN dirty tracker must not
 * lose a write made through a FOLL_PIN pin (patch 2 of the series).
 *
 * A tracker over 16 anonymous pages keeps a copy of them (`shadow`) and,
 * each round, copies the pages a PM_SCAN_WP_MATCHING scan reports written.
 * The kernel writes pinned pages with IORING_OP_READ_FIXED into an io_uring
 * fixed buffer (IORING_REGISTER_BUFFERS pins with FOLL_PIN | FOLL_LONGTERM):
 * no write fault, so a write-protected pinned page never reads as written.
 *
 * A (pinned before the reset): page 5 is pinned, tracking is reset, the
 *   kernel writes page 5 through the pin, scan: page 5 must be reported.
 * B (straddle): page 9 is pinned; the CPU writes it, so every kernel reports
 *   it in round 2 and the tracker copies it; then the kernel writes page 9
 *   through the pin, the buffer is unregistered (unpin), round 3: page 9 must
 *   be reported, or the write made after the copy is lost. The old version of
 *   patch 2 (PAGE_IS_PINNED) failed this: after the unpin the page was
 *   neither written nor pinned.
 * C: once unpinned and reported once more, a page is protected again (round
 *   4 does not report it); pages never written are never reported; at the end
 *   the shadow equals the memory.
 *
 * PASS: A, B and C hold. FAIL "missed write ... straddle ..." on a kernel that
 * write-protects pinned pages (every kernel without the series, the 6.18 host
 * included).
 */
#include "fl_kabi.h"
#include "fl_ring.h"

#include <fcntl.h>

#define NPAGES 16
#define PIN_A 5
#define PIN_B 9
#define PG 4096UL

static int pagemap_fd;
static char *mem, shadow[NPAGES * PG];
static unsigned int reported_mask; /* pages reported by the last round */

/* one tracker round: scan, re-protect, copy what was reported */
static void round_(void)
{
	struct page_region vec[NPAGES];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = (unsigned long)mem,
		.end = (unsigned long)mem + NPAGES * PG,
		.vec = (unsigned long)vec,
		.vec_len = NPAGES,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);

	FL_CHECK(n >= 0, "PAGEMAP_SCAN: %s", strerror(errno));
	reported_mask = 0;
	for (long i = 0; i < n; i++)
		for (unsigned long a = vec[i].start; a < vec[i].end; a += PG) {
			unsigned long pg = (a - (unsigned long)mem) / PG;

			reported_mask |= 1u << pg;
			memcpy(shadow + pg * PG, mem + pg * PG, PG);
		}
}

static int ffd;

/* the kernel writes `byte` into page `pg` through the fixed buffer */
static void dma_write(int pg, char byte)
{
	char data[PG];
	int ret;

	memset(data, byte, sizeof(data));
	FL_CHECK(pwrite(ffd, data, PG, 0) == (ssize_t)PG, "pwrite: %s", strerror(errno));
	ret = read_fixed(ffd, mem + pg * PG, PG, 0);
	FL_CHECK(ret == (int)PG, "READ_FIXED: res %d (%s)", ret, ret < 0 ? strerror(-ret) : "short");
	FL_CHECK(!memcmp(mem + pg * PG, data, PG), "READ_FIXED data did not land");
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	struct uffdio_register reg = { 0 };
	char file[] = "/tmp/fl-pinned-XXXXXX";
	char why[400] = "";
	int uffd, ret, miss_a, miss_b;

	fl_test_name = "pinned_scan";
	setvbuf(stdout, NULL, _IONBF, 0);

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0)
		FL_SKIP("no /proc/self/pagemap: %s", strerror(errno));
	uffd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		FL_SKIP("userfaultfd: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_API, &api))
		FL_SKIP("UFFD_FEATURE_WP_ASYNC unsupported: %s", strerror(errno));
	if (ring_setup())
		FL_SKIP("io_uring unavailable: %s", strerror(errno));

	mem = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FL_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	madvise(mem, NPAGES * PG, MADV_NOHUGEPAGE);
	memset(mem, 0x11, NPAGES * PG);
	reg.range.start = (unsigned long)mem;
	reg.range.len = NPAGES * PG;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	FL_CHECK(!ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER WP: %s", strerror(errno));

	ffd = mkstemp(file);
	FL_CHECK(ffd >= 0, "mkstemp: %s", strerror(errno));
	unlink(file);

	/* A: pin page PIN_A (fixed buffer 0), then reset the tracker */
	ret = ring_pin(mem + PIN_A * PG, PG);
	if (ret)
		FL_SKIP("IORING_REGISTER_BUFFERS: %s", strerror(-ret));
	round_(); /* reset: every page reads written after registering */
	memcpy(shadow, mem, sizeof(shadow));
	dma_write(PIN_A, 0x5a);
	round_();
	miss_a = !(reported_mask & (1u << PIN_A));
	if (reported_mask & ~(1u << PIN_A))
		FL_FAIL("round 1 reported pages never written (mask 0x%x)", reported_mask);
	FL_CHECK(!ring_unpin(), "IORING_UNREGISTER_BUFFERS: %s", strerror(errno));
	round_(); /* the one report after the unpin (nothing if A missed) */
	round_();
	if (reported_mask)
		FL_FAIL("page %d still reported after unpin + one round (mask 0x%x)",
			PIN_A, reported_mask);

	/* B: straddle. Pin PIN_B; the CPU writes it, round 2 copies it */
	ret = ring_pin(mem + PIN_B * PG, PG);
	FL_CHECK(!ret, "IORING_REGISTER_BUFFERS (B): %s", strerror(-ret));
	memset(mem + PIN_B * PG, 0x22, PG);
	round_();
	FL_CHECK(reported_mask & (1u << PIN_B),
		 "round 2: the CPU write to page %d was not reported (mask 0x%x)",
		 PIN_B, reported_mask);
	/* I/O after the tracker's copy, then unpin */
	dma_write(PIN_B, 0x33);
	FL_CHECK(!ring_unpin(), "IORING_UNREGISTER_BUFFERS (B): %s", strerror(errno));
	round_();
	miss_b = !(reported_mask & (1u << PIN_B));

	if (miss_a || miss_b) {
		snprintf(why, sizeof(why), "missed write through a pin:%s%s",
			 miss_a ? " after-reset (READ_FIXED into a page pinned before the reset not reported)" : "",
			 miss_b ? " straddle (READ_FIXED after the tracker copied the page, then unpin: not reported, the copy is stale)" : "");
		FL_FAIL("%s", why);
	}

	/* C: protected again after the one report; shadow == memory */
	round_();
	if (reported_mask)
		FL_FAIL("page %d still reported after unpin + one round (mask 0x%x)",
			PIN_B, reported_mask);
	for (int i = 0; i < NPAGES; i++)
		FL_CHECK(!memcmp(shadow + i * PG, mem + i * PG, PG),
			 "tracker copy of page %d differs from memory", i);

	FL_PASS("pinned pages read written while pinned and once after unpin; straddle write caught; tracker copy exact");
}
