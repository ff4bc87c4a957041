// SPDX-License-Identifier: MIT
/* The wire's codecs: every control message survives encode and decode,
 * and every malformed header or payload is refused with -EPROTO and an
 * error that names the field. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/wire.h>

#include "runner.h"

static const struct fl_region table[] = {
	{ .start = 0x10000000, .len = 64 * 4096, .page_size = 4096, .prot = 3, .name = "[heap]" },
	{ .start = 0x40000000, .len = 4 << 20, .page_size = 2 << 20, .prot = 3, .name = "guest-ram" },
};

static void encode_ok(const struct fl_ctl *m, uint8_t **buf, size_t *len)
{
	assert_int_equal(fl_ctl_encode(m, buf, len), 0);
	assert_non_null(*buf);
	assert_true(*len > 0 && *len <= FL_WIRE_MAX_CONTROL);
}

static void round_trip(const struct fl_ctl *m, struct fl_ctl *out)
{
	char err[256] = "";
	uint8_t *buf;
	size_t len;

	encode_ok(m, &buf, &len);
	if (fl_ctl_decode(buf, len, out, err, sizeof(err)))
		fail_msg("decode of type %d: %s", m->type, err);
	free(buf);
	assert_int_equal(out->type, m->type);
}

static void test_every_control_message_round_trips(const struct fl_case *c)
{
	struct fl_region regions[2];
	uint8_t bitmap[5] = { 0xff, 0x00, 0x5a, 0xa5, 0x01 };
	char blob[100];
	struct fl_ctl m, d;

	(void)c;
	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_HELLO;
	m.hello.version = FL_WIRE_VERSION;
	m.hello.role = FL_ROLE_DEST;
	m.hello.conn = FL_CONN_URGENT;
	for (int i = 0; i < 16; i++)
		m.hello.session[i] = (uint8_t)(i * 7 + 1);
	round_trip(&m, &d);
	assert_int_equal(d.hello.version, FL_WIRE_VERSION);
	assert_int_equal(d.hello.role, FL_ROLE_DEST);
	assert_int_equal(d.hello.conn, FL_CONN_URGENT);
	assert_int_equal(d.hello.capabilities, 0);
	assert_memory_equal(d.hello.session, m.hello.session, 16);
	fl_ctl_free(&d);

	memcpy(regions, table, sizeof(regions));
	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_REGIONS;
	m.regions.regions = regions;
	m.regions.n = 2;
	round_trip(&m, &d);
	assert_int_equal(d.regions.n, 2);
	assert_memory_equal(d.regions.regions, regions, sizeof(regions));
	fl_ctl_free(&d);
	assert_null(d.regions.regions);

	regions[1].name[0] = '\0'; /* a region may have no name */
	round_trip(&m, &d);
	assert_string_equal(d.regions.regions[1].name, "");
	fl_ctl_free(&d);

	m.regions.n = 0; /* an empty table is a table */
	round_trip(&m, &d);
	assert_int_equal(d.regions.n, 0);
	fl_ctl_free(&d);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_ROUND;
	m.round.round = 3;
	m.round.dirty_pages = 123456789012ull;
	m.round.end = true;
	round_trip(&m, &d);
	assert_int_equal(d.round.round, 3);
	assert_int_equal(d.round.dirty_pages, 123456789012ull);
	assert_true(d.round.end);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_OWED;
	m.owed.region = 1;
	m.owed.first_page = 7;
	m.owed.npages = 37;
	m.owed.bitmap = bitmap;
	round_trip(&m, &d);
	assert_int_equal(d.owed.region, 1);
	assert_int_equal(d.owed.first_page, 7);
	assert_int_equal(d.owed.npages, 37);
	assert_memory_equal(d.owed.bitmap, bitmap, sizeof(bitmap));
	fl_ctl_free(&d);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_RESUME;
	round_trip(&m, &d);
	assert_null(d.resume.blob);
	assert_int_equal(d.resume.len, 0);
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (char)i;
	m.resume.blob = blob;
	m.resume.len = sizeof(blob);
	round_trip(&m, &d);
	assert_int_equal(d.resume.len, sizeof(blob));
	assert_memory_equal(d.resume.blob, blob, sizeof(blob));
	fl_ctl_free(&d);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_REQUEST;
	m.request.region = 2;
	m.request.offset = 0x7000;
	m.request.len = 0x3000;
	round_trip(&m, &d);
	assert_int_equal(d.request.region, 2);
	assert_int_equal(d.request.offset, 0x7000);
	assert_int_equal(d.request.len, 0x3000);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_DONE;
	round_trip(&m, &d);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_PING;
	round_trip(&m, &d);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_STATS;
	m.stats.n = 16;
	for (int i = 0; i < 16; i++)
		m.stats.values[i] = (uint64_t)i << 40 | (uint64_t)i;
	round_trip(&m, &d);
	assert_int_equal(d.stats.n, 16);
	assert_memory_equal(d.stats.values, m.stats.values, sizeof(m.stats.values));

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_ERROR;
	m.error.code = -ENOSPC;
	strcpy(m.error.message, "destination: no space for region 3");
	round_trip(&m, &d);
	assert_int_equal(d.error.code, -ENOSPC);
	assert_string_equal(d.error.message, m.error.message);
}

static void test_encode_refuses_what_it_cannot_represent(const struct fl_case *c)
{
	struct fl_ctl m;
	uint8_t *buf;
	size_t len;

	(void)c;
	memset(&m, 0, sizeof(m));
	m.type = 99;
	assert_int_equal(fl_ctl_encode(&m, &buf, &len), -EINVAL);
	m.type = FL_CTL_STATS;
	m.stats.n = FL_WIRE_STATS_MAX + 1;
	assert_int_equal(fl_ctl_encode(&m, &buf, &len), -EINVAL);
	m.type = FL_CTL_REGIONS;
	m.regions.n = FL_WIRE_MAX_REGIONS + 1;
	m.regions.regions = calloc(FL_WIRE_MAX_REGIONS + 1, sizeof(struct fl_region));
	assert_int_equal(fl_ctl_encode(&m, &buf, &len), -EINVAL);
	free(m.regions.regions);
}

/* --------------------------------------------------- malformed payloads */

static void refused(const uint8_t *buf, size_t len, const char *says)
{
	char err[512] = "";
	struct fl_ctl d;

	assert_int_equal(fl_ctl_decode(buf, len, &d, err, sizeof(err)), -EPROTO);
	if (!strstr(err, says))
		fail_msg("error '%s' does not name '%s'", err, says);
}

static void refused_msg(const struct fl_ctl *m, const char *says)
{
	uint8_t *buf;
	size_t len;

	encode_ok(m, &buf, &len);
	refused(buf, len, says);
	free(buf);
}

/* Replace the first occurrence of two bytes (a field's tag and 1-byte
 * value) in an encoded message. */
static void patch2(uint8_t *buf, size_t len, uint8_t a, uint8_t b, uint8_t nb)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (buf[i] == a && buf[i + 1] == b) {
			buf[i + 1] = nb;
			return;
		}
	fail_msg("bytes %02x %02x not in the encoding", a, b);
}

static void test_bad_region_geometry_is_refused_naming_the_field(const struct fl_case *c)
{
	struct fl_region r[2];
	struct fl_ctl m = { .type = FL_CTL_REGIONS, .regions = { r, 2 } };

	(void)c;
	memcpy(r, table, sizeof(r));
	r[1].page_size = 8192;
	refused_msg(&m, "regions[1].page_size 8192");
	memcpy(r, table, sizeof(r));
	r[0].start += 4096 * 3 + 100;
	refused_msg(&m, "regions[0].start");
	memcpy(r, table, sizeof(r));
	r[1].start += 4096; /* 4 KiB aligned, not 2 MiB */
	refused_msg(&m, "regions[1].start");
	memcpy(r, table, sizeof(r));
	r[1].len = (2 << 20) + 4096;
	refused_msg(&m, "regions[1].len");
	memcpy(r, table, sizeof(r));
	r[0].len = 0;
	refused_msg(&m, "regions[0].len is 0");
	memcpy(r, table, sizeof(r));
	r[0].start = 1ull << 62;
	refused_msg(&m, "regions[0]: start");
	memcpy(r, table, sizeof(r));
	r[0].prot = 0x10;
	refused_msg(&m, "regions[0].prot");
	memcpy(r, table, sizeof(r));
	memset(r[1].name, 'x', sizeof(r[1].name)); /* no NUL within 64 bytes */
	refused_msg(&m, "regions[1].name");
}

static void test_bitmap_size_mismatch_is_refused(const struct fl_case *c)
{
	uint8_t bitmap[5] = { 1, 2, 3, 4, 5 }, *buf;
	struct fl_ctl m = { .type = FL_CTL_OWED };
	size_t len;

	(void)c;
	m.owed.region = 0;
	m.owed.npages = 40; /* 5 bytes */
	m.owed.bitmap = bitmap;
	encode_ok(&m, &buf, &len);
	patch2(buf, len, 0x18, 40, 41); /* npages 41 needs 6 bytes */
	refused(buf, len, "owed.bitmap is 5 bytes, but 41 pages need 6");
	patch2(buf, len, 0x18, 41, 0); /* 0 pages need none */
	refused(buf, len, "owed.bitmap");
	free(buf);
}

static void test_bad_payloads_are_refused_naming_the_field(const struct fl_case *c)
{
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34 };
	static const uint8_t no_message[] = { 0x08, 0x01 }; /* version 1, nothing else */
	struct fl_ctl m;
	uint8_t *buf, *big;
	size_t len;

	(void)c;
	refused(garbage, sizeof(garbage), "not a protobuf");
	refused(no_message, sizeof(no_message), "no known message");
	big = calloc(1, FL_WIRE_MAX_CONTROL + 1);
	refused(big, FL_WIRE_MAX_CONTROL + 1, "more than the");
	free(big);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_DONE;
	encode_ok(&m, &buf, &len);
	patch2(buf, len, 0x08, FL_WIRE_VERSION, 9);
	refused(buf, len, "version 9");
	free(buf);

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_HELLO;
	m.hello.version = FL_WIRE_VERSION;
	m.hello.role = 7;
	m.hello.conn = FL_CONN_CONTROL;
	refused_msg(&m, "hello.role 7");
	m.hello.role = FL_ROLE_SOURCE;
	m.hello.conn = 0;
	refused_msg(&m, "hello.conn 0");
	m.hello.conn = FL_CONN_CONTROL;
	m.hello.version = 2;
	refused_msg(&m, "hello.version 2");
	m.hello.version = FL_WIRE_VERSION;
	m.hello.capabilities = 4;
	refused_msg(&m, "hello.capabilities");

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_REQUEST;
	m.request.offset = 100;
	m.request.len = 4096;
	refused_msg(&m, "request.offset");
	m.request.offset = 0;
	m.request.len = 0;
	refused_msg(&m, "request.len");

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_ROUND;
	refused_msg(&m, "round.round is 0");

	memset(&m, 0, sizeof(m));
	m.type = FL_CTL_ERROR;
	m.error.code = 5;
	refused_msg(&m, "error.code 5");
}

/* ------------------------------------------------------ frame headers */

static const struct fl_wire_hdr good_pages = {
	.kind = FL_WIRE_PAGES, .flags = FL_WIRE_URGENT, .region = 0,
	.length = 8192, .offset = 4096 * 10, .count = 8192,
};

static void test_header_round_trips_little_endian(const struct fl_case *c)
{
	struct fl_wire_hdr h = { .kind = FL_WIRE_ZERO, .region = 1, .offset = 2 << 20,
				 .count = 2 << 20 }, d;
	uint8_t b[FL_WIRE_HDR_SIZE];
	char err[256];

	(void)c;
	fl_wire_hdr_pack(&good_pages, b);
	assert_memory_equal(b, "FLTW", 4);
	assert_int_equal(b[4], FL_WIRE_PAGES);
	assert_int_equal(b[5], FL_WIRE_URGENT);
	assert_int_equal(b[12], 0x00);
	assert_int_equal(b[13], 0x20); /* 8192, little-endian */
	assert_int_equal(fl_wire_hdr_unpack(b, &d, table, 2, err, sizeof(err)), 0);
	assert_memory_equal(&d, &good_pages, sizeof(d));
	fl_wire_hdr_pack(&h, b);
	assert_int_equal(fl_wire_hdr_unpack(b, &d, table, 2, err, sizeof(err)), 0);
	assert_memory_equal(&d, &h, sizeof(d));
	h = (struct fl_wire_hdr){ .kind = FL_WIRE_CONTROL, .length = 1000 };
	fl_wire_hdr_pack(&h, b);
	assert_int_equal(fl_wire_hdr_unpack(b, &d, table, 2, err, sizeof(err)), 0);
	assert_memory_equal(&d, &h, sizeof(d));
	/* Without a table, the region is not checked. */
	h = good_pages;
	h.region = 77;
	fl_wire_hdr_pack(&h, b);
	assert_int_equal(fl_wire_hdr_unpack(b, &d, NULL, 0, err, sizeof(err)), 0);
}

struct bad_hdr {
	const char *name;
	struct fl_wire_hdr h;
	int byte, value; /* then poke this byte (byte >= 0) */
	const char *says;
};

static const struct bad_hdr bad_hdrs[] = {
	{ "bad magic", { FL_WIRE_PAGES, 0, 0, 4096, 0, 4096 }, 0, 'X', "magic" },
	{ "unknown kind", { 9, 0, 0, 4096, 0, 4096 }, -1, 0, "kind 9" },
	{ "kind 0", { 0, 0, 0, 0, 0, 0 }, -1, 0, "kind 0" },
	{ "unknown flags", { FL_WIRE_PAGES, 0x80, 0, 4096, 0, 4096 }, -1, 0, "flags 0x80" },
	{ "reserved bytes", { FL_WIRE_PAGES, 0, 0, 4096, 0, 4096 }, 7, 1, "reserved" },
	{ "oversized pages length", { FL_WIRE_PAGES, 0, 0, FL_WIRE_MAX_PAGES + 4096, 0, FL_WIRE_MAX_PAGES + 4096 }, -1, 0, "length 4198400" },
	{ "oversized control", { FL_WIRE_CONTROL, 0, 0, FL_WIRE_MAX_CONTROL + 1, 0, 0 }, -1, 0, "control message is more than" },
	{ "control with a region", { FL_WIRE_CONTROL, 0, 1, 10, 0, 0 }, -1, 0, "region 1" },
	{ "region out of range", { FL_WIRE_PAGES, 0, 2, 4096, 0, 4096 }, -1, 0, "region 2 does not exist" },
	{ "beyond the region", { FL_WIRE_PAGES, 0, 0, 8192, 63 * 4096, 8192 }, -1, 0, "beyond the end of region 0" },
	{ "zero beyond the region", { FL_WIRE_ZERO, 0, 1, 0, 2 << 20, 4 << 20 }, -1, 0, "beyond the end of region 1" },
	{ "misaligned offset", { FL_WIRE_PAGES, 0, 0, 4096, 100, 4096 }, -1, 0, "offset 0x64" },
	{ "offset not huge-page aligned", { FL_WIRE_PAGES, 0, 1, 4096, 0, 4096 }, -1, 0, "region 1's page size" },
	{ "length not whole pages", { FL_WIRE_PAGES, 0, 0, 1000, 0, 1000 }, -1, 0, "length 1000" },
	{ "count differs from length", { FL_WIRE_PAGES, 0, 0, 4096, 0, 8192 }, -1, 0, "count 8192" },
	{ "zero frame with a payload", { FL_WIRE_ZERO, 0, 0, 4096, 0, 4096 }, -1, 0, "length 4096 of a zero frame" },
	{ "zero frame of nothing", { FL_WIRE_ZERO, 0, 0, 0, 0, 0 }, -1, 0, "count 0" },
	{ "offset wraps around", { FL_WIRE_ZERO, 0, 0, 0, ~0ull << 12, 8192 }, -1, 0, "outside any address space" },
};

static void test_malformed_header_is_refused_naming_the_field(const struct fl_case *c)
{
	const struct bad_hdr *t = c->a;
	uint8_t b[FL_WIRE_HDR_SIZE];
	struct fl_wire_hdr d;
	char err[512] = "";

	fl_wire_hdr_pack(&t->h, b);
	if (t->byte >= 0)
		b[t->byte] = (uint8_t)t->value;
	assert_int_equal(fl_wire_hdr_unpack(b, &d, table, 2, err, sizeof(err)), -EPROTO);
	if (!strstr(err, t->says))
		fail_msg("%s: error '%s' does not name '%s'", t->name, err, t->says);
	assert_non_null(strstr(err, "frame header"));
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_every_control_message_round_trips);
	FL_ADD(test_encode_refuses_what_it_cannot_represent);
	FL_ADD(test_bad_region_geometry_is_refused_naming_the_field);
	FL_ADD(test_bitmap_size_mismatch_is_refused);
	FL_ADD(test_bad_payloads_are_refused_naming_the_field);
	FL_ADD(test_header_round_trips_little_endian);
	for (size_t i = 0; i < sizeof(bad_hdrs) / sizeof(bad_hdrs[0]); i++)
		fl_case_add(&cases, &n, test_malformed_header_is_refused_naming_the_field,
			    &bad_hdrs[i], NULL, "test_malformed_header_is_refused: %s", bad_hdrs[i].name);
	return fl_run_cases(cases, n, argc, argv);
}
