// SPDX-License-Identifier: MIT
/*
 * What a destination's new pages cost, measured first, on memory this
 * machine has not used lately: a user's first touch of fresh anonymous
 * memory, and UFFDIO_COPY in 2 MiB calls in one pass over new memory, at
 * the working set and 4x it.
 *
 * Measured here (a guest whose freed memory goes back to the host, see
 * /sys/module/page_reporting): a page the guest used in the last seconds
 * is cheap to allocate again, one it has not costs the host a fault of its
 * own (about 5 us). A destination's memory is of the second kind, and a
 * measurement that follows another one that just freed gigabytes meets
 * the first: UFFDIO_COPY over 1 GiB ran at 7 GB/s after the other
 * measurements and at 0.8 GB/s before them. So these run before anything
 * else, and each keeps its memory until all are done, so that none
 * recycles another's (when the machine has room for all of it).
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "bench.h"

#define HUGE (2ul << 20)

struct held {
	char *p[4];
	size_t len[4], n;
};

static char *map_new(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE); /* pages as the installs make them */
	return p;
}

/* Keep p mapped until release(), or unmap it now when not holding. */
static void keep(struct held *h, char *p, size_t len, bool hold)
{
	if (hold && h->n < 4) {
		h->p[h->n] = p;
		h->len[h->n++] = len;
	} else {
		munmap(p, len);
	}
}

static void release(struct held *h)
{
	for (size_t i = 0; i < h->n; i++)
		munmap(h->p[i], h->len[i]);
	h->n = 0;
}

static double touch_gbps(struct held *h, size_t len, bool hold)
{
	char *p = map_new(len);
	uint64_t t0, t1;

	if (!p)
		return -1;
	t0 = now_ns();
	for (size_t i = 0; i < len; i += 4096)
		p[i] = 1;
	t1 = now_ns();
	keep(h, p, len, hold);
	return (double)len / (double)(t1 - t0);
}

static double copy_gbps(struct held *h, size_t len, const char *src, bool hold)
{
	char *dst = map_new(len);
	struct fl_uffd u;
	uint64_t t0, t1;
	int ret = 0;

	if (!dst)
		return -1;
	if (fl_uffd_create(&u, 0, 0, 0, NULL)) {
		munmap(dst, len);
		return -1;
	}
	if (fl_uffd_register(u.fd, (uint64_t)(uintptr_t)dst, len, UFFDIO_REGISTER_MODE_MISSING,
			     NULL)) {
		fl_uffd_close(&u);
		munmap(dst, len);
		return -1;
	}
	t0 = now_ns();
	for (size_t off = 0; off + HUGE <= len && !ret; off += HUGE)
		ret = fl_uffd_copy(u.fd, (uint64_t)(uintptr_t)(dst + off), src, HUGE, 4096, 0, NULL);
	t1 = now_ns();
	fl_uffd_close(&u); /* the pages stay */
	keep(h, dst, len, hold);
	return ret ? -1 : (double)len / (double)(t1 - t0);
}

/* Bytes of memory available now, from /proc/meminfo (0: unknown). */
static size_t available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	size_t kib = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %zu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib << 10;
}

void bench_cold_memory(struct table *t, const struct bench_opts *o)
{
	size_t len = o->mib << 20;
	/* 1x and 4x, touched and copied: ten working sets held at once. */
	bool hold = 10 * len <= available() / 2;
	struct held h = { 0 };
	char *src = map_new(HUGE);

	if (!src)
		return;
	memset(src, 0xa5, HUGE);
	for (size_t k = 1; k <= 4; k *= 4) {
		char per[24];
		struct row *r;
		double g;

		snprintf(per, sizeof(per), "%zu MiB", o->mib * k);
		r = table_add(t, "fresh memory, first touch", per);
		r->gbps = touch_gbps(&h, len * k, hold);
		r->ns_per_page = r->gbps > 0 ? 4096.0 / r->gbps : -1;
		snprintf(r->note, sizeof(r->note), "a page fault per new page%s",
			 hold ? "" : " (memory may be recycled: too little held)");
		g = copy_gbps(&h, len * k, src, hold);
		r = table_add(t, "UFFDIO_COPY 2 MiB, one pass", per);
		if (g <= 0) {
			snprintf(r->note, sizeof(r->note), "not available on this kernel/machine");
			continue;
		}
		r->gbps = g;
		r->ns_per_page = 4096.0 / g;
		snprintf(r->note, sizeof(r->note), "limit for installs into a destination this size");
	}
	release(&h);
	munmap(src, HUGE);
}
