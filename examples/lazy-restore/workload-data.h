/* SPDX-License-Identifier: MIT */
/* What the lazy-restore workload's memory holds, shared by the program that
 * is snapshotted (source.c) and the restored one (workload.c). */
#ifndef FL_EXAMPLE_WORKLOAD_DATA_H
#define FL_EXAMPLE_WORKLOAD_DATA_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/sha256-hex.h"

#define PG 4096UL
#define RUN (2UL << 20)

static inline double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Page i's contents: every 5th 2 MiB run is zeros (a hole in the snapshot). */
static inline void page_data(size_t i, uint64_t *w)
{
	uint64_t x = 0x9E3779B97F4A7C15ULL * (i + 1);

	if ((i * PG / RUN) % 5 == 2) {
		memset(w, 0, PG);
		return;
	}
	for (size_t k = 0; k < PG / 8; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
}

#endif
