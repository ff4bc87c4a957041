// SPDX-License-Identifier: MIT
/*
 * The monitor's asynchronous paths, forced: a page source that holds a
 * read back, never answers it, or fails it (tests/common/source-inject.c),
 * and a workload whose threads wait on those reads while another thread
 * takes the page away. Every case ends in bounded time with the outcome
 * DESIGN.md allows: the page installed, zeros the program asked for,
 * SIGBUS with a log line, or the process gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "runner.h"
#include "source-inject.h"

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "workload: line %d: %s\n", __LINE__, #x); _exit(__LINE__ % 200 + 1); } } while (0)

static const struct fl_monitor_opts faults_only = { .verbose = 1, .no_prefetch = true };
static const struct inject_opts quiet = { .seed = 7 }; /* only the page rules */

/* ---- a thread that reads one page, surviving a SIGSEGV to report it */

static __thread sigjmp_buf seg_jmp;
static __thread volatile int seg_armed;

static void on_segv(int sig)
{
	(void)sig;
	if (seg_armed)
		siglongjmp(seg_jmp, 1);
	_exit(120);
}

struct reader {
	const char *page;
	char got[PG];
	int segv; /* 1: the page was gone (SIGSEGV) */
};

static void *read_page(void *arg)
{
	struct reader *r = arg;

	seg_armed = 1;
	if (sigsetjmp(seg_jmp, 1)) {
		r->segv = 1;
		return NULL;
	}
	memcpy(r->got, r->page, PG);
	seg_armed = 0;
	return NULL;
}

static void start_reader(pthread_t *t, struct reader *r, const char *page)
{
	struct sigaction sa = { .sa_handler = on_segv, .sa_flags = SA_NODEFER };

	sigaction(SIGSEGV, &sa, NULL);
	memset(r, 0, sizeof(*r));
	r->page = page;
	CHECK(pthread_create(t, NULL, read_page, r) == 0);
	usleep(100 * 1000); /* it is asleep in the fault by now */
}

/* ---- running one case */

static void run_case(struct harness *h, const struct fl_monitor_opts *o,
		     void (*rules)(struct fl_source *), void (*wl)(const char *), int want_sig)
{
	pid_t pid;
	int st;

	h->inject = &quiet;
	harness_create(h, o);
	rules(h->src);
	pid = spawn(wl, h->sock);
	harness_run(h);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (want_sig) {
		if (!WIFSIGNALED(st) || WTERMSIG(st) != want_sig) {
			printf("# workload: wanted signal %d, got status %#x\n", want_sig, st);
			fail_msg("workload: wanted signal %d, got status %#x", want_sig, st);
		}
	} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fail_msg("workload: status %#x", st);
	}
	harness_join(h);
}

/* REMOVE while a thread waits on a read that never ends: the thread is
 * woken, faults again, and reads the zeros its process asked for. */
static void never_10(struct fl_source *s)
{
	inject_never_page(s, 0, 10 * PG);
}

static void wl_remove_wakes_waiter(const char *sock)
{
	char *base = workload_handoff(sock);
	struct reader r;
	pthread_t t;

	start_reader(&t, &r, base + 10 * PG);
	CHECK(madvise(base + 10 * PG, PG, MADV_DONTNEED) == 0);
	pthread_join(t, NULL);
	CHECK(!r.segv);
	CHECK(is_zero(r.got, PG));
	CHECK(check_pages(base, 0, 10)); /* the rest is still served */
}

static void test_remove_of_a_page_in_flight_wakes_its_waiter_with_zeros(const struct fl_case *c)
{
	struct harness h = { 0 };

	(void)c;
	run_case(&h, &faults_only, never_10, wl_remove_wakes_waiter, 0);
	assert_true(harness_stat(&h, "wakes") >= 1);
	/* Nobody wants the never-ending read any more: it was withdrawn. */
	assert_true(inject_cancelled(h.src) >= 1);
	assert_int_equal(inject_outstanding(h.src), 0);
	harness_free(&h);
}

/* UNMAP while a thread waits: woken, it finds the memory gone (SIGSEGV). */
static void wl_unmap_wakes_waiter(const char *sock)
{
	char *base = workload_handoff(sock);
	struct reader r;
	pthread_t t;

	start_reader(&t, &r, base + 10 * PG);
	CHECK(munmap(base + 8 * PG, 4 * PG) == 0);
	pthread_join(t, NULL);
	CHECK(r.segv);
	CHECK(check_pages(base, 0, 8));
}

static void test_unmap_of_a_page_in_flight_wakes_its_waiter(const struct fl_case *c)
{
	struct harness h = { 0 };

	(void)c;
	run_case(&h, &faults_only, never_10, wl_unmap_wakes_waiter, 0);
	assert_true(harness_stat(&h, "unmap") >= 1);
	assert_int_equal(inject_outstanding(h.src), 0);
	harness_free(&h);
}

/* REMAP while a thread waits at the old address: woken (SIGSEGV there);
 * the page, read late, lands at the new address with the source's bytes. */
static void delay_10(struct fl_source *s)
{
	inject_delay_page(s, 0, 10 * PG, 400);
}

static void wl_remap_wakes_waiter(const char *sock)
{
	char *base = workload_handoff(sock);
	char *dst = mmap(NULL, 8 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct reader r;
	pthread_t t;
	char *moved;

	start_reader(&t, &r, base + 10 * PG);
	moved = mremap(base + 8 * PG, 8 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	CHECK(moved == dst);
	pthread_join(t, NULL);
	CHECK(r.segv);
	CHECK(check_pages(moved - 8 * PG, 8, 8)); /* page 10 among them */
}

static void test_remap_of_a_page_in_flight_wakes_its_waiter(const struct fl_case *c)
{
	struct harness h = { 0 };

	(void)c;
	run_case(&h, &faults_only, delay_10, wl_remap_wakes_waiter, 0);
	assert_int_equal(harness_stat(&h, "remap"), 1);
	harness_free(&h);
}

/* ---- pages that can never come: SIGBUS, and a log line naming them */

static int log_fd = -1, saved_stderr = -1;
static char log_path[64];

static void capture_log(void)
{
	snprintf(log_path, sizeof(log_path), "/tmp/fl-async-log-%d", getpid());
	log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(log_fd >= 0);
	fflush(stderr);
	saved_stderr = dup(2);
	dup2(log_fd, 2);
}

static bool log_has(const char *a, const char *b)
{
	char buf[65536];
	ssize_t n;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	n = pread(log_fd, buf, sizeof(buf) - 1, 0);
	close(log_fd);
	unlink(log_path);
	buf[n > 0 ? n : 0] = 0;
	fputs(buf, stderr); /* keep it in the test's log too */
	fprintf(stderr, "(log above)\n");
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
		if (strstr(line, a) && strstr(line, b))
			return true;
	return false;
}

static void fail_40(struct fl_source *s)
{
	inject_fail_page(s, 0, 40 * PG, EBADMSG);
}

static void wl_read_page_40(const char *sock)
{
	char *base = workload_handoff(sock);

	signal(SIGBUS, SIG_DFL); /* the test runner's handler came with fork */
	CHECK(check_pages(base, 0, 40));
	printf("# page 40 at %p\n", (void *)(base + 40 * PG));
	fflush(stdout);
	CHECK(check_pages(base, 40, 1)); /* SIGBUS here */
	_exit(0);
}

static void test_corrupt_page_read_gets_sigbus_and_a_log_line(const struct fl_case *c)
{
	struct harness h = { 0 };
	bool logged;

	(void)c;
	capture_log();
	run_case(&h, &faults_only, fail_40, wl_read_page_40, SIGBUS);
	logged = log_has("poisoned", "Bad message");
	assert_true(logged);
	assert_true(harness_stat(&h, "pages_poisoned") >= 1);
	harness_free(&h);
}

static void never_40(struct fl_source *s)
{
	inject_never_page(s, 0, 40 * PG);
}

static void test_source_silent_past_the_deadline_gets_sigbus(const struct fl_case *c)
{
	struct fl_monitor_opts o = faults_only;
	struct harness h = { 0 };
	struct timespec t0, t1;
	bool logged;

	(void)c;
	o.read_deadline_ms = 300;
	capture_log();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run_case(&h, &o, never_40, wl_read_page_40, SIGBUS);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	logged = log_has("poisoned", "timed out");
	assert_true(logged);
	assert_true(t1.tv_sec - t0.tv_sec < 30); /* bounded, not asleep for ever */
	assert_int_equal(inject_outstanding(h.src), 0);
	harness_free(&h);
}

/* An fd set up the way CRIU sets it up: no UFFD_FEATURE_POISON asked for,
 * no THREAD_ID, handed over as is. A child forked after the handoff (the
 * FORK event names no pid on an unpatched kernel) and its parent each
 * touch the page that can never come: each gets SIGBUS, neither sleeps
 * (before, the monitor could only kill, and without a pid not even that). */
static void wl_criu_style_fork_reads_page_40(const char *sock)
{
	struct fl_handoff_region r[2];
	char *base = workload_map(r);
	size_t len = (DATA_PAGES + ZERO_PAGES) * PG;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256];
	struct fl_uffd u;
	int s, st;
	pid_t c;

	CHECK(fl_uffd_create(&u, 0, UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			     UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP, 0, NULL) == 0);
	CHECK(!fl_uffd_has(&u, UFFD_FEATURE_POISON));
	CHECK(fl_uffd_register(u.fd, (uint64_t)(uintptr_t)base, len,
			       UFFDIO_REGISTER_MODE_MISSING, NULL) == 0);
	strcpy(sa.sun_path, sock);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	if (fl_handoff_send(s, &u, 0, r, 2, err, sizeof(err))) {
		fprintf(stderr, "workload: %s\n", err);
		_exit(91);
	}
	close(s);
	signal(SIGBUS, SIG_DFL);
	CHECK(check_pages(base, 0, 40));
	c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		alarm(20); /* a child left asleep shows as SIGALRM, not a hang */
		CHECK(check_pages(base, 40, 1)); /* SIGBUS here */
		_exit(0);
	}
	CHECK(waitpid(c, &st, 0) == c);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGBUS) {
		fprintf(stderr, "workload: the child ended with status %#x, not SIGBUS\n", st);
		_exit(92);
	}
	alarm(20);
	CHECK(check_pages(base, 40, 1)); /* SIGBUS here too */
	_exit(0);
}

static void test_fd_without_poison_feature_still_gets_sigbus_in_fork_child(const struct fl_case *c)
{
	struct harness h = { 0 };
	bool logged;

	(void)c;
	capture_log();
	run_case(&h, &faults_only, fail_40, wl_criu_style_fork_reads_page_40, SIGBUS);
	logged = log_has("poisoned", "Bad message");
	assert_true(logged);
	assert_true(harness_stat(&h, "pages_poisoned") >= 2);
	assert_int_equal(harness_stat(&h, "killed"), 0);
	harness_free(&h);
}

/* ---- teardown with reads in flight */

static void wl_block_forever(const char *sock)
{
	char *base = workload_handoff(sock);
	volatile char x = base[40 * PG]; /* never answered */

	(void)x;
	_exit(0);
}

static void test_destroy_with_reads_in_flight_cancels_them(const struct fl_case *c)
{
	struct harness h = { 0 };
	pid_t pid;

	(void)c;
	h.inject = &quiet;
	harness_create(&h, &faults_only);
	never_40(h.src);
	pid = spawn(wl_block_forever, h.sock);
	harness_run(&h);
	for (int i = 0; i < 500 && inject_outstanding(h.src) == 0; i++)
		usleep(10 * 1000);
	assert_true(inject_outstanding(h.src) >= 1);
	fl_monitor_stop(h.mon);
	harness_join(&h);
	fl_handoff_server_destroy(h.srv);
	h.srv = NULL;
	fl_monitor_destroy(h.mon);
	h.mon = NULL;
	/* Nothing of the monitor's is left in the source. */
	assert_int_equal(inject_outstanding(h.src), 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	harness_free(&h);
}

/* ---- EAGAIN that outlives the event: the retry queue's timer ends it */

struct churn {
	char *base;
	unsigned seed;
	volatile int *stop;
	int bad;
};

static void *fault_many(void *arg)
{
	struct churn *w = arg;
	char want[PG];

	while (!*w->stop) {
		size_t i = 64 + rand_r(&w->seed) % (DATA_PAGES - 64);

		expect_page(i, want);
		if (memcmp(w->base + i * PG, want, PG))
			w->bad++;
	}
	return NULL;
}

static void wl_faults_race_removes(const char *sock)
{
	char *base = workload_handoff(sock);
	volatile int stop = 0;
	struct churn w[6];
	pthread_t t[6];
	struct timespec t0, now;

	for (int i = 0; i < 6; i++) {
		w[i] = (struct churn){ base, (unsigned)i + 1, &stop, 0 };
		CHECK(pthread_create(&t[i], NULL, fault_many, &w[i]) == 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do { /* pages 0..63: removed, then read as zeros, over and over */
		for (size_t p = 0; p < 64; p++) {
			CHECK(madvise(base + p * PG, PG, MADV_DONTNEED) == 0);
			CHECK(is_zero(base + p * PG, PG));
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - t0.tv_sec < 2);
	stop = 1;
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		CHECK(!w[i].bad);
	}
}

static void test_faults_racing_removes_without_prefetch_all_end(const struct fl_case *c)
{
	static const struct inject_opts noisy = { .seed = 11, .max_delay_us = 500,
						  .unasked_permille = 30, .split_permille = 30 };
	struct harness h = { 0 };
	pid_t pid;

	(void)c;
	h.inject = &noisy;
	harness_create(&h, &faults_only);
	pid = spawn(wl_faults_race_removes, h.sock);
	harness_run(&h);
	assert_int_equal(wait_exit_code(pid), 0);
	harness_join(&h);
	printf("# %llu EAGAIN, %llu timer retries, %llu wakes\n",
	       (unsigned long long)harness_stat(&h, "eagain"),
	       (unsigned long long)harness_stat(&h, "retries"),
	       (unsigned long long)harness_stat(&h, "wakes"));
	harness_free(&h);
}

/* The helper's FL_TEST_INSTALL_HELD_FILE: it creates this path when a run
 * starts waiting and path.tried once it has tried that run. */
static char held_path[64];

static const char *held_mark(char *buf, size_t len, const char *suffix)
{
	snprintf(buf, len, "%s%s", held_path, suffix);
	return buf;
}

static void held_unlink(void)
{
	char buf[80];

	unlink(held_mark(buf, sizeof(buf), ""));
	unlink(held_mark(buf, sizeof(buf), ".tried"));
}

/* In a workload: wait (at most 30 s, however slow the machine) until the
 * helper says so; the race a case sets up is then really there. */
static void wait_helper(const char *suffix)
{
	char buf[80];
	const char *path = held_mark(buf, sizeof(buf), suffix);

	for (int i = 0; i < 6000 && access(path, F_OK); i++)
		usleep(5000);
	CHECK(access(path, F_OK) == 0);
}

/* Run workload wl against a monitor with one install helper whose runs
 * each wait delay_us first, behind source io, one prefetch read at a
 * time (so the run the helper holds is the one the workload races). */
static void run_with_helper(struct harness *h, const struct inject_opts *io,
			    const char *delay_us, void (*wl)(const char *))
{
	static const struct fl_monitor_opts prefetch = { .verbose = 1, .bg_inflight = 1 };
	pid_t pid;

	snprintf(held_path, sizeof(held_path), "/tmp/fl-test-held.%d", (int)getpid());
	held_unlink();
	setenv("FAULTLINE_INSTALL_THREADS", "1", 1);
	setenv("FL_TEST_INSTALL_DELAY_US", delay_us, 1);
	setenv("FL_TEST_INSTALL_HELD_FILE", held_path, 1);
	h->inject = io;
	harness_create(h, &prefetch);
	unsetenv("FAULTLINE_INSTALL_THREADS");
	unsetenv("FL_TEST_INSTALL_DELAY_US");
	unsetenv("FL_TEST_INSTALL_HELD_FILE");
	pid = spawn(wl, h->sock);
	harness_run(h);
	assert_int_equal(wait_exit_code(pid), 0);
	harness_join(h);
	held_unlink();
}

/* The install helper holds a pushed copy of pages 0..N (FL_TEST_INSTALL_DELAY_US
 * keeps it waiting) when the program throws page 5 away: the helper must
 * not bring page 5's old bytes back after the kernel zapped it. */
static void wl_remove_beats_the_helper(const char *sock)
{
	char *base = workload_handoff(sock);

	wait_helper(""); /* the prefetch's push is with the helper */
	CHECK(madvise(base + 5 * PG, PG, MADV_DONTNEED) == 0);
	wait_helper(".tried"); /* past the helper's wait: it tried */
	CHECK(is_zero(base + 5 * PG, PG));
	CHECK(check_pages(base, 4, 1));
	CHECK(check_pages(base, 6, 1));
}

static void test_remove_while_the_install_helper_holds_a_push_leaves_zeros(const struct fl_case *c)
{
	static const struct inject_opts pushy = { .seed = 5, .max_delay_us = 1000,
						  .unasked_permille = 1000,
						  .hold_after_push_us = 3000000 };
	struct harness h = { 0 };

	(void)c;
	run_with_helper(&h, &pushy, "400000", wl_remove_beats_the_helper);
	assert_true(harness_stat(&h, "remove") >= 1);
	harness_free(&h);
}

/* The same with a prefetch read the helper holds (no push): its run goes
 * stale at the REMOVE, and the monitor installs the rest itself, with
 * page 5 left to zeros. */
static void wl_remove_then_read_all(const char *sock)
{
	char *base = workload_handoff(sock);

	wait_helper(""); /* the prefetch read is with the helper */
	CHECK(madvise(base + 5 * PG, PG, MADV_DONTNEED) == 0);
	wait_helper(".tried");
	CHECK(is_zero(base + 5 * PG, PG));
	CHECK(check_pages(base, 0, 5));
	CHECK(check_pages(base, 6, 26));
}

static void test_remove_while_the_install_helper_holds_a_read_retries_the_rest(const struct fl_case *c)
{
	static const struct inject_opts calm = { .seed = 6, .max_delay_us = 1000 };
	struct harness h = { 0 };

	(void)c;
	run_with_helper(&h, &calm, "400000", wl_remove_then_read_all);
	assert_true(harness_stat(&h, "remove") >= 1);
	assert_true(harness_stat(&h, "pages_prefetched") >= 1);
	/* Went back to the monitor whole: no page was left owed unread. */
	assert_int_equal(harness_stat(&h, "reads_reissued"), 0);
	harness_free(&h);
}

/* A fault on a page whose read the helper holds (it waits 30 s here):
 * the bytes are here, so the monitor installs the page and the next ones
 * itself, with no read of its own to hurry it. */
static void wl_read_what_the_helper_holds(const char *sock)
{
	char *base = workload_handoff(sock);

	wait_helper(""); /* the first prefetch read is with the helper */
	CHECK(check_pages(base, 7, 16));
}

static void test_fault_on_a_page_the_install_helper_holds_is_served_from_its_bytes(const struct fl_case *c)
{
	static const struct inject_opts calm = { .seed = 8, .max_delay_us = 1000 };
	struct harness h = { 0 };

	(void)c;
	run_with_helper(&h, &calm, "30000000", wl_read_what_the_helper_holds);
	assert_int_equal(harness_stat(&h, "faults_hurried"), 0);
	assert_int_equal(harness_stat(&h, "bytes_read_again"), 0);
	harness_free(&h);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_remove_of_a_page_in_flight_wakes_its_waiter_with_zeros);
	FL_ADD(test_unmap_of_a_page_in_flight_wakes_its_waiter);
	FL_ADD(test_remap_of_a_page_in_flight_wakes_its_waiter);
	FL_ADD(test_corrupt_page_read_gets_sigbus_and_a_log_line);
	FL_ADD(test_source_silent_past_the_deadline_gets_sigbus);
	FL_ADD(test_fd_without_poison_feature_still_gets_sigbus_in_fork_child);
	FL_ADD(test_destroy_with_reads_in_flight_cancels_them);
	FL_ADD(test_faults_racing_removes_without_prefetch_all_end);
	FL_ADD(test_remove_while_the_install_helper_holds_a_push_leaves_zeros);
	FL_ADD(test_remove_while_the_install_helper_holds_a_read_retries_the_rest);
	FL_ADD(test_fault_on_a_page_the_install_helper_holds_is_served_from_its_bytes);
	return fl_run_cases(cases, n, argc, argv);
}
