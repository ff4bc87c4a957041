// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: Firecracker's region list (src/handoff/firecracker.c),
 * the JSON a VMM sends `faultline monitor --firecracker-socket`. Checks
 * beyond "no crash":
 *   - a refusal (-EINVAL) always says why; -EAGAIN only for a message that
 *     may still go on, so it must never be returned once a prefix was
 *     already refused;
 *   - whatever is accepted obeys every promise of fl__fc_parse(): page sizes,
 *     alignment, no wrap, no overlap;
 *   - feeding the same bytes split at any point gives the same answer for
 *     the whole (the parser keeps no state between calls).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "firecracker.h"

static struct fc_region out[FC_REGIONS_MAX];

static void check_accepted(const struct fc_region *r, size_t n)
{
	if (!n || n > FC_REGIONS_MAX)
		abort();
	for (size_t i = 0; i < n; i++) {
		uint64_t pg = r[i].page_size;

		if (pg != 4096 && pg != (2u << 20))
			abort();
		if (!r[i].size || (r[i].base | r[i].size | r[i].offset) % pg)
			abort();
		if (r[i].base + r[i].size < r[i].base || r[i].offset + r[i].size < r[i].offset)
			abort();
		for (size_t j = 0; j < i; j++)
			if ((r[j].base < r[i].base + r[i].size && r[i].base < r[j].base + r[j].size) ||
			    (r[j].offset < r[i].offset + r[i].size &&
			     r[i].offset < r[j].offset + r[j].size))
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char err[256];
	size_t n, half;
	int ret;

	err[0] = '\0';
	ret = fl__fc_parse(buf, size, out, FC_REGIONS_MAX, &n, err, sizeof(err));
	if (ret != 0 && ret != -EAGAIN && ret != -EINVAL)
		abort();
	if (ret == -EINVAL && !err[0])
		abort();
	if (ret == 0)
		check_accepted(out, n);
	/* A refused prefix can't become good by appending bytes. */
	half = size / 2;
	if (half && fl__fc_parse(buf, half, out, FC_REGIONS_MAX, &n, err, sizeof(err)) == -EINVAL &&
	    ret != -EINVAL)
		abort();
	/* Deterministic: the same bytes, the same answer. */
	if (fl__fc_parse(buf, size, out, FC_REGIONS_MAX, &n, err, sizeof(err)) != ret)
		abort();
	return 0;
}
