/* SPDX-License-Identifier: MIT */
/*
 * A fault-injecting page source for tests: it wraps any real source and
 * hands its completions back late, out of order, failed, or never, and
 * pushes pages nobody asked for, all from a seed, so a run repeats. It
 * keeps the contract of faultline/source.h, so the monitor's joins,
 * deferrals, cancels and teardown run against it as against a remote
 * source.
 */
#ifndef FL_TEST_SOURCE_INJECT_H
#define FL_TEST_SOURCE_INJECT_H

#include <stdint.h>

#include <faultline/source.h>

struct inject_opts {
	uint64_t seed;
	unsigned max_delay_us;	/* each completion held 0..max_delay_us */
	unsigned unasked_permille; /* per completion: also push a neighbour
				      range nobody asked for */
	unsigned split_permille;   /* per completion: push its first half
				      unasked first, then complete it */
	unsigned hold_after_push_us; /* a completion pushed whole unasked is
					 itself held this much longer */
};

/* Wraps inner (which it destroys with itself). */
int inject_source_create(struct fl_source **out, struct fl_source *inner,
			 const struct inject_opts *o);

/* Rules for one source page (region, byte offset): the read of any request
 * covering it is held ms milliseconds more, fails with -err, or never
 * completes (only cancel ends it). */
void inject_delay_page(struct fl_source *s, uint32_t region, uint64_t offset, unsigned ms);
void inject_fail_page(struct fl_source *s, uint32_t region, uint64_t offset, int err);
void inject_never_page(struct fl_source *s, uint32_t region, uint64_t offset);

/* Requests cancelled, and requests still held or in the inner source. */
uint64_t inject_cancelled(struct fl_source *s);
unsigned inject_outstanding(struct fl_source *s);

#endif
