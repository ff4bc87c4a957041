/* SPDX-License-Identifier: MIT */
/*
 * The memory types every userfaultfd test runs over, as one table (the
 * kernel selftests' uffd-common does the same): each row says how to map
 * it, which features it needs and which resolve operations the kernel
 * supports on it. Tests cross this table with their own cases.
 */
#ifndef FL_TEST_MEMTYPES_H
#define FL_TEST_MEMTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fl_op {
	OP_COPY,
	OP_COPY_DONTWAKE,
	OP_COPY_WP,
	OP_ZEROPAGE,
	OP_CONTINUE,
	OP_MOVE,
	OP_POISON,
	OP_WRITEPROTECT,
	OP_COUNT,
};
#define OPS(x) (1u << (x))

struct memtype {
	const char *name;
	bool shared;	      /* MAP_SHARED: writes reach the file */
	bool file;	      /* backed by a memfd (has an alias mapping) */
	bool hugetlb;	      /* 2 MiB pages from the hugetlb pool */
	uint64_t features;    /* userfaultfd features it needs */
	unsigned ops;	      /* OPS() of what the kernel supports on it */
	uint64_t range_ioctls; /* what UFFDIO_REGISTER(MISSING) must report */
};

extern const struct memtype fl_memtypes[];
extern const size_t fl_memtype_count;

extern const char *const fl_op_names[OP_COUNT];

/* One mapping of a memory type, plus (for memfd types) a second, shared
 * mapping of the same file: the "alias" through which a monitor fills the
 * page cache for MINOR faults without faulting itself. */
struct region {
	const struct memtype *type;
	char *addr;
	char *alias;
	size_t len, page;
	int fd;
};

/* Map `pages` pages of `t`; skips the case (fl_skip) when the machine
 * cannot provide it, e.g. no free huge pages. */
void region_map(struct region *r, const struct memtype *t, size_t pages);
void region_unmap(struct region *r);

static inline uint64_t region_page(const struct region *r, size_t i)
{
	return (uint64_t)(uintptr_t)(r->addr + i * r->page);
}

/* Deterministic page contents: every byte depends on seed and position. */
void fill_pattern(void *buf, size_t len, uint64_t seed);

#endif
