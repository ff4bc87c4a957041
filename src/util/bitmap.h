/* SPDX-License-Identifier: MIT */
/*
 * The one bitmap of faultline: bit i of an array of uint64_t words is
 * bit (i % 64) of word i / 64, the layout of the dirty logs (KVM's,
 * fl_dirty_collect()'s, a VMM's dirty_collect hook) and, read as bytes on
 * a little-endian host, of the wire's owed list. Inline: these sit on the
 * page paths.
 *
 * The _atomic forms are for bitmaps that threads share without a lock
 * (a fault handler recording writes while the collector swaps words out).
 */
#ifndef FL_UTIL_BITMAP_H
#define FL_UTIL_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline size_t fl__bitmap_words(size_t bits)
{
	return (bits + 63) / 64;
}

static inline bool fl__bitmap_test(const uint64_t *bm, size_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static inline void fl__bitmap_set(uint64_t *bm, size_t i)
{
	bm[i / 64] |= 1ULL << (i % 64);
}

static inline void fl__bitmap_clear(uint64_t *bm, size_t i)
{
	bm[i / 64] &= ~(1ULL << (i % 64));
}

static inline void fl__bitmap_set_range(uint64_t *bm, size_t first, size_t n)
{
	for (size_t i = first; i < first + n; i++)
		fl__bitmap_set(bm, i);
}

static inline bool fl__bitmap_test_atomic(_Atomic uint64_t *bm, size_t i)
{
	return atomic_load(&bm[i / 64]) >> (i % 64) & 1;
}

/* Set bit i; true if this call set it (it was clear). */
static inline bool fl__bitmap_set_atomic(_Atomic uint64_t *bm, size_t i)
{
	uint64_t m = 1ULL << (i % 64);

	return !(atomic_fetch_or(&bm[i / 64], m) & m);
}

static inline void fl__bitmap_clear_atomic(_Atomic uint64_t *bm, size_t i)
{
	atomic_fetch_and(&bm[i / 64], ~(1ULL << (i % 64)));
}

#endif
