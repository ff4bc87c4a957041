// SPDX-License-Identifier: MIT
/*
 * Firecracker's region list (firecracker.h): a small strict JSON parser
 * for exactly that message, and the mapping of its regions onto a page
 * source's regions laid end to end (plain lengths: no source is touched). The bytes come from another process, so every path is bounded:
 * nesting depth, message length, region count, and every number is checked
 * for overflow before it is used. The fuzzer (fuzz/fuzz_firecracker.c)
 * feeds fl__fc_parse() arbitrary bytes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firecracker.h"

#define DEPTH_MAX 16	/* of skipped values nested in a region object */
#define KEY_MAX 32	/* longer keys are unknown keys */

enum { K_BASE, K_SIZE, K_OFFSET, K_PAGE_SIZE, K_PAGE_SIZE_KIB, K_COUNT };
static const char *const key_names[K_COUNT] = {
	"base_host_virt_addr", "size", "offset", "page_size", "page_size_kib",
};

struct parser {
	const char *p, *end;
	bool short_input; /* ran out of bytes: the message may go on */
	long region;	  /* index of the object being parsed, -1 outside */
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static int fail(struct parser *ps, const char *fmt, ...)
{
	char what[192];
	va_list ap;

	if (ps->short_input)
		return -EAGAIN;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (ps->region >= 0)
		snprintf(ps->err, ps->errlen, "Firecracker region %ld: %s", ps->region, what);
	else
		snprintf(ps->err, ps->errlen, "Firecracker message: %s", what);
	return -EINVAL;
}

/* The next non-blank byte, or -1 at the end of the input. */
static int peek(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
	if (ps->p == ps->end) {
		ps->short_input = true;
		return -1;
	}
	return (unsigned char)*ps->p;
}

static int expect(struct parser *ps, char c, const char *where)
{
	int got = peek(ps);

	if (got != c)
		return got < 0 ? -EAGAIN : fail(ps, "expected '%c' %s", c, where);
	ps->p++;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A string (at its opening quote). Its ASCII content goes to out (NUL
 * terminated, truncated at outlen - 1; *toolong set), anything else is
 * validated and dropped. */
static int string(struct parser *ps, char *out, size_t outlen, bool *toolong)
{
	size_t k = 0;

	ps->p++; /* the quote */
	if (toolong)
		*toolong = false;
	for (;;) {
		int c;

		if (ps->p == ps->end) {
			ps->short_input = true;
			return -EAGAIN;
		}
		c = (unsigned char)*ps->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return fail(ps, "control character in a string");
		if (c == '\\') {
			if (ps->p == ps->end) {
				ps->short_input = true;
				return -EAGAIN;
			}
			c = (unsigned char)*ps->p++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': {
				int v = 0;

				for (int i = 0; i < 4; i++) {
					int h;

					if (ps->p == ps->end) {
						ps->short_input = true;
						return -EAGAIN;
					}
					h = hexval((unsigned char)*ps->p++);
					if (h < 0)
						return fail(ps, "bad \\u escape in a string");
					v = v << 4 | h;
				}
				/* Keys we know are ASCII: anything else just
				 * can't match one. */
				c = v > 0 && v < 0x80 ? v : 0x80;
				break;
			}
			default:
				return fail(ps, "bad escape '\\%c' in a string", c);
			}
		}
		if (out) {
			if (k + 1 < outlen)
				out[k++] = (char)c;
			else if (toolong)
				*toolong = true;
		}
	}
	if (out)
		out[k] = '\0';
	return 0;
}

/* An unsigned 64-bit integer: digits only, no leading zero, no sign,
 * fraction or exponent. */
static int number_u64(struct parser *ps, const char *key, uint64_t *v)
{
	const char *start;

	*v = 0;
	if (peek(ps) < 0)
		return -EAGAIN;
	start = ps->p;
	if (*ps->p < '0' || *ps->p > '9')
		return fail(ps, "key \"%s\" must be an unsigned integer", key);
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		unsigned d = (unsigned)(*ps->p - '0');

		if (*v > (UINT64_MAX - d) / 10)
			return fail(ps, "key \"%s\": the number does not fit in 64 bits", key);
		*v = *v * 10 + d;
		ps->p++;
	}
	if (ps->p == ps->end) { /* more digits may follow */
		ps->short_input = true;
		return -EAGAIN;
	}
	if (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E')
		return fail(ps, "key \"%s\" must be an unsigned integer, not a fraction", key);
	if (ps->p - start > 1 && *start == '0')
		return fail(ps, "key \"%s\": a number with a leading zero", key);
	return 0;
}

static int skip_value(struct parser *ps, int depth);

/* Any JSON number, for a key we skip. */
static int skip_number(struct parser *ps)
{
	const char *s = ps->p;
	bool digits = false;

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	while (ps->p < ps->end && ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.' ||
				   *ps->p == 'e' || *ps->p == 'E' || *ps->p == '+' ||
				   *ps->p == '-')) {
		digits |= *ps->p >= '0' && *ps->p <= '9';
		ps->p++;
	}
	if (ps->p == ps->end) {
		ps->short_input = true;
		return -EAGAIN;
	}
	if (!digits || ps->p == s)
		return fail(ps, "malformed number");
	{
		/* Strict JSON number grammar, checked on the span. */
		const char *q = s;

		if (*q == '-')
			q++;
		if (*q == '0')
			q++;
		else if (*q >= '1' && *q <= '9')
			while (q < ps->p && *q >= '0' && *q <= '9')
				q++;
		else
			return fail(ps, "malformed number");
		if (q < ps->p && *q == '.') {
			q++;
			if (q == ps->p || *q < '0' || *q > '9')
				return fail(ps, "malformed number");
			while (q < ps->p && *q >= '0' && *q <= '9')
				q++;
		}
		if (q < ps->p && (*q == 'e' || *q == 'E')) {
			q++;
			if (q < ps->p && (*q == '+' || *q == '-'))
				q++;
			if (q == ps->p || *q < '0' || *q > '9')
				return fail(ps, "malformed number");
			while (q < ps->p && *q >= '0' && *q <= '9')
				q++;
		}
		if (q != ps->p)
			return fail(ps, "malformed number");
	}
	return 0;
}

static int skip_literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word), have = (size_t)(ps->end - ps->p);

	if (memcmp(ps->p, word, have < n ? have : n))
		return fail(ps, "unexpected '%c'", *ps->p);
	if (have < n) {
		ps->short_input = true;
		return -EAGAIN;
	}
	ps->p += n;
	return 0;
}

static int skip_container(struct parser *ps, int depth, char close)
{
	int ret;

	if (depth >= DEPTH_MAX)
		return fail(ps, "values nested deeper than %d", DEPTH_MAX);
	ps->p++;
	if (peek(ps) == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			if (peek(ps) != '"')
				return ps->short_input ? -EAGAIN : fail(ps, "expected a key");
			ret = string(ps, NULL, 0, NULL);
			if (!ret)
				ret = expect(ps, ':', "after a key");
			if (ret)
				return ret;
		}
		ret = skip_value(ps, depth + 1);
		if (ret)
			return ret;
		switch (peek(ps)) {
		case ',':
			ps->p++;
			continue;
		case -1:
			return -EAGAIN;
		default:
			if (*ps->p == close) {
				ps->p++;
				return 0;
			}
			return fail(ps, "expected ',' or '%c'", close);
		}
	}
}

static int skip_value(struct parser *ps, int depth)
{
	switch (peek(ps)) {
	case -1: return -EAGAIN;
	case '"': return string(ps, NULL, 0, NULL);
	case '{': return skip_container(ps, depth, '}');
	case '[': return skip_container(ps, depth, ']');
	case 't': return skip_literal(ps, "true");
	case 'f': return skip_literal(ps, "false");
	case 'n': return skip_literal(ps, "null");
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return skip_number(ps);
		return fail(ps, "unexpected '%c'", *ps->p);
	}
}

static int region_object(struct parser *ps, struct fc_region *r)
{
	uint64_t v[K_COUNT] = { 0 };
	bool seen[K_COUNT] = { false };
	int ret;

	if (peek(ps) != '{')
		return ps->short_input ? -EAGAIN : fail(ps, "expected an object");
	ps->p++;
	if (peek(ps) == '}') {
		ps->p++;
		goto done;
	}
	for (;;) {
		char key[KEY_MAX];
		bool toolong;
		int k;

		if (peek(ps) != '"')
			return ps->short_input ? -EAGAIN : fail(ps, "expected a key");
		ret = string(ps, key, sizeof(key), &toolong);
		if (!ret)
			ret = expect(ps, ':', "after a key");
		if (ret)
			return ret;
		for (k = 0; k < K_COUNT; k++)
			if (!toolong && !strcmp(key, key_names[k]))
				break;
		if (k < K_COUNT) {
			if (seen[k])
				return fail(ps, "key \"%s\" given twice", key_names[k]);
			seen[k] = true;
			ret = number_u64(ps, key_names[k], &v[k]);
		} else {
			ret = skip_value(ps, 0);
		}
		if (ret)
			return ret;
		if (peek(ps) == ',') {
			ps->p++;
			continue;
		}
		if (ps->short_input)
			return -EAGAIN;
		if (*ps->p == '}') {
			ps->p++;
			break;
		}
		return fail(ps, "expected ',' or '}' after key \"%s\"",
			    k < K_COUNT ? key_names[k] : key);
	}
done:
	for (int k = K_BASE; k <= K_OFFSET; k++)
		if (!seen[k])
			return fail(ps, "key \"%s\" is missing", key_names[k]);
	if (!seen[K_PAGE_SIZE] && !seen[K_PAGE_SIZE_KIB])
		return fail(ps, "key \"page_size\" (or the older \"page_size_kib\") is missing");
	if (seen[K_PAGE_SIZE] && seen[K_PAGE_SIZE_KIB] && v[K_PAGE_SIZE] != v[K_PAGE_SIZE_KIB])
		return fail(ps, "keys \"page_size\" (%llu) and \"page_size_kib\" (%llu) disagree",
			    (unsigned long long)v[K_PAGE_SIZE],
			    (unsigned long long)v[K_PAGE_SIZE_KIB]);
	r->base = v[K_BASE];
	r->size = v[K_SIZE];
	r->offset = v[K_OFFSET];
	r->page_size = seen[K_PAGE_SIZE] ? v[K_PAGE_SIZE] : v[K_PAGE_SIZE_KIB];
	return 0;
}

static int check_region(struct parser *ps, const struct fc_region *r)
{
	const char *pk = "page_size";
	uint64_t pg = r->page_size;

	if (pg != 4096 && pg != (2u << 20))
		return fail(ps, "key \"%s\": %llu is not a page size faultline serves "
			    "(4096, or 2097152 for 2 MiB huge pages)", pk, (unsigned long long)pg);
	if (!r->size || r->size % pg)
		return fail(ps, "key \"size\": %llu is not a non-zero multiple of the "
			    "%llu-byte page", (unsigned long long)r->size, (unsigned long long)pg);
	if (r->base % pg)
		return fail(ps, "key \"base_host_virt_addr\": %#llx is not aligned to the "
			    "%llu-byte page", (unsigned long long)r->base, (unsigned long long)pg);
	if (r->offset % pg)
		return fail(ps, "key \"offset\": %llu is not aligned to the %llu-byte page",
			    (unsigned long long)r->offset, (unsigned long long)pg);
	if (r->base + r->size < r->base)
		return fail(ps, "key \"size\": the region wraps around the address space");
	if (r->offset + r->size < r->offset)
		return fail(ps, "key \"size\": offset + size overflows 64 bits");
	return 0;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int fl__fc_parse(const char *buf, size_t len, struct fc_region *out, size_t max,
	     size_t *n, char *err, size_t errlen)
{
	struct parser ps = { buf, buf + len, false, -1, err, errlen };
	int ret;

	*n = 0;
	if (len > FC_MSG_MAX)
		return fail(&ps, "longer than %u bytes", FC_MSG_MAX);
	if (peek(&ps) != '[')
		return ps.short_input ? -EAGAIN
				      : fail(&ps, "not a JSON array of regions (it starts with '%c')",
					     *ps.p);
	ps.p++;
	if (peek(&ps) == ']')
		return fail(&ps, "the region list is empty");
	for (;;) {
		struct fc_region r;
		int c;

		if (*n == max)
			return fail(&ps, "more than %zu regions", max);
		ps.region = (long)*n;
		ret = region_object(&ps, &r);
		if (!ret)
			ret = check_region(&ps, &r);
		if (ret)
			return ret;
		for (size_t i = 0; i < *n; i++) {
			if (overlap(out[i].base, out[i].size, r.base, r.size))
				return fail(&ps, "key \"base_host_virt_addr\": %#llx..%#llx overlaps "
					    "region %zu", (unsigned long long)r.base,
					    (unsigned long long)(r.base + r.size), i);
			if (overlap(out[i].offset, out[i].size, r.offset, r.size))
				return fail(&ps, "key \"offset\": file bytes %llu..%llu overlap "
					    "region %zu's", (unsigned long long)r.offset,
					    (unsigned long long)(r.offset + r.size), i);
		}
		out[(*n)++] = r;
		ps.region = -1;
		c = peek(&ps);
		if (c == ',') {
			ps.p++;
			continue;
		}
		if (c == ']') {
			ps.p++;
			break;
		}
		return c < 0 ? -EAGAIN : fail(&ps, "expected ',' or ']' after region %zu", *n - 1);
	}
	/* Only blanks after the array: one message, nothing else. */
	if (peek(&ps) >= 0)
		return fail(&ps, "unexpected bytes after the region list");
	return 0;
}

int fl__fc_map_regions(const struct fl_handoff_file_part *parts, size_t nparts, const char *kind,
		   const struct fc_region *r, size_t n, struct fl_handoff_region *out,
		   char *err, size_t errlen)
{
	uint64_t total = 0;

	for (size_t k = 0; k < nparts; k++)
		total += parts[k].len;
	for (size_t i = 0; i < n; i++) {
		uint64_t at = 0;
		size_t k;

		for (k = 0; k < nparts; k++) {
			if (r[i].offset < at + parts[k].len)
				break;
			at += parts[k].len;
		}
		if (k == nparts || r[i].size > at + parts[k].len - r[i].offset) {
			if (k < nparts && r[i].offset + r[i].size <= total) {
				snprintf(err, errlen, "Firecracker region %zu (file bytes %llu..%llu) "
					 "spans two regions of the %s source: its layout is not "
					 "Firecracker's; serve the raw memory file with --memory-file",
					 i, (unsigned long long)r[i].offset,
					 (unsigned long long)(r[i].offset + r[i].size), kind);
				return -EINVAL;
			}
			snprintf(err, errlen, "Firecracker region %zu needs file bytes %llu..%llu "
				 "(%llu bytes at offset %llu) but the %s has only %llu bytes: it was "
				 "truncated, or it is not this snapshot's memory file", i,
				 (unsigned long long)r[i].offset,
				 (unsigned long long)(r[i].offset + r[i].size),
				 (unsigned long long)r[i].size, (unsigned long long)r[i].offset,
				 nparts == 1 && !strcmp(kind, "memory-file")
					 ? "memory file" : "source", (unsigned long long)total);
			return -ERANGE;
		}
		if (parts[k].page_size != r[i].page_size) {
			snprintf(err, errlen, "Firecracker region %zu uses %llu-byte pages but the "
				 "source serves %u-byte pages%s", i,
				 (unsigned long long)r[i].page_size, parts[k].page_size,
				 r[i].page_size == (2u << 20) ? ": start the monitor with --huge-pages"
							      : ": start the monitor without --huge-pages");
			return -EINVAL;
		}
		out[i] = (struct fl_handoff_region){
			.addr = r[i].base,
			.len = r[i].size,
			.source_offset = r[i].offset - at,
			.source_region = (uint32_t)k,
			.page_size = (uint32_t)r[i].page_size,
		};
	}
	return 0;
}
