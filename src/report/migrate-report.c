// SPDX-License-Identifier: MIT
/* The source's migration report, as text. */
#include <stdio.h>

#include <faultline/migrate.h>

#include "util/thread-cpu.h"

void fl_migrate_report_print(const struct fl_migrate_report *r, FILE *out)
{
	fprintf(out, "migration report\n");
	fprintf(out, "  total %.2f s: pre-copy %.2f s (%u rounds), downtime %.1f ms, "
		"post-copy %.2f s\n", r->total_s, r->precopy_s, r->rounds, r->downtime_s * 1e3,
		r->postcopy_s);
	if (r->switch_reason[0])
		fprintf(out, "  switched to post-copy because %s\n", r->switch_reason);
	fprintf(out, "  bytes: %.1f MiB pre-copy, %.1f MiB post-copy, %.1f MiB of zero pages "
		"sent as ranges\n", (double)r->bytes_precopy / (1 << 20),
		(double)r->bytes_postcopy / (1 << 20), (double)r->zero_bytes / (1 << 20));
	fprintf(out, "  post-copy: %llu pages owed, %llu urgent requests, %llu pages pushed, "
		"%llu sent again ahead of the background stream\n",
		(unsigned long long)r->pages_owed, (unsigned long long)r->requests_served,
		(unsigned long long)r->pages_pushed, (unsigned long long)r->pages_resent);
	if (r->reconnects)
		fprintf(out, "  survived %u broken connections by rejoining the destination\n",
			r->reconnects);
	fprintf(out, "  destination: %llu faults, fault latency p50 %.1f us, p99 %.1f us\n",
		(unsigned long long)r->dest_faults, r->dest_p50_us, r->dest_p99_us);
	if (r->dest_nthreads)
		fprintf(out, "  blocked on faults, per destination thread (most first):\n");
	for (size_t i = 0; i < r->dest_nthreads; i++)
		fprintf(out, "    thread %u: %.1f ms over %llu faults\n", r->dest_threads[i].tid,
			(double)r->dest_threads[i].blocked_ns / 1e6,
			(unsigned long long)r->dest_threads[i].faults);
	if (r->ncpu) {
		double all, gib = (double)(r->bytes_precopy + r->bytes_postcopy) / (1 << 30);

		fprintf(out, "  CPU seconds here, per thread:");
		all = fl__thread_cpu_print(out, r->cpu,
					   r->ncpu < FL_MIGRATE_CPU_MAX ? r->ncpu : FL_MIGRATE_CPU_MAX);
		fprintf(out, "; %.2f in all", all);
		if (gib > 0)
			fprintf(out, ", %.2f per GiB sent", all / gib);
		fprintf(out, "\n");
	}
}
