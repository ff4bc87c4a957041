// SPDX-License-Identifier: MIT
/*
 * bench: this machine's limits and faultline's raw kernel-interface costs,
 * the baseline every later figure is quoted against. Never fails on a time.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"
#include "util/json-writer.h"

static void fig(double v, const char *fmt)
{
	if (v < 0)
		printf("%9s", "-");
	else
		printf(fmt, v);
}

static void print_table(const struct table *t, const struct bench_opts *o)
{
	struct utsname u;

	uname(&u);
	printf("faultline bench: Linux %s, %ld CPUs, working set %zu MiB, median of %d\n\n",
	       u.release, sysconf(_SC_NPROCESSORS_ONLN), o->mib, o->reps);
	printf("%-34s %-8s %9s %9s %9s %9s %9s  %s\n", "operation", "per call",
	       "ns/page", "GB/s", "p50 us", "p99 us", "ms/GiB", "note");
	for (size_t i = 0; i < t->n; i++) {
		const struct row *r = &t->rows[i];

		printf("%-34s %-8s ", r->what, r->per_call);
		fig(r->ns_per_page, "%9.0f");
		fig(r->gbps, " %8.2f");
		fig(r->p50_us, " %8.1f");
		fig(r->p99_us, " %8.1f");
		fig(r->ms_per_gib, " %8.2f");
		printf("  %s\n", r->note);
	}
}

/* Negative figures are the ones not measured: null. */
static void json_num(struct fl__json *j, const char *key, double v)
{
	if (v < 0)
		fl__json_null(j, key);
	else
		fl__json_double(j, key, v);
}

static int print_json(const struct table *t, const struct bench_opts *o)
{
	struct fl__json j;

	fl__json_begin(&j, stdout, FL__JSON_PRETTY);
	fl__json_uint(&j, "working_set_mib", o->mib);
	fl__json_int(&j, "reps", o->reps);
	fl__json_array(&j, "rows");
	for (size_t i = 0; i < t->n; i++) {
		const struct row *r = &t->rows[i];

		fl__json_object(&j, NULL);
		fl__json_str(&j, "operation", r->what);
		fl__json_str(&j, "per_call", r->per_call);
		json_num(&j, "ns_per_page", r->ns_per_page);
		json_num(&j, "gbps", r->gbps);
		json_num(&j, "p50_us", r->p50_us);
		json_num(&j, "p99_us", r->p99_us);
		json_num(&j, "ms_per_gib", r->ms_per_gib);
		fl__json_str(&j, "note", r->note);
		fl__json_close(&j);
	}
	fl__json_close(&j);
	if (fl__json_end(&j)) {
		fprintf(stderr, "bench: --json: %s\n", fl__json_error(&j));
		return 1;
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: bench [--quick] [--limits] [--json] [--mib N] [--reps N] [--faults N]\n"
		     "  --quick    small sizes, for a smoke run (seconds)\n"
		     "  --limits   only the machine's limits, page installs and fault round\n"
		     "             trips (what bench/migrate.sh quotes its figures against)\n"
		     "  --mib N    working set per measurement (default 1024; lazy restore\n"
		     "             also runs 4x that)\n"
		     "  --reps N   repetitions, median reported (default 5, max 32)\n"
		     "  --faults N fault round trips per latency run (default 20000)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' }, { "json", no_argument, NULL, 'j' },
		{ "mib", required_argument, NULL, 'm' }, { "reps", required_argument, NULL, 'r' },
		{ "faults", required_argument, NULL, 'f' }, { "help", no_argument, NULL, 'h' },
		{ "limits", no_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_opts o = { .mib = 1024, .reps = 5, .faults = 20000 };
	static struct table t;
	bool limits_only = false;
	int c;

	while ((c = getopt_long(argc, argv, "qljm:r:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'q': o.mib = 32; o.reps = 3; o.faults = 2000; break;
		case 'l': limits_only = true; break;
		case 'j': o.json = true; break;
		case 'm': o.mib = strtoul(optarg, NULL, 0); break;
		case 'r': o.reps = atoi(optarg); break;
		case 'f': o.faults = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (o.mib < 4 || o.reps < 1 || o.reps > 32 || o.faults < 1) {
		fprintf(stderr, "bench: --mib must be >= 4, --reps 1..32, --faults >= 1\n");
		return 2;
	}
	if (!o.json)
		fprintf(stderr, "measuring new memory (first touch, UFFDIO_COPY one pass)...\n");
	bench_cold_memory(&t, &o);
	if (!o.json)
		fprintf(stderr, "measuring limits...\n");
	bench_limits(&t, &o);
	if (!o.json)
		fprintf(stderr, "measuring page installs...\n");
	bench_resolve(&t, &o);
	if (!limits_only) {
		if (!o.json)
			fprintf(stderr, "measuring the receiver's data path (blocking vs io_uring)...\n");
		bench_recv_path(&t, &o);
	}
	if (!o.json)
		fprintf(stderr, "measuring fault round trips...\n");
	bench_fault_latency(&t, &o);
	if (limits_only)
		goto out;
	if (!o.json)
		fprintf(stderr, "measuring PAGEMAP_SCAN...\n");
	bench_pagemap_scan(&t, &o);
	if (!o.json)
		fprintf(stderr, "measuring lazy restore (%zu MiB and %zu MiB)...\n", o.mib, 4 * o.mib);
	bench_lazy_restore(&t, &o);
out:
	if (o.json)
		return print_json(&t, &o);
	print_table(&t, &o);
	return 0;
}
