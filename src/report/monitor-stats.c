// SPDX-License-Identifier: MIT
/*
 * The monitor's statistics for people and programs: text and one line of
 * JSON, from its plain numbers (fl_monitor_get_stats,
 * fl_monitor_thread_stats). A layer above the monitor, which knows no
 * output format.
 */
#include <inttypes.h>
#include <stdlib.h>

#include <faultline/monitor.h>

#include "util/json-writer.h"

#define TEXT_THREADS 16

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* One line of JSON. Its shape is fixed, so the writer can only fail on a
 * write error (or a bug here); either is said on stderr, as this function
 * has no caller to return it to. */
static void print_json(const struct fl_monitor_stats *s, const struct fl_thread_stat *t,
		       size_t nt, FILE *out)
{
	struct fl__json j;

	fl__json_begin(&j, out, FL__JSON_COMPACT);
	fl__json_fixed(&j, "duration_s", s->duration_s, 3);
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
	fl__json_uint(&j, "bytes_read_again", s->bytes_read_again);
	fl__json_object(&j, "events");
	fl__json_uint(&j, "fork", s->fork);
	fl__json_uint(&j, "remap", s->remap);
	fl__json_uint(&j, "remove", s->remove);
	fl__json_uint(&j, "unmap", s->unmap);
	fl__json_uint(&j, "exit", s->exits);
	fl__json_uint(&j, "eagain", s->eagain);
	fl__json_uint(&j, "eagain_waited", s->eagain_waited);
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
	fl__json_fixed(&j, "p50", us(s->latency_p50_ns), 1);
	fl__json_fixed(&j, "p90", us(s->latency_p90_ns), 1);
	fl__json_fixed(&j, "p99", us(s->latency_p99_ns), 1);
	fl__json_fixed(&j, "max", us(s->latency_max_ns), 1);
	fl__json_close(&j);
	fl__json_array(&j, "threads");
	for (size_t i = 0; i < nt; i++) {
		fl__json_object(&j, NULL);
		fl__json_uint(&j, "tid", t[i].tid);
		fl__json_uint(&j, "faults", t[i].faults);
		fl__json_fixed(&j, "blocked_us", us(t[i].blocked_ns), 1);
		fl__json_close(&j);
	}
	fl__json_close(&j);
	if (fl__json_end(&j))
		fprintf(stderr, "faultline: statistics as JSON: %s\n", fl__json_error(&j));
}

static void print_text(const struct fl_monitor_stats *s, const struct fl_thread_stat *t,
		       size_t nt, FILE *out)
{
	fprintf(out, "faultline monitor statistics (%.2f s)\n", s->duration_s);
	fprintf(out, "  faults: %" PRIu64 " (%" PRIu64 " joined a read in flight, %" PRIu64
		" of those hurried with a read of their own, %" PRIu64 " zero pages, %" PRIu64
		" outside the snapshot, %" PRIu64 " already present)\n",
		s->faults, s->faults_joined, s->faults_hurried, s->faults_zero,
		s->faults_new_memory, s->faults_spurious);
	fprintf(out, "  pages: %" PRIu64 " copied on fault, %" PRIu64 " prefetched, %" PRIu64
		" pushed by the source, %" PRIu64 " zeroed, %" PRIu64 " found present; %.1f MiB "
		"read (%.1f MiB again, to hurry faults); %" PRIu64 " installed by UFFDIO_MOVE\n",
		s->pages_fault, s->pages_prefetched, s->pages_pushed, s->pages_zeroed,
		s->pages_existed, (double)s->bytes_read / (1 << 20),
		(double)s->bytes_read_again / (1 << 20), s->pages_moved);
	fprintf(out, "  fault service latency: p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us\n",
		us(s->latency_p50_ns), us(s->latency_p90_ns), us(s->latency_p99_ns),
		us(s->latency_max_ns));
	fprintf(out, "  events: %" PRIu64 " fork, %" PRIu64 " remap, %" PRIu64 " remove, %" PRIu64
		" unmap, %" PRIu64 " exit; %" PRIu64 " EAGAIN answers (%" PRIu64 " resolves "
		"held back by their backoff); %" PRIu64 " handoffs (%" PRIu64 " refused)\n",
		s->fork, s->remap, s->remove, s->unmap, s->exits, s->eagain, s->eagain_waited,
		s->handoffs, s->handoffs_refused);
	fprintf(out, "  failures: %" PRIu64 " reads failed, %" PRIu64 " pages poisoned (SIGBUS), %"
		PRIu64 " processes killed; %" PRIu64 " reads cancelled, %" PRIu64
		" timer retries, %" PRIu64 " ranges woken after events, %" PRIu64
		" watchdog wakes, %" PRIu64 " reads issued again\n",
		s->reads_failed, s->pages_poisoned, s->killed, s->reads_cancelled, s->retries,
		s->wakes, s->idle_wakes, s->reads_reissued);
	for (size_t i = 0; i < nt && i < TEXT_THREADS; i++)
		fprintf(out, "  thread %u: blocked %.1f us over %" PRIu64 " faults\n", t[i].tid,
			us(t[i].blocked_ns), t[i].faults);
	if (s->threads > TEXT_THREADS)
		fprintf(out, "  (%zu more threads in --stats-json)\n", s->threads - TEXT_THREADS);
}

void fl_monitor_print_stats(struct fl_monitor *m, FILE *out, bool json)
{
	struct fl_monitor_stats s;
	struct fl_thread_stat *t;
	size_t nt;

	fl_monitor_get_stats(m, &s);
	t = calloc(s.threads ? s.threads : 1, sizeof(*t));
	nt = t ? fl_monitor_thread_stats(m, t, s.threads) : 0;
	if (json)
		print_json(&s, t, nt, out);
	else
		print_text(&s, t, nt, out);
	free(t);
}
