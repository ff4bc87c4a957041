// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the wire's parsers of network bytes. An input is one
 * frame: a 32-byte header (checked against a small region table) and the
 * bytes after it, decoded as a control message whatever the header says,
 * so mutations reach the protobuf decoder as well as the header checks.
 * Whatever decodes must encode and decode again to the same message, and
 * every refusal must say why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/wire.h>

static const struct fl_region table[] = {
	{ .start = 0x10000000, .len = 64 * 4096, .page_size = 4096, .prot = 3, .name = "ram" },
	{ .start = 0x40000000, .len = 4 << 20, .page_size = 2 << 20, .prot = 3, .name = "huge" },
};

static void same(const struct fl_ctl *a, const struct fl_ctl *b)
{
	if (a->type != b->type)
		abort();
	switch (a->type) {
	case FL_CTL_REGIONS:
		if (a->regions.n != b->regions.n ||
		    memcmp(a->regions.regions, b->regions.regions, a->regions.n * sizeof(struct fl_region)))
			abort();
		break;
	case FL_CTL_OWED:
		if (a->owed.npages != b->owed.npages || a->owed.first_page != b->owed.first_page ||
		    memcmp(a->owed.bitmap, b->owed.bitmap, (a->owed.npages + 7) / 8))
			abort();
		break;
	case FL_CTL_RESUME:
		if (a->resume.len != b->resume.len ||
		    (a->resume.len && memcmp(a->resume.blob, b->resume.blob, a->resume.len)))
			abort();
		break;
	case FL_CTL_ERROR:
		if (a->error.code != b->error.code || strcmp(a->error.message, b->error.message))
			abort();
		break;
	default:
		break;
	}
}

static void control(const uint8_t *data, size_t size)
{
	struct fl_ctl m, again;
	char err[512] = "";
	uint8_t *buf;
	size_t len;

	if (fl_ctl_decode(data, size, &m, err, sizeof(err))) {
		if (!err[0])
			abort(); /* every refusal says why */
		return;
	}
	if (fl_ctl_encode(&m, &buf, &len))
		abort(); /* we accepted something we cannot write */
	if (fl_ctl_decode(buf, len, &again, err, sizeof(err)))
		abort(); /* we wrote something we refuse to read */
	same(&m, &again);
	fl_ctl_free(&again);
	fl_ctl_free(&m);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fl_wire_hdr h;
	uint8_t again[FL_WIRE_HDR_SIZE];
	char err[512] = "";

	if (size < FL_WIRE_HDR_SIZE) {
		control(data, size);
		return 0;
	}
	if (fl_wire_hdr_unpack(data, &h, table, 2, err, sizeof(err)) == 0) {
		/* An accepted header packs back to the same bytes. */
		fl_wire_hdr_pack(&h, again);
		if (memcmp(again, data, FL_WIRE_HDR_SIZE))
			abort();
		if (h.kind == FL_WIRE_PAGES && (h.region >= 2 || h.offset + h.length > table[h.region].len))
			abort();
	} else if (!err[0]) {
		abort();
	}
	control(data + FL_WIRE_HDR_SIZE, size - FL_WIRE_HDR_SIZE);
	return 0;
}
