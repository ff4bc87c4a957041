// SPDX-License-Identifier: MIT
/*
 * The monitor end to end: real workload processes hand their userfaultfd
 * over the control socket and then fault, fork, mremap, madvise, munmap and
 * exit; every page they read is checked against the source.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/handoff.h>

#include "harness.h"
#include "source-inject.h"
#include "toucher.h"
#include "runner.h"

#define CHECK(x) do { if (!(x)) _exit(__LINE__ % 200 + 1); } while (0)

static const struct fl_monitor_opts prefetch = { .verbose = 1 };
static const struct fl_monitor_opts faults_only = { .verbose = 1, .no_prefetch = true };

/* Reads every page in a scattered order, then checks all of it. */
static void wl_read_all(const char *sock)
{
	char *base = workload_handoff(sock);

	for (size_t k = 0; k < DATA_PAGES; k++) {
		size_t i = (k * 2654435761u) % DATA_PAGES;
		char want[PG];

		expect_page(i, want);
		CHECK(!memcmp(base + i * PG, want, PG));
	}
	CHECK(is_zero(base + DATA_PAGES * PG, ZERO_PAGES * PG));
}

static void run_one(const struct fl_monitor_opts *o, void (*wl)(const char *),
		    struct harness *h)
{
	pid_t pid;

	harness_create(h, o);
	pid = spawn(wl, h->sock);
	harness_run(h);
	assert_int_equal(wait_exit_code(pid), 0);
	harness_join(h);
}

static void test_restored_memory_equals_the_source(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_read_all, &h);
	/* Every data page read from the source exactly once, every zero page
	 * mapped without reading. */
	assert_int_equal(harness_stat(&h, "bytes_read"), DATA_PAGES * PG);
	assert_int_equal(harness_stat(&h, "pages_zeroed"), ZERO_PAGES);
	assert_int_equal(harness_stat(&h, "exit"), 1);
	if (c->a == &faults_only)
		assert_int_equal(harness_stat(&h, "pages_prefetched"), 0);
	harness_free(&h);
}

/* MADV_DONTNEED before the first touch: the pages read as zeros, not as
 * the source's data, and their neighbours keep theirs. */
static void wl_remove_then_fault(const char *sock)
{
	char *base = workload_handoff(sock);

	CHECK(madvise(base + 100 * PG, 10 * PG, MADV_DONTNEED) == 0);
	CHECK(is_zero(base + 100 * PG, 10 * PG));
	CHECK(check_pages(base, 90, 10));
	CHECK(check_pages(base, 110, 10));
	/* Written after the remove, then removed again: zeros again. */
	base[105 * PG] = 7;
	CHECK(madvise(base + 105 * PG, PG, MADV_DONTNEED) == 0);
	CHECK(is_zero(base + 105 * PG, PG));
}

static void test_remove_then_fault_gets_zero_page(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_remove_then_fault, &h);
	assert_true(harness_stat(&h, "remove") >= 2);
	harness_free(&h);
}

/* A child forked half-way sees the parent's pages (fetched ones and owed
 * ones); parent and child exit at different times. */
static void wl_fork(const char *sock)
{
	char *base = workload_handoff(sock);
	pid_t kid;
	int st;

	CHECK(check_pages(base, 0, DATA_PAGES / 2));
	kid = fork();
	CHECK(kid >= 0);
	if (kid == 0) {
		CHECK(check_pages(base, 0, DATA_PAGES));
		base[0] = 1; /* private to the child */
		_exit(0);
	}
	CHECK(check_pages(base, DATA_PAGES / 2, DATA_PAGES / 4));
	CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && !WEXITSTATUS(st));
	CHECK(check_pages(base, 0, DATA_PAGES));
}

static void test_fork_child_starts_with_parent_page_states(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_fork, &h);
	assert_int_equal(harness_stat(&h, "fork"), 1);
	assert_int_equal(harness_stat(&h, "exit"), 2);
	harness_free(&h);
}

/* mremap moves the region; owed pages are served at the new address. */
static void wl_mremap(const char *sock)
{
	char *base = workload_handoff(sock);
	char *dst = mmap(NULL, DATA_PAGES * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *moved;

	CHECK(check_pages(base, 0, 16));
	/* Move the middle half somewhere else. */
	moved = mremap(base + 1024 * PG, 2048 * PG, 2048 * PG,
		       MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	CHECK(moved == dst);
	for (size_t i = 0; i < 2048; i++) {
		char want[PG];

		expect_page(1024 + i, want);
		CHECK(!memcmp(moved + i * PG, want, PG));
	}
	CHECK(check_pages(base, 0, 1024));
	CHECK(check_pages(base, 3072, 1024));
}

static void test_mremap_moves_page_states(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_mremap, &h);
	assert_int_equal(harness_stat(&h, "remap"), 1);
	harness_free(&h);
}

/* munmap drops a range and its pending work; the rest is still served. */
static void wl_munmap(const char *sock)
{
	char *base = workload_handoff(sock);

	CHECK(munmap(base + 512 * PG, 1024 * PG) == 0);
	CHECK(check_pages(base, 0, 512));
	CHECK(check_pages(base, 1536, DATA_PAGES - 1536));
}

static void test_munmap_drops_the_range(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_munmap, &h);
	assert_true(harness_stat(&h, "unmap") >= 1);
	harness_free(&h);
}

/* Threads fault while the process exits: the monitor frees it and ends. */
static void *toucher(void *arg)
{
	char *base = arg;
	volatile char sink = 0;

	for (size_t i = 0; i < DATA_PAGES; i++)
		sink += base[((i * 7919) % DATA_PAGES) * PG];
	return NULL;
}

static void wl_exit_mid_faults(const char *sock)
{
	char *base = workload_handoff(sock);
	pthread_t t[4];

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, toucher, base);
	usleep(2000);
	_exit(0); /* with threads blocked in faults */
}

static void test_exit_with_faults_in_flight(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_exit_mid_faults, &h);
	assert_int_equal(harness_stat(&h, "exit"), 1);
	harness_free(&h);
}

/* A wrong region list is refused with the reason; a good restorer that
 * comes at the same time is served. */
static void wl_bad_regions(const char *sock)
{
	char *base = mmap(NULL, 2 * DATA_PAGES * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_handoff_region r = { (uint64_t)(uintptr_t)base, 2 * DATA_PAGES * PG, 0, 0, PG };
	struct fl_uffd u;
	char err[256] = "";

	CHECK(fl_restore_handoff(sock, &r, 1, &u, err, sizeof(err)) == -ERANGE);
	CHECK(strstr(err, "which has only") != NULL);
	r.len = PG;
	r.source_region = 7;
	CHECK(fl_restore_handoff(sock, &r, 1, &u, err, sizeof(err)) == -EINVAL);
	CHECK(strstr(err, "source region 7") != NULL);
}

/* Connects, sends half a header, disconnects. */
static void wl_disconnect_mid_handoff(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	uint32_t magic = FL_HANDOFF_MAGIC;

	strcpy(sa.sun_path, sock);
	CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(write(s, &magic, sizeof(magic)) == sizeof(magic));
	close(s);
}

static void test_bad_restorers_do_not_disturb_the_others(const struct fl_case *c)
{
	struct harness h = { 0 };
	pid_t good, bad, gone;

	(void)c;
	harness_create(&h, &prefetch);
	good = spawn(wl_read_all, h.sock);
	bad = spawn(wl_bad_regions, h.sock);
	gone = spawn(wl_disconnect_mid_handoff, h.sock);
	harness_run(&h);
	assert_int_equal(wait_exit_code(bad), 0);
	assert_int_equal(wait_exit_code(gone), 0);
	assert_int_equal(wait_exit_code(good), 0);
	harness_join(&h);
	assert_int_equal(harness_stat(&h, "handoffs"), 1);
	assert_int_equal(harness_stat(&h, "handoffs_refused"), 3);
	harness_free(&h);
}

/* An fd opened without EVENT_FORK is refused, and the restorer told why,
 * naming fork: a child would read zeros where the parent had data. The
 * same fd with the sender's word that the process never forks is served. */
static int connect_to(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, sock);
	CHECK(s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return s;
}

static void wl_no_event_fork(const char *sock)
{
	size_t len = DATA_PAGES * PG;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_handoff_region r = { (uint64_t)(uintptr_t)base, len, 0, 0, PG };
	struct fl_uffd u;
	char err[256] = "";
	int s;

	CHECK(base != MAP_FAILED);
	madvise(base, len, MADV_NOHUGEPAGE);
	CHECK(fl_uffd_create(&u, FL_UFFD_USER_MODE_ONLY, UFFD_FEATURE_THREAD_ID, 0, NULL) == 0);
	CHECK(!fl_uffd_has(&u, UFFD_FEATURE_EVENT_FORK));
	CHECK(fl_uffd_register(u.fd, r.addr, len, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0);
	s = connect_to(sock);
	CHECK(fl_handoff_send(s, &u, 0, &r, 1, err, sizeof(err)) == -EPERM);
	fprintf(stderr, "workload: %s\n", err);
	CHECK(strstr(err, "monitor refused the handoff") != NULL);
	CHECK(strstr(err, "UFFD_FEATURE_EVENT_FORK") != NULL);
	CHECK(strstr(err, "child the process forks") != NULL);
	close(s);
	s = connect_to(sock);
	CHECK(fl_handoff_send_flags(s, &u, 0, FL_HANDOFF_F_NO_FORK, &r, 1, err, sizeof(err)) == 0);
	close(s);
	CHECK(check_pages(base, 0, DATA_PAGES));
}

static void test_fd_without_event_fork_is_refused_naming_fork(const struct fl_case *c)
{
	struct harness h = { 0 };

	(void)c;
	run_one(&faults_only, wl_no_event_fork, &h);
	assert_int_equal(harness_stat(&h, "handoffs"), 1);
	assert_int_equal(harness_stat(&h, "handoffs_refused"), 1);
	assert_int_equal(harness_stat(&h, "bytes_read"), DATA_PAGES * PG);
	harness_free(&h);
}

/* Several threads read the same pages at once while the background
 * stream runs: joined faults, one read per page, every page right. */
static void *reader(void *arg)
{
	char *base = arg;
	char want[PG];

	for (size_t i = 0; i < DATA_PAGES; i += 3) {
		expect_page(i, want);
		if (memcmp(base + i * PG, want, PG))
			return (void *)1;
	}
	return NULL;
}

static void wl_threads_on_same_pages(const char *sock)
{
	char *base = workload_handoff(sock);
	pthread_t t[4];
	void *bad = NULL;

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, reader, base);
	for (int i = 0; i < 4; i++) {
		void *r;

		pthread_join(t[i], &r);
		bad = bad ? bad : r;
	}
	CHECK(!bad);
	CHECK(check_pages(base, 0, DATA_PAGES));
}

static void test_faults_race_background_copies(const struct fl_case *c)
{
	struct harness h = { 0 };

	run_one(c->a, wl_threads_on_same_pages, &h);
	/* Four threads on the same pages, the stream as well: one read each. */
	assert_int_equal(harness_stat(&h, "bytes_read"), DATA_PAGES * PG);
	harness_free(&h);
}

/* A recorded fault order is written, and replaying it restores correctly;
 * a malformed record is refused with the line that is wrong. */
static void test_record_and_replay_fault_order(const struct fl_case *c)
{
	char rec[64], err[256] = "";
	struct fl_monitor_opts o = faults_only;
	struct harness h = { 0 };
	unsigned region;
	unsigned long long off;
	size_t lines = 0;
	FILE *f;
	/* Late and reordered completions, but no pages pushed unasked: every
	 * page must be faulted to be recorded. */
	static const struct inject_opts late_only = { .seed = 3, .max_delay_us = 300 };

	(void)c;
	h.inject = &late_only;
	snprintf(rec, sizeof(rec), "/tmp/fl-test-faults-%d", getpid());
	f = fopen(rec, "we");
	assert_non_null(f);
	o.on_fault_page = fl_fault_order_append;
	o.on_fault_arg = f;
	run_one(&o, wl_read_all, &h);
	fclose(f);
	/* One line per page read from the source on a fault. */
	assert_int_equal(harness_stat(&h, "pages_copied_on_fault"), DATA_PAGES);
	harness_free(&h);
	f = fopen(rec, "re");
	assert_non_null(f);
	while (fscanf(f, "%u %llu", &region, &off) == 2) {
		assert_int_equal(region, 0);
		assert_true(off < DATA_PAGES * PG);
		lines++;
	}
	fclose(f);
	assert_int_equal(lines, DATA_PAGES);

	o = prefetch;
	{
		struct fl_region g = { .len = DATA_PAGES * PG, .page_size = PG, .name = "x" };
		struct fl_page_ref *order;
		size_t n;

		assert_int_equal(fl_fault_order_load(rec, &g, 1, &order, &n, err, sizeof(err)), 0);
		assert_int_equal(n, DATA_PAGES);
		o.replay = order;
		o.nreplay = n;
		run_one(&o, wl_read_all, &h);
		free(order);
	}
	assert_int_equal(harness_stat(&h, "bytes_read"), DATA_PAGES * PG);
	harness_free(&h);

	f = fopen(rec, "we");
	fprintf(f, "0 4096\n0 banana\n");
	fclose(f);
	{
		struct fl_region g = { .len = DATA_PAGES * PG, .page_size = PG, .name = "x" };
		struct fl_page_ref *order;
		size_t n;

		assert_int_equal(fl_fault_order_load(rec, &g, 1, &order, &n, err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "line 2"));
	}
	unlink(rec);
}

/* ---- killing the monitor ---- */

static int to_wl[2], from_wl[2];
static uint64_t wl_base;

static void *rehandoff_agent(void *arg)
{
	struct fl_uffd *u = arg;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256];
	int s;

	/* The test sends the new monitor's socket path. */
	if (read(to_wl[0], sa.sun_path, sizeof(sa.sun_path) - 1) <= 0)
		return NULL;
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) ||
	    fl_handoff_send(s, u, 0, (struct fl_handoff_region[]){
				    { wl_base, DATA_PAGES * PG, 0, 0, PG } }, 1,
			    err, sizeof(err)))
		_exit(80);
	close(s);
	return NULL;
}

static void wl_survives_monitor_death(const char *sock)
{
	size_t len = DATA_PAGES * PG;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_handoff_region r = { (uint64_t)(uintptr_t)base, len, 0, 0, PG };
	static struct fl_uffd u;
	pthread_t agent;
	char err[256];

	madvise(base, len, MADV_NOHUGEPAGE);
	CHECK(fl_restore_handoff(sock, &r, 1, &u, err, sizeof(err)) == 0);
	wl_base = (uint64_t)(uintptr_t)base;
	pthread_create(&agent, NULL, rehandoff_agent, &u);
	CHECK(check_pages(base, 0, DATA_PAGES / 2));
	CHECK(write(from_wl[1], "h", 1) == 1);
	/* The monitor is being killed now; this blocks until a new one
	 * serves us, and must never see zeros. */
	CHECK(check_pages(base, DATA_PAGES / 2, DATA_PAGES / 2));
	CHECK(check_pages(base, 0, DATA_PAGES));
}

static pid_t spawn_monitor(char *sock, size_t len)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct harness h = { 0 };

		harness_start(&h, &faults_only);
		(void)!write(p[1], h.sock, strlen(h.sock) + 1);
		harness_join(&h);
		_exit(0);
	}
	close(p[1]);
	assert_true(read(p[0], sock, len) > 0);
	close(p[0]);
	return pid;
}

static char proc_state(pid_t pid)
{
	char path[64], buf[256], *rp;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return '?';
	}
	fclose(f);
	rp = strrchr(buf, ')');
	return rp ? rp[2] : '?';
}

static void test_killed_monitor_never_exposes_zeros(const struct fl_case *c)
{
	char sock1[108] = "", sock2[108] = "", h;
	pid_t m1, m2, wl;

	(void)c;
	assert_int_equal(pipe(to_wl), 0);
	assert_int_equal(pipe(from_wl), 0);
	m1 = spawn_monitor(sock1, sizeof(sock1));
	wl = spawn(wl_survives_monitor_death, sock1);
	assert_int_equal(read(from_wl[0], &h, 1), 1); /* half the pages read */
	kill(m1, SIGKILL);
	assert_int_equal(wait_exit_code(m1), 128 + SIGKILL);
	/* The workload goes on to the owed half and blocks there (asleep
	 * within 10 s, however slow the machine). */
	for (int i = 0; i < 1000 && proc_state(wl) != 'S'; i++)
		usleep(10 * 1000);
	usleep(100 * 1000);
	assert_int_equal(proc_state(wl), 'S');
	m2 = spawn_monitor(sock2, sizeof(sock2));
	assert_int_equal(write(to_wl[1], sock2, strlen(sock2)), (ssize_t)strlen(sock2));
	assert_int_equal(wait_exit_code(wl), 0);
	assert_int_equal(wait_exit_code(m2), 0);
	unlink(sock1);
}

/* A monitor that read a fault and died before answering it: the thread
 * sleeps with no message left in the queue. The next monitor wakes every
 * waiter when it adopts the fd, so the fault comes again and is served.
 * Here the test plays the dying monitor, deterministically. */
static int dead_sv[2];

static void wl_fault_read_by_a_dead_monitor(const char *sock)
{
	size_t len = DATA_PAGES * PG;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_handoff_region r = { (uint64_t)(uintptr_t)base, len, 0, 0, PG };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fl_uffd u;
	char err[256], go;
	int s;

	CHECK(base != MAP_FAILED);
	madvise(base, len, MADV_NOHUGEPAGE);
	CHECK(fl_uffd_create(&u, 0, 0, 0, NULL) == 0);
	CHECK(fl_uffd_register(u.fd, r.addr, len, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0);
	close(dead_sv[0]);
	CHECK(fl_handoff_send(dead_sv[1], &u, 0, &r, 1, err, sizeof(err)) == 0);
	/* The first monitor goes away after reading this page's fault; the
	 * page is read on a thread so that this one can hand over again. */
	{
		struct toucher t;

		toucher_start(&t, base, PG, TOUCH_READ, 0);
		CHECK(read(dead_sv[1], &go, 1) == 1); /* the fault was read, the fd closed */
		strcpy(sa.sun_path, sock);
		s = socket(AF_UNIX, SOCK_STREAM, 0);
		CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
		/* Its fd has no EVENT_FORK: this workload never forks. */
		CHECK(fl_handoff_send_flags(s, &u, 0, FL_HANDOFF_F_NO_FORK, &r, 1, err,
					    sizeof(err)) == 0);
		toucher_join(&t);
		CHECK(!t.sigbus);
		{
			char want[PG];

			expect_page(0, want);
			CHECK(memcmp(t.seen, want, PG) == 0);
		}
		toucher_free(&t);
	}
	CHECK(check_pages(base, 0, DATA_PAGES));
	close(s);
}

static void test_fault_read_by_a_dead_monitor_is_served(const struct fl_case *c)
{
	struct fl_handoff_hdr hdr;
	struct fl_handoff_region r;
	struct fl_handoff_ack ack = { 0, 0 };
	char ctrl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &hdr, sizeof(hdr) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl,
			      .msg_controllen = sizeof(ctrl) };
	struct fl_uffd_event ev;
	struct harness h = { 0 };
	pid_t wl;
	int fd;

	(void)c;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, dead_sv), 0);
	harness_create(&h, &faults_only);
	wl = spawn(wl_fault_read_by_a_dead_monitor, h.sock);
	close(dead_sv[1]);
	/* The dying monitor: take the fd, accept, read one fault, vanish. */
	assert_int_equal(recvmsg(dead_sv[0], &msg, MSG_WAITALL), sizeof(hdr));
	assert_non_null(CMSG_FIRSTHDR(&msg));
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(fd));
	assert_int_equal(read(dead_sv[0], &r, sizeof(r)), sizeof(r));
	assert_int_equal(write(dead_sv[0], &ack, sizeof(ack)), sizeof(ack));
	wait_event(fd, &ev, 10000);
	assert_int_equal(ev.kind, FL_EVENT_PAGEFAULT);
	assert_int_equal(ev.fault.address, r.addr);
	close(fd);
	harness_run(&h);
	assert_int_equal(write(dead_sv[0], "x", 1), 1);
	assert_int_equal(wait_exit_code(wl), 0);
	harness_join(&h);
	close(dead_sv[0]);
	harness_free(&h);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(const struct fl_case *);
	} tests[] = {
		{ "test_restored_memory_equals_the_source", test_restored_memory_equals_the_source },
		{ "test_remove_then_fault_gets_zero_page", test_remove_then_fault_gets_zero_page },
		{ "test_fork_child_starts_with_parent_page_states",
		  test_fork_child_starts_with_parent_page_states },
		{ "test_mremap_moves_page_states", test_mremap_moves_page_states },
		{ "test_munmap_drops_the_range", test_munmap_drops_the_range },
		{ "test_exit_with_faults_in_flight", test_exit_with_faults_in_flight },
		{ "test_faults_race_background_copies", test_faults_race_background_copies },
	};
	struct fl_case *cases = NULL;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		fl_case_add(&cases, &n, tests[i].fn, &prefetch, NULL, "%s/prefetch", tests[i].name);
		fl_case_add(&cases, &n, tests[i].fn, &faults_only, NULL, "%s/faults_only",
			    tests[i].name);
	}
	fl_case_add(&cases, &n, test_bad_restorers_do_not_disturb_the_others, NULL, NULL,
		    "test_bad_restorers_do_not_disturb_the_others");
	fl_case_add(&cases, &n, test_killed_monitor_never_exposes_zeros, NULL, NULL,
		    "test_killed_monitor_never_exposes_zeros");
	fl_case_add(&cases, &n, test_fault_read_by_a_dead_monitor_is_served, NULL, NULL,
		    "test_fault_read_by_a_dead_monitor_is_served");
	fl_case_add(&cases, &n, test_record_and_replay_fault_order, NULL, NULL,
		    "test_record_and_replay_fault_order");
	fl_case_add(&cases, &n, test_fd_without_event_fork_is_refused_naming_fork, NULL, NULL,
		    "test_fd_without_event_fork_is_refused_naming_fork");
	return fl_run_cases(cases, n, argc, argv);
}
