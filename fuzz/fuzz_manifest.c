// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the snapshot manifest parser (manifest.pb bytes from
 * disk). Each input is decoded twice: as given, and with the header's
 * length and both CRC32C fields made right, so mutations reach the
 * protobuf decoder and the region checks instead of dying at the checksum.
 * Whatever decodes must encode and decode again to the same manifest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot-internal.h"

static void round_trip(const struct snap_manifest *m)
{
	struct snap_manifest again;
	void *buf;
	size_t len;

	if (fl__snap_manifest_encode(m, &buf, &len))
		return;
	if (fl__snap_manifest_decode(buf, len, &again, NULL, 0))
		abort(); /* we wrote something we refuse to read */
	if (again.nregions != m->nregions || again.blocks != m->blocks ||
	    memcmp(again.regions, m->regions, m->nregions * sizeof(*m->regions)))
		abort();
	fl__snap_manifest_free(&again);
	free(buf);
}

static void decode(const uint8_t *data, size_t size)
{
	struct snap_manifest m;
	char err[512];

	if (fl__snap_manifest_decode(data, size, &m, err, sizeof(err)) == 0) {
		round_trip(&m);
		fl__snap_manifest_free(&m);
	} else if (!err[0]) {
		abort(); /* every refusal says why */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;
	uint64_t len;

	decode(data, size);
	if (size < 32)
		return 0;
	fixed = malloc(size);
	if (!fixed)
		return 0;
	memcpy(fixed, data, size);
	len = size - 32;
	for (int i = 0; i < 8; i++)
		fixed[16 + i] = (uint8_t)(len >> (8 * i));
	snap_put_le32(fixed + 24, fl_crc32c(0, fixed + 32, len));
	snap_put_le32(fixed + 28, fl_crc32c(0, fixed, 28));
	decode(fixed, size);
	free(fixed);
	return 0;
}
