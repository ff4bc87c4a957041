// SPDX-License-Identifier: MIT
/* Recorded fault orders (faultline/fault-order.h): their text format. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/fault-order.h>

void fl_fault_order_append(void *f, uint32_t region, uint64_t offset)
{
	fprintf(f, "%u %llu\n", region, (unsigned long long)offset);
}

int fl_fault_order_load(const char *path, const struct fl_region *regions, size_t nregions,
			struct fl_page_ref **out, size_t *n, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	struct fl_page_ref *v = NULL;
	unsigned region;
	unsigned long long off;
	size_t cap = 0, len = 0;
	int line = 0, ret = 0;

	*out = NULL;
	*n = 0;
	if (!f) {
		ret = -errno;
		snprintf(err, errlen, "cannot open fault record %s: %s", path, strerror(errno));
		return ret;
	}
	while (fscanf(f, "%u %llu", &region, &off) == 2) {
		line++;
		if (region >= nregions || off >= regions[region].len ||
		    off % regions[region].page_size) {
			snprintf(err, errlen, "%s line %d: region %u offset %llu is not a page of the "
				 "source", path, line, region, off);
			ret = -EINVAL;
			goto out;
		}
		if (len == cap) {
			struct fl_page_ref *nv;

			cap = cap ? cap * 2 : 1024;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				ret = -ENOMEM;
				snprintf(err, errlen, "out of memory reading %s", path);
				goto out;
			}
			v = nv;
		}
		v[len++] = (struct fl_page_ref){ region, off };
	}
	if (!feof(f)) {
		snprintf(err, errlen, "%s line %d: expected \"REGION OFFSET\"", path, line + 1);
		ret = -EINVAL;
	}
out:
	fclose(f);
	if (ret) {
		free(v);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}
