// SPDX-License-Identifier: GPL-2.0
/*
 * wp_racewrite: the racewrite idea with userfaultfd write protection in the
 * mix (the 5.12 class: UFFDIO_WRITEPROTECT with deferred TLB flushes lost
 * writes), and a dirty-tracker check.
 *
 * Phase 1, shared memfd (shmem): writer threads store increasing counters
 * into their own pages; one thread toggles UFFDIO_WRITEPROTECT over the
 * range and runs PAGEMAP_SCAN with PM_SCAN_WP_MATCHING; another loops
 * MADV_DONTNEED. Async write protection means writers never block. Every
 * 64 stores a writer checks with pread() on the memfd that its last value
 * is there: a lost write is a failure.
 *
 * Phase 2, private anonymous memory: a tracker copies every page reported
 * PAGE_IS_WRITTEN (re-protecting it) into a shadow while writers store and
 * MADV_DONTNEED zaps. After the writers stop, one final scan; the shadow
 * must equal memory, i.e. the tracker missed no write. Phase 3: the same
 * without zaps (negative control: tests/negative/0001 drops the scan's TLB
 * flush, and this phase must then fail).
 *
 * Expected: PASS on every kernel with UFFD_FEATURE_WP_ASYNC (6.7+).
 */
#include "fl_kabi.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>

#define PG 4096UL
#define NW 2
#define SECONDS 1.5

static volatile int stop;
static char *mem;
static int uffd, pagemap_fd, memfd = -1;
static const char *failure;
static unsigned long fail_w, fail_want, fail_got;
static unsigned long writes, checks, zaps, wps, scans, copied;
static unsigned long shadow[NW];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *what, unsigned long w, unsigned long want, unsigned long got)
{
	if (!failure) {
		failure = what;
		fail_w = w;
		fail_want = want;
		fail_got = got;
	}
	stop = 1;
}

static void *writer(void *arg)
{
	unsigned long w = (unsigned long)arg, v = 0, got;
	volatile unsigned long *slot = (volatile unsigned long *)(mem + w * PG);

	while (!stop) {
		*slot = ++v;
		__atomic_fetch_add(&writes, 1, __ATOMIC_RELAXED);
		if ((v & 255) == 0)
			sched_yield();	/* with 2 CPUs the helpers need turns too */
		if (memfd >= 0 && (v & 63) == 0) {
			if (pread(memfd, &got, sizeof(got), w * PG) != sizeof(got))
				fail("pread failed", w, 0, 0);
			else if (got != v)
				fail("memfd lost a write", w, v, got);
			__atomic_fetch_add(&checks, 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static void *zapper(void *arg)
{
	(void)arg;
	while (!stop) {
		madvise(mem, NW * PG, MADV_DONTNEED);
		zaps++;
		sched_yield();
	}
	return NULL;
}

static long scan(__u64 flags, struct page_region *vec, size_t n)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg), .flags = flags,
		.start = (unsigned long)mem, .end = (unsigned long)mem + NW * PG,
		.vec = (unsigned long)vec, .vec_len = n,
		.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
	};
	long r = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);

	return r < 0 ? -errno : r;
}

static int writeprotect(int on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (unsigned long)mem, .len = NW * PG },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/* phase 1 helper: toggle protection and scan */
static void *toggler(void *arg)
{
	struct page_region vec[NW];
	int on = 1;

	(void)arg;
	while (!stop) {
		if (writeprotect(on))
			fail("UFFDIO_WRITEPROTECT failed", 0, errno, 0);
		on = !on;
		if (scan(PM_SCAN_WP_MATCHING, vec, NW) < 0)
			fail("PAGEMAP_SCAN failed", 0, 0, 0);
		wps++;
	}
	return NULL;
}

/* phase 2: collect written pages into the shadow, re-protecting them */
static int collect(void)
{
	struct page_region vec[NW];
	long n = scan(PM_SCAN_WP_MATCHING, vec, NW);

	if (n < 0)
		return (int)n;
	for (long i = 0; i < n; i++)
		for (unsigned long a = vec[i].start; a < vec[i].end; a += PG) {
			unsigned long w = (a - (unsigned long)mem) / PG;

			shadow[w] = *(volatile unsigned long *)a;
			copied++;
		}
	scans++;
	return 0;
}

static void *tracker(void *arg)
{
	(void)arg;
	while (!stop)
		if (collect())
			fail("PAGEMAP_SCAN failed", 0, 0, 0);
	return NULL;
}

static void setup(int shared, __u64 features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	struct uffdio_register reg = { 0 };

	uffd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		FL_SKIP("userfaultfd: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_API, &api))
		FL_SKIP("UFFDIO_API features 0x%llx: %s", (unsigned long long)features,
			strerror(errno));
	if (shared) {
		memfd = (int)syscall(__NR_memfd_create, "fl-wp", 0);
		FL_CHECK(memfd >= 0, "memfd_create: %s", strerror(errno));
		FL_CHECK(!ftruncate(memfd, NW * PG), "ftruncate: %s", strerror(errno));
		mem = mmap(NULL, NW * PG, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	} else {
		mem = mmap(NULL, NW * PG, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	FL_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	reg.range.start = (unsigned long)mem;
	reg.range.len = NW * PG;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	FL_CHECK(!ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER WP: %s", strerror(errno));
}

static void run(void *(*helper)(void *), int zap)
{
	pthread_t tw[NW], th, tz;
	double t0 = now();

	stop = 0;
	for (unsigned long i = 0; i < NW; i++)
		pthread_create(&tw[i], NULL, writer, (void *)i);
	pthread_create(&th, NULL, helper, NULL);
	if (zap)
		pthread_create(&tz, NULL, zapper, NULL);
	/* under TCG the zapper can starve: insist on some zaps, up to 3x */
	while (!stop && (now() - t0 < SECONDS ||
			 (zap && zaps < 500 && now() - t0 < 3 * SECONDS)))
		usleep(10000);
	stop = 1;
	for (int i = 0; i < NW; i++)
		pthread_join(tw[i], NULL);
	pthread_join(th, NULL);
	if (zap)
		pthread_join(tz, NULL);
}

/* phase 2 and 3: the tracker's shadow must equal memory at the end */
static void anon_tracker(int zap)
{
	writes = zaps = scans = copied = 0;
	setup(0, UFFD_FEATURE_WP_ASYNC);
	FL_CHECK(!collect(), "initial scan failed");
	run(tracker, zap);
	FL_CHECK(!collect(), "final scan failed");
	printf("wp_racewrite anon tracker%s: %lu writes, %lu scans, %lu pages copied, %lu zaps\n",
	       zap ? "" : " without zaps", writes, scans, copied, zaps);
	if (failure)
		FL_FAIL("anon phase: %s", failure);
	for (unsigned long w = 0; w < NW; w++) {
		unsigned long cur = *(volatile unsigned long *)(mem + w * PG);

		if (shadow[w] != cur)
			FL_FAIL("tracker missed a write%s: page %lu holds %lu, shadow %lu",
				zap ? "" : " (no zaps)", w, cur, shadow[w]);
	}
	munmap(mem, NW * PG);
	close(uffd);
}

int main(void)
{
	fl_test_name = "wp_racewrite";
	setvbuf(stdout, NULL, _IONBF, 0);
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0)
		FL_SKIP("no /proc/self/pagemap: %s", strerror(errno));

	/* phase 1: shmem, protection toggled under writers and zaps */
	setup(1, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	run(toggler, 1);
	printf("wp_racewrite shmem: %lu writes, %lu memfd checks, %lu wp+scan rounds, %lu zaps\n",
	       writes, checks, wps, zaps);
	if (failure)
		FL_FAIL("shmem phase: %s (writer %lu stored %lu, memfd holds %lu)",
			failure, fail_w, fail_want, fail_got);
	FL_CHECK(checks > 0 && wps > 0 && zaps > 0, "shmem phase made no progress");
	munmap(mem, NW * PG);
	close(uffd);
	close(memfd);
	memfd = -1;

	/* phase 2: anonymous memory under a dirty tracker, with zaps */
	anon_tracker(1);
	/*
	 * phase 3: the same without zaps, where nothing but the scan's own TLB
	 * flush takes a writer's writable translation away after re-protect
	 * (the negative control, run.sh --control, removes that flush)
	 */
	anon_tracker(0);
	FL_PASS("no write lost under write-protect toggling, scans and MADV_DONTNEED; tracker complete with and without zaps");
}
