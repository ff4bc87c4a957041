// SPDX-License-Identifier: MIT
/* The one JSON writer (src/util/json-writer.c): exact output in both
 * layouts, RFC 8259 escaping, and every misuse reported, never silent. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"
#include "util/json-writer.h"

struct capture {
	char *buf;
	size_t len;
	FILE *f;
};

static struct fl__json *start(struct capture *c, struct fl__json *j, enum fl__json_style s)
{
	c->f = open_memstream(&c->buf, &c->len);
	assert_non_null(c->f);
	fl__json_begin(j, c->f, s);
	return j;
}

/* Close the stream and return what was written (caller frees). */
static char *finish(struct capture *c)
{
	fclose(c->f);
	return c->buf;
}

static void test_compact_and_pretty_layouts_are_exact(const struct fl_case *cs)
{
	struct capture c;
	struct fl__json j;
	char *out;

	(void)cs;
	for (int pretty = 0; pretty < 2; pretty++) {
		start(&c, &j, pretty ? FL__JSON_PRETTY : FL__JSON_COMPACT);
		fl__json_uint(&j, "n", 18446744073709551615ull);
		fl__json_int(&j, "neg", -5);
		fl__json_object(&j, "empty");
		fl__json_close(&j);
		fl__json_array(&j, "list");
		fl__json_bool(&j, NULL, true);
		fl__json_null(&j, NULL);
		fl__json_object(&j, NULL);
		fl__json_fixed(&j, "ms", 1.25, 1);
		fl__json_close(&j);
		fl__json_close(&j);
		fl__json_double(&j, "d", 0.5);
		assert_int_equal(fl__json_end(&j), 0);
		out = finish(&c);
		if (!pretty)
			assert_string_equal(out, "{\"n\": 18446744073709551615, \"neg\": -5, "
						 "\"empty\": {}, \"list\": [true, null, "
						 "{\"ms\": 1.2}], \"d\": 0.5}\n");
		else
			assert_string_equal(out, "{\n  \"n\": 18446744073709551615,\n  \"neg\": -5,\n"
						 "  \"empty\": {},\n  \"list\": [\n    true,\n"
						 "    null,\n    {\n      \"ms\": 1.2\n    }\n"
						 "  ],\n  \"d\": 0.5\n}\n");
		free(out);
	}
}

static void test_strings_escape_quote_backslash_and_every_control_character(const struct fl_case *cs)
{
	struct capture c;
	struct fl__json j;
	char *out;

	(void)cs;
	start(&c, &j, FL__JSON_COMPACT);
	fl__json_str(&j, "s", "a\"b\\c/\b\f\n\r\t\x01\x1f\x7f end");
	fl__json_str(&j, "k\"ey\n", NULL);
	assert_int_equal(fl__json_end(&j), 0);
	out = finish(&c);
	assert_string_equal(out, "{\"s\": \"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f end\", "
				 "\"k\\\"ey\\n\": null}\n");
	free(out);
}

static void test_valid_utf8_passes_invalid_bytes_become_replacement_characters(const struct fl_case *cs)
{
	struct capture c;
	struct fl__json j;
	char *out;

	(void)cs;
	start(&c, &j, FL__JSON_COMPACT);
	/* é, €, 😀 pass; a lone continuation byte, a truncated sequence, an
	 * overlong '/', a surrogate and a code point past U+10FFFF do not */
	fl__json_str(&j, "ok", "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	fl__json_str(&j, "bad", "\x80|\xe2\x82|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xff");
	assert_int_equal(fl__json_end(&j), 0);
	out = finish(&c);
	assert_string_equal(out, "{\"ok\": \"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\", \"bad\": "
				 "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
				 "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\"}\n");
	free(out);
}

static void test_nan_and_infinity_are_written_as_null(const struct fl_case *cs)
{
	struct capture c;
	struct fl__json j;
	char *out;

	(void)cs;
	start(&c, &j, FL__JSON_COMPACT);
	fl__json_double(&j, "nan", NAN);
	fl__json_fixed(&j, "inf", INFINITY, 2);
	fl__json_double(&j, "big", 1e300);
	assert_int_equal(fl__json_end(&j), 0);
	out = finish(&c);
	assert_string_equal(out, "{\"nan\": null, \"inf\": null, \"big\": 1e+300}\n");
	free(out);
}

static void test_nesting_to_the_limit_works_and_past_it_is_reported(const struct fl_case *cs)
{
	struct capture c;
	struct fl__json j;
	char *out;

	(void)cs;
	/* the top-level object and FL__JSON_DEPTH - 1 arrays: allowed */
	start(&c, &j, FL__JSON_COMPACT);
	fl__json_array(&j, "a");
	for (int i = 2; i < FL__JSON_DEPTH; i++)
		fl__json_array(&j, NULL);
	for (int i = 1; i < FL__JSON_DEPTH; i++)
		fl__json_close(&j);
	assert_int_equal(fl__json_end(&j), 0);
	free(finish(&c));

	/* one more: refused, said, and nothing more is written */
	start(&c, &j, FL__JSON_COMPACT);
	fl__json_array(&j, "a");
	for (int i = 2; i <= FL__JSON_DEPTH; i++)
		fl__json_array(&j, NULL);
	fl__json_int(&j, NULL, 1);
	for (int i = 1; i <= FL__JSON_DEPTH; i++)
		fl__json_close(&j);
	assert_int_equal(fl__json_end(&j), -EOVERFLOW);
	out = finish(&c);
	assert_non_null(strstr(fl__json_error(&j), "nesting deeper than 64"));
	assert_null(strchr(out, '1'));
	assert_null(strchr(out, ']'));
	free(out);
}

static void test_key_misuse_unbalanced_close_and_open_end_are_reported(const struct fl_case *cs)
{
	struct capture c;
	struct fl__json j;

	(void)cs;
	start(&c, &j, FL__JSON_COMPACT);
	fl__json_array(&j, "a");
	fl__json_int(&j, "k", 1);
	assert_int_equal(fl__json_end(&j), -EINVAL);
	assert_string_equal(fl__json_error(&j), "key 'k' given inside an array");
	free(finish(&c));

	start(&c, &j, FL__JSON_COMPACT);
	fl__json_int(&j, NULL, 1);
	assert_int_equal(fl__json_end(&j), -EINVAL);
	assert_string_equal(fl__json_error(&j), "member without a key inside an object");
	free(finish(&c));

	start(&c, &j, FL__JSON_COMPACT);
	fl__json_close(&j);
	assert_int_equal(fl__json_end(&j), -EINVAL);
	assert_non_null(strstr(fl__json_error(&j), "close with no object or array open"));
	free(finish(&c));

	start(&c, &j, FL__JSON_COMPACT);
	fl__json_object(&j, "o");
	fl__json_array(&j, "a");
	assert_int_equal(fl__json_end(&j), -EINVAL);
	assert_string_equal(fl__json_error(&j), "2 object(s) or array(s) left open");
	free(finish(&c));

	start(&c, &j, FL__JSON_COMPACT);
	assert_int_equal(fl__json_end(&j), 0);
	fl__json_int(&j, "late", 1);
	assert_int_equal(fl__json_end(&j), -EINVAL);
	assert_string_equal(fl__json_error(&j), "value 'late' after the top-level object was closed");
	free(finish(&c));
}

static void test_write_failure_is_reported(const struct fl_case *cs)
{
	FILE *f = fopen("/dev/full", "w");
	struct fl__json j;

	(void)cs;
	if (!f)
		fl_skip("no /dev/full: %s", strerror(errno));
	fl__json_begin(&j, f, FL__JSON_COMPACT);
	fl__json_str(&j, "s", "x");
	assert_int_equal(fl__json_end(&j), -EIO);
	assert_string_equal(fl__json_error(&j), "writing failed");
	fclose(f);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_compact_and_pretty_layouts_are_exact);
	FL_ADD(test_strings_escape_quote_backslash_and_every_control_character);
	FL_ADD(test_valid_utf8_passes_invalid_bytes_become_replacement_characters);
	FL_ADD(test_nan_and_infinity_are_written_as_null);
	FL_ADD(test_nesting_to_the_limit_works_and_past_it_is_reported);
	FL_ADD(test_key_misuse_unbalanced_close_and_open_end_are_reported);
	FL_ADD(test_write_failure_is_reported);
	return fl_run_cases(cases, n, argc, argv);
}
