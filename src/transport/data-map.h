/* SPDX-License-Identifier: MIT */
/*
 * Which 4 KiB blocks of a file hold data: found once at open with
 * SEEK_DATA/SEEK_HOLE and kept as a bitmap (1 = data), so that a source's
 * zero_run() answers without a system call. Shared by the snapshot reader
 * (snapshot-open.c) and the raw-file source (source-rawfile.c).
 */
#ifndef FL_DATA_MAP_H
#define FL_DATA_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include <faultline/source.h>

#include "util/bitmap.h"

#define DATA_MAP_BLOCK 4096u

/* Set the bit of each block of [off, off + len) of fd that holds data,
 * bit `first` standing for the block at off (4 KiB aligned). 0, or -errno
 * of the lseek that failed. */
int fl__data_map_scan(uint64_t *map, uint64_t first, int fd, uint64_t off, uint64_t len);

/* zero_run() of fl_source_ops for region g, whose first block is bit
 * `first`: bytes of whole pages of holes from offset, at most max. */
int64_t fl__data_map_zero_run(const uint64_t *map, uint64_t first,
			  const struct fl_region *g, uint64_t offset, uint64_t max);

#endif
