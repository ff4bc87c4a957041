// SPDX-License-Identifier: MIT
/*
 * Control messages: struct fl_ctl <-> one protobuf-c Control message.
 * fl_ctl_decode is a parser of bytes from the network (fuzz/fuzz_wire.c
 * feeds it arbitrary input): every count, size, enum and string is checked
 * before it is used or copied, and each refusal names the field.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire-internal.h"
#include "transport/wire.pb-c.h"

void fl_ctl_free(struct fl_ctl *m)
{
	if (!m)
		return;
	switch (m->type) {
	case FL_CTL_REGIONS:
		free(m->regions.regions);
		m->regions.regions = NULL;
		m->regions.n = 0;
		break;
	case FL_CTL_OWED:
	case FL_CTL_HAVE:
		free(m->owed.bitmap);
		m->owed.bitmap = NULL;
		break;
	case FL_CTL_RESUME:
		free(m->resume.blob);
		m->resume.blob = NULL;
		m->resume.len = 0;
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------- encode */

/* OWED and HAVE: the same four fields. */
static int bitmap_fields(const struct fl_ctl *m, uint32_t *region, uint64_t *first_page,
			 uint64_t *npages, ProtobufCBinaryData *bitmap)
{
	if (m->owed.npages > 8ull * FL_WIRE_MAX_CONTROL || (m->owed.npages && !m->owed.bitmap))
		return -EINVAL;
	*region = m->owed.region;
	*first_page = m->owed.first_page;
	*npages = m->owed.npages;
	bitmap->data = m->owed.bitmap;
	bitmap->len = (m->owed.npages + 7) / 8;
	return 0;
}

int fl_ctl_encode(const struct fl_ctl *m, uint8_t **out, size_t *len)
{
	Faultline__Wire__Control pb = FAULTLINE__WIRE__CONTROL__INIT;
	Faultline__Wire__Hello hello = FAULTLINE__WIRE__HELLO__INIT;
	Faultline__Wire__Regions regions = FAULTLINE__WIRE__REGIONS__INIT;
	Faultline__Wire__Round round = FAULTLINE__WIRE__ROUND__INIT;
	Faultline__Wire__Owed owed = FAULTLINE__WIRE__OWED__INIT;
	Faultline__Wire__Resume resume = FAULTLINE__WIRE__RESUME__INIT;
	Faultline__Wire__Request request = FAULTLINE__WIRE__REQUEST__INIT;
	Faultline__Wire__Done done = FAULTLINE__WIRE__DONE__INIT;
	Faultline__Wire__Ping ping = FAULTLINE__WIRE__PING__INIT;
	Faultline__Wire__Stats stats = FAULTLINE__WIRE__STATS__INIT;
	Faultline__Wire__Error error = FAULTLINE__WIRE__ERROR__INIT;
	Faultline__Wire__Rejoin rejoin = FAULTLINE__WIRE__REJOIN__INIT;
	Faultline__Wire__Have have = FAULTLINE__WIRE__HAVE__INIT;
	Faultline__Wire__Region *rs = NULL, **rp = NULL;
	uint8_t *buf;
	size_t n;
	int ret = 0;

	*out = NULL;
	*len = 0;
	pb.version = FL_WIRE_VERSION;
	switch (m->type) {
	case FL_CTL_HELLO:
		hello.version = m->hello.version;
		hello.role = m->hello.role;
		hello.conn = m->hello.conn;
		hello.capabilities = m->hello.capabilities;
		hello.session.data = (uint8_t *)m->hello.session;
		hello.session.len = sizeof(m->hello.session);
		hello.rejoin = m->hello.rejoin;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_HELLO;
		pb.hello = &hello;
		break;
	case FL_CTL_REGIONS:
		if (m->regions.n > FL_WIRE_MAX_REGIONS || (m->regions.n && !m->regions.regions))
			return -EINVAL;
		rs = calloc(m->regions.n ? m->regions.n : 1, sizeof(*rs));
		rp = calloc(m->regions.n ? m->regions.n : 1, sizeof(*rp));
		if (!rs || !rp) {
			ret = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < m->regions.n; i++) {
			const struct fl_region *g = &m->regions.regions[i];

			faultline__wire__region__init(&rs[i]);
			rs[i].start = g->start;
			rs[i].len = g->len;
			rs[i].page_size = g->page_size;
			rs[i].prot = g->prot;
			rs[i].name.data = (uint8_t *)g->name;
			rs[i].name.len = strnlen(g->name, sizeof(g->name));
			rp[i] = &rs[i];
		}
		regions.n_regions = m->regions.n;
		regions.regions = rp;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_REGIONS;
		pb.regions = &regions;
		break;
	case FL_CTL_ROUND:
		round.round = m->round.round;
		round.dirty_pages = m->round.dirty_pages;
		round.end = m->round.end;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_ROUND;
		pb.round = &round;
		break;
	case FL_CTL_OWED:
		if ((ret = bitmap_fields(m, &owed.region, &owed.first_page, &owed.npages,
					 &owed.bitmap)))
			return ret;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_OWED;
		pb.owed = &owed;
		break;
	case FL_CTL_HAVE:
		if ((ret = bitmap_fields(m, &have.region, &have.first_page, &have.npages,
					 &have.bitmap)))
			return ret;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_HAVE;
		pb.have = &have;
		break;
	case FL_CTL_REJOIN:
		rejoin.phase = m->rejoin.phase;
		rejoin.round = m->rejoin.round;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_REJOIN;
		pb.rejoin = &rejoin;
		break;
	case FL_CTL_RESUME:
		if (m->resume.len && !m->resume.blob)
			return -EINVAL;
		resume.blob.data = m->resume.blob;
		resume.blob.len = m->resume.len;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_RESUME;
		pb.resume = &resume;
		break;
	case FL_CTL_REQUEST:
		request.region = m->request.region;
		request.offset = m->request.offset;
		request.len = m->request.len;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_REQUEST;
		pb.request = &request;
		break;
	case FL_CTL_DONE:
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_DONE;
		pb.done = &done;
		break;
	case FL_CTL_PING:
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_PING;
		pb.ping = &ping;
		break;
	case FL_CTL_STATS:
		if (m->stats.n > sizeof(m->stats.values) / sizeof(m->stats.values[0]))
			return -EINVAL;
		stats.n_values = m->stats.n;
		stats.values = (uint64_t *)m->stats.values;
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_STATS;
		pb.stats = &stats;
		break;
	case FL_CTL_ERROR:
		error.code = m->error.code;
		error.message.data = (uint8_t *)m->error.message;
		error.message.len = strnlen(m->error.message, sizeof(m->error.message) - 1);
		pb.msg_case = FAULTLINE__WIRE__CONTROL__MSG_ERROR;
		pb.error = &error;
		break;
	default:
		return -EINVAL;
	}
	n = faultline__wire__control__get_packed_size(&pb);
	if (n > FL_WIRE_MAX_CONTROL) {
		ret = -EMSGSIZE;
		goto out;
	}
	buf = malloc(n ? n : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	faultline__wire__control__pack(&pb, buf);
	*out = buf;
	*len = n;
out:
	free(rs);
	free(rp);
	return ret;
}

/* ------------------------------------------------------------- decode */

#define BAD(...) do { fl__wire_err(err, errlen, "control message: " __VA_ARGS__); ret = -EPROTO; goto out; } while (0)

/* A byte string that must fit, with its NUL, in `size` bytes. */
static bool fits_string(const ProtobufCBinaryData *b, size_t size)
{
	return b->len < size && (!b->len || !memchr(b->data, 0, b->len));
}

static int decode_regions(const Faultline__Wire__Regions *pb, struct fl_ctl *m,
			  char *err, size_t errlen)
{
	struct fl_region *g;
	int ret = 0;

	if (pb->n_regions > FL_WIRE_MAX_REGIONS)
		BAD("regions: %zu regions, more than the %d allowed", pb->n_regions, FL_WIRE_MAX_REGIONS);
	g = calloc(pb->n_regions ? pb->n_regions : 1, sizeof(*g));
	if (!g) {
		fl__wire_err(err, errlen, "control message: regions: out of memory");
		return -ENOMEM;
	}
	m->regions.regions = g;
	m->regions.n = pb->n_regions;
	for (size_t i = 0; i < pb->n_regions; i++) {
		const Faultline__Wire__Region *r = pb->regions[i];

		if (r->page_size != WIRE_PAGE && r->page_size != WIRE_HUGE_PAGE)
			BAD("regions[%zu].page_size %u: must be 4096 or 2097152", i, r->page_size);
		if (!r->len)
			BAD("regions[%zu].len is 0", i);
		if (r->start % r->page_size)
			BAD("regions[%zu].start 0x%llx is not a multiple of its page size %u",
			    i, (unsigned long long)r->start, r->page_size);
		if (r->len % r->page_size)
			BAD("regions[%zu].len 0x%llx is not a multiple of its page size %u",
			    i, (unsigned long long)r->len, r->page_size);
		if (r->start >= WIRE_ADDR_LIMIT || r->len > WIRE_ADDR_LIMIT - r->start)
			BAD("regions[%zu]: start 0x%llx + len 0x%llx lies outside any address space",
			    i, (unsigned long long)r->start, (unsigned long long)r->len);
		if (r->prot & ~7u)
			BAD("regions[%zu].prot 0x%x has bits other than read, write, exec", i, r->prot);
		if (!fits_string(&r->name, FL_REGION_NAME_MAX))
			BAD("regions[%zu].name: %zu bytes or an embedded NUL (at most %d bytes)",
			    i, r->name.len, FL_REGION_NAME_MAX - 1);
		g[i].start = r->start;
		g[i].len = r->len;
		g[i].page_size = r->page_size;
		g[i].prot = r->prot;
		if (r->name.len) /* an empty name has no data pointer */
			memcpy(g[i].name, r->name.data, r->name.len);
		g[i].name[r->name.len] = '\0';
	}
out:
	return ret;
}

/* OWED and HAVE: a page bitmap of one region. */
static int decode_bitmap(const char *what, uint32_t region, uint64_t first_page,
			 uint64_t npages, const ProtobufCBinaryData *bitmap, struct fl_ctl *m,
			 char *err, size_t errlen)
{
	int ret = 0;

	/* Bound npages before (npages + 7) / 8 can overflow. */
	if (npages > 8ull * FL_WIRE_MAX_CONTROL)
		BAD("%s.npages %llu is more than one message can describe", what,
		    (unsigned long long)npages);
	if (first_page > WIRE_ADDR_LIMIT / WIRE_PAGE || npages > WIRE_ADDR_LIMIT / WIRE_PAGE - first_page)
		BAD("%s: pages %llu + %llu lie outside any address space", what,
		    (unsigned long long)first_page, (unsigned long long)npages);
	if (bitmap->len != (npages + 7) / 8)
		BAD("%s.bitmap is %zu bytes, but %llu pages need %llu", what, bitmap->len,
		    (unsigned long long)npages, (unsigned long long)((npages + 7) / 8));
	m->owed.region = region;
	m->owed.first_page = first_page;
	m->owed.npages = npages;
	m->owed.bitmap = malloc(bitmap->len ? bitmap->len : 1);
	if (!m->owed.bitmap)
		return -ENOMEM;
	if (bitmap->len)
		memcpy(m->owed.bitmap, bitmap->data, bitmap->len);
out:
	return ret;
}

int fl_ctl_decode(const uint8_t *buf, size_t len, struct fl_ctl *m, char *err,
		  size_t errlen)
{
	Faultline__Wire__Control *pb = NULL;
	int ret = 0;

	memset(m, 0, sizeof(*m));
	if (len > FL_WIRE_MAX_CONTROL)
		BAD("%zu bytes, more than the %u allowed", len, FL_WIRE_MAX_CONTROL);
	pb = faultline__wire__control__unpack(NULL, len, buf);
	if (!pb)
		BAD("%zu bytes that are not a protobuf Control message", len);
	if (pb->version != FL_WIRE_VERSION)
		BAD("version %u, but this faultline speaks version %d", pb->version, FL_WIRE_VERSION);

	switch (pb->msg_case) {
	case FAULTLINE__WIRE__CONTROL__MSG_HELLO: {
		const Faultline__Wire__Hello *h = pb->hello;

		m->type = FL_CTL_HELLO;
		if (h->version != FL_WIRE_VERSION)
			BAD("hello.version %u, but this faultline speaks version %d", h->version, FL_WIRE_VERSION);
		if (h->role != FL_ROLE_SOURCE && h->role != FL_ROLE_DEST)
			BAD("hello.role %u is neither source (1) nor destination (2)", h->role);
		if (h->conn != FL_CONN_CONTROL && h->conn != FL_CONN_URGENT)
			BAD("hello.conn %u is neither control (1) nor urgent (2)", h->conn);
		if (h->capabilities)
			BAD("hello.capabilities 0x%llx: no capability is defined yet",
			    (unsigned long long)h->capabilities);
		if (h->session.len != sizeof(m->hello.session))
			BAD("hello.session is %zu bytes, expected %zu", h->session.len, sizeof(m->hello.session));
		m->hello.version = h->version;
		m->hello.role = h->role;
		m->hello.conn = h->conn;
		m->hello.capabilities = h->capabilities;
		m->hello.rejoin = h->rejoin;
		memcpy(m->hello.session, h->session.data, sizeof(m->hello.session));
		break;
	}
	case FAULTLINE__WIRE__CONTROL__MSG_REGIONS:
		m->type = FL_CTL_REGIONS;
		ret = decode_regions(pb->regions, m, err, errlen);
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_ROUND:
		m->type = FL_CTL_ROUND;
		if (!pb->round->round)
			BAD("round.round is 0 (rounds count from 1)");
		m->round.round = pb->round->round;
		m->round.dirty_pages = pb->round->dirty_pages;
		m->round.end = pb->round->end;
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_OWED:
		m->type = FL_CTL_OWED;
		ret = decode_bitmap("owed", pb->owed->region, pb->owed->first_page,
				    pb->owed->npages, &pb->owed->bitmap, m, err, errlen);
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_HAVE:
		m->type = FL_CTL_HAVE;
		ret = decode_bitmap("have", pb->have->region, pb->have->first_page,
				    pb->have->npages, &pb->have->bitmap, m, err, errlen);
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_REJOIN:
		m->type = FL_CTL_REJOIN;
		if (pb->rejoin->phase != FL_REJOIN_PRECOPY && pb->rejoin->phase != FL_REJOIN_POSTCOPY)
			BAD("rejoin.phase %u is neither pre-copy (1) nor post-copy (2)",
			    pb->rejoin->phase);
		m->rejoin.phase = pb->rejoin->phase;
		m->rejoin.round = pb->rejoin->round;
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_RESUME:
		m->type = FL_CTL_RESUME;
		if (pb->resume->blob.len) {
			m->resume.blob = malloc(pb->resume->blob.len);
			if (!m->resume.blob) {
				ret = -ENOMEM;
				goto out;
			}
			memcpy(m->resume.blob, pb->resume->blob.data, pb->resume->blob.len);
			m->resume.len = pb->resume->blob.len;
		}
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_REQUEST: {
		const Faultline__Wire__Request *r = pb->request;

		m->type = FL_CTL_REQUEST;
		if (r->offset % WIRE_PAGE)
			BAD("request.offset 0x%llx is not page aligned", (unsigned long long)r->offset);
		if (!r->len || r->len % WIRE_PAGE)
			BAD("request.len 0x%llx is 0 or not page aligned", (unsigned long long)r->len);
		if (r->offset >= WIRE_ADDR_LIMIT || r->len > WIRE_ADDR_LIMIT - r->offset)
			BAD("request: offset 0x%llx + len 0x%llx lies outside any address space",
			    (unsigned long long)r->offset, (unsigned long long)r->len);
		m->request.region = r->region;
		m->request.offset = r->offset;
		m->request.len = r->len;
		break;
	}
	case FAULTLINE__WIRE__CONTROL__MSG_DONE:
		m->type = FL_CTL_DONE;
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_PING:
		m->type = FL_CTL_PING;
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_STATS:
		m->type = FL_CTL_STATS;
		if (pb->stats->n_values > sizeof(m->stats.values) / sizeof(m->stats.values[0]))
			BAD("stats.values: %zu values, at most %zu", pb->stats->n_values,
			    sizeof(m->stats.values) / sizeof(m->stats.values[0]));
		if (pb->stats->n_values)
			memcpy(m->stats.values, pb->stats->values, pb->stats->n_values * sizeof(uint64_t));
		m->stats.n = pb->stats->n_values;
		break;
	case FAULTLINE__WIRE__CONTROL__MSG_ERROR:
		m->type = FL_CTL_ERROR;
		if (pb->error->code > 0 || pb->error->code < -4095)
			BAD("error.code %d is not a negative errno value", pb->error->code);
		if (!fits_string(&pb->error->message, sizeof(m->error.message)))
			BAD("error.message: %zu bytes or an embedded NUL (at most %zu bytes)",
			    pb->error->message.len, sizeof(m->error.message) - 1);
		m->error.code = pb->error->code;
		if (pb->error->message.len)
			memcpy(m->error.message, pb->error->message.data, pb->error->message.len);
		m->error.message[pb->error->message.len] = '\0';
		break;
	default:
		BAD("no known message in it (field %d)", (int)pb->msg_case);
	}
out:
	if (pb)
		faultline__wire__control__free_unpacked(pb, NULL);
	if (ret) {
		fl_ctl_free(m);
		if (ret == -ENOMEM)
			fl__wire_err(err, errlen, "control message: out of memory");
	}
	return ret;
}

int fl__wire_ctl_check_regions(const struct fl_ctl *m, const struct fl_region *r,
			   size_t n, char *err, size_t errlen)
{
	const struct fl_region *g;

	if (m->type == FL_CTL_REQUEST) {
		if (m->request.region >= n)
			goto no_region;
		g = &r[m->request.region];
		if (m->request.offset % g->page_size || m->request.len % g->page_size) {
			fl__wire_err(err, errlen, "control message: request.offset 0x%llx / len 0x%llx not aligned to region %u's page size %u",
				 (unsigned long long)m->request.offset, (unsigned long long)m->request.len,
				 m->request.region, g->page_size);
			return -EPROTO;
		}
		if (m->request.offset > g->len || m->request.len > g->len - m->request.offset) {
			fl__wire_err(err, errlen, "control message: request.offset 0x%llx + len 0x%llx lies beyond region %u (0x%llx bytes)",
				 (unsigned long long)m->request.offset, (unsigned long long)m->request.len,
				 m->request.region, (unsigned long long)g->len);
			return -EPROTO;
		}
	} else if (m->type == FL_CTL_OWED || m->type == FL_CTL_HAVE) {
		uint64_t pages;

		if (m->owed.region >= n)
			goto no_region;
		g = &r[m->owed.region];
		pages = g->len / g->page_size;
		if (m->owed.first_page > pages || m->owed.npages > pages - m->owed.first_page) {
			fl__wire_err(err, errlen, "control message: %s pages %llu + %llu lie beyond region %u (%llu pages of %u bytes)",
				 m->type == FL_CTL_OWED ? "owed" : "have", (unsigned long long)m->owed.first_page, (unsigned long long)m->owed.npages,
				 m->owed.region, (unsigned long long)pages, g->page_size);
			return -EPROTO;
		}
	}
	return 0;
no_region:
	fl__wire_err(err, errlen, "control message: %s.region %u does not exist (%zu regions)",
		 m->type == FL_CTL_REQUEST ? "request" : m->type == FL_CTL_OWED ? "owed" : "have",
		 m->type == FL_CTL_REQUEST ? m->request.region : m->owed.region, n);
	return -EPROTO;
}
