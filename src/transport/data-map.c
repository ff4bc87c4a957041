// SPDX-License-Identifier: MIT
/* A file's data blocks as a bitmap (data-map.h). */
#include <errno.h>
#include <unistd.h>

#include "data-map.h"

#define BLOCK DATA_MAP_BLOCK

static void set_bits(uint64_t *map, uint64_t from, uint64_t to)
{
	for (uint64_t b = from; b < to; b++)
		fl__bitmap_set(map, b);
}

int fl__data_map_scan(uint64_t *map, uint64_t first, int fd, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	off_t pos = (off_t)off;

	while ((uint64_t)pos < end) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;

		if (d < 0 && errno == ENXIO)
			break; /* holes to the end of the file */
		if (d < 0)
			return -errno;
		if ((uint64_t)d >= end)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		if ((uint64_t)h > end)
			h = (off_t)end;
		/* A block that is partly data is data. */
		set_bits(map, first + ((uint64_t)d - off) / BLOCK,
			 first + ((uint64_t)h - off + BLOCK - 1) / BLOCK);
		pos = h;
	}
	return 0;
}

int64_t fl__data_map_zero_run(const uint64_t *map, uint64_t first,
			  const struct fl_region *g, uint64_t offset, uint64_t max)
{
	uint64_t b, end;

	if (offset >= g->len)
		return 0;
	if (max > g->len - offset)
		max = g->len - offset;
	b = first + offset / BLOCK;
	end = first + (offset + max) / BLOCK;
	while (b < end) {
		uint64_t word = map[b / 64] >> (b % 64);

		if (word) {
			b += __builtin_ctzll(word);
			break;
		}
		b += 64 - b % 64;
	}
	if (b > end)
		b = end;
	/* In whole pages of the region, from the start of offset's block. */
	b = (b - first) * BLOCK;
	offset &= ~(uint64_t)(BLOCK - 1);
	return (int64_t)((b - offset) & ~(uint64_t)(g->page_size - 1));
}
