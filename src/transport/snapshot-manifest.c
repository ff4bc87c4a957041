// SPDX-License-Identifier: MIT
/*
 * manifest.pb: the 32-byte header and the protobuf manifest after it,
 * decoded and validated on their own (the other two files are checked
 * against it in snapshot-open.c). This is the parser of bytes from outside
 * that fuzz/fuzz_manifest.c feeds arbitrary input: every field is checked
 * before it is used, and nothing here trusts a length it did not bound.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot-internal.h"
#include "transport/snapshot.pb-c.h"

static uint64_t le64(const unsigned char *b)
{
	return (uint64_t)snap_le32(b) | (uint64_t)snap_le32(b + 4) << 32;
}

static void put_le64(unsigned char *b, uint64_t v)
{
	snap_put_le32(b, (uint32_t)v);
	snap_put_le32(b + 4, (uint32_t)(v >> 32));
}

void fl__snap_manifest_free(struct snap_manifest *m)
{
	if (!m)
		return;
	free(m->regions);
	free(m->where);
	m->regions = NULL;
	m->where = NULL;
	m->nregions = 0;
}

#define BAD(...) do { fl__snap_err(err, errlen, SNAP_MANIFEST ": " __VA_ARGS__); ret = -EBADMSG; goto out; } while (0)

static bool power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

int fl__snap_manifest_decode(const void *buf, size_t len, struct snap_manifest *m,
			 char *err, size_t errlen)
{
	const unsigned char *b = buf;
	Faultline__Snapshot__Manifest *pb = NULL;
	uint32_t version;
	uint64_t mlen, blocks = 0;
	int ret = 0;

	memset(m, 0, sizeof(*m));
	if (len < SNAP_HEADER_SIZE)
		BAD("%zu bytes, shorter than its %d-byte header: the snapshot is truncated; take it again",
		    len, SNAP_HEADER_SIZE);
	if (memcmp(b, SNAP_MAGIC, 8))
		BAD("bad magic (not \"FLSNAP\"): this is not a faultline snapshot, or its first bytes are corrupt");
	if (fl_crc32c(0, b, 28) != snap_le32(b + 28))
		BAD("the header's checksum does not match: the header is corrupt; take the snapshot again");
	version = snap_le32(b + 8);
	if (version > FL_SNAPSHOT_VERSION) {
		fl__snap_err(err, errlen, SNAP_MANIFEST ": format version %u, but this faultline reads version %d: upgrade faultline",
			 version, FL_SNAPSHOT_VERSION);
		ret = -EPROTONOSUPPORT;
		goto out;
	}
	if (version == 0)
		BAD("format version 0 does not exist: the header is corrupt");
	if (snap_le32(b + 12))
		BAD("unknown header flags 0x%x: written by a different faultline", snap_le32(b + 12));
	mlen = le64(b + 16);
	if (mlen > SNAP_MANIFEST_MAX)
		BAD("the header claims a %llu-byte manifest, more than the %u allowed: the header is corrupt",
		    (unsigned long long)mlen, SNAP_MANIFEST_MAX);
	if (len - SNAP_HEADER_SIZE < mlen)
		BAD("truncated: the header announces %llu bytes of manifest but only %zu follow; take the snapshot again",
		    (unsigned long long)mlen, len - SNAP_HEADER_SIZE);
	if (len - SNAP_HEADER_SIZE > mlen)
		BAD("%zu stray bytes after the manifest: the file was appended to or is corrupt",
		    len - SNAP_HEADER_SIZE - (size_t)mlen);
	if (fl_crc32c(0, b + SNAP_HEADER_SIZE, mlen) != snap_le32(b + 24))
		BAD("the manifest's checksum does not match its bytes: the manifest is corrupt; take the snapshot again");

	pb = faultline__snapshot__manifest__unpack(NULL, mlen, b + SNAP_HEADER_SIZE);
	if (!pb)
		BAD("the manifest does not decode (its checksum matched, so it was written wrong): report a bug");
	if (pb->version != version)
		BAD("the manifest says version %u but the header %u: the snapshot is corrupt", pb->version, version);
	if (pb->block_size != FL_SNAPSHOT_BLOCK)
		BAD("checksum block size %u, expected %u", pb->block_size, FL_SNAPSHOT_BLOCK);
	if (pb->n_regions > SNAP_REGIONS_MAX)
		BAD("%zu regions, more than the %u allowed", pb->n_regions, SNAP_REGIONS_MAX);
	if (strlen(pb->origin) >= sizeof(m->origin))
		BAD("the origin string is %zu bytes, more than %zu", strlen(pb->origin), sizeof(m->origin) - 1);

	m->version = version;
	m->created = pb->created_unix;
	strcpy(m->origin, pb->origin);
	m->pages_size = pb->pages_size;
	m->checksums_size = pb->checksums_size;
	m->checksums_crc = pb->checksums_crc32c;
	m->nregions = pb->n_regions;
	m->regions = calloc(pb->n_regions ? pb->n_regions : 1, sizeof(*m->regions));
	m->where = calloc(pb->n_regions ? pb->n_regions : 1, sizeof(*m->where));
	if (!m->regions || !m->where) {
		ret = -ENOMEM;
		fl__snap_err(err, errlen, "out of memory reading " SNAP_MANIFEST);
		goto out;
	}
	if (pb->pages_size > SNAP_ADDR_LIMIT)
		BAD("pages size %llu is impossibly large: the manifest is corrupt",
		    (unsigned long long)pb->pages_size);

	for (size_t i = 0; i < pb->n_regions; i++) {
		const Faultline__Snapshot__Region *r = pb->regions[i];
		struct fl_region *g = &m->regions[i];
		struct snap_region *w = &m->where[i];

		if (!power_of_two(r->page_size) || r->page_size < FL_SNAPSHOT_BLOCK ||
		    r->page_size > SNAP_PAGE_SIZE_MAX)
			BAD("region %zu: page size %u is not a power of two from 4 KiB to 1 GiB", i, r->page_size);
		if (!r->len || r->len % r->page_size || r->start % r->page_size)
			BAD("region %zu: start 0x%llx and length 0x%llx are not multiples of its page size %u (or the length is 0)",
			    i, (unsigned long long)r->start, (unsigned long long)r->len, r->page_size);
		if (r->start >= SNAP_ADDR_LIMIT || r->len > SNAP_ADDR_LIMIT - r->start)
			BAD("region %zu: 0x%llx + 0x%llx lies outside any address space",
			    i, (unsigned long long)r->start, (unsigned long long)r->len);
		if (r->prot & ~7u)
			BAD("region %zu: protection 0x%x has bits other than read, write, exec", i, r->prot);
		if (strlen(r->name) >= FL_REGION_NAME_MAX)
			BAD("region %zu: name longer than %d bytes", i, FL_REGION_NAME_MAX - 1);
		if (r->file_offset % r->page_size)
			BAD("region %zu: offset 0x%llx in " SNAP_PAGES " is not aligned to its page size %u",
			    i, (unsigned long long)r->file_offset, r->page_size);
		if (r->file_offset > pb->pages_size || r->len > pb->pages_size - r->file_offset)
			BAD("region %zu: its bytes (0x%llx + 0x%llx) extend past the %llu-byte " SNAP_PAGES " file",
			    i, (unsigned long long)r->file_offset, (unsigned long long)r->len,
			    (unsigned long long)pb->pages_size);
		if (r->data_bytes > r->len)
			BAD("region %zu: more data bytes than bytes", i);
		if (i) {
			const struct fl_region *p = &m->regions[i - 1];
			const struct snap_region *pw = &m->where[i - 1];

			if (r->start < p->start)
				BAD("regions %zu and %zu are not sorted by address (0x%llx after 0x%llx)",
				    i - 1, i, (unsigned long long)r->start, (unsigned long long)p->start);
			if (r->start < p->start + p->len)
				BAD("regions %zu and %zu overlap (0x%llx-0x%llx and 0x%llx-0x%llx)",
				    i - 1, i, (unsigned long long)p->start,
				    (unsigned long long)(p->start + p->len),
				    (unsigned long long)r->start, (unsigned long long)(r->start + r->len));
			if (r->file_offset < pw->file_offset + p->len)
				BAD("regions %zu and %zu overlap in " SNAP_PAGES " (offsets 0x%llx and 0x%llx)",
				    i - 1, i, (unsigned long long)pw->file_offset,
				    (unsigned long long)r->file_offset);
		}
		g->start = r->start;
		g->len = r->len;
		g->page_size = r->page_size;
		g->prot = r->prot;
		strcpy(g->name, r->name);
		w->file_offset = r->file_offset;
		w->first_block = blocks;
		w->data_bytes = r->data_bytes;
		w->checksum = r->checksum;
		blocks += r->len / FL_SNAPSHOT_BLOCK;
	}
	m->blocks = blocks;
	if (pb->checksums_size != blocks * 4)
		BAD("the checksums size %llu does not match the regions' %llu blocks",
		    (unsigned long long)pb->checksums_size, (unsigned long long)blocks);
out:
	if (pb)
		faultline__snapshot__manifest__free_unpacked(pb, NULL);
	if (ret)
		fl__snap_manifest_free(m);
	return ret;
}

int fl__snap_manifest_encode(const struct snap_manifest *m, void **out, size_t *outlen)
{
	Faultline__Snapshot__Manifest pb = FAULTLINE__SNAPSHOT__MANIFEST__INIT;
	Faultline__Snapshot__Region *rs = calloc(m->nregions ? m->nregions : 1, sizeof(*rs));
	Faultline__Snapshot__Region **rp = calloc(m->nregions ? m->nregions : 1, sizeof(*rp));
	unsigned char *buf = NULL;
	size_t len;
	int ret = -ENOMEM;

	if (!rs || !rp)
		goto out;
	for (size_t i = 0; i < m->nregions; i++) {
		faultline__snapshot__region__init(&rs[i]);
		rs[i].start = m->regions[i].start;
		rs[i].len = m->regions[i].len;
		rs[i].page_size = m->regions[i].page_size;
		rs[i].prot = m->regions[i].prot;
		rs[i].name = (char *)m->regions[i].name;
		rs[i].file_offset = m->where[i].file_offset;
		rs[i].checksum = m->where[i].checksum;
		rs[i].data_bytes = m->where[i].data_bytes;
		rp[i] = &rs[i];
	}
	pb.version = m->version;
	pb.created_unix = m->created;
	pb.origin = (char *)m->origin;
	pb.block_size = FL_SNAPSHOT_BLOCK;
	pb.pages_size = m->pages_size;
	pb.checksums_size = m->checksums_size;
	pb.checksums_crc32c = m->checksums_crc;
	pb.n_regions = m->nregions;
	pb.regions = rp;

	len = faultline__snapshot__manifest__get_packed_size(&pb);
	buf = malloc(SNAP_HEADER_SIZE + len);
	if (!buf)
		goto out;
	faultline__snapshot__manifest__pack(&pb, buf + SNAP_HEADER_SIZE);
	memcpy(buf, SNAP_MAGIC, 8);
	snap_put_le32(buf + 8, m->version);
	snap_put_le32(buf + 12, 0);
	put_le64(buf + 16, len);
	snap_put_le32(buf + 24, fl_crc32c(0, buf + SNAP_HEADER_SIZE, len));
	snap_put_le32(buf + 28, fl_crc32c(0, buf, 28));
	*out = buf;
	*outlen = SNAP_HEADER_SIZE + len;
	ret = 0;
out:
	free(rs);
	free(rp);
	return ret;
}
