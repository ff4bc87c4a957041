// SPDX-License-Identifier: MIT
/*
 * Dirty tracking must never miss a write. Writer threads store increasing
 * counters into their own pages while the tracker loops collect + copy into
 * a shadow; optionally a thread empties pages with MADV_DONTNEED and another
 * forks, both changing page tables under the tracker. At the end (writers
 * stopped, one last collect) the shadow equals memory byte for byte, and
 * every store landed in one of the sets that could have been the "next"
 * set after it. FL_DIRTY_SECONDS sets the length (default 2 s).
 */
#include <errno.h>
#include <liburing.h>
#include <sys/uio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "runner.h"

#define PG 4096UL
#define PAGES 1024
#define WRITERS 3
#define LOG_CAP (1u << 21)
#define MIN_COLLECTS 16

struct store_log {
	uint32_t page, g_before, g_after;
};

struct stress {
	char *mem;
	atomic_uint gen; /* completed collects */
	atomic_bool stop;
	struct store_log *log[WRITERS];
	size_t nlog[WRITERS];
	uint64_t forks, zaps;
};

struct writer {
	struct stress *s;
	int id;
};

static void *writer(void *arg)
{
	struct writer *w = arg;
	struct stress *s = w->s;
	unsigned *logged_gen = calloc(PAGES, sizeof(unsigned));
	uint64_t k = 0;

	assert_non_null(logged_gen);
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		uint32_t page = (uint32_t)(w->id + WRITERS * (k % (PAGES / WRITERS)));
		unsigned g1 = atomic_load(&s->gen), g2;

		k++;
		*(volatile uint64_t *)(s->mem + page * PG + (k % 512) * 8) = k;
		g2 = atomic_load(&s->gen);
		/* Log the first store to a page in each generation: that is the
		 * one a tracker could miss; later ones land in the same page and
		 * are covered by the final comparison. */
		if (logged_gen[page] == g1 + 1)
			continue;
		logged_gen[page] = g1 + 1;
		if (s->nlog[w->id] < LOG_CAP)
			s->log[w->id][s->nlog[w->id]++] =
				(struct store_log){ page, g1, g2 };
	}
	free(logged_gen);
	return NULL;
}

static void *zapper(void *arg)
{
	struct stress *s = arg;
	unsigned seed = 1;

	while (!atomic_load(&s->stop)) {
		size_t page = (size_t)rand_r(&seed) % PAGES;

		madvise(s->mem + page * PG, PG, MADV_DONTNEED);
		s->zaps++;
		usleep(200);
	}
	return NULL;
}

static void *forker(void *arg)
{
	struct stress *s = arg;

	while (!atomic_load(&s->stop)) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		s->forks++;
		usleep(1000);
	}
	return NULL;
}

static double elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static bool bit(const uint64_t *bm, size_t i)
{
	return bm[i / 64] & (1ULL << (i % 64));
}

static char *map_memory(const char *kind)
{
	char *p;

	if (!strcmp(kind, "shmem"))
		p = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	else
		p = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	madvise(p, PAGES * PG, !strcmp(kind, "anon_thp") ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return p;
}

static enum fl_dirty_method method_or_skip(const char *name)
{
	if (!strcmp(name, "pagemap_scan")) {
		if (!fl_dirty_scan_supported())
			fl_skip("kernel lacks UFFD_FEATURE_WP_ASYNC or PAGEMAP_SCAN (6.7+)");
		return FL_DIRTY_PAGEMAP_SCAN;
	}
	return FL_DIRTY_WP_FAULTS;
}

struct variant {
	const char *method, *memory;
	bool churn; /* MADV_DONTNEED and fork() concurrently */
};

static void test_tracker_never_misses_a_write(const struct fl_case *c)
{
	const struct variant *v = c->a;
	long seconds = fl_env_long("FL_DIRTY_SECONDS", 2);
	enum fl_dirty_method method = method_or_skip(v->method);
	struct stress s = { 0 };
	struct writer w[WRITERS];
	pthread_t wt[WRITERS], zt, ft;
	uint64_t **sets = NULL;
	size_t nsets = 0, ndirty, total_dirty = 0;
	struct fl_dirty *d;
	char *shadow;
	struct timespec t0, now;
	bool done = false;

	s.mem = map_memory(v->memory);
	shadow = calloc(PAGES, PG);
	assert_non_null(shadow);
	/* Start from a known state: memory and shadow both hold this. */
	for (size_t i = 0; i < PAGES; i++)
		memset(s.mem + i * PG, (int)(i & 0xff), PG);
	memcpy(shadow, s.mem, PAGES * PG);
	assert_int_equal(fl_dirty_create(&d, s.mem, PAGES * PG, method), 0);
	assert_int_equal(fl_dirty_method_used(d), method);
	for (int i = 0; i < WRITERS; i++) {
		s.log[i] = malloc(LOG_CAP * sizeof(struct store_log));
		assert_non_null(s.log[i]);
		w[i] = (struct writer){ &s, i };
		assert_int_equal(pthread_create(&wt[i], NULL, writer, &w[i]), 0);
	}
	if (v->churn) {
		assert_int_equal(pthread_create(&zt, NULL, zapper, &s), 0);
		assert_int_equal(pthread_create(&ft, NULL, forker, &s), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!done) {
		uint64_t *bm = calloc(PAGES / 64, sizeof(uint64_t));

		clock_gettime(CLOCK_MONOTONIC, &now);
		/* The length is a time (to the nanosecond: whole seconds
		 * made a "1 s" run end after one collect when it began just
		 * before a second turned), but never fewer than MIN_COLLECTS
		 * rounds, which a stalled vCPU under TCG could also cut. */
		if ((elapsed(&t0, &now) >= (double)seconds && nsets + 1 >= MIN_COLLECTS) ||
		    atomic_load(&s.stop)) {
			/* Stop everyone; the collect below is the final one. */
			atomic_store(&s.stop, true);
			for (int i = 0; i < WRITERS; i++)
				pthread_join(wt[i], NULL);
			if (v->churn) {
				pthread_join(zt, NULL);
				pthread_join(ft, NULL);
			}
			done = true;
		}
		assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
		atomic_fetch_add(&s.gen, 1);
		sets = realloc(sets, (nsets + 1) * sizeof(*sets));
		sets[nsets++] = bm;
		total_dirty += ndirty;
		for (size_t i = 0; i < PAGES; i++)
			if (bit(bm, i))
				memcpy(shadow + i * PG, s.mem + i * PG, PG);
		for (int i = 0; i < WRITERS; i++)
			if (s.nlog[i] >= LOG_CAP)
				atomic_store(&s.stop, true);
	}
	/* 1. Nothing was lost: the shadow is the memory. */
	for (size_t i = 0; i < PAGES; i++)
		if (memcmp(shadow + i * PG, s.mem + i * PG, PG))
			fail_msg("page %zu differs from its shadow after the final collect", i);
	/* 2. Every store was reported by a set that could follow it: a store
	 * seen between collects g1 and g2 must be in a set g1+1 .. g2+2. */
	for (int wi = 0; wi < WRITERS; wi++)
		for (size_t k = 0; k < s.nlog[wi]; k++) {
			const struct store_log *l = &s.log[wi][k];
			size_t last = l->g_after + 2 < nsets ? l->g_after + 2 : nsets;
			bool found = false;

			for (size_t g = l->g_before + 1; g <= last && !found; g++)
				found = bit(sets[g - 1], l->page);
			if (!found)
				fail_msg("store %zu of writer %d to page %u (between collects %u "
					 "and %u) is in none of the sets %u..%zu",
					 k, wi, l->page, l->g_before, l->g_after,
					 l->g_before + 1, last);
		}
	print_message("%zu collects, %zu dirty pages reported, %zu stores checked, "
		      "%llu zaps, %llu forks\n", nsets, total_dirty,
		      s.nlog[0] + s.nlog[1] + s.nlog[2], (unsigned long long)s.zaps,
		      (unsigned long long)s.forks);
	assert_true(nsets >= MIN_COLLECTS); /* a full log needs 2048 rounds */
	for (size_t i = 0; i < nsets; i++)
		free(sets[i]);
	free(sets);
	for (int i = 0; i < WRITERS; i++)
		free(s.log[i]);
	fl_dirty_destroy(d);
	free(shadow);
	munmap(s.mem, PAGES * PG);
}

/* Exactness on a quiet range: the written pages, no more, no fewer. */
static void test_collect_reports_exactly_the_written_pages(const struct fl_case *c)
{
	const struct variant *v = c->a;
	enum fl_dirty_method method = method_or_skip(v->method);
	static const size_t written[] = { 0, 3, 64, 65, 700, PAGES - 1 };
	uint64_t bm[PAGES / 64];
	struct fl_dirty *d;
	size_t ndirty;
	char *mem = map_memory(v->memory);

	memset(mem, 1, PAGES * PG); /* populated: no page is new */
	assert_int_equal(fl_dirty_create(&d, mem, PAGES * PG, method), 0);
	assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
	assert_int_equal(ndirty, 0);
	for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++)
		mem[written[i] * PG + 100] = 2;
	assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
	assert_int_equal(ndirty, sizeof(written) / sizeof(written[0]));
	for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++)
		assert_true(bit(bm, written[i]));
	/* Re-protected: quiet again until the next write. */
	assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
	assert_int_equal(ndirty, 0);
	/* MADV_DONTNEED: private memory now reads zeros, a change that must
	 * be reported although no write happened; shared memory keeps its
	 * contents in the page cache. */
	madvise(mem + 5 * PG, PG, MADV_DONTNEED);
	assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
	if (strcmp(v->memory, "shmem"))
		assert_true(bit(bm, 5));
	else
		assert_int_equal(mem[5 * PG + 100], 1);
	fl_dirty_destroy(d);
	munmap(mem, PAGES * PG);
}

/* Ranges declared pinned (DMA writes never fault) are dirty every time. */
static void test_declared_pinned_ranges_are_always_dirty(const struct fl_case *c)
{
	const struct variant *v = c->a;
	enum fl_dirty_method method = method_or_skip(v->method);
	uint64_t bm[PAGES / 64];
	struct fl_dirty *d;
	size_t ndirty;
	char *mem = map_memory(v->memory);

	memset(mem, 1, PAGES * PG);
	assert_int_equal(fl_dirty_create(&d, mem, PAGES * PG, method), 0);
	assert_int_equal(fl_dirty_always(d, mem + 10 * PG, 3 * PG), 0);
	assert_int_equal(fl_dirty_always(d, mem + PAGES * PG, PG), -EINVAL);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
		assert_true(bit(bm, 10) && bit(bm, 11) && bit(bm, 12));
		assert_false(bit(bm, 13));
		assert_int_equal(ndirty, 3); /* nothing here is really pinned */
	}
	fl_dirty_destroy(d);
	munmap(mem, PAGES * PG);
}

/*
 * A write through a DMA pin (here an io_uring fixed buffer filled by
 * READ_FIXED) never faults, so write-protection cannot see it. With the
 * kernel's patch 2 (a possibly-pinned page is never re-protected, proven
 * by fdinfo) collect reports the page by itself; elsewhere the runtime relies on the caller declaring the pinned
 * range (fl_dirty_always). Either way the page must be in the set.
 */
static void test_write_through_a_pin_is_reported(const struct fl_case *c)
{
	const struct variant *v = c->a;
	enum fl_dirty_method method = method_or_skip(v->method);
	char path[] = "/tmp/fl-pin-XXXXXX", *mem = map_memory(v->memory), *pattern;
	struct iovec iov = { .iov_base = mem + 5 * PG, .iov_len = PG };
	uint64_t bm[PAGES / 64];
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct fl_dirty *d;
	size_t ndirty;
	int fd = mkstemp(path);

	pattern = malloc(PG);
	assert_true(fd >= 0 && pattern);
	unlink(path);
	memset(pattern, 0x5c, PG);
	assert_int_equal(pwrite(fd, pattern, PG, 0), PG);
	memset(mem, 1, PAGES * PG);
	if (io_uring_queue_init(4, &ring, 0) < 0)
		fl_skip("io_uring is not available here");
	assert_int_equal(fl_dirty_create(&d, mem, PAGES * PG, method), 0);
	assert_int_equal(io_uring_register_buffers(&ring, &iov, 1), 0);
	/* Patch 2 serves the PAGEMAP_SCAN method; the fault-based
	 * fallback (kernels before 6.7) always needs the declaration. */
	if (!(fl_dirty_pinned_supported() && method == FL_DIRTY_PAGEMAP_SCAN))
		assert_int_equal(fl_dirty_always(d, mem + 5 * PG, PG), 0);
	/* Pinning wrote nothing, but start from a clean set anyway. */
	assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
	io_uring_prep_read_fixed(io_uring_get_sqe(&ring), fd, mem + 5 * PG, PG, 0, 0);
	assert_int_equal(io_uring_submit(&ring), 1);
	assert_int_equal(io_uring_wait_cqe(&ring, &cqe), 0);
	assert_int_equal(cqe->res, PG);
	io_uring_cqe_seen(&ring, cqe);
	assert_memory_equal(mem + 5 * PG, pattern, PG); /* the kernel wrote it */
	assert_int_equal(fl_dirty_collect(d, bm, &ndirty), 0);
	assert_true(bit(bm, 5));
	io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
	fl_dirty_destroy(d);
	close(fd);
	free(pattern);
	munmap(mem, PAGES * PG);
}

int main(int argc, char **argv)
{
	static const char *methods[] = { "pagemap_scan", "wp_faults" };
	static const char *memories[] = { "anon", "anon_thp", "shmem" };
	static struct variant v[2][3][2];
	struct fl_case *cases = NULL;
	/* room for the stress (FL_DIRTY_SECONDS) under TCG, and the checks */
	unsigned stress_timeout = 100 + 2 * (unsigned)fl_env_long("FL_DIRTY_SECONDS", 2);
	size_t n = 0;

	for (int m = 0; m < 2; m++)
		for (int k = 0; k < 3; k++) {
			for (int churn = 0; churn < 2; churn++) {
				v[m][k][churn] = (struct variant){ methods[m], memories[k], churn };
				fl_case_add(&cases, &n, test_tracker_never_misses_a_write,
					    &v[m][k][churn], NULL,
					    "test_tracker_never_misses_a_write%s/%s/%s",
					    churn ? "_with_dontneed_and_fork" : "",
					    methods[m], memories[k])->timeout = stress_timeout;
			}
			fl_case_add(&cases, &n, test_write_through_a_pin_is_reported,
				    &v[m][k][0], NULL,
				    "test_write_through_a_pin_is_reported/%s/%s",
				    methods[m], memories[k]);
			fl_case_add(&cases, &n, test_declared_pinned_ranges_are_always_dirty,
				    &v[m][k][0], NULL,
				    "test_declared_pinned_ranges_are_always_dirty/%s/%s",
				    methods[m], memories[k]);
			fl_case_add(&cases, &n, test_collect_reports_exactly_the_written_pages,
				    &v[m][k][0], NULL,
				    "test_collect_reports_exactly_the_written_pages/%s/%s",
				    methods[m], memories[k]);
		}
	return fl_run_cases(cases, n, argc, argv);
}
