/* SPDX-License-Identifier: MIT */
/* Shared by the page sources' implementations (faultline/source.h). */
#ifndef FL_SOURCE_INTERNAL_H
#define FL_SOURCE_INTERNAL_H

#include <errno.h>

#include <faultline/source.h>

/* The bounds every submit() enforces: 0 if r is whole pages, at least
 * one, inside its region; else -ERANGE. */
static inline int source_req_check(const struct fl_source *s,
				   const struct fl_source_req *r)
{
	const struct fl_region *g;

	if (r->region >= s->nregions)
		return -ERANGE;
	g = &s->regions[r->region];
	if (!r->len || r->offset % g->page_size || r->len % g->page_size ||
	    r->offset > g->len || r->len > g->len - r->offset)
		return -ERANGE;
	return 0;
}

#endif
