/* SPDX-License-Identifier: MIT */
/* Monitor statistics: counters, a latency histogram, per-thread blocked time. */
#ifndef FL_MONITOR_STATS_H
#define FL_MONITOR_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <faultline/monitor.h>

/* Log-linear histogram of nanoseconds: 8 sub-buckets per power of two
 * (values within 12.5 %), no allocation, constant-time record. */
#define HIST_BUCKETS (64 * 8)
struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n, max;
};

void fl__hist_record(struct hist *h, uint64_t v);
uint64_t fl__hist_percentile(const struct hist *h, double p);

#define STATS_TIDS 512
struct tid_stat {
	uint32_t tid;
	uint64_t faults, blocked_ns;
};

struct stats {
	uint64_t t_start;
	uint64_t faults, faults_joined, faults_hurried, faults_zero, faults_new_memory, faults_spurious;
	uint64_t pages_fault, pages_prefetched, pages_pushed, pages_moved, pages_zeroed, pages_existed, bytes_read, bytes_reread;
	uint64_t fork, remap, remove, unmap, exits, eagain, handoffs, handoffs_refused;
	uint64_t eagain_skipped; /* resolves not tried: the EAGAIN backoff ran */
	uint64_t pages_poisoned, killed, reads_failed, reads_cancelled, retries, wakes;
	uint64_t reads_reissued, idle_wakes;
	struct hist latency;
	struct tid_stat tids[STATS_TIDS];
	size_t ntids;
};

void fl__stats_thread_blocked(struct stats *s, uint32_t tid, uint64_t ns);
/* The counters as the public plain struct, duration up to now. */
void fl__stats_get(const struct stats *s, uint64_t now, struct fl_monitor_stats *out);

#endif
