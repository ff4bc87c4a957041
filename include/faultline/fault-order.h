/* SPDX-License-Identifier: MIT */
/*
 * faultline/fault-order.h - a recorded fault order: the source pages a
 * restore faulted on, in the order it did, as text ("REGION OFFSET" per
 * line, decimal). A monitor reports each page it reads on a fault through
 * fl_monitor_opts.on_fault_page; replaying a loaded order
 * (fl_monitor_opts.replay) prefetches those pages first, so a restore that
 * faults the way the last one did finds them there.
 */
#ifndef FAULTLINE_FAULT_ORDER_H
#define FAULTLINE_FAULT_ORDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <faultline/source.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One source page. */
struct fl_page_ref {
	uint32_t region; /* index into the source's regions */
	uint64_t offset; /* byte offset in it */
};

/* Append one line for a page to f (an fl_monitor_opts.on_fault_page
 * callback with f as its argument). */
void fl_fault_order_append(void *f, uint32_t region, uint64_t offset);

/* Load a recorded order from path, every entry checked against the
 * regions it will be replayed on: -EINVAL with err naming the file and the
 * line that is wrong, -errno if it cannot be read. *out is malloc'd. */
int fl_fault_order_load(const char *path, const struct fl_region *regions, size_t nregions,
			struct fl_page_ref **out, size_t *n, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
