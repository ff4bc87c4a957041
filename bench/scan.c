// SPDX-License-Identifier: MIT
/* PAGEMAP_SCAN collect + re-protect time per GiB of tracked memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <faultline/uffd.h>

#include "bench.h"

static double collect_ms(struct fl_dirty *d, uint64_t *bm)
{
	uint64_t t0 = now_ns();

	fl_dirty_collect(d, bm, NULL);
	return (double)(now_ns() - t0) / 1e6;
}

void bench_pagemap_scan(struct table *t, const struct bench_opts *o)
{
	size_t len = o->mib << 20, pages = len / 4096;
	double gib = (double)len / (double)(1UL << 30), clean[32], dirty[32];
	struct row *rc = table_add(t, "PAGEMAP_SCAN collect, clean", "-");
	struct row *rd = table_add(t, "PAGEMAP_SCAN collect, 10% dirty", "-");
	struct fl_dirty *d;
	uint64_t *bm = calloc((pages + 63) / 64, sizeof(uint64_t));
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned seed = 7;

	if (!bm || mem == MAP_FAILED)
		return;
	madvise(mem, len, MADV_NOHUGEPAGE); /* tracking splits THPs anyway */
	memset(mem, 1, len);
	if (!fl_dirty_scan_supported() ||
	    fl_dirty_create(&d, mem, len, FL_DIRTY_PAGEMAP_SCAN)) {
		snprintf(rc->note, sizeof(rc->note), "needs WP_ASYNC + PAGEMAP_SCAN (6.7+)");
		snprintf(rd->note, sizeof(rd->note), "needs WP_ASYNC + PAGEMAP_SCAN (6.7+)");
		munmap(mem, len);
		free(bm);
		return;
	}
	for (int r = 0; r < o->reps; r++) {
		clean[r] = collect_ms(d, bm) / gib;
		for (size_t i = 0; i < pages / 10; i++)
			mem[((size_t)rand_r(&seed) % pages) * 4096] = 2;
		dirty[r] = collect_ms(d, bm) / gib;
	}
	rc->ms_per_gib = median(clean, o->reps);
	rd->ms_per_gib = median(dirty, o->reps);
	snprintf(rd->note, sizeof(rd->note), "random 4 KiB writes");
	fl_dirty_destroy(d);
	munmap(mem, len);
	free(bm);
}
