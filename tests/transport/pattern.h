/* SPDX-License-Identifier: MIT */
/* The byte pattern of the snapshot tests (no test framework needed, so the
 * pattern child can use it too). */
#ifndef FL_PATTERN_H
#define FL_PATTERN_H

#include <stdint.h>
#include <string.h>

/* Page p: zero when `zero`, else bytes that differ per page and seed. */
static inline void snaptest_fill(unsigned char *page, size_t len, uint64_t p,
				 unsigned seed, int zero)
{
	if (zero) {
		memset(page, 0, len);
		return;
	}
	for (size_t i = 0; i < len; i++)
		page[i] = (unsigned char)(p * 131 + i * 7 + seed * 29 + (i >> 9));
	page[0] = 1; /* never an all-zero page by accident */
}

/* The pattern child's memory: CHILD_PAGES pages, these ones zero. */
#define CHILD_PAGES 2048 /* 8 MiB */

static inline int child_zero(uint64_t p)
{
	return p % 7 == 3 || (p >= 1000 && p < 1100);
}

#endif
