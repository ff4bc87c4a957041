// SPDX-License-Identifier: MIT
/*
 * fl_vmm_migrate(): the source side of a VMM's migration. The page server
 * wants a struct fl_migrate_memory; for guest RAM mapped in this process
 * reading is a memcpy and dirty tracking is the VMM's log or faultline's
 * write-protect tracker, so the VMM writes only pause().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/uffd.h>
#include <faultline/vmm.h>

struct vmm_src {
	const struct fl_vmm_ram *ram;
	size_t n;
	const struct fl_vmm_source_hooks *h;
	struct fl_dirty **dirty; /* faultline's trackers, one per mapping */
};

static int ram_read(void *ctx, uint32_t region, uint64_t off, void *buf, size_t len)
{
	struct vmm_src *s = ctx;

	if (region >= s->n || off > s->ram[region].len || len > s->ram[region].len - off)
		return -EINVAL;
	/* The guest may be writing this page: a torn copy is fine, the
	 * write marks it dirty and it is sent again. */
	memcpy(buf, (const char *)s->ram[region].host + off, len);
	return 0;
}

static int own_dirty_start(void *ctx)
{
	struct vmm_src *s = ctx;

	for (size_t i = 0; i < s->n; i++) {
		int ret = fl_dirty_create(&s->dirty[i], s->ram[i].host, s->ram[i].len,
					  FL_DIRTY_AUTO);

		if (ret)
			return ret;
	}
	return 0;
}

static int own_dirty_collect(void *ctx, uint32_t region, uint64_t *bitmap)
{
	struct vmm_src *s = ctx;

	return fl_dirty_collect(s->dirty[region], bitmap, NULL);
}

static int vmm_dirty_start(void *ctx)
{
	struct vmm_src *s = ctx;

	return s->h->dirty_start(s->h->ctx);
}

static int vmm_dirty_collect(void *ctx, uint32_t region, uint64_t *bitmap)
{
	struct vmm_src *s = ctx;

	return s->h->dirty_collect(s->h->ctx, region, bitmap);
}

static int vmm_pause(void *ctx, void **blob, size_t *len)
{
	struct vmm_src *s = ctx;

	return s->h->pause(s->h->ctx, blob, len);
}

int fl_vmm_migrate(const struct fl_vmm_ram *ram, size_t n,
		   const struct fl_vmm_source_hooks *hooks,
		   const struct fl_migrate_source_opts *opts,
		   struct fl_migrate_report *report, char *err, size_t errlen)
{
	struct vmm_src s = { .ram = ram, .n = n, .h = hooks };
	struct fl_migrate_memory mem = { .read = ram_read, .pause = vmm_pause, .ctx = &s };
	struct fl_region *rg;
	int ret;

	if (!n || !hooks || !hooks->pause ||
	    !hooks->dirty_start != !hooks->dirty_collect) {
		snprintf(err, errlen, "fl_vmm_migrate: pause is required, and dirty_start "
				      "and dirty_collect go together");
		return -EINVAL;
	}
	rg = calloc(n, sizeof(*rg));
	s.dirty = calloc(n, sizeof(*s.dirty));
	if (!rg || !s.dirty) {
		free(rg);
		free(s.dirty);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if ((uintptr_t)ram[i].host % 4096 || !ram[i].len || ram[i].len % 4096) {
			snprintf(err, errlen, "guest RAM mapping %zu is not whole 4 KiB pages", i);
			ret = -EINVAL;
			goto out;
		}
		rg[i].start = ram[i].guest_addr;
		rg[i].len = ram[i].len;
		rg[i].page_size = 4096;
		rg[i].prot = 3; /* PROT_READ | PROT_WRITE */
		snprintf(rg[i].name, sizeof(rg[i].name), "%s",
			 ram[i].name ? ram[i].name : "guest-ram");
	}
	if (hooks->dirty_start) {
		mem.dirty_start = vmm_dirty_start;
		mem.dirty_collect = vmm_dirty_collect;
	} else {
		mem.dirty_start = own_dirty_start;
		mem.dirty_collect = own_dirty_collect;
	}
	ret = fl_migrate_source(rg, n, &mem, opts, report, err, errlen);
out:
	for (size_t i = 0; i < n; i++)
		fl_dirty_destroy(s.dirty[i]);
	free(s.dirty);
	free(rg);
	return ret;
}
