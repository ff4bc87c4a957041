// SPDX-License-Identifier: MIT
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>

#include "json-writer.h"

enum { LEVEL_ARRAY = 1, LEVEL_USED = 2 };

static void fail(struct fl__json *j, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct fl__json *j, int err, const char *fmt, ...)
{
	va_list ap;

	if (j->err)
		return;
	j->err = err;
	va_start(ap, fmt);
	vsnprintf(j->why, sizeof(j->why), fmt, ap);
	va_end(ap);
}

/* Length of the valid UTF-8 sequence at p (not ASCII), or 0: overlong
 * forms, surrogates and code points past U+10FFFF are invalid too. The
 * string's NUL fails the continuation test, so nothing is read past it. */
static size_t utf8_len(const unsigned char *p)
{
	uint32_t cp;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void quoted(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', out);
	while (*p) {
		unsigned c = *p;
		size_t n;

		if (c >= 0x80) {
			n = utf8_len(p);
			if (n) {
				fwrite(p, 1, n, out);
				p += n;
			} else {
				fputs("\\ufffd", out);
				p++;
			}
			continue;
		}
		switch (c) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\b': fputs("\\b", out); break;
		case '\f': fputs("\\f", out); break;
		case '\n': fputs("\\n", out); break;
		case '\r': fputs("\\r", out); break;
		case '\t': fputs("\\t", out); break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(out, "\\u%04x", c);
			else
				fputc((int)c, out);
		}
		p++;
	}
	fputc('"', out);
}

static void newline(struct fl__json *j, int depth)
{
	fputc('\n', j->out);
	for (int i = 0; i < depth; i++)
		fputs("  ", j->out);
}

/* Separator, indentation and "key": before every value; false (and
 * nothing written) once an error has happened or when this one is one. */
static bool member(struct fl__json *j, const char *key)
{
	uint8_t *l;

	if (j->err)
		return false;
	if (j->depth < 1) {
		fail(j, -EINVAL, "value %s%s%safter the top-level object was closed",
		     key ? "'" : "", key ? key : "", key ? "' " : "");
		return false;
	}
	l = &j->level[j->depth];
	if ((*l & LEVEL_ARRAY) && key) {
		fail(j, -EINVAL, "key '%s' given inside an array", key);
		return false;
	}
	if (!(*l & LEVEL_ARRAY) && !key) {
		fail(j, -EINVAL, "member without a key inside an object");
		return false;
	}
	if (*l & LEVEL_USED)
		fputc(',', j->out);
	if (j->style == FL__JSON_PRETTY)
		newline(j, j->depth);
	else if (*l & LEVEL_USED)
		fputc(' ', j->out);
	*l |= LEVEL_USED;
	if (key) {
		quoted(j->out, key);
		fputs(": ", j->out);
	}
	return true;
}

void fl__json_begin(struct fl__json *j, FILE *out, enum fl__json_style style)
{
	j->out = out;
	j->style = style;
	j->err = 0;
	j->why[0] = '\0';
	j->depth = 1;
	j->level[1] = 0;
	fputc('{', out);
}

static void open_container(struct fl__json *j, const char *key, bool array)
{
	if (!j->err && j->depth >= FL__JSON_DEPTH) {
		fail(j, -EOVERFLOW, "nesting deeper than %d levels (at %s%s%s)", FL__JSON_DEPTH,
		     key ? "key '" : "an array element", key ? key : "", key ? "'" : "");
		return;
	}
	if (!member(j, key))
		return;
	fputc(array ? '[' : '{', j->out);
	j->level[++j->depth] = array ? LEVEL_ARRAY : 0;
}

void fl__json_object(struct fl__json *j, const char *key)
{
	open_container(j, key, false);
}

void fl__json_array(struct fl__json *j, const char *key)
{
	open_container(j, key, true);
}

static void close_container(struct fl__json *j)
{
	uint8_t l = j->level[j->depth];

	j->depth--;
	if ((l & LEVEL_USED) && j->style == FL__JSON_PRETTY)
		newline(j, j->depth);
	fputc(l & LEVEL_ARRAY ? ']' : '}', j->out);
}

void fl__json_close(struct fl__json *j)
{
	if (j->err)
		return;
	if (j->depth <= 1) {
		fail(j, -EINVAL, "close with no object or array open (the top level "
				 "is closed by fl__json_end)");
		return;
	}
	close_container(j);
}

int fl__json_end(struct fl__json *j)
{
	if (!j->err && j->depth < 1)
		fail(j, -EINVAL, "ended twice");
	if (!j->err && j->depth > 1)
		fail(j, -EINVAL, "%d object(s) or array(s) left open", j->depth - 1);
	if (!j->err) {
		close_container(j);
		fputc('\n', j->out);
	}
	if (fflush(j->out) || ferror(j->out))
		fail(j, -EIO, "writing failed");
	return j->err;
}

const char *fl__json_error(const struct fl__json *j)
{
	return j->err ? j->why : "no error";
}

void fl__json_str(struct fl__json *j, const char *key, const char *v)
{
	if (!member(j, key))
		return;
	if (v)
		quoted(j->out, v);
	else
		fputs("null", j->out);
}

void fl__json_int(struct fl__json *j, const char *key, int64_t v)
{
	if (member(j, key))
		fprintf(j->out, "%" PRId64, v);
}

void fl__json_uint(struct fl__json *j, const char *key, uint64_t v)
{
	if (member(j, key))
		fprintf(j->out, "%" PRIu64, v);
}

void fl__json_bool(struct fl__json *j, const char *key, bool v)
{
	if (member(j, key))
		fputs(v ? "true" : "false", j->out);
}

void fl__json_null(struct fl__json *j, const char *key)
{
	if (member(j, key))
		fputs("null", j->out);
}

void fl__json_double(struct fl__json *j, const char *key, double v)
{
	if (!member(j, key))
		return;
	if (isfinite(v))
		fprintf(j->out, "%.6g", v);
	else
		fputs("null", j->out);
}

void fl__json_fixed(struct fl__json *j, const char *key, double v, int decimals)
{
	if (!member(j, key))
		return;
	if (isfinite(v))
		fprintf(j->out, "%.*f", decimals, v);
	else
		fputs("null", j->out);
}
