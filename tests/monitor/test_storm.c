// SPDX-License-Identifier: MIT
/*
 * The monitor under a storm (storm.h): a restored process of 32 threads
 * and the 52 processes it forks fault, write, MADV_DONTNEED, munmap,
 * mremap and exit all at once, over a source whose reads complete late and
 * out of order. Every page any thread reads is compared, all 4096 bytes,
 * with what that process must see. The monitor's statistics then prove
 * the events really happened.
 *
 * Knobs: FL_STORM_SECONDS (3), FL_STORM_SEED (random, printed),
 * FL_STORM_DELAY_US (1000: the longest a source read takes),
 * FL_STORM_MARGIN (60: seconds past the storm's end before a hang is
 * declared), FL_STORM_VERBOSE (0: the monitor's log level),
 * FL_STORM_NO_UFFD=1 (no monitor: the memory is filled locally, which
 * must always pass, and validates the checker itself), FL_STORM_CONTESTED=0
 * (no contested slices: every change is made by the page's only reader,
 * to tell failures of events under waiting threads from the others).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "runner.h"
#include "storm.h"

struct storm_case {
	struct fl_monitor_opts o;
	unsigned unasked_permille; /* completions that also push their pages */
	unsigned hold_us;	   /* and are then held this much longer */
};

static const struct storm_case faults_only = { { .no_prefetch = true }, 20, 0 };
static const struct storm_case prefetch = { { .no_prefetch = false }, 20, 0 };
/* Most reads pushed unasked first, their own completions held 3 ms: the
 * install helper copies those pages while the events race it
 * (install-helper.c). */
static const struct storm_case pushed = { { .no_prefetch = false }, 700, 3000 };

static double env_seconds(void)
{
	const char *v = getenv("FL_STORM_SECONDS");
	double s = v ? strtod(v, NULL) : 0;

	return s > 0 ? s : 3.0;
}

static uint64_t env_seed(void)
{
	const char *v = getenv("FL_STORM_SEED");
	struct timespec t;

	if (v && *v)
		return strtoull(v, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &t);
	return storm_mix((uint64_t)t.tv_nsec ^ (uint64_t)t.tv_sec << 32, (uint64_t)getpid());
}

/* The monitor must exit by itself once the tree is gone. */
static void join_monitor(struct harness *h)
{
	if (!harness_join_timeout(h, 30))
		return;
	fprintf(stderr, "# storm: the monitor still runs 30 s after the whole tree ended:\n");
	fl_monitor_print_stats(h->mon, stderr, false);
	fl_monitor_stop(h->mon);
	if (harness_join_timeout(h, 10))
		fail_msg("the monitor does not stop (seed %#llx)",
			 (unsigned long long)storm_cfg.seed);
	fail_msg("the monitor did not notice that every process exited (seed %#llx)",
		 (unsigned long long)storm_cfg.seed);
}

/* The knobs, printed so that a failure can be replayed; returns the time
 * past which the tree is declared hung. */
static uint64_t configure(unsigned delay)
{
	storm_cfg.seconds = env_seconds();
	storm_cfg.seed = env_seed();
	storm_cfg.no_uffd = fl_env_long("FL_STORM_NO_UFFD", 0) != 0;
	storm_cfg.contested = fl_env_long("FL_STORM_CONTESTED", 1) != 0;
	storm_cfg.board = storm_board_create();
	assert_non_null(storm_cfg.board);
	fprintf(stderr, "# storm: FL_STORM_SEED=%#llx FL_STORM_SECONDS=%g FL_STORM_DELAY_US=%u%s%s\n",
		(unsigned long long)storm_cfg.seed, storm_cfg.seconds, delay,
		storm_cfg.contested ? "" : " FL_STORM_CONTESTED=0",
		storm_cfg.no_uffd ? " FL_STORM_NO_UFFD=1 (no monitor: checking the checker)" : "");
	return storm_now_ns() + (uint64_t)((storm_cfg.seconds +
					    (double)fl_env_long("FL_STORM_MARGIN", 60)) * 1e9);
}

/* FL_STORM_NO_UFFD: the same storm over memory filled by hand. It must
 * always pass; if it does not, the test is wrong, not the monitor. */
static void run_without_monitor(uint64_t limit)
{
	pid_t root = spawn(storm_root, NULL);
	int code = storm_wait_root(root, limit, NULL);

	storm_print_counts();
	storm_board_destroy(storm_cfg.board);
	if (code)
		fail_msg("the storm failed without a monitor (root: %d): a bug of the test "
			 "(seed %#llx)", code, (unsigned long long)storm_cfg.seed);
}

static void test_storm_threads_forks_events_keep_every_byte(const struct fl_case *c)
{
	static const char *const events[4] = { "fork", "remove", "unmap", "remap" };
	unsigned delay = (unsigned)fl_env_long("FL_STORM_DELAY_US", 1000);
	const struct storm_case *sc = c->a;
	struct fl_monitor_opts o = sc->o;
	uint64_t limit = configure(delay), seen[4], pushed;
	struct harness h = { 0 };
	pid_t root;
	int code;

	if (storm_cfg.no_uffd) {
		run_without_monitor(limit);
		return;
	}
	o.verbose = (int)fl_env_long("FL_STORM_VERBOSE", 0);
	if (sc->hold_us) /* two helpers: they race each other too */
		setenv("FAULTLINE_INSTALL_THREADS", "2", 1);
	harness_create_slow(&h, &o, delay, storm_cfg.seed, sc->unasked_permille,
			    sc->hold_us);
	root = spawn(storm_root, h.sock); /* before the monitor's thread: see spawn() */
	harness_run(&h);
	code = storm_wait_root(root, limit, &h);
	storm_print_counts();
	join_monitor(&h);
	if (code >= 0)
		fl_monitor_print_stats(h.mon, stderr, false);
	for (size_t i = 0; i < 4; i++)
		seen[i] = harness_stat(&h, events[i]);
	pushed = harness_stat(&h, "pages_pushed");
	unsetenv("FAULTLINE_INSTALL_THREADS");
	harness_free(&h);
	storm_board_destroy(storm_cfg.board);
	if (code < 0)
		fail_msg("the storm hung (seed %#llx): see the threads above",
			 (unsigned long long)storm_cfg.seed);
	if (code)
		fail_msg("a process of the storm saw wrong bytes or died (seed %#llx): see above",
			 (unsigned long long)storm_cfg.seed);
	/* Not vacuous: the tree was forked, and every kind of event came. */
	if (seen[0] < 50 || !seen[1] || !seen[2] || !seen[3])
		fail_msg("not a storm: %llu fork (want 50 or more), %llu remove, %llu unmap, %llu "
			 "remap events (want some of each)", (unsigned long long)seen[0],
			 (unsigned long long)seen[1], (unsigned long long)seen[2],
			 (unsigned long long)seen[3]);
	if (sc->hold_us && !pushed)
		fail_msg("the install helper installed no pushed page");
}

int main(int argc, char **argv)
{
	unsigned timeout = (unsigned)(env_seconds() + fl_env_long("FL_STORM_MARGIN", 60) + 120);
	struct fl_case *cases = NULL;
	size_t n = 0;

	fl_case_add(&cases, &n, test_storm_threads_forks_events_keep_every_byte, &faults_only,
		    NULL, "test_storm_threads_forks_events_keep_every_byte/faults_only")->timeout =
		timeout;
	fl_case_add(&cases, &n, test_storm_threads_forks_events_keep_every_byte, &prefetch, NULL,
		    "test_storm_threads_forks_events_keep_every_byte/prefetch")->timeout = timeout;
	fl_case_add(&cases, &n, test_storm_threads_forks_events_keep_every_byte, &pushed, NULL,
		    "test_storm_threads_forks_events_keep_every_byte/pushed")->timeout = timeout;
	return fl_run_cases(cases, n, argc, argv);
}
