/* SPDX-License-Identifier: MIT */
/*
 * faultline/source-rawfile.h - the page source over a VMM's raw memory
 * file (Firecracker's memory snapshot): its own calls, beside the generic
 * contract of faultline/source.h.
 */
#ifndef FAULTLINE_SOURCE_RAWFILE_H
#define FAULTLINE_SOURCE_RAWFILE_H

#include <faultline/source.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A raw memory file: region i's bytes are at file_offset[i] (4 KiB
 * aligned) in the file at path, with nothing around them, as a VMM writes
 * guest memory (Firecracker's memory snapshot). Holes in the file
 * (SEEK_DATA/SEEK_HOLE, found once at open) are served as zeros and never
 * read; the rest is read with io_uring. Every region must lie inside the
 * file: a region past its end is refused at open (-ERANGE, err naming the
 * region and both sizes), and a read that finds the file shorter than at
 * open completes with -EIO, never with zeros. regions are copied. */
int fl_source_rawfile_create(struct fl_source **out, const char *path,
			     const struct fl_region *regions,
			     const uint64_t *file_offset, size_t n,
			     char *err, size_t errlen);

/* The last read error of a raw-file source ("" if none). */
const char *fl_source_rawfile_error(const struct fl_source *s);

/* Size in bytes of the raw file a raw-file source serves. */
uint64_t fl_source_rawfile_size(const struct fl_source *s);

#ifdef __cplusplus
}
#endif

#endif
