// SPDX-License-Identifier: MIT
/*
 * The handoff layer without a monitor: a server on this test's own event
 * loop, restorers in forked children. What each protocol produces (the one
 * struct fl_handoff), refusals told to the restorer and reported to the
 * caller, and the restorer's userfaultfd: POISON asked for, EVENT_FORK
 * never dropped without the caller's word.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/handoff.h>

#include "handoff.h"
#include "runner.h"

#define PG 4096UL
#define CHECK(x)                                                                        \
	do {                                                                            \
		if (!(x)) {                                                             \
			fprintf(stderr, "restorer: %s:%d: %s\n", __FILE__, __LINE__, #x); \
			_exit(1);                                                       \
		}                                                                       \
	} while (0)

/* What the server handed to accept / reported refused (parent side). */
static struct {
	int accepted, refused, refused_status;
	char refused_why[256];
	struct fl_handoff h; /* copy, without fd */
	struct fl_handoff_region r[4];
	int answer;	      /* what accept returns */
	const char *answer_why;
} seen;

static int accept_fn(void *arg, struct fl_handoff *h, char *err, size_t errlen)
{
	(void)arg;
	seen.accepted++;
	seen.h = *h;
	seen.h.uffd = -1;
	seen.h.regions = NULL;
	memcpy(seen.r, h->regions, (h->nregions < 4 ? h->nregions : 4) * sizeof(seen.r[0]));
	if (seen.answer)
		snprintf(err, errlen, "%s", seen.answer_why);
	return seen.answer; /* the server closes the fd: nothing will fault */
}

static void refused_fn(void *arg, pid_t peer, int status, const char *why)
{
	(void)arg;
	(void)peer;
	seen.refused++;
	seen.refused_status = status;
	snprintf(seen.refused_why, sizeof(seen.refused_why), "%s", why);
}

struct server {
	struct event_base *base;
	struct fl_handoff_server *srv;
	char sock[108];
};

static void server_start(struct server *s, enum fl_handoff_proto proto,
			 const struct fl_handoff_file_part *parts, size_t nparts)
{
	struct fl_handoff_server_opts o = { .verbose = 1, .refused = refused_fn,
					    .file_parts = parts, .nfile_parts = nparts,
					    .source_kind = "memory-file" };
	char err[256] = "";

	memset(&seen, 0, sizeof(seen));
	s->base = event_base_new();
	assert_non_null(s->base);
	snprintf(s->sock, sizeof(s->sock), "/tmp/fl-test-handoff-%d.sock", getpid());
	if (fl_handoff_server_create(&s->srv, s->base, s->sock, proto, &o, accept_fn, NULL, err,
				     sizeof(err)))
		fail_msg("server: %s", err);
}

/* Serve until the restorer child exits; returns its exit code. */
static int serve_until_exit(struct server *s, pid_t pid)
{
	for (int i = 0; i < 30000; i++) {
		int st;

		event_base_loop(s->base, EVLOOP_NONBLOCK);
		if (waitpid(pid, &st, WNOHANG) == pid) {
			event_base_loop(s->base, EVLOOP_NONBLOCK);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		usleep(1000);
	}
	kill(pid, SIGKILL);
	fail_msg("the restorer did not finish in 30 s");
	return -1;
}

static void server_stop(struct server *s)
{
	fl_handoff_server_destroy(s->srv);
	assert_int_equal(access(s->sock, F_OK), -1); /* the socket file is gone */
	event_base_free(s->base);
}

static pid_t restorer(void (*fn)(const char *sock), const char *sock)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		fn(sock);
		_exit(0);
	}
	return pid;
}

static uint64_t map_region(struct fl_handoff_region *r, size_t pages)
{
	char *base = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);

	CHECK(base != MAP_FAILED);
	*r = (struct fl_handoff_region){ .addr = (uint64_t)(uintptr_t)base, .len = pages * PG,
					 .page_size = PG };
	return r->addr;
}

static int connect_to(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, sock);
	CHECK(s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return s;
}

static bool may_fork_and_serve_kernel_faults(void)
{
	struct fl_uffd_privilege p;

	fl_uffd_privilege_check(&p);
	return p.event_fork && p.kernel_faults;
}

/* ---- fl_restore_handoff: what the fd was opened with ---- */

static void rs_restore(const char *sock)
{
	static const struct fl_restore_opts lenient = { .allow_no_fork = true,
							.allow_user_mode_only = true };
	struct fl_handoff_region r[2];
	struct fl_uffd u;
	char err[256] = "";

	map_region(&r[0], 4);
	map_region(&r[1], 2);
	r[1].source_region = 1;
	r[1].source_offset = 8 * PG;
	/* Unprivileged, the strict call cannot work: the same code path,
	 * allowed to accept less, still has to ask for POISON. */
	if (may_fork_and_serve_kernel_faults())
		CHECK(fl_restore_handoff(sock, r, 2, &u, err, sizeof(err)) == 0);
	else
		CHECK(fl_restore_handoff_opts(sock, r, 2, &lenient, &u, err, sizeof(err)) == 0);
	/* The restorer's own record agrees with what the server saw. */
	CHECK(fl_uffd_has(&u, UFFD_FEATURE_POISON));
	fl_uffd_close(&u);
}

static void test_restore_handoff_asks_for_poison(const struct fl_case *c)
{
	uint64_t offered = 0;
	struct server s;
	pid_t pid;

	(void)c;
	assert_int_equal(fl_uffd_probe(FL_UFFD_USER_MODE_ONLY, &offered, NULL), 0);
	if (!(offered & UFFD_FEATURE_POISON))
		fl_skip("this kernel has no UFFD_FEATURE_POISON (6.6+)");
	server_start(&s, FL_HANDOFF_FAULTLINE, NULL, 0);
	pid = restorer(rs_restore, s.sock);
	assert_int_equal(serve_until_exit(&s, pid), 0);
	assert_int_equal(seen.accepted, 1);
	assert_int_equal(seen.refused, 0);
	assert_true(seen.h.features & UFFD_FEATURE_POISON);
	assert_int_equal(seen.h.proto, FL_HANDOFF_FAULTLINE);
	assert_int_equal(seen.h.pid, pid); /* pid 0 on the wire: the sender */
	assert_int_equal(seen.h.peer, pid);
	assert_int_equal(seen.h.nfds, 1);
	assert_int_equal(seen.h.nregions, 2);
	assert_int_equal(seen.r[0].len, 4 * PG);
	assert_int_equal(seen.r[1].source_region, 1);
	assert_int_equal(seen.r[1].source_offset, 8 * PG);
	if (may_fork_and_serve_kernel_faults()) {
		assert_true(seen.h.features & UFFD_FEATURE_EVENT_FORK);
		assert_int_equal(seen.h.flags, 0);
	}
	server_stop(&s);
}

/* ---- without CAP_SYS_PTRACE: EVENT_FORK is not dropped silently ---- */

static void drop_cap_sys_ptrace(void)
{
	cap_value_t ptrace = CAP_SYS_PTRACE;
	cap_t caps = cap_get_proc();

	CHECK(caps);
	CHECK(cap_set_flag(caps, CAP_EFFECTIVE, 1, &ptrace, CAP_CLEAR) == 0);
	CHECK(cap_set_proc(caps) == 0);
	cap_free(caps);
}

static void rs_without_ptrace(const char *sock)
{
	static const struct fl_restore_opts no_fork = { .allow_no_fork = true };
	static const struct fl_restore_opts both = { .allow_no_fork = true,
						     .allow_user_mode_only = true };
	struct fl_uffd_privilege p;
	struct fl_handoff_region r;
	struct fl_uffd u;
	char err[1024] = "";

	map_region(&r, 4);
	drop_cap_sys_ptrace();
	fl_uffd_privilege_check(&p);
	CHECK(!p.event_fork);
	/* The strict default: refused before anything is sent, naming the
	 * feature, the cause and the fixes. */
	CHECK(fl_restore_handoff(sock, &r, 1, &u, err, sizeof(err)) == -EPERM);
	fprintf(stderr, "restorer (strict): %s\n", err);
	CHECK(strstr(err, "UFFD_FEATURE_EVENT_FORK"));
	CHECK(strstr(err, "fork"));
	CHECK(strstr(err, "CAP_SYS_PTRACE"));
	CHECK(strstr(err, "allow_no_fork"));
	CHECK(u.fd == -1);
	/* Accepting unserved fork children: a full fd where the device or the
	 * sysctl allows it, else a refusal naming those fixes. */
	if (p.kernel_faults) {
		CHECK(fl_restore_handoff_opts(sock, &r, 1, &no_fork, &u, err, sizeof(err)) == 0);
		CHECK(!fl_uffd_has(&u, UFFD_FEATURE_EVENT_FORK));
		CHECK(!(u.open_flags & FL_UFFD_USER_MODE_ONLY));
		_exit(10);
	}
	CHECK(fl_restore_handoff_opts(sock, &r, 1, &no_fork, &u, err, sizeof(err)) == -EPERM);
	fprintf(stderr, "restorer (no fork): %s\n", err);
	CHECK(strstr(err, "vm.unprivileged_userfaultfd"));
	CHECK(strstr(err, "/dev/userfaultfd"));
	CHECK(strstr(err, "allow_user_mode_only"));
	CHECK(fl_restore_handoff_opts(sock, &r, 1, &both, &u, err, sizeof(err)) == 0);
	CHECK(u.open_flags & FL_UFFD_USER_MODE_ONLY);
	_exit(11);
}

static void test_without_cap_sys_ptrace_fork_is_refused_unless_accepted(const struct fl_case *c)
{
	struct fl_uffd_privilege p;
	struct server s;
	pid_t pid;
	int code;

	(void)c;
	fl_uffd_privilege_check(&p);
	if (!p.cap_sys_ptrace)
		fl_skip("needs CAP_SYS_PTRACE to start with, to take it away (run as root)");
	server_start(&s, FL_HANDOFF_FAULTLINE, NULL, 0);
	pid = restorer(rs_without_ptrace, s.sock);
	code = serve_until_exit(&s, pid);
	assert_true(code == 10 || code == 11);
	/* Only the accepted call reached the server, and said so. */
	assert_int_equal(seen.accepted, 1);
	assert_int_equal(seen.h.flags, FL_HANDOFF_F_NO_FORK);
	assert_false(seen.h.features & UFFD_FEATURE_EVENT_FORK);
	server_stop(&s);
}

/* ---- refusals ---- */

static void rs_refused_by_accept(const char *sock)
{
	struct fl_handoff_region r;
	struct fl_uffd u;
	char err[256] = "";

	map_region(&r, 1);
	CHECK(fl_uffd_create(&u, FL_UFFD_USER_MODE_ONLY, 0, 0, NULL) == 0);
	CHECK(fl_uffd_register(u.fd, r.addr, r.len, UFFDIO_REGISTER_MODE_MISSING, NULL) == 0);
	{
		int s = connect_to(sock);

		CHECK(fl_handoff_send_flags(s, &u, 0, FL_HANDOFF_F_NO_FORK, &r, 1, err,
					    sizeof(err)) == -ERANGE);
		close(s);
	}
	CHECK(strstr(err, "monitor refused the handoff: not today, region 0 is too big"));
	/* The server closed its copy before answering: our memory may be
	 * registered with another userfaultfd at once. */
	{
		struct fl_uffd v;

		fl_uffd_close(&u);
		CHECK(fl_uffd_create(&v, FL_UFFD_USER_MODE_ONLY, 0, 0, NULL) == 0);
		CHECK(fl_uffd_register(v.fd, r.addr, r.len, UFFDIO_REGISTER_MODE_MISSING,
				       NULL) == 0);
		fl_uffd_close(&v);
	}
}

/* accept's own refusal goes back to the restorer with its reason, and is
 * not reported as refused-before-accept (accept counts its own). */
static void test_accept_refusal_reaches_the_restorer(const struct fl_case *c)
{
	struct server s;
	pid_t pid;

	(void)c;
	server_start(&s, FL_HANDOFF_FAULTLINE, NULL, 0);
	seen.answer = -ERANGE;
	seen.answer_why = "not today, region 0 is too big";
	pid = restorer(rs_refused_by_accept, s.sock);
	assert_int_equal(serve_until_exit(&s, pid), 0);
	assert_int_equal(seen.accepted, 1);
	assert_int_equal(seen.refused, 0);
	assert_int_equal(seen.h.flags, FL_HANDOFF_F_NO_FORK);
	server_stop(&s);
}

/* Sends one raw header (no fd) and reads the answer's text. */
static void rs_raw_header(const char *sock)
{
	struct fl_handoff_hdr h = { .magic = FL_HANDOFF_MAGIC, .version = FL_HANDOFF_VERSION,
				    .nregions = 1, .flags = 1u << 7 };
	struct fl_handoff_ack ack;
	char text[256] = "";
	int s = connect_to(sock);

	if (getenv("FL_BAD_MAGIC"))
		h.magic = 0x12345678;
	send_all(s, &h, sizeof(h));
	recv_all(s, &ack, sizeof(ack));
	CHECK(ack.status == -EPROTO && ack.msglen < sizeof(text));
	recv_all(s, text, ack.msglen);
	CHECK(strstr(text, getenv("FL_BAD_MAGIC") ? "bad magic" : "unknown handoff flags 0x80"));
}

static void test_bad_headers_are_refused_and_reported(const struct fl_case *c)
{
	struct server s;
	pid_t pid;

	(void)c;
	server_start(&s, FL_HANDOFF_FAULTLINE, NULL, 0);
	pid = restorer(rs_raw_header, s.sock);
	assert_int_equal(serve_until_exit(&s, pid), 0);
	assert_int_equal(seen.refused, 1);
	assert_int_equal(seen.refused_status, -EPROTO);
	assert_non_null(strstr(seen.refused_why, "unknown handoff flags"));
	setenv("FL_BAD_MAGIC", "1", 1);
	pid = restorer(rs_raw_header, s.sock);
	assert_int_equal(serve_until_exit(&s, pid), 0);
	unsetenv("FL_BAD_MAGIC");
	assert_int_equal(seen.refused, 2);
	assert_non_null(strstr(seen.refused_why, "bad magic"));
	assert_int_equal(seen.accepted, 0);
	server_stop(&s);
}

/* ---- Firecracker: the same struct, regions in the source's terms ---- */

static void rs_firecracker(const char *sock)
{
	struct fl_handoff_region r[2];
	struct fl_uffd u;
	char msg[512];
	int s, len;

	map_region(&r[0], 4);
	map_region(&r[1], 2);
	/* As Firecracker does: EVENT_REMOVE only, UFFDIO_API done. */
	CHECK(fl_uffd_create(&u, FL_UFFD_USER_MODE_ONLY, UFFD_FEATURE_EVENT_REMOVE, 0, NULL) == 0);
	len = snprintf(msg, sizeof(msg),
		       "[{\"base_host_virt_addr\": %llu, \"size\": %llu, \"offset\": 0, "
		       "\"page_size\": 4096}, {\"base_host_virt_addr\": %llu, \"size\": %llu, "
		       "\"offset\": %lu, \"page_size_kib\": 4096}]",
		       (unsigned long long)r[0].addr, (unsigned long long)r[0].len,
		       (unsigned long long)r[1].addr, (unsigned long long)r[1].len, 10 * PG);
	s = connect_to(sock);
	CHECK(send_fd(s, u.fd, msg, (size_t)len) == 0);
	/* Nothing is answered on success: the server just closes. */
	CHECK(read(s, msg, sizeof(msg)) == 0);
	close(s);
	fl_uffd_close(&u);
}

static void test_firecracker_regions_become_source_regions(const struct fl_case *c)
{
	/* The memory file in two pieces: 8 pages, then 8 more. */
	static const struct fl_handoff_file_part parts[2] = { { 8 * PG, PG }, { 8 * PG, PG } };
	struct server s;
	pid_t pid;

	(void)c;
	server_start(&s, FL_HANDOFF_FIRECRACKER, parts, 2);
	pid = restorer(rs_firecracker, s.sock);
	assert_int_equal(serve_until_exit(&s, pid), 0);
	assert_int_equal(seen.accepted, 1);
	assert_int_equal(seen.h.proto, FL_HANDOFF_FIRECRACKER);
	assert_int_equal(seen.h.features, UFFD_FEATURE_EVENT_REMOVE);
	assert_int_equal(seen.h.flags, FL_HANDOFF_F_FEATURES_ASSUMED | FL_HANDOFF_F_NO_FORK);
	assert_int_equal(seen.h.pid, pid);
	assert_int_equal(seen.h.nregions, 2);
	assert_int_equal(seen.r[0].source_region, 0);
	assert_int_equal(seen.r[0].source_offset, 0);
	assert_int_equal(seen.r[1].source_region, 1); /* file bytes 10..12 pages */
	assert_int_equal(seen.r[1].source_offset, 2 * PG);
	assert_int_equal(seen.r[1].len, 2 * PG);
	server_stop(&s);
}

static void test_firecracker_server_needs_the_file_layout(const struct fl_case *c)
{
	struct event_base *base = event_base_new();
	struct fl_handoff_server *srv;
	char err[256] = "";

	(void)c;
	assert_int_equal(fl_handoff_server_create(&srv, base, "/tmp/fl-test-no-layout.sock",
						  FL_HANDOFF_FIRECRACKER, NULL, accept_fn, NULL,
						  err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "layout"));
	assert_null(srv);
	event_base_free(base);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_restore_handoff_asks_for_poison);
	FL_ADD(test_without_cap_sys_ptrace_fork_is_refused_unless_accepted);
	FL_ADD(test_accept_refusal_reaches_the_restorer);
	FL_ADD(test_bad_headers_are_refused_and_reported);
	FL_ADD(test_firecracker_regions_become_source_regions);
	FL_ADD(test_firecracker_server_needs_the_file_layout);
	return fl_run_cases(cases, n, argc, argv);
}
