/* SPDX-License-Identifier: MIT */
/*
 * The one clock of faultline: CLOCK_MONOTONIC, for durations, deadlines
 * and rates (never the wall clock, which NTP and the admin may step).
 */
#ifndef FL_UTIL_CLOCK_H
#define FL_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t fl__now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline double fl__now_s(void)
{
	return (double)fl__now_ns() / 1e9;
}

#endif
