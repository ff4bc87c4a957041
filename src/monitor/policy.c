// SPDX-License-Identifier: MIT
/*
 * Background prefetch policy: which owed pages to read next.
 *
 * Default: continue right after the latest fault (programs tend to walk
 * forward), then sweep each region sequentially, processes in turn. A
 * recorded fault order (fl_monitor_opts.replay) is prefetched first: a
 * restore that faults the way the last one did gets those pages before it
 * asks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor-internal.h"

void fl__policy_on_fault(struct fl_monitor *m, struct mproc *p, struct mregion *r,
		     size_t page)
{
	(void)m;
	r->cursor = page + 1;
	p->rr_region = (size_t)(r - p->regions);
}

static size_t max_pages(struct fl_monitor *m, const struct mregion *r)
{
	size_t n = m->opts.bg_chunk / r->page;

	return n ? n : 1;
}

/* The next replayed page still owed by some process. */
static bool replay_next(struct fl_monitor *m, struct mproc **pp, struct mregion **rp,
			size_t *page, size_t *n)
{
	while (m->replay_pos < m->nreplay) {
		uint64_t e = m->replay[m->replay_pos++];
		uint32_t region = (uint32_t)(e >> 48);
		uint64_t off = e & ((1ULL << 48) - 1);

		for (struct mproc *p = m->procs; p; p = p->next) {
			uint64_t addr;
			struct mregion *r;
			size_t pg;

			if (p->dead)
				continue;
			r = fl__proc_find_src(p, region, off, &addr);
			if (!r)
				continue;
			pg = (addr - r->start) / r->page;
			if (ps_get(&r->ps, pg) != PS_MISSING)
				continue;
			*pp = p;
			*rp = r;
			*page = pg;
			*n = fl__ps_run(&r->ps, pg, PS_MISSING, max_pages(m, r));
			return true;
		}
	}
	return false;
}

static bool region_next(struct fl_monitor *m, struct mregion *r, size_t *page, size_t *n)
{
	size_t i;

	if (!r->ps.owed)
		return false;
	i = fl__ps_find(&r->ps, r->cursor, PS_MISSING);
	if (i == r->ps.pages && r->cursor)
		i = fl__ps_find(&r->ps, 0, PS_MISSING);
	if (i == r->ps.pages)
		return false;
	*page = i;
	*n = fl__ps_run(&r->ps, i, PS_MISSING, max_pages(m, r));
	r->cursor = i + *n;
	return true;
}

bool fl__policy_next(struct fl_monitor *m, struct mproc **pp, struct mregion **rp,
		 size_t *page, size_t *n)
{
	if (replay_next(m, pp, rp, page, n))
		return true;
	for (struct mproc *p = m->procs; p; p = p->next) {
		if (p->dead)
			continue;
		for (size_t k = 0; k < p->nregions; k++) {
			size_t idx = (p->rr_region + k) % p->nregions;
			struct mregion *r = &p->regions[idx];

			if (region_next(m, r, page, n)) {
				p->rr_region = idx;
				*pp = p;
				*rp = r;
				return true;
			}
		}
	}
	return false;
}

int fl__policy_set_replay(struct fl_monitor *m, const struct fl_page_ref *list, size_t n,
			  char *err, size_t errlen)
{
	if (!n)
		return 0;
	m->replay = malloc(n * sizeof(*m->replay));
	if (!m->replay) {
		snprintf(err, errlen, "out of memory for %zu replayed pages", n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct fl_page_ref *e = &list[i];

		if (e->region >= m->src->nregions || e->offset >= m->src->regions[e->region].len) {
			snprintf(err, errlen, "replayed page %zu (region %u offset %llu) is not in "
				 "the source", i, e->region, (unsigned long long)e->offset);
			return -EINVAL;
		}
		m->replay[i] = ((uint64_t)e->region << 48) | e->offset;
	}
	m->nreplay = n;
	return 0;
}
