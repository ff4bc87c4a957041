// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double percentile(double *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return -1;
	qsort(v, n, sizeof(*v), cmp);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

double median(double *v, int n)
{
	return percentile(v, (size_t)n, 50);
}

struct row *table_add(struct table *t, const char *what, const char *per_call)
{
	struct row *r = &t->rows[t->n < 63 ? t->n++ : 63];

	memset(r, 0, sizeof(*r));
	snprintf(r->what, sizeof(r->what), "%s", what);
	snprintf(r->per_call, sizeof(r->per_call), "%s", per_call);
	r->ns_per_page = r->gbps = r->p50_us = r->p99_us = r->ms_per_gib = -1;
	return r;
}
