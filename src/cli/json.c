// SPDX-License-Identifier: MIT
#include <inttypes.h>

#include "json.h"

static void indent(struct json *j)
{
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->out);
}

static void quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* Comma, newline, indentation and "key": before every value. */
static void member(struct json *j, const char *key)
{
	if (j->need_comma[j->depth])
		fputc(',', j->out);
	if (j->depth)
		fputc('\n', j->out);
	j->need_comma[j->depth] = true;
	indent(j);
	if (key) {
		quoted(j->out, key);
		fputs(": ", j->out);
	}
}

void json_begin(struct json *j, FILE *out)
{
	j->out = out;
	j->depth = 0;
	for (int i = 0; i < 32; i++)
		j->need_comma[i] = false;
	fputc('{', out);
	j->depth = 1;
}

void json_end(struct json *j)
{
	json_close(j, '}');
	fputc('\n', j->out);
}

static void open_bracket(struct json *j, const char *key, char c)
{
	member(j, key);
	fputc(c, j->out);
	if (j->depth < 31)
		j->depth++;
	j->need_comma[j->depth] = false;
}

void json_object(struct json *j, const char *key)
{
	open_bracket(j, key, '{');
}

void json_array(struct json *j, const char *key)
{
	open_bracket(j, key, '[');
}

void json_close(struct json *j, char bracket)
{
	bool empty = !j->need_comma[j->depth];

	j->depth--;
	if (!empty) {
		fputc('\n', j->out);
		indent(j);
	}
	fputc(bracket, j->out);
}

void json_str(struct json *j, const char *key, const char *v)
{
	member(j, key);
	if (v)
		quoted(j->out, v);
	else
		fputs("null", j->out);
}

void json_int(struct json *j, const char *key, int64_t v)
{
	member(j, key);
	fprintf(j->out, "%" PRId64, v);
}

void json_uint(struct json *j, const char *key, uint64_t v)
{
	member(j, key);
	fprintf(j->out, "%" PRIu64, v);
}

void json_bool(struct json *j, const char *key, bool v)
{
	member(j, key);
	fputs(v ? "true" : "false", j->out);
}

void json_double(struct json *j, const char *key, double v)
{
	member(j, key);
	fprintf(j->out, "%.6g", v);
}
