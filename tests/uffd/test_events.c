// SPDX-License-Identifier: MIT
/*
 * Non-cooperative events: a child process registers its memory, hands its
 * userfaultfd to us (the monitor), then faults, forks, mremaps, madvises
 * (DONTNEED) and munmaps that memory and exits. Before each step it tells
 * us what it is about to do; the decoded events must match, in order.
 */
#include <errno.h>
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

#define PG 4096UL
#define NPAGES 16

/* What the child announces before each step. */
struct step {
	enum fl_uffd_event_kind kind; /* 0: done, about to exit */
	uint64_t a, b, c;	      /* per kind: see child() */
	uint32_t tid;
};

static void announce(int sock, enum fl_uffd_event_kind kind, uint64_t a,
		     uint64_t b, uint64_t c)
{
	struct step s = { kind, a, b, c, (uint32_t)gettid() };

	if (write(sock, &s, sizeof(s)) != sizeof(s))
		_exit(10);
}

static int check_page(const char *p, uint64_t seed)
{
	unsigned char want[PG];

	fill_pattern(want, PG, seed);
	return memcmp(p, want, PG) ? -1 : 0;
}

/* The program being followed. Exit status: 0 if everything it read back
 * was right. */
static void child(int sock, const struct memtype *t)
{
	uint64_t want = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			UFFD_FEATURE_THREAD_ID | t->features;
	struct fl_uffd u;
	struct region r;
	char *dst;
	uint64_t a, b;
	pid_t pid;
	int st;

	if (fl_uffd_create(&u, 0, 0, want, NULL))
		_exit(2);
	region_map(&r, t, NPAGES);
	a = region_page(&r, 0);
	if (fl_uffd_register(u.fd, a, r.len, UFFDIO_REGISTER_MODE_MISSING, NULL))
		_exit(3);
	if (send_fd(sock, u.fd, &a, sizeof(a)))
		_exit(4);
	fl_uffd_close(&u); /* the monitor has it now */

	/* 1. a read fault, resolved by the monitor with pattern 1 */
	announce(sock, FL_EVENT_PAGEFAULT, a, 0, 0);
	if (check_page(r.addr, 1))
		_exit(5);
	/* 2. a write fault on page 1 */
	announce(sock, FL_EVENT_PAGEFAULT, a + r.page, FL_FAULT_WRITE, 0);
	r.addr[r.page] = 1;
	/* 3. fork: the grandchild exits at once */
	announce(sock, FL_EVENT_FORK, 0, 0, 0);
	pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		_exit(6);
	/* 4. mremap the whole region to a new place */
	dst = mmap(NULL, r.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = (uint64_t)(uintptr_t)dst;
	/* Seen on 6.18: after REMAP the kernel also reports the old range as
	 * unmapped. A monitor must move page states on REMAP first, so that
	 * this UNMAP finds nothing left to drop. */
	announce(sock, FL_EVENT_REMAP, a, b, r.len);
	announce(sock, FL_EVENT_UNMAP, a, a + r.len, 0);
	if (mremap(r.addr, r.len, r.len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != dst)
		_exit(7);
	if (check_page(dst, 1)) /* contents moved with it */
		_exit(8);
	/* 5. MADV_DONTNEED pages 4-5 */
	announce(sock, FL_EVENT_REMOVE, b + 4 * r.page, b + 6 * r.page, 0);
	if (madvise(dst + 4 * r.page, 2 * r.page, MADV_DONTNEED))
		_exit(9);
	/* 6. munmap pages 8-11 */
	announce(sock, FL_EVENT_UNMAP, b + 8 * r.page, b + 12 * r.page, 0);
	if (munmap(dst + 8 * r.page, 4 * r.page))
		_exit(11);
	announce(sock, 0, 0, 0, 0);
	_exit(0);
}

static void test_events_match_what_the_child_did(const struct fl_case *c)
{
	const struct memtype *t = c->a;
	unsigned char data[PG];
	int sv[2], fd, status;
	uint64_t base, last = 0;
	struct fl_uffd probe;
	pid_t pid;

	if (t->hugetlb) /* page-size arithmetic below is for 4 KiB pages */
		fl_skip("events are followed at 4 KiB granularity here");
	uffd_or_skip(&probe, t->features | UFFD_FEATURE_EVENT_FORK);
	fl_uffd_close(&probe);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		child(sv[1], t);
	}
	close(sv[1]);
	assert_int_equal(recv_fd(sv[0], &fd, &base, sizeof(base)), 0);
	for (;;) {
		struct step s;
		struct fl_uffd_event ev;

		recv_all(sv[0], &s, sizeof(s));
		if (!s.kind)
			break;
		wait_event(fd, &ev, 10000);
		assert_string_equal(fl_uffd_event_name(ev.kind), fl_uffd_event_name(s.kind));
		switch (s.kind) {
		case FL_EVENT_PAGEFAULT:
			assert_int_equal(ev.fault.address, s.a);
			assert_int_equal(ev.fault.flags & FL_FAULT_WRITE, s.b);
			assert_int_equal(ev.fault.tid, s.tid);
			fill_pattern(data, PG, 1 + (s.a - base) / PG);
			assert_int_equal(fl_uffd_copy(fd, s.a, data, PG, PG, 0, NULL), 0);
			break;
		case FL_EVENT_FORK:
			assert_true(ev.fork.ufd >= 0);
			assert_true(ev.fork.ufd != fd);
			close(ev.fork.ufd);
			break;
		case FL_EVENT_REMAP:
			assert_int_equal(ev.remap.from, s.a);
			assert_int_equal(ev.remap.to, s.b);
			assert_int_equal(ev.remap.len, s.c);
			last = s.b;
			break;
		case FL_EVENT_REMOVE:
		case FL_EVENT_UNMAP:
			assert_int_equal(ev.range.start, s.a);
			assert_int_equal(ev.range.end, s.b);
			break;
		default:
			fail();
		}
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Exit sends no event (upstream has none): the fd reads empty and
	 * resolving answers ESRCH. */
	{
		struct fl_uffd_event ev;

		assert_int_equal(fl_uffd_read_events(fd, &ev, 1), 0);
	}
	assert_int_equal(fl_uffd_copy(fd, last, data, PG, PG, 0, NULL), -ESRCH);
	close(fd);
	close(sv[0]);
}

/* Decoding, message by message, of what the kernel can send. */
static void test_decode_every_message_type(const struct fl_case *c)
{
	struct uffd_msg m;
	struct fl_uffd_event ev;

	(void)c;
	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_PAGEFAULT;
	m.arg.pagefault.address = 0x7000;
	m.arg.pagefault.flags = UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP;
	m.arg.pagefault.feat.ptid = 42;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.kind, FL_EVENT_PAGEFAULT);
	assert_int_equal(ev.fault.address, 0x7000);
	assert_int_equal(ev.fault.flags, FL_FAULT_WRITE | FL_FAULT_WP);
	assert_int_equal(ev.fault.tid, 42);
	m.arg.pagefault.flags = UFFD_PAGEFAULT_FLAG_MINOR;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.fault.flags, FL_FAULT_MINOR);

	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_FORK;
	m.arg.fork.ufd = 17;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.kind, FL_EVENT_FORK);
	assert_int_equal(ev.fork.ufd, 17);
	assert_int_equal(ev.fork.pid, 0); /* kernels without patch 3 */
	/* patch 3: the child's pid in the 32 bits after ufd */
	m.arg.reserved.reserved1 = 17 | (uint64_t)4242 << 32;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.fork.ufd, 17);
	assert_int_equal(ev.fork.pid, 4242);

	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_REMAP;
	m.arg.remap.from = 1 << 20;
	m.arg.remap.to = 2 << 20;
	m.arg.remap.len = 3 << 12;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.kind, FL_EVENT_REMAP);
	assert_int_equal(ev.remap.from, 1 << 20);
	assert_int_equal(ev.remap.to, 2 << 20);
	assert_int_equal(ev.remap.len, 3 << 12);

	for (int i = 0; i < 2; i++) {
		memset(&m, 0, sizeof(m));
		m.event = i ? UFFD_EVENT_UNMAP : UFFD_EVENT_REMOVE;
		m.arg.remove.start = 0x10000;
		m.arg.remove.end = 0x20000;
		fl_uffd_decode(&m, &ev);
		assert_int_equal(ev.kind, i ? FL_EVENT_UNMAP : FL_EVENT_REMOVE);
		assert_int_equal(ev.range.start, 0x10000);
		assert_int_equal(ev.range.end, 0x20000);
	}

	memset(&m, 0, sizeof(m));
	m.event = UFFD_EVENT_EXIT; /* faultline's kernel patch 1 */
	m.arg.reserved.reserved1 = 4321; /* the pid: first 32 bits of arg */
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.kind, FL_EVENT_EXIT);
	assert_int_equal(ev.exit.pid, 4321);
	assert_false(ev.exit.exec);
	/* flags: the 32 bits after the pid; UFFD_EXIT_FLAG_EXEC after execve() */
	m.arg.reserved.reserved1 = 4321 | (uint64_t)UFFD_EXIT_FLAG_EXEC << 32;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.exit.pid, 4321);
	assert_true(ev.exit.exec);

	memset(&m, 0, sizeof(m));
	m.event = 0x7f;
	fl_uffd_decode(&m, &ev);
	assert_int_equal(ev.kind, FL_EVENT_UNKNOWN);
	assert_int_equal(ev.unknown.type, 0x7f);
}

/* Many pending faults come back from one read. */
static void test_one_read_returns_many_faults(const struct fl_case *c)
{
	enum { N = 8 };
	struct fl_uffd u;
	struct region r;
	struct toucher th[N];
	struct fl_uffd_event ev[N];
	unsigned char data[PG] = { 0 };
	int got = 0, n;

	(void)c;
	uffd_or_skip(&u, 0);
	region_map(&r, &fl_memtypes[0], N);
	assert_int_equal(fl_uffd_register(u.fd, region_page(&r, 0), r.len,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	for (int i = 0; i < N; i++)
		toucher_start(&th[i], r.addr + i * PG, PG, TOUCH_READ, 0);
	/* Let all of them block, then drain with as few reads as possible. */
	while (got < N) {
		uint64_t seen = 0;

		assert_true(event_pending(u.fd, 10000));
		usleep(100 * 1000);
		n = fl_uffd_read_events(u.fd, ev, N);
		assert_true(n > 0);
		for (int i = 0; i < n; i++) {
			uint64_t page = (ev[i].fault.address - region_page(&r, 0)) / PG;

			assert_int_equal(ev[i].kind, FL_EVENT_PAGEFAULT);
			assert_true(page < N);
			seen |= 1ULL << page;
			assert_int_equal(fl_uffd_copy(u.fd, ev[i].fault.address, data, PG,
						      PG, 0, NULL), 0);
		}
		if (got == 0)
			assert_true(n > 1); /* one read() returned several */
		got += n;
		(void)seen;
	}
	for (int i = 0; i < N; i++) {
		toucher_join(&th[i]);
		toucher_free(&th[i]);
	}
	fl_uffd_close(&u);
	region_unmap(&r);
}

/* On kernels with faultline's patch 1, a process's exit arrives as an
 * event carrying its pid, and the exit is never held up by the monitor. */
static void test_exit_event_reports_the_pid(const struct fl_case *c)
{
	uint64_t offered = 0;
	struct fl_uffd_event ev;
	int sv[2], fd, status;
	uint64_t addr;
	pid_t pid;

	(void)c;
	assert_int_equal(fl_uffd_probe(0, &offered, NULL), 0);
	if (!(offered & UFFD_FEATURE_EVENT_EXIT))
		fl_skip("kernel lacks UFFD_FEATURE_EVENT_EXIT (faultline kernel patch 1); "
			"exits are found with pidfds and ESRCH instead");
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct fl_uffd u;
		char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		close(sv[0]);
		if (fl_uffd_create(&u, 0, UFFD_FEATURE_EVENT_EXIT, 0, NULL) ||
		    fl_uffd_register(u.fd, (uint64_t)(uintptr_t)p, 4 * PG,
				     UFFDIO_REGISTER_MODE_MISSING, NULL))
			_exit(1);
		addr = (uint64_t)(uintptr_t)p;
		_exit(send_fd(sv[1], u.fd, &addr, sizeof(addr)) ? 2 : 0);
	}
	close(sv[1]);
	assert_int_equal(recv_fd(sv[0], &fd, &addr, sizeof(addr)), 0);
	/* The child exits without waiting for us to read anything. */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	wait_event(fd, &ev, 10000);
	assert_int_equal(ev.kind, FL_EVENT_EXIT);
	assert_int_equal(ev.exit.pid, pid);
	close(fd);
	close(sv[0]);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	for (size_t m = 0; m < fl_memtype_count; m++)
		if (!fl_memtypes[m].hugetlb)
			fl_case_add(&cases, &n, test_events_match_what_the_child_did,
				    &fl_memtypes[m], NULL,
				    "test_events_match_what_the_child_did/%s",
				    fl_memtypes[m].name);
	fl_case_add(&cases, &n, test_decode_every_message_type, NULL, NULL,
		    "test_decode_every_message_type");
	fl_case_add(&cases, &n, test_one_read_returns_many_faults, NULL, NULL,
		    "test_one_read_returns_many_faults");
	fl_case_add(&cases, &n, test_exit_event_reports_the_pid, NULL, NULL,
		    "test_exit_event_reports_the_pid");
	return fl_run_cases(cases, n, argc, argv);
}
