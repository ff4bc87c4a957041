// SPDX-License-Identifier: MIT
/*
 * Every resolve operation on every memory type that supports it. Each case:
 * a thread faults on a page of a registered range, the test reads the fault
 * message, resolves it, and checks what the faulting thread read.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "memtypes.h"
#include "runner.h"
#include "toucher.h"

#define PAGES 4
#define TARGET 1 /* the page the thread faults on */

struct setup {
	struct region r;
	struct fl_uffd u;
	unsigned char *src; /* what the page should hold */
	uint64_t page;	    /* its address */
};

static void setup(struct setup *s, const struct memtype *t, uint64_t modes)
{
	uffd_or_skip(&s->u, t->features | UFFD_FEATURE_THREAD_ID);
	region_map(&s->r, t, PAGES);
	s->page = region_page(&s->r, TARGET);
	s->src = aligned_alloc(4096, s->r.page);
	assert_non_null(s->src);
	fill_pattern(s->src, s->r.page, 0xfa17 + TARGET);
	assert_int_equal(fl_uffd_register(s->u.fd, region_page(&s->r, 0), s->r.len,
					  modes, NULL), 0);
}

static void teardown(struct setup *s)
{
	fl_uffd_close(&s->u);
	region_unmap(&s->r);
	free(s->src);
}

/* COPY, with or without DONTWAKE. */
static void check_copy(const struct memtype *t, bool dontwake)
{
	struct setup s;
	struct toucher th;
	struct fl_resolve res;

	setup(&s, t, UFFDIO_REGISTER_MODE_MISSING);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ, 0);
	wait_fault(s.u.fd, s.page, 0);
	assert_int_equal(fl_uffd_copy(s.u.fd, s.page, s.src, s.r.page, s.r.page,
				      dontwake ? FL_RESOLVE_DONTWAKE : 0, &res), 0);
	assert_int_equal(res.done, s.r.page);
	if (dontwake) {
		/* Installed but not woken: the thread must still be asleep. */
		usleep(100 * 1000);
		assert_false(atomic_load(&th.done));
		assert_int_equal(fl_uffd_wake(s.u.fd, s.page, s.r.page), 0);
	}
	toucher_join(&th);
	assert_memory_equal(th.seen, s.src, s.r.page);
	toucher_free(&th);
	teardown(&s);
}

/* COPY in WP mode: readable at once, the first write faults as WP. */
static void check_copy_wp(const struct memtype *t)
{
	struct setup s;
	struct toucher th;

	setup(&s, t, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ_WRITE, 0x1234567);
	wait_fault(s.u.fd, s.page, 0);
	assert_int_equal(fl_uffd_copy(s.u.fd, s.page, s.src, s.r.page, s.r.page,
				      FL_RESOLVE_WP, NULL), 0);
	wait_fault(s.u.fd, s.page, FL_FAULT_WP | FL_FAULT_WRITE);
	assert_int_equal(fl_uffd_writeprotect(s.u.fd, s.page, s.r.page, false, 0), 0);
	toucher_join(&th);
	assert_memory_equal(th.seen, s.src, s.r.page);
	memcpy(s.src + 8, &th.value, 8);
	assert_memory_equal((void *)s.page, s.src, s.r.page);
	toucher_free(&th);
	teardown(&s);
}

static void check_zeropage(const struct memtype *t)
{
	struct setup s;
	struct toucher th;

	setup(&s, t, UFFDIO_REGISTER_MODE_MISSING);
	memset(s.src, 0, s.r.page);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ_WRITE, 77);
	wait_fault(s.u.fd, s.page, 0);
	assert_int_equal(fl_uffd_zeropage(s.u.fd, s.page, s.r.page, s.r.page, 0, NULL), 0);
	toucher_join(&th);
	assert_memory_equal(th.seen, s.src, s.r.page);
	/* The zero page is copy-on-write: the thread's later write landed. */
	assert_int_equal(*(uint64_t *)(s.page + 8), 77);
	toucher_free(&th);
	teardown(&s);
}

/* MINOR fault: the page cache already has the page; the monitor updates it
 * through its alias mapping, then maps it with CONTINUE. */
static void check_continue(const struct memtype *t)
{
	struct setup s;
	struct toucher th;
	char *alias_page;

	uffd_or_skip(&s.u, t->features);
	region_map(&s.r, t, PAGES);
	s.page = region_page(&s.r, TARGET);
	s.src = aligned_alloc(4096, s.r.page);
	alias_page = s.r.alias + TARGET * s.r.page;
	memset(alias_page, 0xee, s.r.page); /* stale contents in the cache */
	assert_int_equal(fl_uffd_register(s.u.fd, region_page(&s.r, 0), s.r.len,
					  UFFDIO_REGISTER_MODE_MINOR, NULL), 0);
	fill_pattern(s.src, s.r.page, 99);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ, 0);
	wait_fault(s.u.fd, s.page, FL_FAULT_MINOR);
	memcpy(alias_page, s.src, s.r.page);
	assert_int_equal(fl_uffd_continue(s.u.fd, s.page, s.r.page, s.r.page, 0, NULL), 0);
	toucher_join(&th);
	assert_memory_equal(th.seen, s.src, s.r.page);
	toucher_free(&th);
	teardown(&s);
}

/* MOVE: the page leaves the staging area and appears at the fault. */
static void check_move(const struct memtype *t)
{
	struct setup s;
	struct toucher th;
	struct fl_resolve res;
	char *stage;

	setup(&s, t, UFFDIO_REGISTER_MODE_MISSING);
	stage = mmap(NULL, s.r.page, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(stage != MAP_FAILED);
	memcpy(stage, s.src, s.r.page);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ, 0);
	wait_fault(s.u.fd, s.page, 0);
	assert_int_equal(fl_uffd_move(s.u.fd, s.page, (uint64_t)(uintptr_t)stage,
				      s.r.page, s.r.page, 0, &res), 0);
	assert_int_equal(res.done, s.r.page);
	toucher_join(&th);
	assert_memory_equal(th.seen, s.src, s.r.page);
	/* The staging page is gone: it reads as a fresh zero page. */
	for (size_t i = 0; i < s.r.page; i++)
		assert_int_equal(stage[i], 0);
	munmap(stage, s.r.page);
	toucher_free(&th);
	teardown(&s);
}

static void check_poison(const struct memtype *t)
{
	struct setup s;
	struct toucher th;

	setup(&s, t, UFFDIO_REGISTER_MODE_MISSING);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ, 0);
	wait_fault(s.u.fd, s.page, 0);
	assert_int_equal(fl_uffd_poison(s.u.fd, s.page, s.r.page, s.r.page, 0, NULL), 0);
	toucher_join(&th);
	assert_true(atomic_load(&th.sigbus));
	toucher_free(&th);
	teardown(&s);
}

/* WRITEPROTECT on present pages: a write faults (WP|WRITE), un-protecting
 * lets it through, and the rest of the page is untouched. */
static void check_writeprotect(const struct memtype *t)
{
	struct setup s;
	struct toucher th;
	uint64_t v = 0xdeadbeefcafe;

	setup(&s, t, UFFDIO_REGISTER_MODE_WP);
	memcpy((void *)s.page, s.src, s.r.page); /* populate before protecting */
	assert_int_equal(fl_uffd_writeprotect(s.u.fd, region_page(&s.r, 0), s.r.len,
					      true, 0), 0);
	toucher_start(&th, (void *)s.page, s.r.page, TOUCH_READ_WRITE, v);
	wait_fault(s.u.fd, s.page, FL_FAULT_WP | FL_FAULT_WRITE);
	/* While protected the write has not landed. */
	assert_memory_equal((void *)s.page, s.src, s.r.page);
	assert_int_equal(fl_uffd_writeprotect(s.u.fd, s.page, s.r.page, false, 0), 0);
	toucher_join(&th);
	assert_memory_equal(th.seen, s.src, s.r.page);
	memcpy(s.src + 8, &v, 8);
	assert_memory_equal((void *)s.page, s.src, s.r.page);
	toucher_free(&th);
	teardown(&s);
}

static void run(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	enum fl_op op = (enum fl_op)(uintptr_t)c->b;

	switch (op) {
	case OP_COPY: check_copy(t, false); break;
	case OP_COPY_DONTWAKE: check_copy(t, true); break;
	case OP_COPY_WP: check_copy_wp(t); break;
	case OP_ZEROPAGE: check_zeropage(t); break;
	case OP_CONTINUE: check_continue(t); break;
	case OP_MOVE: check_move(t); break;
	case OP_POISON: check_poison(t); break;
	case OP_WRITEPROTECT: check_writeprotect(t); break;
	case OP_COUNT: fail(); break;
	}
}

/* The kernel reports the range ioctls each memory type allows. */
static void check_range_ioctls(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	struct fl_uffd u;
	struct region r;
	uint64_t ioctls = 0;

	uffd_or_skip(&u, t->features);
	region_map(&r, t, 1);
	assert_int_equal(fl_uffd_register(u.fd, region_page(&r, 0), r.len,
					  UFFDIO_REGISTER_MODE_MISSING, &ioctls), 0);
	assert_int_equal(ioctls & t->range_ioctls, t->range_ioctls);
	if (t->hugetlb) /* no zero page for hugetlb */
		assert_false(ioctls & FL_UFFD_IOCTL_BIT(_UFFDIO_ZEROPAGE));
	assert_int_equal(fl_uffd_unregister(u.fd, region_page(&r, 0), r.len), 0);
	fl_uffd_close(&u);
	region_unmap(&r);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	for (size_t m = 0; m < fl_memtype_count; m++) {
		const struct memtype *t = &fl_memtypes[m];

		fl_case_add(&cases, &n, check_range_ioctls, t, NULL,
			    "test_range_ioctls_reported/%s", t->name);
		for (int op = 0; op < OP_COUNT; op++)
			if (t->ops & OPS(op))
				fl_case_add(&cases, &n, run, t, (void *)(uintptr_t)op,
					    "test_%s_faulting_thread_reads_result/%s",
					    fl_op_names[op], t->name);
	}
	return fl_run_cases(cases, n, argc, argv);
}
