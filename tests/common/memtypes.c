// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "memtypes.h"
#include "runner.h"

#define IOC(x) FL_UFFD_IOCTL_BIT(_UFFDIO_##x)
#define ALL_COPY (OPS(OP_COPY) | OPS(OP_COPY_DONTWAKE) | OPS(OP_COPY_WP))

const char *const fl_op_names[OP_COUNT] = {
	[OP_COPY] = "copy",
	[OP_COPY_DONTWAKE] = "copy_dontwake_then_wake",
	[OP_COPY_WP] = "copy_wp",
	[OP_ZEROPAGE] = "zeropage",
	[OP_CONTINUE] = "continue",
	[OP_MOVE] = "move",
	[OP_POISON] = "poison",
	[OP_WRITEPROTECT] = "writeprotect",
};

/* Shared memory and a private mapping of a memfd (shmem underneath both)
 * offer the same userfaultfd features, operations and range ioctls. */
#define SHMEM_UFFD \
	.features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM | \
		    UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
		    UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_POISON, \
	.ops = ALL_COPY | OPS(OP_ZEROPAGE) | OPS(OP_CONTINUE) | \
	       OPS(OP_POISON) | OPS(OP_WRITEPROTECT), \
	.range_ioctls = IOC(WAKE) | IOC(COPY) | IOC(ZEROPAGE) | IOC(POISON)

const struct memtype fl_memtypes[] = {
	{
		.name = "anon",
		.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_MOVE |
			    UFFD_FEATURE_POISON,
		.ops = ALL_COPY | OPS(OP_ZEROPAGE) | OPS(OP_MOVE) |
		       OPS(OP_POISON) | OPS(OP_WRITEPROTECT),
		.range_ioctls = IOC(WAKE) | IOC(COPY) | IOC(ZEROPAGE) |
				IOC(MOVE) | IOC(POISON),
	},
	{
		.name = "shmem",
		.shared = true,
		.file = true,
		SHMEM_UFFD,
	},
	{
		.name = "memfd_private",
		.file = true,
		SHMEM_UFFD,
	},
	{
		.name = "hugetlb",
		.shared = true,
		.file = true,
		.hugetlb = true,
		.features = UFFD_FEATURE_MISSING_HUGETLBFS |
			    UFFD_FEATURE_MINOR_HUGETLBFS |
			    UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
			    UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_POISON,
		.ops = ALL_COPY | OPS(OP_CONTINUE) | OPS(OP_POISON) |
		       OPS(OP_WRITEPROTECT),
		.range_ioctls = IOC(WAKE) | IOC(COPY) | IOC(POISON),
	},
	{
		.name = "hugetlb_private",
		.hugetlb = true,
		.features = UFFD_FEATURE_MISSING_HUGETLBFS |
			    UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
			    UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_POISON,
		.ops = ALL_COPY | OPS(OP_POISON) | OPS(OP_WRITEPROTECT),
		.range_ioctls = IOC(WAKE) | IOC(COPY) | IOC(POISON),
	},
};
const size_t fl_memtype_count = sizeof(fl_memtypes) / sizeof(fl_memtypes[0]);

static long free_hugepages(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

void region_map(struct region *r, const struct memtype *t, size_t pages)
{
	int prot = PROT_READ | PROT_WRITE;

	memset(r, 0, sizeof(*r));
	r->type = t;
	r->fd = -1;
	r->page = t->hugetlb ? 2UL << 20 : 4096;
	r->len = pages * r->page;
	if (t->hugetlb) {
		long f = free_hugepages();

		/* the alias and COW copies may need a few more */
		if (f < (long)pages + 2)
			fl_skip("needs %zu free 2 MiB huge pages, the machine has %ld "
				"(reserve some: sysctl vm.nr_hugepages=64)", pages + 2, f);
	}
	if (!t->file) {
		int flags = MAP_PRIVATE | MAP_ANONYMOUS |
			    (t->hugetlb ? MAP_HUGETLB : 0);

		r->addr = mmap(NULL, r->len, prot, flags, -1, 0);
		assert_true(r->addr != MAP_FAILED);
		/* Anonymous tests control THP themselves; keep 4 KiB here so a
		 * fault resolves exactly one page. */
		if (!t->hugetlb)
			madvise(r->addr, r->len, MADV_NOHUGEPAGE);
		return;
	}
	r->fd = memfd_create(t->name, MFD_CLOEXEC | (t->hugetlb ? MFD_HUGETLB : 0));
	assert_true(r->fd >= 0);
	assert_int_equal(ftruncate(r->fd, (off_t)r->len), 0);
	r->addr = mmap(NULL, r->len, prot, t->shared ? MAP_SHARED : MAP_PRIVATE,
		       r->fd, 0);
	assert_true(r->addr != MAP_FAILED);
	r->alias = mmap(NULL, r->len, prot, MAP_SHARED, r->fd, 0);
	assert_true(r->alias != MAP_FAILED);
}

void region_unmap(struct region *r)
{
	if (r->addr)
		munmap(r->addr, r->len);
	if (r->alias)
		munmap(r->alias, r->len);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	uint64_t *w = buf;

	for (size_t i = 0; i < len / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}
