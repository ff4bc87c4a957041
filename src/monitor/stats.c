// SPDX-License-Identifier: MIT
#include <inttypes.h>

#include "stats.h"
#include "util/json-writer.h"

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

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* One line of JSON. Its shape is fixed, so the writer can only fail on a
 * write error (or a bug here); either is said on stderr, as this function
 * has no caller to return it to. */
static void print_json(const struct stats *s, FILE *out, double secs)
{
	const struct hist *h = &s->latency;
	struct fl__json j;

	fl__json_begin(&j, out, FL__JSON_COMPACT);
	fl__json_fixed(&j, "duration_s", secs, 3);
	fl__json_uint(&j, "faults", s->faults);
	fl__json_uint(&j, "faults_joined", s->faults_joined);
	fl__json_uint(&j, "faults_hurried", s->faults_hurried);
	fl__json_uint(&j, "faults_zero", s->faults_zero);
	fl__json_uint(&j, "faults_new_memory", s->faults_new_memory);
	fl__json_uint(&j, "faults_spurious", s->faults_spurious);
	fl__json_uint(&j, "pages_copied_on_fault", s->pages_fault);
	fl__json_uint(&j, "pages_prefetched", s->pages_prefetched);
	fl__json_uint(&j, "pages_pushed", s->pages_pushed);
	fl__json_uint(&j, "pages_moved", s->pages_moved);
	fl__json_uint(&j, "pages_zeroed", s->pages_zeroed);
	fl__json_uint(&j, "pages_already_present", s->pages_existed);
	fl__json_uint(&j, "bytes_read", s->bytes_read);
	fl__json_uint(&j, "bytes_read_again", s->bytes_reread);
	fl__json_object(&j, "events");
	fl__json_uint(&j, "fork", s->fork);
	fl__json_uint(&j, "remap", s->remap);
	fl__json_uint(&j, "remove", s->remove);
	fl__json_uint(&j, "unmap", s->unmap);
	fl__json_uint(&j, "exit", s->exits);
	fl__json_uint(&j, "eagain", s->eagain);
	fl__json_close(&j);
	fl__json_uint(&j, "retries", s->retries);
	fl__json_uint(&j, "wakes", s->wakes);
	fl__json_uint(&j, "pages_poisoned", s->pages_poisoned);
	fl__json_uint(&j, "killed", s->killed);
	fl__json_uint(&j, "reads_failed", s->reads_failed);
	fl__json_uint(&j, "reads_cancelled", s->reads_cancelled);
	fl__json_uint(&j, "reads_reissued", s->reads_reissued);
	fl__json_uint(&j, "idle_wakes", s->idle_wakes);
	fl__json_uint(&j, "handoffs", s->handoffs);
	fl__json_uint(&j, "handoffs_refused", s->handoffs_refused);
	fl__json_object(&j, "fault_latency_us");
	fl__json_fixed(&j, "p50", us(fl__hist_percentile(h, 50)), 1);
	fl__json_fixed(&j, "p90", us(fl__hist_percentile(h, 90)), 1);
	fl__json_fixed(&j, "p99", us(fl__hist_percentile(h, 99)), 1);
	fl__json_fixed(&j, "max", us(h->max), 1);
	fl__json_close(&j);
	fl__json_array(&j, "threads");
	for (size_t i = 0; i < s->ntids; i++) {
		fl__json_object(&j, NULL);
		fl__json_uint(&j, "tid", s->tids[i].tid);
		fl__json_uint(&j, "faults", s->tids[i].faults);
		fl__json_fixed(&j, "blocked_us", us(s->tids[i].blocked_ns), 1);
		fl__json_close(&j);
	}
	fl__json_close(&j);
	if (fl__json_end(&j))
		fprintf(stderr, "faultline: statistics as JSON: %s\n", fl__json_error(&j));
}

void fl__stats_print(const struct stats *s, FILE *out, bool json, uint64_t now)
{
	double secs = (double)(now - s->t_start) / 1e9;
	const struct hist *h = &s->latency;

	if (json) {
		print_json(s, out, secs);
		return;
	}
	fprintf(out, "faultline monitor statistics (%.2f s)\n", secs);
	fprintf(out, "  faults: %" PRIu64 " (%" PRIu64 " joined a read in flight, %" PRIu64
		" of those hurried with a read of their own, %" PRIu64 " zero pages, %" PRIu64
		" outside the snapshot, %" PRIu64 " already present)\n",
		s->faults, s->faults_joined, s->faults_hurried, s->faults_zero,
		s->faults_new_memory, s->faults_spurious);
	fprintf(out, "  pages: %" PRIu64 " copied on fault, %" PRIu64 " prefetched, %" PRIu64
		" pushed by the source, %" PRIu64 " zeroed, %" PRIu64 " found present; %.1f MiB read (%.1f MiB again, to hurry faults);"
		" %" PRIu64 " installed by UFFDIO_MOVE\n",
		s->pages_fault, s->pages_prefetched, s->pages_pushed, s->pages_zeroed, s->pages_existed,
		(double)s->bytes_read / (1 << 20), (double)s->bytes_reread / (1 << 20), s->pages_moved);
	fprintf(out, "  fault service latency: p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us\n",
		us(fl__hist_percentile(h, 50)), us(fl__hist_percentile(h, 90)),
		us(fl__hist_percentile(h, 99)), us(h->max));
	fprintf(out, "  events: %" PRIu64 " fork, %" PRIu64 " remap, %" PRIu64 " remove, %" PRIu64
		" unmap, %" PRIu64 " exit; %" PRIu64 " EAGAIN retries; %" PRIu64
		" handoffs (%" PRIu64 " refused)\n",
		s->fork, s->remap, s->remove, s->unmap, s->exits, s->eagain, s->handoffs,
		s->handoffs_refused);
	fprintf(out, "  failures: %" PRIu64 " reads failed, %" PRIu64 " pages poisoned (SIGBUS), %"
		PRIu64 " processes killed; %" PRIu64 " reads cancelled, %" PRIu64
		" timer retries, %" PRIu64 " ranges woken after events, %" PRIu64
		" watchdog wakes, %" PRIu64 " reads issued again\n",
		s->reads_failed, s->pages_poisoned, s->killed, s->reads_cancelled, s->retries,
		s->wakes, s->idle_wakes, s->reads_reissued);
	for (size_t i = 0; i < s->ntids && i < 16; i++)
		fprintf(out, "  thread %u: blocked %.1f us over %" PRIu64 " faults\n",
			s->tids[i].tid, us(s->tids[i].blocked_ns), s->tids[i].faults);
	if (s->ntids > 16)
		fprintf(out, "  (%zu more threads in --stats-json)\n", s->ntids - 16);
}
