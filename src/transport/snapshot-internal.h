/* SPDX-License-Identifier: MIT */
/* Inside the snapshot format: shared by the writer, the reader and the
 * source. The format itself is described in SNAPSHOT.md. */
#ifndef FL_SNAPSHOT_INTERNAL_H
#define FL_SNAPSHOT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <faultline/snapshot.h>

#define SNAP_MANIFEST "manifest.pb"
#define SNAP_PAGES "pages"
#define SNAP_CHECKSUMS "checksums"

/* manifest.pb starts with a 32-byte header, integers little-endian:
 * magic[8] version:u32 flags:u32 manifest_len:u64 manifest_crc:u32
 * header_crc:u32 (CRC32C of the 28 bytes before it). */
#define SNAP_MAGIC "FLSNAP\r\n" /* 8 bytes; \r\n catches text-mode copies */
#define SNAP_HEADER_SIZE 32
#define SNAP_MANIFEST_MAX (16u << 20) /* protobuf bytes */
#define SNAP_REGIONS_MAX (1u << 20)
#define SNAP_PAGE_SIZE_MAX (1ull << 30)
#define SNAP_ADDR_LIMIT (1ull << 57) /* 5-level paging's user half */

/* A region as the reader keeps it. */
struct snap_region {
	uint64_t file_offset;
	uint64_t first_block;	/* index of its first entry in checksums */
	uint64_t data_bytes;
	uint32_t checksum;
};

/* A manifest, decoded and validated (not yet against the other files). */
struct snap_manifest {
	uint32_t version;
	uint64_t created;
	char origin[256];
	uint64_t pages_size;
	uint64_t checksums_size;
	uint32_t checksums_crc;
	size_t nregions;
	struct fl_region *regions;
	struct snap_region *where;
	uint64_t blocks; /* total 4 KiB blocks in all regions */
};

/* Decode bytes of manifest.pb (header included) and validate them on
 * their own: -EBADMSG / -EPROTONOSUPPORT with err saying why. The fuzzer
 * feeds this arbitrary bytes. */
int fl__snap_manifest_decode(const void *buf, size_t len, struct snap_manifest *m,
			 char *err, size_t errlen);
/* Encode m into a malloc'd buffer, header included. */
int fl__snap_manifest_encode(const struct snap_manifest *m, void **buf, size_t *len);
void fl__snap_manifest_free(struct snap_manifest *m);

struct fl_snapshot {
	char *dir;
	struct snap_manifest m;
	int pages_fd;
	uint32_t *csums;	/* m.blocks entries, host order */
	uint64_t *data_map;	/* bit per block: 1 = data in pages, 0 = hole */
	uint32_t zero_crc;	/* CRC32C of a zero block */
};

/* Verify the blocks of buf (read from region r at offset): 0, or -EBADMSG
 * with err naming region and page. */
int fl__snap_check_blocks(const struct fl_snapshot *s, uint32_t r, uint64_t offset,
		      const void *buf, uint64_t len, char *err, size_t errlen);

/* snprintf into err if err is not NULL. */
#include "../util/errf.h"
#define fl__snap_err fl__errf /* util/errf.h */

static inline uint32_t snap_le32(const void *p)
{
	const unsigned char *b = p;

	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static inline void snap_put_le32(void *p, uint32_t v)
{
	unsigned char *b = p;

	b[0] = v;
	b[1] = v >> 8;
	b[2] = v >> 16;
	b[3] = v >> 24;
}

#endif
