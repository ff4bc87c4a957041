// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline/handoff.h>

#include "harness.h"
#include "memtypes.h"
#include "source-inject.h"
#include "runner.h"

void expect_page(size_t i, void *buf)
{
	fill_pattern(buf, PG, 0xC0FFEE00ULL + i);
}

static int adopt(void *arg, struct fl_handoff *h, char *err, size_t errlen)
{
	return fl_monitor_adopt_handoff(arg, h, err, errlen);
}

static void refused(void *arg, pid_t peer, int status, const char *why)
{
	(void)peer;
	(void)status;
	(void)why;
	fl_monitor_count_refused_handoff(arg);
}

static void *run(void *arg)
{
	struct harness *h = arg;

	h->run_ret = fl_monitor_run(h->mon);
	return NULL;
}

void harness_create(struct harness *h, const struct fl_monitor_opts *opts)
{
	struct fl_region regions[2] = {
		{ .start = 0x10000000, .len = DATA_PAGES * PG, .page_size = PG, .prot = 3,
		  .name = "data" },
		{ .start = 0x20000000, .len = ZERO_PAGES * PG, .page_size = PG, .prot = 3,
		  .name = "zeros" },
	};
	const void *data[2];
	struct fl_monitor_opts o = *opts;
	struct fl_handoff_server_opts so = { .verbose = opts->verbose, .refused = refused };
	char err[256] = "";

	{
		const struct inject_opts *io = h->inject;
		struct inject_opts slow = h->slow;
		bool no = h->no_inject;

		memset(h, 0, sizeof(*h));
		h->slow = slow;
		h->inject = io == &h->slow ? &h->slow : io;
		h->no_inject = no;
	}
	h->data = malloc(DATA_PAGES * PG);
	assert_non_null(h->data);
	for (size_t i = 0; i < DATA_PAGES; i++)
		expect_page(i, h->data + i * PG);
	data[0] = h->data;
	data[1] = NULL;
	assert_int_equal(fl_source_memory_create(&h->src, regions, 2, data), 0);
	if (!h->no_inject) {
		/* Every monitor test runs its async paths for real: completions
		 * late, out of order, and pages pushed unasked, from a seed
		 * (FL_SEED) printed so a failure repeats. */
		struct inject_opts io = { .seed = 1, .max_delay_us = 300,
					  .unasked_permille = 50, .split_permille = 50 };
		struct fl_source *inner = h->src;

		if (getenv("FL_SEED"))
			io.seed = strtoull(getenv("FL_SEED"), NULL, 0);
		if (h->inject)
			io = *h->inject;
		printf("# page source: memory behind the fault injector, seed %llu\n",
		       (unsigned long long)io.seed);
		assert_int_equal(inject_source_create(&h->src, inner, &io), 0);
	}
	snprintf(h->sock, sizeof(h->sock), "/tmp/fl-test-%d.sock", getpid());
	o.keep_caps = true; /* capabilities are per thread: keep the test's */
	o.exit_when_idle = true;
	if (fl_monitor_create(&h->mon, h->src, &o, err, sizeof(err)))
		fail_msg("monitor: %s", err);
	if (fl_handoff_server_create(&h->srv, fl_monitor_event_base(h->mon), h->sock,
				     FL_HANDOFF_FAULTLINE, &so, adopt, h->mon, err, sizeof(err)))
		fail_msg("handoff server: %s", err);
}

void harness_create_slow(struct harness *h, const struct fl_monitor_opts *opts,
			 unsigned max_delay_us, uint64_t seed, unsigned unasked_permille,
			 unsigned hold_us)
{
	h->slow = (struct inject_opts){ .seed = seed, .max_delay_us = max_delay_us,
					.unasked_permille = unasked_permille,
					.split_permille = 20, .hold_after_push_us = hold_us };
	h->inject = &h->slow;
	harness_create(h, opts);
}

void harness_run(struct harness *h)
{
	assert_int_equal(pthread_create(&h->thread, NULL, run, h), 0);
}

void harness_start(struct harness *h, const struct fl_monitor_opts *opts)
{
	harness_create(h, opts);
	harness_run(h);
}

void harness_join(struct harness *h)
{
	pthread_join(h->thread, NULL);
	assert_int_equal(h->run_ret, 0);
}

int harness_join_timeout(struct harness *h, unsigned seconds)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	if (pthread_timedjoin_np(h->thread, NULL, &until))
		return -ETIMEDOUT;
	assert_int_equal(h->run_ret, 0);
	return 0;
}

void harness_free(struct harness *h)
{
	fl_handoff_server_destroy(h->srv);
	fl_monitor_destroy(h->mon);
	fl_source_destroy(h->src);
	free(h->data);
}

uint64_t monitor_stat(struct fl_monitor *m, const char *key)
{
	char *buf = NULL, pat[64], *at;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	unsigned long long v = 0;

	fl_monitor_print_stats(m, f, true);
	fclose(f);
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	at = strstr(buf, pat);
	assert_non_null(at);
	sscanf(at + strlen(pat), " %llu", &v);
	free(buf);
	return v;
}

uint64_t harness_stat(struct harness *h, const char *key)
{
	return monitor_stat(h->mon, key);
}

char *workload_map(struct fl_handoff_region r[2])
{
	size_t len = (DATA_PAGES + ZERO_PAGES) * PG;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (base == MAP_FAILED)
		_exit(90);
	madvise(base, len, MADV_NOHUGEPAGE);
	r[0] = (struct fl_handoff_region){ (uint64_t)(uintptr_t)base, DATA_PAGES * PG, 0, 0, PG };
	r[1] = (struct fl_handoff_region){ (uint64_t)(uintptr_t)base + DATA_PAGES * PG,
					   ZERO_PAGES * PG, 0, 1, PG };
	return base;
}

char *workload_handoff(const char *sock)
{
	struct fl_handoff_region r[2];
	char *base = workload_map(r);
	struct fl_uffd u;
	char err[256];

	if (fl_restore_handoff(sock, r, 2, &u, err, sizeof(err))) {
		fprintf(stderr, "workload: %s\n", err);
		_exit(91);
	}
	/* u.fd stays open: the restorer's own copy. */
	return base;
}

bool check_pages(const char *base, size_t first, size_t n)
{
	char want[PG];

	for (size_t i = first; i < first + n; i++) {
		expect_page(i, want);
		if (memcmp(base + i * PG, want, PG)) {
			fprintf(stderr, "workload: page %zu differs from the source\n", i);
			return false;
		}
	}
	return true;
}

bool is_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static int thread_count(void)
{
	char line[128];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

pid_t spawn(void (*fn)(const char *sock), const char *sock)
{
	pid_t pid;

	/* A child forked from a multithreaded process inherits every lock
	 * another thread held at that instant: ASan's allocator lock, held by
	 * the monitor thread, once hung a workload at its first malloc. */
	if (thread_count() != 1)
		fail_msg("spawn: fork workloads before the monitor thread starts");
	pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		fn(sock);
		_exit(0);
	}
	return pid;
}

int wait_exit_code(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
