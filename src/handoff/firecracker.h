/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's page-fault handler protocol (not part of the API).
 *
 * Firecracker, restoring a snapshot with a "Uffd" memory backend, connects
 * to a unix stream socket and sends one message: a JSON array with one
 * object per guest memory region, the userfaultfd attached (SCM_RIGHTS):
 *
 *   [{"base_host_virt_addr": 140234567680000, "size": 134217728,
 *     "offset": 0, "page_size": 4096}, ...]
 *
 * base_host_virt_addr is where the region is mapped in Firecracker, size
 * its length in bytes, offset where its bytes start in the memory file,
 * page_size the page size in bytes. Older Firecracker versions send
 * "page_size_kib" instead, holding bytes despite its name. Nothing comes
 * back: Firecracker never reads the socket in this mode.
 */
#ifndef FL_HANDOFF_FIRECRACKER_H
#define FL_HANDOFF_FIRECRACKER_H

#include <stddef.h>
#include <stdint.h>

#include <faultline/handoff.h>

#define FC_MSG_MAX (64u << 10) /* bytes; real messages are a few hundred */
#define FC_REGIONS_MAX 256

struct fc_region {
	uint64_t base;	    /* base_host_virt_addr */
	uint64_t size;	    /* bytes */
	uint64_t offset;    /* in the memory file */
	uint64_t page_size; /* 4096 or 2 MiB */
};

/*
 * Parse and validate one message of len bytes. Returns:
 *   0        out[0..*n) holds the regions, sorted as sent
 *   -EAGAIN  buf is a valid beginning of a message: wait for more bytes
 *   -EINVAL  malformed, or a region is invalid; err names the key and the
 *            region index (from 0, in the order sent)
 * Strict: one array of objects and only whitespace after it; every number
 * of a known key a plain unsigned 64-bit integer; a known key missing or
 * given twice is refused; unknown keys (of any JSON value) are skipped.
 * Regions must be page aligned, non-empty, not wrap around, not overlap
 * (in memory or in the file), with 4 KiB or 2 MiB pages.
 */
int fl__fc_parse(const char *buf, size_t len, struct fc_region *out, size_t max,
	     size_t *n, char *err, size_t errlen);

/*
 * Where each Firecracker region's pages come from in a page source: the
 * source's regions (`parts`, their lengths and page sizes), laid end to
 * end in their order, are the memory file (one region for a raw memory
 * file; a snapshot of the file's regions otherwise). A region must fall
 * inside one part with the same page size. `kind` names the source in
 * messages ("memory-file" for a raw memory file). Fills out[0..n).
 * -ERANGE / -EINVAL with err naming the region.
 */
int fl__fc_map_regions(const struct fl_handoff_file_part *parts, size_t nparts, const char *kind,
		   const struct fc_region *r, size_t n, struct fl_handoff_region *out,
		   char *err, size_t errlen);

#endif
