// SPDX-License-Identifier: MIT
#include "stats.h"

static unsigned bucket(uint64_t v)
{
	unsigned msb;

	if (v < 8)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return msb * 8 + (unsigned)((v >> (msb - 3)) & 7);
}

static uint64_t bucket_value(unsigned b)
{
	unsigned msb = b / 8;

	if (b < 8)
		return b;
	/* the middle of the bucket */
	return ((8ULL | (b & 7)) << (msb - 3)) + ((1ULL << (msb - 3)) >> 1);
}

void fl__hist_record(struct hist *h, uint64_t v)
{
	h->count[bucket(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

uint64_t fl__hist_percentile(const struct hist *h, double p)
{
	uint64_t want, seen = 0;

	if (!h->n)
		return 0;
	want = (uint64_t)(p / 100.0 * (double)h->n + 0.5);
	if (want < 1)
		want = 1;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->count[b];
		if (seen >= want) {
			uint64_t v = bucket_value(b);

			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

void fl__stats_thread_blocked(struct stats *s, uint32_t tid, uint64_t ns)
{
	size_t i;

	for (i = 0; i < s->ntids; i++)
		if (s->tids[i].tid == tid)
			break;
	if (i == s->ntids) {
		if (s->ntids == STATS_TIDS)
			return; /* table full: the rest is in the totals */
		s->tids[s->ntids++].tid = tid;
	}
	s->tids[i].faults++;
	s->tids[i].blocked_ns += ns;
}

void fl__stats_get(const struct stats *s, uint64_t now, struct fl_monitor_stats *o)
{
	*o = (struct fl_monitor_stats){
		.duration_s = (double)(now - s->t_start) / 1e9,
		.faults = s->faults, .faults_joined = s->faults_joined,
		.faults_hurried = s->faults_hurried, .faults_zero = s->faults_zero,
		.faults_new_memory = s->faults_new_memory, .faults_spurious = s->faults_spurious,
		.pages_fault = s->pages_fault, .pages_prefetched = s->pages_prefetched,
		.pages_pushed = s->pages_pushed, .pages_moved = s->pages_moved,
		.pages_zeroed = s->pages_zeroed, .pages_existed = s->pages_existed,
		.bytes_read = s->bytes_read, .bytes_read_again = s->bytes_reread,
		.fork = s->fork, .remap = s->remap, .remove = s->remove, .unmap = s->unmap,
		.exits = s->exits, .eagain = s->eagain,
		.retries = s->retries, .wakes = s->wakes, .idle_wakes = s->idle_wakes,
		.pages_poisoned = s->pages_poisoned, .killed = s->killed,
		.reads_failed = s->reads_failed, .reads_cancelled = s->reads_cancelled,
		.reads_reissued = s->reads_reissued,
		.handoffs = s->handoffs, .handoffs_refused = s->handoffs_refused,
		.latency_p50_ns = fl__hist_percentile(&s->latency, 50),
		.latency_p90_ns = fl__hist_percentile(&s->latency, 90),
		.latency_p99_ns = fl__hist_percentile(&s->latency, 99),
		.latency_max_ns = s->latency.max,
		.threads = s->ntids,
		.eagain_waited = s->eagain_skipped,
	};
}
