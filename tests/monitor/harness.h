/* SPDX-License-Identifier: MIT */
/* A monitor on a thread of the test, serving an in-memory source whose
 * every page is predictable, and workload processes that check each page
 * they read against that prediction. */
#ifndef FL_TEST_MONITOR_HARNESS_H
#define FL_TEST_MONITOR_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <faultline/handoff.h>
#include <faultline/monitor.h>

#include "source-inject.h"

#define PG 4096UL
#define DATA_PAGES 4096 /* region 0: 16 MiB of data */
#define ZERO_PAGES 1024 /* region 1: 4 MiB that the source says is zero */

struct harness {
	struct fl_source *src;
	struct fl_monitor *mon;
	struct fl_handoff_server *srv; /* faultline's handoff socket, on the monitor's loop */
	pthread_t thread;
	char sock[108];
	char *data;
	int run_ret;
	/* Set before harness_create (else zeroed): the injector's settings
	 * (NULL: a light default), or no injector at all. */
	const struct inject_opts *inject;
	bool no_inject;
	struct inject_opts slow; /* harness_create_slow's settings */
};

/* Create the monitor and its handoff server (the socket listens at once).
 * h->inject and h->no_inject are read first; everything else of h is
 * reset. Then run it on a thread (harness_run). Workloads are spawned
 * between the two: see spawn(). */
void harness_create(struct harness *h, const struct fl_monitor_opts *opts);
void harness_run(struct harness *h);
void harness_start(struct harness *h, const struct fl_monitor_opts *opts);
/* harness_create behind the fault injector with these settings: reads
 * complete up to max_delay_us late and out of order, and of every
 * thousand completions unasked_permille also push their pages unasked
 * (what the monitor's install helper takes) and, with hold_us, are then
 * held that much longer themselves; drawn from seed. */
void harness_create_slow(struct harness *h, const struct fl_monitor_opts *opts,
			 unsigned max_delay_us, uint64_t seed, unsigned unasked_permille,
			 unsigned hold_us);
/* Wait for the monitor to exit by itself (all processes gone). */
void harness_join(struct harness *h);
/* The same, giving up after `seconds`: 0 once joined, -ETIMEDOUT if the
 * monitor still runs (then it may be stopped and joined again). */
int harness_join_timeout(struct harness *h, unsigned seconds);
void harness_free(struct harness *h);
/* A statistic from the monitor's JSON, e.g. "faults". */
uint64_t harness_stat(struct harness *h, const char *key);
uint64_t monitor_stat(struct fl_monitor *m, const char *key);

/* What page i of source region 0 holds. */
void expect_page(size_t i, void *buf);

/* In a workload: map both regions at fresh addresses (r says where, as
 * the handoff describes them); the base of region 0. */
char *workload_map(struct fl_handoff_region r[2]);
/* In a workload: map both regions at fresh addresses and hand them over.
 * Returns the base of region 0 (region 1 follows right after it). */
char *workload_handoff(const char *sock);
/* Check `n` pages of region 0 starting at page `first`, mapped at base. */
bool check_pages(const char *base, size_t first, size_t n);
bool is_zero(const char *p, size_t len);

/* Fork a workload running fn(sock); returns its pid. Only from a
 * single-threaded test process (fails the test otherwise). */
pid_t spawn(void (*fn)(const char *sock), const char *sock);
int wait_exit_code(pid_t pid);

#endif
