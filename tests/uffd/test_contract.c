// SPDX-License-Identifier: MIT
/*
 * The resolve return contract, each answer forced for real: EEXIST is not
 * an error, partial progress is continued, EAGAIN while an event is
 * pending, ESRCH once the process is gone, ENOENT/EINVAL for bad ranges.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "handoff.h"
#include "memtypes.h"
#include "runner.h"
#include "toucher.h"

#define PAGES 4

static void *page_buf(size_t len, uint64_t seed)
{
	void *p = aligned_alloc(4096, len);

	assert_non_null(p);
	fill_pattern(p, len, seed);
	return p;
}

/* Copy onto a page that is already there: 0, counted as existed, and the
 * page keeps its contents. */
static void test_copy_onto_present_page_is_not_an_error(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	struct fl_uffd u;
	struct region r;
	struct fl_resolve res;
	unsigned char *first, *second;

	uffd_or_skip(&u, t->features);
	region_map(&r, t, PAGES);
	first = page_buf(r.page, 1);
	second = page_buf(r.page, 2);
	assert_int_equal(fl_uffd_register(u.fd, region_page(&r, 0), r.len,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), first, r.page,
				      r.page, 0, &res), 0);
	assert_int_equal(res.done, r.page);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), second, r.page,
				      r.page, 0, &res), 0);
	assert_int_equal(res.done, 0);
	assert_int_equal(res.existed, r.page);
	assert_memory_equal(r.addr, first, r.page);
	free(first);
	free(second);
	fl_uffd_close(&u);
	region_unmap(&r);
}

/* A multi-page copy whose third page is present: the kernel stops there
 * (partial copy + EAGAIN); the library continues after it. */
static void test_partial_copy_is_continued(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	struct fl_uffd u;
	struct region r;
	struct fl_resolve res;
	unsigned char *mine, *theirs;

	uffd_or_skip(&u, t->features);
	region_map(&r, t, PAGES);
	mine = page_buf(r.len, 3);
	theirs = page_buf(r.page, 4);
	assert_int_equal(fl_uffd_register(u.fd, region_page(&r, 0), r.len,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 2), theirs, r.page,
				      r.page, 0, NULL), 0);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), mine, r.len,
				      r.page, 0, &res), 0);
	assert_int_equal(res.done, 3 * r.page);
	assert_int_equal(res.existed, r.page);
	assert_true(res.calls >= 3); /* partial, EEXIST, rest */
	assert_memory_equal(r.addr, mine, 2 * r.page);
	assert_memory_equal(r.addr + 2 * r.page, theirs, r.page);
	assert_memory_equal(r.addr + 3 * r.page, mine + 3 * r.page, r.page);
	free(mine);
	free(theirs);
	fl_uffd_close(&u);
	region_unmap(&r);
}

/* A background copier installed the page with DONTWAKE while a thread
 * waits on it; the fault path's copy then finds it present (EEXIST) and
 * must still wake the thread. */
static void test_eexist_wakes_the_faulting_thread(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	struct fl_uffd u;
	struct region r;
	struct toucher th;
	unsigned char *data;

	uffd_or_skip(&u, t->features);
	region_map(&r, t, PAGES);
	data = page_buf(r.page, 5);
	assert_int_equal(fl_uffd_register(u.fd, region_page(&r, 0), r.len,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	toucher_start(&th, r.addr, r.page, TOUCH_READ, 0);
	wait_fault(u.fd, region_page(&r, 0), 0);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), data, r.page,
				      r.page, FL_RESOLVE_DONTWAKE, NULL), 0);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), data, r.page,
				      r.page, 0, NULL), 0);
	toucher_join(&th);
	assert_memory_equal(th.seen, data, r.page);
	toucher_free(&th);
	free(data);
	fl_uffd_close(&u);
	region_unmap(&r);
}

struct madviser {
	void *addr;
	size_t len;
	int ret;
};

static void *do_dontneed(void *arg)
{
	struct madviser *m = arg;

	m->ret = madvise(m->addr, m->len, MADV_DONTNEED);
	return NULL;
}

/* MADV_DONTNEED with EVENT_REMOVE blocks its caller until we read the
 * event; until then every resolve answers EAGAIN. Read, apply, retry. */
static void test_eagain_until_pending_remove_is_read(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	struct fl_uffd u;
	struct region r;
	struct fl_resolve res;
	struct fl_uffd_event ev;
	struct madviser m;
	pthread_t th;
	unsigned char *data;

	uffd_or_skip(&u, t->features | UFFD_FEATURE_EVENT_REMOVE);
	region_map(&r, t, PAGES);
	data = page_buf(r.page, 6);
	assert_int_equal(fl_uffd_register(u.fd, region_page(&r, 0), r.len,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	m = (struct madviser){ r.addr + 2 * r.page, 2 * r.page, -1 };
	assert_int_equal(pthread_create(&th, NULL, do_dontneed, &m), 0);
	assert_true(event_pending(u.fd, 10000));
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), data, r.page,
				      r.page, 0, &res), -EAGAIN);
	assert_int_equal(res.done, 0);
	assert_int_equal(fl_uffd_read_events(u.fd, &ev, 1), 1);
	assert_int_equal(ev.kind, FL_EVENT_REMOVE);
	assert_int_equal(ev.range.start, region_page(&r, 2));
	assert_int_equal(ev.range.end, region_page(&r, 4));
	pthread_join(th, NULL);
	assert_int_equal(m.ret, 0);
	assert_int_equal(fl_uffd_copy(u.fd, region_page(&r, 0), data, r.page,
				      r.page, 0, &res), 0);
	assert_int_equal(res.done, r.page);
	assert_memory_equal(r.addr, data, r.page);
	free(data);
	fl_uffd_close(&u);
	region_unmap(&r);
}

/* A child registers its memory, hands us the fd and exits: every resolve
 * on its fd then answers ESRCH. */
static void test_esrch_once_the_process_exited(const struct fl_case *c)
{
	int sv[2], fd, status;
	uint64_t addr;
	unsigned char *data = page_buf(4096, 7);
	pid_t pid;

	(void)c;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fl_uffd u;
		char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char go;

		close(sv[0]);
		if (p == MAP_FAILED || fl_uffd_create(&u, 0, 0, 0, NULL) ||
		    fl_uffd_register(u.fd, (uint64_t)(uintptr_t)p, 4 * 4096,
				     UFFDIO_REGISTER_MODE_MISSING, NULL))
			_exit(1);
		addr = (uint64_t)(uintptr_t)p;
		if (send_fd(sv[1], u.fd, &addr, sizeof(addr)))
			_exit(1);
		_exit(read(sv[1], &go, 1) == 1 ? 0 : 0);
	}
	close(sv[1]);
	assert_int_equal(recv_fd(sv[0], &fd, &addr, sizeof(addr)), 0);
	/* Alive: the copy works. */
	assert_int_equal(fl_uffd_copy(fd, addr, data, 4096, 4096, 0, NULL), 0);
	close(sv[0]); /* lets the child exit */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(fl_uffd_copy(fd, addr + 4096, data, 4096, 4096, 0, NULL), -ESRCH);
	assert_int_equal(fl_uffd_zeropage(fd, addr + 8192, 4096, 4096, 0, NULL), -ESRCH);
	assert_int_equal(fl_uffd_writeprotect(fd, addr, 4096, true, 0), -ESRCH);
	close(fd);
	free(data);
}

/* Addresses outside any registered range: ENOENT. */
static void test_enoent_outside_registered_ranges(const struct fl_case *c)
{
	struct fl_uffd u;
	unsigned char *data = page_buf(4096, 8);
	char *reg, *plain;

	(void)c;
	assert_int_equal(fl_uffd_create(&u, 0, 0, 0, NULL), 0);
	reg = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	plain = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_int_equal(fl_uffd_register(u.fd, (uint64_t)(uintptr_t)reg, 8192,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	/* A mapping this fd never registered. */
	assert_int_equal(fl_uffd_copy(u.fd, (uint64_t)(uintptr_t)plain, data, 4096,
				      4096, 0, NULL), -ENOENT);
	/* A registered range that was unmapped since. */
	munmap(reg, 8192);
	assert_int_equal(fl_uffd_copy(u.fd, (uint64_t)(uintptr_t)reg, data, 4096,
				      4096, 0, NULL), -ENOENT);
	/* MOVE from a hole without ALLOW_SRC_HOLES. */
	reg = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_int_equal(fl_uffd_register(u.fd, (uint64_t)(uintptr_t)reg, 8192,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	if (u.kernel_features & UFFD_FEATURE_MOVE)
		assert_int_equal(fl_uffd_move(u.fd, (uint64_t)(uintptr_t)reg,
					      (uint64_t)(uintptr_t)plain, 4096, 4096, 0,
					      NULL), -ENOENT);
	free(data);
	fl_uffd_close(&u);
}

/* Bad ranges and operations a range does not support: EINVAL. */
static void test_einval_for_bad_ranges(const struct fl_case *c)
{
	struct fl_uffd u;
	unsigned char *data = page_buf(8192, 9);
	char *reg;
	uint64_t a;

	(void)c;
	assert_int_equal(fl_uffd_create(&u, 0, 0, 0, NULL), 0);
	reg = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	a = (uint64_t)(uintptr_t)reg;
	assert_int_equal(fl_uffd_register(u.fd, a, 8192, UFFDIO_REGISTER_MODE_MISSING,
					  NULL), 0);
	/* Misaligned address or length, zero length, bad page size. */
	assert_int_equal(fl_uffd_copy(u.fd, a + 1, data, 4096, 4096, 0, NULL), -EINVAL);
	assert_int_equal(fl_uffd_copy(u.fd, a, data, 100, 4096, 0, NULL), -EINVAL);
	assert_int_equal(fl_uffd_copy(u.fd, a, data, 0, 4096, 0, NULL), -EINVAL);
	assert_int_equal(fl_uffd_copy(u.fd, a, data, 4096, 3000, 0, NULL), -EINVAL);
	/* The kernel's own answers: a range running off the registration... */
	assert_int_equal(fl_uffd_copy(u.fd, a, data, 3 * 4096, 4096, 0, NULL) < 0, 1);
	/* ...CONTINUE on anonymous memory, which has no page cache... */
	assert_int_equal(fl_uffd_continue(u.fd, a, 4096, 4096, 0, NULL), -EINVAL);
	/* ...and registering a range that is not page aligned. */
	assert_int_equal(fl_uffd_register(u.fd, a + 512, 4096,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), -EINVAL);
	munmap(reg, 8192);
	free(data);
	fl_uffd_close(&u);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	for (size_t m = 0; m < fl_memtype_count; m++) {
		const struct memtype *t = &fl_memtypes[m];

		fl_case_add(&cases, &n, test_copy_onto_present_page_is_not_an_error,
			    t, NULL, "test_copy_onto_present_page_is_not_an_error/%s", t->name);
		fl_case_add(&cases, &n, test_partial_copy_is_continued, t, NULL,
			    "test_partial_copy_is_continued/%s", t->name);
		fl_case_add(&cases, &n, test_eexist_wakes_the_faulting_thread, t, NULL,
			    "test_eexist_wakes_the_faulting_thread/%s", t->name);
		fl_case_add(&cases, &n, test_eagain_until_pending_remove_is_read, t,
			    NULL, "test_eagain_until_pending_remove_is_read/%s", t->name);
	}
	fl_case_add(&cases, &n, test_esrch_once_the_process_exited, NULL, NULL,
		    "test_esrch_once_the_process_exited");
	fl_case_add(&cases, &n, test_enoent_outside_registered_ranges, NULL, NULL,
		    "test_enoent_outside_registered_ranges");
	fl_case_add(&cases, &n, test_einval_for_bad_ranges, NULL, NULL,
		    "test_einval_for_bad_ranges");
	return fl_run_cases(cases, n, argc, argv);
}
