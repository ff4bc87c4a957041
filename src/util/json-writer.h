/* SPDX-License-Identifier: MIT */
/*
 * The one JSON writer of faultline (the command's --json output, the
 * monitor's statistics, the benchmark table): streaming, no allocation.
 *
 *   struct fl__json j;
 *   fl__json_begin(&j, stdout, FL__JSON_PRETTY);   opens the top-level object
 *   fl__json_object(&j, "kernel");                 a member that is an object
 *   fl__json_str(&j, "release", "6.18");
 *   fl__json_close(&j);                            closes the innermost
 *   if (fl__json_end(&j))                          closes the top level
 *           fprintf(stderr, "%s\n", fl__json_error(&j));
 *
 * Members of an object take a key, elements of an array take NULL. A
 * misuse (a key missing or given where none belongs, a close with nothing
 * open, nesting deeper than FL__JSON_DEPTH, containers left open at the
 * end) or a failed write is never silent: the writer stops writing at the
 * first one, and fl__json_end() returns it (-EINVAL, -EOVERFLOW, -EIO),
 * with fl__json_error() saying what happened where.
 *
 * Strings are escaped as RFC 8259 asks: quote, backslash and every control
 * character; bytes that are not valid UTF-8 become U+FFFD, so the output
 * is always valid UTF-8 whatever a process name or path holds. NaN and
 * infinities, which JSON cannot express, are written as null.
 */
#ifndef FL_UTIL_JSON_WRITER_H
#define FL_UTIL_JSON_WRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define FL__JSON_DEPTH 64 /* containers open at once, the top level included */

enum fl__json_style {
	FL__JSON_COMPACT, /* one line: {"a": 1, "b": [1, 2]} */
	FL__JSON_PRETTY,  /* a member per line, two spaces per level */
};

struct fl__json {
	FILE *out;
	enum fl__json_style style;
	int depth;			   /* containers open */
	int err;			   /* first error, 0 if none */
	char why[96];			   /* what the first error was */
	uint8_t level[FL__JSON_DEPTH + 1]; /* per open container: array?, has members? */
};

void fl__json_begin(struct fl__json *j, FILE *out, enum fl__json_style style);
/* Close the top-level object and end the line; 0 or the first error. */
int fl__json_end(struct fl__json *j);
const char *fl__json_error(const struct fl__json *j);

void fl__json_object(struct fl__json *j, const char *key);
void fl__json_array(struct fl__json *j, const char *key);
void fl__json_close(struct fl__json *j);

void fl__json_str(struct fl__json *j, const char *key, const char *v); /* NULL: null */
void fl__json_int(struct fl__json *j, const char *key, int64_t v);
void fl__json_uint(struct fl__json *j, const char *key, uint64_t v);
void fl__json_bool(struct fl__json *j, const char *key, bool v);
void fl__json_null(struct fl__json *j, const char *key);
void fl__json_double(struct fl__json *j, const char *key, double v);		  /* %.6g */
void fl__json_fixed(struct fl__json *j, const char *key, double v, int decimals); /* %.*f */

#endif
