// SPDX-License-Identifier: MIT
/*
 * The 32-byte frame header, packed byte by byte in little-endian order
 * (never a struct cast: the layout must not depend on the compiler or the
 * host's byte order). fl_wire_hdr_unpack is the first parser of bytes from
 * the network; nothing it returns has been left unchecked.
 */
#include <errno.h>

#include "wire-internal.h"

static void put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *b, uint64_t v)
{
	put32(b, (uint32_t)v);
	put32(b + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t get64(const uint8_t *b)
{
	return (uint64_t)get32(b) | (uint64_t)get32(b + 4) << 32;
}

void fl_wire_hdr_pack(const struct fl_wire_hdr *h, uint8_t out[FL_WIRE_HDR_SIZE])
{
	put32(out, FL_WIRE_MAGIC);
	out[4] = (uint8_t)h->kind;
	out[5] = (uint8_t)h->flags;
	out[6] = 0;
	out[7] = 0;
	put32(out + 8, h->region);
	put32(out + 12, h->length);
	put64(out + 16, h->offset);
	put64(out + 24, h->count);
}

#define BAD(...) do { fl__wire_err(err, errlen, "frame header: " __VA_ARGS__); return -EPROTO; } while (0)

int fl_wire_hdr_unpack(const uint8_t in[FL_WIRE_HDR_SIZE], struct fl_wire_hdr *h,
		       const struct fl_region *regions, size_t nregions, char *err,
		       size_t errlen)
{
	uint32_t magic = get32(in);
	uint64_t span;

	h->kind = in[4];
	h->flags = in[5];
	h->region = get32(in + 8);
	h->length = get32(in + 12);
	h->offset = get64(in + 16);
	h->count = get64(in + 24);

	if (magic != FL_WIRE_MAGIC)
		BAD("magic 0x%08x, expected 0x%08x (\"FLTW\"): the peer is not speaking the faultline wire protocol (TLS on one side only?)",
		    magic, FL_WIRE_MAGIC);
	if (h->flags & ~(unsigned)FL_WIRE_URGENT)
		BAD("flags 0x%x has unknown bits", h->flags);
	if (in[6] || in[7])
		BAD("reserved bytes 0x%02x%02x are not 0", in[7], in[6]);

	switch (h->kind) {
	case FL_WIRE_CONTROL:
		if (h->length > FL_WIRE_MAX_CONTROL)
			BAD("length %u of a control message is more than the %u allowed",
			    h->length, FL_WIRE_MAX_CONTROL);
		if (h->region || h->offset || h->count)
			BAD("a control frame has region %u, offset 0x%llx, count %llu (all must be 0)",
			    h->region, (unsigned long long)h->offset, (unsigned long long)h->count);
		return 0;
	case FL_WIRE_PAGES:
		if (h->length > FL_WIRE_MAX_PAGES)
			BAD("length %u of a pages frame is more than the %u allowed",
			    h->length, FL_WIRE_MAX_PAGES);
		if (!h->length || h->length % WIRE_PAGE)
			BAD("length %u of a pages frame is 0 or not a multiple of 4096", h->length);
		if (h->count != h->length)
			BAD("count %llu of a pages frame differs from its length %u",
			    (unsigned long long)h->count, h->length);
		span = h->length;
		break;
	case FL_WIRE_ZERO:
		if (h->length)
			BAD("length %u of a zero frame (it carries no payload)", h->length);
		if (!h->count || h->count % WIRE_PAGE)
			BAD("count %llu of a zero frame is 0 or not a multiple of 4096",
			    (unsigned long long)h->count);
		span = h->count;
		break;
	default:
		BAD("kind %u is unknown (1 control, 2 pages, 3 zero)", (unsigned)h->kind);
	}

	if (h->offset % WIRE_PAGE)
		BAD("offset 0x%llx is not page aligned", (unsigned long long)h->offset);
	if (h->offset >= WIRE_ADDR_LIMIT || span > WIRE_ADDR_LIMIT - h->offset)
		BAD("offset 0x%llx + 0x%llx lies outside any address space",
		    (unsigned long long)h->offset, (unsigned long long)span);
	if (!regions)
		return 0;
	if (h->region >= nregions)
		BAD("region %u does not exist (the table has %zu)", h->region, nregions);
	if (h->offset % regions[h->region].page_size || span % regions[h->region].page_size)
		BAD("offset 0x%llx / size 0x%llx is not aligned to region %u's page size %u",
		    (unsigned long long)h->offset, (unsigned long long)span, h->region,
		    regions[h->region].page_size);
	if (h->offset > regions[h->region].len || span > regions[h->region].len - h->offset)
		BAD("offset 0x%llx + 0x%llx lies beyond the end of region %u (0x%llx bytes)",
		    (unsigned long long)h->offset, (unsigned long long)span, h->region,
		    (unsigned long long)regions[h->region].len);
	return 0;
}
