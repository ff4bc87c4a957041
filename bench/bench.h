/* SPDX-License-Identifier: MIT */
/* The benchmark suite: each figure next to the machine's limit. */
#ifndef FL_BENCH_H
#define FL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct bench_opts {
	size_t mib;	/* working set per measurement */
	int reps;	/* repetitions; the median is reported */
	int faults;	/* fault round trips per latency measurement */
	bool json;
};

/* One row of the table. Unused figures are < 0. */
struct row {
	char what[64];
	char per_call[16];
	double ns_per_page; /* per 4 KiB page */
	double gbps;	    /* GB/s (10^9 bytes) */
	double p50_us, p99_us;
	double ms_per_gib;
	char note[96];
};

struct table {
	struct row rows[64];
	size_t n;
	double memcpy_gbps, tcp_gbps; /* the limits, measured first */
};

static inline uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

struct row *table_add(struct table *t, const char *what, const char *per_call);
double median(double *v, int n);
double percentile(double *v, size_t n, double p); /* sorts v */

/* Each measurement adds its rows; a measurement the machine cannot run
 * adds a row whose note says why. */
/* First: new memory the machine has not used lately (cold.c). */
void bench_cold_memory(struct table *t, const struct bench_opts *o);
void bench_limits(struct table *t, const struct bench_opts *o);
void bench_resolve(struct table *t, const struct bench_opts *o);
void bench_fault_latency(struct table *t, const struct bench_opts *o);
void bench_pagemap_scan(struct table *t, const struct bench_opts *o);
void bench_lazy_restore(struct table *t, const struct bench_opts *o);
void bench_recv_path(struct table *t, const struct bench_opts *o);

#endif
