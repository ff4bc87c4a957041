// SPDX-License-Identifier: MIT
/* Raw install rates: UFFDIO_COPY, ZEROPAGE and MOVE at several call sizes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "bench.h"

#define HUGE (2UL << 20)

enum op { COPY, ZEROPAGE, MOVE };

/* A 2 MiB-aligned private anonymous mapping (THP or not, as asked). */
static char *map_aligned(size_t len, bool thp)
{
	char *p = mmap(NULL, len + HUGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + HUGE - 1) & ~(HUGE - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + len, (size_t)(p + HUGE - a));
	madvise(a, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return a;
}

/* One timed pass over `len` bytes with calls of `chunk`; ns for the pass. */
static int64_t pass(enum op op, size_t len, size_t chunk, bool thp_src,
		    const char *src_buf)
{
	struct fl_uffd u;
	char *dst = map_aligned(len, false), *src = NULL;
	uint64_t t0, t1;
	int ret = 0;

	if (!dst || fl_uffd_create(&u, 0, UFFD_FEATURE_MOVE, 0, NULL))
		return -1;
	if (fl_uffd_register(u.fd, (uint64_t)(uintptr_t)dst, len,
			     UFFDIO_REGISTER_MODE_MISSING, NULL)) {
		fl_uffd_close(&u);
		return -1;
	}
	if (op == MOVE) {
		src = map_aligned(len, thp_src);
		if (!src)
			return -1;
		memset(src, 0x5a, len); /* real, exclusive pages to move */
	}
	t0 = now_ns();
	for (size_t off = 0; off < len && ret == 0; off += chunk) {
		uint64_t d = (uint64_t)(uintptr_t)(dst + off);

		if (op == COPY)
			ret = fl_uffd_copy(u.fd, d, src_buf, chunk, 4096, 0, NULL);
		else if (op == ZEROPAGE)
			ret = fl_uffd_zeropage(u.fd, d, chunk, 4096, 0, NULL);
		else
			ret = fl_uffd_move(u.fd, d, (uint64_t)(uintptr_t)(src + off),
					   chunk, 4096, 0, NULL);
	}
	t1 = now_ns();
	fl_uffd_close(&u);
	munmap(dst, len);
	if (src)
		munmap(src, len);
	return ret ? ret : (int64_t)(t1 - t0);
}

static void measure(struct table *t, const struct bench_opts *o, enum op op,
		    const char *name, size_t chunk, bool thp_src,
		    const char *src_buf)
{
	static const char *sizes[] = { "4 KiB", "64 KiB", "2 MiB" };
	size_t len = o->mib << 20;
	double v[32];
	struct row *r;
	int ok = 0;

	for (int i = 0; i < o->reps; i++) {
		int64_t ns = pass(op, len, chunk, thp_src, src_buf);

		if (ns > 0)
			v[ok++] = (double)ns;
	}
	r = table_add(t, name, sizes[chunk == 4096 ? 0 : chunk == 65536 ? 1 : 2]);
	if (!ok) {
		snprintf(r->note, sizeof(r->note), "not available on this kernel/machine");
		return;
	}
	r->ns_per_page = median(v, ok) / (double)(len / 4096);
	r->gbps = (double)len / median(v, ok);
	if (op == COPY && t->memcpy_gbps > 0)
		snprintf(r->note, sizeof(r->note), "%.0f%% of memcpy",
			 100.0 * r->gbps / t->memcpy_gbps);
	else if (thp_src)
		snprintf(r->note, sizeof(r->note), "source in transparent huge pages");
}

void bench_resolve(struct table *t, const struct bench_opts *o)
{
	static const size_t chunks[] = { 4096, 65536, HUGE };
	char *src = map_aligned(HUGE, false);

	if (!src)
		return;
	memset(src, 0xa5, HUGE);
	for (int i = 0; i < 3; i++)
		measure(t, o, COPY, "UFFDIO_COPY", chunks[i], false, src);
	measure(t, o, ZEROPAGE, "UFFDIO_ZEROPAGE", 4096, false, NULL);
	measure(t, o, ZEROPAGE, "UFFDIO_ZEROPAGE", HUGE, false, NULL);
	for (int i = 0; i < 3; i++)
		measure(t, o, MOVE, "UFFDIO_MOVE", chunks[i], false, NULL);
	measure(t, o, MOVE, "UFFDIO_MOVE", HUGE, true, NULL);
	munmap(src, HUGE);
}
