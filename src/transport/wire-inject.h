/* SPDX-License-Identifier: MIT */
/*
 * Seeded transport faults, for tests of what survives what: each frame a
 * connection sends may first be delayed, or instead reset the connection,
 * go out cut short (then the reset), or stall the connection for good
 * (nothing it sends arrives any more, the peer sees silence). Off unless
 * a test switches it on; process-wide.
 */
#ifndef FL_TRANSPORT_WIRE_INJECT_H
#define FL_TRANSPORT_WIRE_INJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fl__wire_inject {
	uint64_t seed;
	/* Chances per frame sent, in units of 1/10000. */
	unsigned reset, truncate, delay, stall;
	unsigned delay_max_us;
	/* The first frames of each connection pass untouched (its hello). */
	unsigned spare_first;
	/* Resets, truncations and stalls at most (0: no limit). */
	unsigned max_faults;
};

struct fl__wire_inject_counts {
	uint64_t frames, resets, truncates, delays, stalls;
};

/* Switch injection on with cfg (counts start from 0), or off (NULL). */
void fl__wire_inject_set(const struct fl__wire_inject *cfg);
void fl__wire_inject_counts(struct fl__wire_inject_counts *out);

enum fl__wire_fault { FL_FAULT_NONE, FL_FAULT_RESET, FL_FAULT_TRUNCATE, FL_FAULT_STALL };

/* For conn.c: what happens to the nth frame (from 0) of a connection,
 * len bytes with its header; sleeps for a delay itself. *cut: the bytes
 * a truncated frame keeps (0 < cut < len). */
enum fl__wire_fault fl__wire_inject_pick(uint64_t nth, size_t len, size_t *cut);

#endif
