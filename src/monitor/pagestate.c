// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>

#include "pagestate.h"

static size_t words(size_t pages)
{
	return (pages + 31) / 32;
}

int fl__ps_init(struct pagestate *ps, size_t pages)
{
	ps->bits = calloc(words(pages) ? words(pages) : 1, sizeof(uint64_t));
	ps->pages = pages;
	ps->owed = pages;
	return ps->bits ? 0 : -ENOMEM;
}

void fl__ps_free(struct pagestate *ps)
{
	free(ps->bits);
	ps->bits = NULL;
	ps->pages = ps->owed = 0;
}

static int owed(enum page_state s)
{
	return s == PS_MISSING || s == PS_REQUESTED;
}

void fl__ps_set(struct pagestate *ps, size_t i, enum page_state s)
{
	uint64_t *w = &ps->bits[i / 32];
	unsigned shift = 2 * (i % 32);
	enum page_state old = (enum page_state)((*w >> shift) & 3);

	ps->owed += (size_t)owed(s) - (size_t)owed(old);
	*w = (*w & ~(3ULL << shift)) | ((uint64_t)s << shift);
}

void fl__ps_set_range(struct pagestate *ps, size_t first, size_t n, enum page_state s)
{
	for (size_t i = first; i < first + n; i++)
		fl__ps_set(ps, i, s);
}

int fl__ps_slice(struct pagestate *dst, const struct pagestate *src, size_t first, size_t n)
{
	int ret = fl__ps_init(dst, n);

	if (ret)
		return ret;
	dst->owed = n; /* all MISSING; fl__ps_set keeps the count right */
	for (size_t i = 0; i < n; i++)
		fl__ps_set(dst, i, ps_get(src, first + i));
	return 0;
}

size_t fl__ps_run(const struct pagestate *ps, size_t i, enum page_state s, size_t max)
{
	size_t n = 0;

	while (i + n < ps->pages && n < max && ps_get(ps, i + n) == s)
		n++;
	return n;
}

size_t fl__ps_find(const struct pagestate *ps, size_t from, enum page_state s)
{
	for (size_t i = from; i < ps->pages; i++) {
		/* Skip whole words that cannot match. */
		if (i % 32 == 0 && i + 32 <= ps->pages) {
			uint64_t w = ps->bits[i / 32];
			uint64_t pat = 0x5555555555555555ULL * (uint64_t)s;

			if (((w ^ pat) & 0xFFFFFFFFFFFFFFFFULL) != 0) {
				/* some page differs from s; check if any equals s */
				uint64_t x = w ^ pat; /* 00 where equal */
				uint64_t eq = ~(x | (x >> 1)) & 0x5555555555555555ULL;

				if (!eq) {
					i += 31;
					continue;
				}
			} else {
				return i;
			}
		}
		if (ps_get(ps, i) == s)
			return i;
	}
	return ps->pages;
}
