/* SPDX-License-Identifier: MIT */
/* Shared by the page sources' implementations (faultline/source.h). */
#ifndef FL_SOURCE_INTERNAL_H
#define FL_SOURCE_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Background bytes a local source (CRIU images, io_uring reads) hands
 * over per reap, beside every fault's read: the monitor installs what a
 * reap gives it before it reads its userfaultfds again, and installing
 * into new memory runs at about 0.5 GB/s here. Handed all of a deep
 * window at once, a program faulting on memory CRIU never saw waited
 * 11 ms a fault while the background filled. */
#define FL_REAP_BG_BYTES (512u << 10)

/*
 * Moves into out[] every fault's request of done[] (urgent), then
 * background ones in order while their bytes stay within bg_max, the
 * first one whatever its size when nothing else goes; the rest stay in
 * done[], in order. Returns how many went. The caller announces the rest
 * (its event fd) for the next reap.
 */
size_t fl__take_fault_first(struct fl_source_req **done, size_t *ndone,
			    struct fl_source_req **out, uint64_t bg_max);
/* Removes q from list[0..n), keeping the order: whether it was there. */
bool fl__req_list_remove(struct fl_source_req **list, size_t *n, const struct fl_source_req *q);

#endif
