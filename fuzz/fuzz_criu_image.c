// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: CRIU's image files as faultline lazy-pages reads them
 * (src/transport/criu-image.c). The first byte picks the image kind
 * (pstree, mm, pagemap), the rest is the file. Checks beyond "no crash":
 *   - a refusal always says why, naming the file;
 *   - whatever is accepted obeys every promise of the decoders: pids
 *     positive and unique; VMAs non-empty, aligned, sorted, disjoint;
 *     pagemap entries aligned, inside user space, sorted, disjoint, with
 *     flags CRIU writes and data offsets that add up.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "criu-image.h"

static void check_pstree(const int32_t *p, size_t n)
{
	if (!n)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (p[i] <= 0)
			abort();
		for (size_t j = 0; j < i; j++)
			if (p[i] == p[j])
				abort();
	}
}

static void check_mm(const struct criu_vma *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].start >= v[i].end || (v[i].start | v[i].end) % CRIU_PAGE)
			abort();
		if (i && v[i].start < v[i - 1].end)
			abort();
	}
}

static void check_pagemap(const struct criu_pagemap *pm)
{
	uint64_t data = 0;

	for (size_t i = 0; i < pm->n; i++) {
		const struct criu_pagemap_ent *e = &pm->e[i];

		if (e->vaddr % CRIU_PAGE || !e->nr_pages || e->vaddr >= CRIU_ADDR_LIMIT ||
		    e->nr_pages > (CRIU_ADDR_LIMIT - e->vaddr) / CRIU_PAGE)
			abort();
		if (e->flags & ~7u || (e->flags & CRIU_PE_PARENT && e->flags & CRIU_PE_PRESENT))
			abort();
		if (i && e->vaddr < pm->e[i - 1].vaddr + pm->e[i - 1].nr_pages * CRIU_PAGE)
			abort();
		if (e->data_offset != data)
			abort();
		if (e->flags & CRIU_PE_PRESENT)
			data += e->nr_pages * CRIU_PAGE;
	}
	if (data != pm->data_bytes)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *names[] = { "pstree.img", "mm-1.img", "pagemap-1.img" };
	char err[512] = "";
	int ret;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0: {
		int32_t *p;
		size_t n;

		ret = fl__criu_pstree_decode(data + 1, size - 1, names[0], &p, &n, err, sizeof(err));
		if (!ret)
			check_pstree(p, n);
		free(p);
		break;
	}
	case 1: {
		struct criu_vma *v;
		size_t n;

		ret = fl__criu_mm_decode(data + 1, size - 1, names[1], &v, &n, err, sizeof(err));
		if (!ret)
			check_mm(v, n);
		free(v);
		break;
	}
	default: {
		struct criu_pagemap pm;

		ret = fl__criu_pagemap_decode(data + 1, size - 1, names[2], &pm, err, sizeof(err));
		if (!ret)
			check_pagemap(&pm);
		fl__criu_pagemap_free(&pm);
		break;
	}
	}
	if (ret && (ret != -EBADMSG && ret != -ENOMEM))
		abort();
	if (ret == -EBADMSG && strncmp(err, names[data[0] % 3], strlen(names[data[0] % 3])))
		abort();
	return 0;
}
