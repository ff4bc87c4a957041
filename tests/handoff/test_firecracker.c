// SPDX-License-Identifier: MIT
/* Firecracker's region list: the strict parser (every prefix of a good
 * message asks for more, every bad one is refused naming key and region)
 * and the mapping of its regions onto a page source's regions. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../src/handoff/firecracker.h"
#include "runner.h"

static const char good[] =
	"[{\"base_host_virt_addr\": 140000000000000, \"size\": 2097152, \"offset\": 0,"
	" \"page_size\": 4096},\n {\"size\": 4194304, \"offset\": 2097152, \"page_size\": 4096,"
	" \"base_host_virt_addr\": 140000004194304}]\n";

static int parse(const char *s, struct fc_region *r, size_t *n, char *err, size_t errlen)
{
	return fl__fc_parse(s, strlen(s), r, FC_REGIONS_MAX, n, err, errlen);
}

static void test_good_message_gives_every_region_in_order(const struct fl_case *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256] = "";
	size_t n;

	(void)c;
	if (parse(good, r, &n, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(n, 2);
	assert_int_equal(r[0].base, 140000000000000ull);
	assert_int_equal(r[0].size, 2097152);
	assert_int_equal(r[0].offset, 0);
	assert_int_equal(r[0].page_size, 4096);
	assert_int_equal(r[1].base, 140000004194304ull);
	assert_int_equal(r[1].size, 4194304);
	assert_int_equal(r[1].offset, 2097152);
}

static void test_every_prefix_of_a_good_message_waits_for_more(const struct fl_case *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256];
	size_t n, len = strlen(good) - 1; /* without the final newline */

	(void)c;
	for (size_t k = 0; k < len; k++)
		if (fl__fc_parse(good, k, r, FC_REGIONS_MAX, &n, err, sizeof(err)) != -EAGAIN)
			fail_msg("prefix of %zu bytes: not -EAGAIN (%s)", k, err);
	assert_int_equal(fl__fc_parse(good, len, r, FC_REGIONS_MAX, &n, err, sizeof(err)), 0);
}

static void test_older_page_size_kib_holds_bytes(const struct fl_case *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256] = "";
	size_t n;

	(void)c;
	assert_int_equal(parse("[{\"base_host_virt_addr\":4194304,\"size\":4194304,"
			       "\"offset\":0,\"page_size_kib\":2097152}]", r, &n, err, sizeof(err)), 0);
	assert_int_equal(r[0].page_size, 2097152);
	assert_int_equal(parse("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,"
			       "\"page_size_kib\":4096,\"page_size\":4096}]", r, &n, err,
			       sizeof(err)), 0);
	assert_int_equal(r[0].page_size, 4096);
}

static void test_unknown_keys_of_every_json_type_are_skipped(const struct fl_case *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256] = "";
	size_t n;

	(void)c;
	if (parse("[{\"x\":{\"a\":[1,-2.5e+3,true,false,null,\"s\\\"\\u00e9\\n\"],\"b\":{}},"
		  "\"base_host_virt_addr\":8192,\"y\":[],\"size\":4096,\"offset\":4096,"
		  "\"page\\u005fsize\":4096,\"z\":-0.0, \"a_very_long_key_that_is_not_ours_at_all\":0}]",
		  r, &n, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].base, 8192);
	assert_int_equal(r[0].page_size, 4096); /* an escaped known key is still the key */
}

static void test_largest_u64_is_accepted_and_one_more_refused(const struct fl_case *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256] = "";
	size_t n;

	(void)c;
	/* UINT64_MAX is a valid number; the region then wraps and is refused
	 * for that, not for the number. */
	assert_int_equal(parse("[{\"base_host_virt_addr\":18446744073709551615,\"size\":4096,"
			       "\"offset\":0,\"page_size\":4096}]", r, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not aligned"));
	assert_int_equal(parse("[{\"base_host_virt_addr\":18446744073709551616,\"size\":4096,"
			       "\"offset\":0,\"page_size\":4096}]", r, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "key \"base_host_virt_addr\": the number does not fit"));
}

static const struct {
	const char *msg, *why;
} bad[] = {
	{ "{}", "not a JSON array" },
	{ "[]", "the region list is empty" },
	{ "[1]", "expected an object" },
	{ "[{}]", "region 0: key \"base_host_virt_addr\" is missing" },
	{ "[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0}]",
	  "region 0: key \"page_size\" (or the older \"page_size_kib\") is missing" },
	{ "[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096},"
	  "{\"base_host_virt_addr\":8192,\"size\":4096,\"size\":4096,\"offset\":4096,\"page_size\":4096}]",
	  "region 1: key \"size\" given twice" },
	{ "[{\"base_host_virt_addr\":-4096,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
	  "region 0: key \"base_host_virt_addr\" must be an unsigned integer" },
	{ "[{\"base_host_virt_addr\":\"4096\",\"size\":4096,\"offset\":0,\"page_size\":4096}]",
	  "region 0: key \"base_host_virt_addr\" must be an unsigned integer" },
	{ "[{\"base_host_virt_addr\":4096.0,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
	  "not a fraction" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4e3,\"offset\":0,\"page_size\":4096}]",
	  "key \"size\" must be an unsigned integer, not a fraction" },
	{ "[{\"base_host_virt_addr\":04096,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
	  "leading zero" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0,\"page_size\":4096}]",
	  "key \"size\": 0 is not a non-zero multiple" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":6000,\"offset\":0,\"page_size\":4096}]",
	  "key \"size\": 6000" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":65536}]",
	  "key \"page_size\": 65536" },
	{ "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":2097152}]",
	  "not a non-zero multiple of the 2097152-byte page" },
	{ "[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0,"
	  "\"page_size\":4096}]", "wraps around" },
	{ "[{\"base_host_virt_addr\":0,\"size\":8192,\"offset\":18446744073709547520,"
	  "\"page_size\":4096}]", "offset + size overflows" },
	{ "[{\"base_host_virt_addr\":0,\"size\":8192,\"offset\":0,\"page_size\":4096},"
	  "{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":8192,\"page_size\":4096}]",
	  "region 1: key \"base_host_virt_addr\"" },
	{ "[{\"base_host_virt_addr\":0,\"size\":8192,\"offset\":0,\"page_size\":4096},"
	  "{\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":4096,\"page_size\":4096}]",
	  "region 1: key \"offset\": file bytes 4096..8192 overlap region 0" },
	{ "[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096}]x",
	  "unexpected bytes after the region list" },
	{ "[{\"base_host_virt_addr\":0,\"size\":4096,\"offset\":0,\"page_size\":4096};",
	  "expected ',' or ']' after region 0" },
	{ "[{\"base_host_virt_addr\":0 \"size\":4096}]", "expected ',' or '}' after key" },
	{ "[{\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}]", "nested deeper" },
	{ "[{\"x\":tru}]", "unexpected 't'" },
	{ "[{\"x\":\"a\\qb\"}]", "bad escape" },
	{ "[{\"x\":\"\\u12g4\"}]", "bad \\u escape" },
	{ "[{\"x\":\"a\tb\"}]", "control character" },
	{ "[{\"x\":01}]", "malformed number" },
	{ "[{\"x\":-}]", "malformed number" },
	{ "[{\"x\":1.}]", "malformed number" },
	{ "[{\"x\" 1}]", "expected ':' after a key" },
	{ "[{1:2}]", "expected a key" },
};

static void test_malformed_messages_are_refused_naming_key_and_region(const struct fl_case *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	size_t n;

	(void)c;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		int ret = parse(bad[i].msg, r, &n, err, sizeof(err));

		if (ret != -EINVAL || !strstr(err, bad[i].why))
			fail_msg("%s: got %d \"%s\", want -EINVAL \"%s\"", bad[i].msg, ret, err,
				 bad[i].why);
	}
}

static void test_more_regions_than_the_limit_are_refused(const struct fl_case *c)
{
	static char msg[FC_MSG_MAX];
	struct fc_region r[4];
	char err[256] = "";
	size_t k = 0, n;

	(void)c;
	k += (size_t)snprintf(msg, sizeof(msg), "[");
	for (int i = 0; i < 5; i++)
		k += (size_t)snprintf(msg + k, sizeof(msg) - k,
				      "%s{\"base_host_virt_addr\":%d,\"size\":4096,\"offset\":%d,"
				      "\"page_size\":4096}", i ? "," : "", i * 4096, i * 4096);
	snprintf(msg + k, sizeof(msg) - k, "]");
	assert_int_equal(fl__fc_parse(msg, strlen(msg), r, 4, &n, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 4 regions"));
}

/* A source of two regions laid end to end (a snapshot of a VM's memory
 * file in two pieces): bytes 0..8 MiB and 8..12 MiB. */
static const struct fl_handoff_file_part two_pieces[2] = {
	{ .len = 8 << 20, .page_size = 4096 },
	{ .len = 4 << 20, .page_size = 4096 },
};

static void test_regions_map_onto_source_regions_laid_end_to_end(const struct fl_case *c)
{
	const struct fl_handoff_file_part *s = two_pieces;
	struct fc_region r[2] = {
		{ .base = 0x7f0000000000, .size = 8 << 20, .offset = 0, .page_size = 4096 },
		{ .base = 0x7f1000000000, .size = 2 << 20, .offset = 10 << 20, .page_size = 4096 },
	};
	struct fl_handoff_region h[2];
	char err[384] = "";

	(void)c;
	if (fl__fc_map_regions(s, 2, "memory", r, 2, h, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(h[0].source_region, 0);
	assert_int_equal(h[0].source_offset, 0);
	assert_int_equal(h[0].addr, 0x7f0000000000);
	assert_int_equal(h[1].source_region, 1);
	assert_int_equal(h[1].source_offset, 2 << 20);
	assert_int_equal(h[1].len, 2 << 20);
	/* Straddling the two pieces: not Firecracker's layout. */
	r[1].offset = 6 << 20;
	r[1].size = 4 << 20;
	assert_int_equal(fl__fc_map_regions(s, 2, "memory", r + 1, 1, h, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "spans two regions"));
	assert_non_null(strstr(err, "--memory-file"));
	/* Past the end of everything. */
	r[1].offset = 10 << 20;
	r[1].size = 4 << 20;
	assert_int_equal(fl__fc_map_regions(s, 2, "memory", r + 1, 1, h, err, sizeof(err)), -ERANGE);
	assert_non_null(strstr(err, "region 0 needs file bytes 10485760..14680064"));
	assert_non_null(strstr(err, "only 12582912 bytes"));
	/* Huge pages against a 4 KiB source. */
	r[1].size = 2 << 20;
	r[1].page_size = 2 << 20;
	assert_int_equal(fl__fc_map_regions(s, 2, "memory", r + 1, 1, h, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--huge-pages"));
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_good_message_gives_every_region_in_order);
	FL_ADD(test_every_prefix_of_a_good_message_waits_for_more);
	FL_ADD(test_older_page_size_kib_holds_bytes);
	FL_ADD(test_unknown_keys_of_every_json_type_are_skipped);
	FL_ADD(test_largest_u64_is_accepted_and_one_more_refused);
	FL_ADD(test_malformed_messages_are_refused_naming_key_and_region);
	FL_ADD(test_more_regions_than_the_limit_are_refused);
	FL_ADD(test_regions_map_onto_source_regions_laid_end_to_end);
	return fl_run_cases(cases, n, argc, argv);
}
