// SPDX-License-Identifier: MIT
/*
 * The destination's receiver against a scripted source on loopback: what
 * arrived is served (also after the source hangs up), zero ranges are
 * known zero, owed pages that can no longer arrive fail, never as zeros.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline/migrate.h>

#include "memtypes.h"
#include "runner.h"

#define PG 4096u
#define NPAGES 16

static int port;

static void hello(struct fl_conn *c, uint32_t kind)
{
	struct fl_ctl m = { .type = FL_CTL_HELLO };
	struct fl_wire_hdr h;
	char err[256];

	m.hello.version = FL_WIRE_VERSION;
	m.hello.role = FL_ROLE_SOURCE;
	m.hello.conn = kind;
	memset(m.hello.session, 7, 16);
	assert_int_equal(fl_conn_send_ctl(c, &m), 0);
	assert_int_equal(fl_conn_recv(c, &h, &m, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(m.type, FL_CTL_HELLO);
	fl_ctl_free(&m);
}

/* Connect both of a source's connections to the receiver, say hello on
 * each, and send the region table (NPAGES pages). */
static void connect_source_len(struct fl_conn **ctl, struct fl_conn **urg, uint64_t len)
{
	struct fl_tls_config plain = { .plain = true };
	struct fl_region g = { .start = 0x10000000, .len = len, .page_size = PG,
			       .prot = 3, .name = "ram" };
	struct fl_ctl m = { .type = FL_CTL_REGIONS };
	char addr[32], err[256];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	assert_int_equal(fl_conn_connect(ctl, addr, &plain, err, sizeof(err)), 0);
	hello(*ctl, FL_CONN_CONTROL);
	assert_int_equal(fl_conn_connect(urg, addr, &plain, err, sizeof(err)), 0);
	hello(*urg, FL_CONN_URGENT);
	m.regions.regions = &g;
	m.regions.n = 1;
	assert_int_equal(fl_conn_send_ctl(*ctl, &m), 0);
}

static void connect_source(struct fl_conn **ctl, struct fl_conn **urg)
{
	connect_source_len(ctl, urg, NPAGES * PG);
}

/* Pages 0-7 data, 8-11 zero, 12-15 owed; resume; then hang up. */
static void *fake_source(void *arg)
{
	struct fl_conn *ctl, *urg;
	struct fl_ctl m;
	uint8_t owed[2] = { 0, 0xf0 };
	char page[PG];

	(void)arg;
	connect_source(&ctl, &urg);
	for (unsigned i = 0; i < 8; i++) {
		fill_pattern(page, PG, i + 100);
		assert_int_equal(fl_conn_send_pages(ctl, 0, i * PG, page, PG, 0), 0);
	}
	assert_int_equal(fl_conn_send_zero(ctl, 0, 8 * PG, 4 * PG, 0), 0);
	m = (struct fl_ctl){ .type = FL_CTL_OWED };
	m.owed.npages = NPAGES;
	m.owed.bitmap = owed;
	assert_int_equal(fl_conn_send_ctl(ctl, &m), 0);
	m = (struct fl_ctl){ .type = FL_CTL_RESUME };
	assert_int_equal(fl_conn_send_ctl(ctl, &m), 0);
	usleep(100 * 1000);
	fl_conn_close(ctl); /* the source dies here */
	fl_conn_close(urg);
	return NULL;
}

static void done_cb(struct fl_source_req *req, void *arg)
{
	(void)req;
	(*(int *)arg)++;
}

static int fetch(struct fl_source *s, uint64_t page, void *buf, bool urgent)
{
	struct fl_source_req q = { .region = 0, .offset = page * PG, .len = PG,
				   .urgent = urgent, .result = 1 };
	int n = 0;

	assert_int_equal(fl_source_submit(s, &q), 0);
	fl_source_flush(s);
	while (!n) {
		struct pollfd p = { .fd = s->event_fd, .events = POLLIN };

		assert_int_equal(poll(&p, 1, 10000), 1);
		fl_source_reap(s, done_cb, &n);
	}
	if (q.result == 0)
		memcpy(buf, q.data, PG); /* by reference: the source's bytes */
	fl_source_release(s, &q);
	return q.result;
}

/* Listen, start `source` on its thread, accept it and wait for its
 * switch-over. */
static struct fl_receiver *receive_from(void *(*source)(void *), void *arg, int verbose,
					pthread_t *th, int *lfd)
{
	struct fl_tls_config plain = { .plain = true };
	struct fl_receiver *r;
	char err[256];

	*lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	assert_true(*lfd >= 0);
	assert_int_equal(pthread_create(th, NULL, source, arg), 0);
	assert_int_equal(fl_receiver_accept(&r, *lfd, &plain, verbose, err, sizeof(err)), 0);
	assert_int_equal(fl_receiver_wait_resume(r, NULL, NULL, err, sizeof(err)), 0);
	return r;
}

static void test_received_pages_served_even_after_the_source_dies(const struct fl_case *c)
{
	struct fl_receiver *r;
	struct fl_source *s;
	pthread_t th;
	char buf[PG], want[PG];
	int lfd;

	(void)c;
	r = receive_from(fake_source, NULL, 0, &th, &lfd);
	assert_int_equal(fl_receiver_owed(r), 4);
	s = fl_receiver_source(r);
	assert_int_equal(fetch(s, 3, buf, true), 0);
	fill_pattern(want, PG, 103);
	assert_memory_equal(buf, want, PG);
	assert_int_equal(fl_source_zero_run(s, 0, 8 * PG, 16 * PG), 4 * PG);
	assert_int_equal(fl_source_zero_run(s, 0, 12 * PG, PG), 0);
	pthread_join(th, NULL);
	usleep(100 * 1000); /* the receive threads have seen the hang-up */
	memset(buf, 0xaa, PG);
	assert_int_equal(fetch(s, 5, buf, false), 0); /* still served */
	fill_pattern(want, PG, 105);
	assert_memory_equal(buf, want, PG);
	memset(buf, 0xaa, PG);
	assert_int_equal(fetch(s, 13, buf, true), -ECONNRESET); /* owed, gone */
	for (size_t i = 0; i < PG; i++) /* and the buffer is untouched */
		assert_int_equal((unsigned char)buf[i], 0xaa);
	fl_receiver_destroy(r);
	close(lfd);
}

/* A source that resumes the destination and then says nothing more, its
 * connections open: no pages, no pings (a hung process, a path dropping
 * everything). */
static void *silent_source(void *arg)
{
	struct fl_conn *ctl, *urg;
	struct fl_ctl m;
	uint8_t owed[2] = { 0xff, 0xff };
	volatile int *stop = arg;

	connect_source(&ctl, &urg);
	m = (struct fl_ctl){ .type = FL_CTL_OWED };
	m.owed.npages = NPAGES;
	m.owed.bitmap = owed;
	assert_int_equal(fl_conn_send_ctl(ctl, &m), 0);
	m = (struct fl_ctl){ .type = FL_CTL_RESUME };
	assert_int_equal(fl_conn_send_ctl(ctl, &m), 0);
	while (!*stop)
		usleep(10000);
	fl_conn_close(ctl);
	fl_conn_close(urg);
	return NULL;
}

/* The source goes silent after the switch-over: within the heartbeat's
 * silence limit the receiver gives it up, and a page still owed fails
 * (never zeros, never a wait for ever). */
static void test_a_silent_source_is_given_up_in_seconds(const struct fl_case *c)
{
	struct fl_receiver *r;
	struct timespec t0, t1;
	volatile int stop = 0;
	pthread_t th;
	char buf[PG];
	int lfd;

	(void)c;
	r = receive_from(silent_source, (void *)&stop, 1, &th, &lfd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(fetch(fl_receiver_source(r), 5, buf, true), -ECONNRESET);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# given up after %.1f s (silence limit %d s)\n",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       FL_WIRE_SILENCE_S);
	assert_true(t1.tv_sec - t0.tv_sec <= FL_WIRE_SILENCE_S + 3);
	stop = 1;
	pthread_join(th, NULL);
	fl_receiver_destroy(r);
	close(lfd);
}

/* Connect to the receiver's port; send `bytes` (or nothing) and keep the
 * connection open. Returns the fd. */
static int stray(const char *bytes)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	if (bytes)
		assert_int_equal(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
	return fd;
}

/* A garbage client and a silent one connect before the source: each is
 * refused (the silent one after the hello deadline) and the source that
 * comes next is accepted and served. */
static void test_garbage_and_silent_connections_before_the_source_cost_nothing(
	const struct fl_case *c)
{
	struct fl_tls_config plain = { .plain = true };
	struct fl_receiver *r;
	pthread_t th;
	char err[256], buf[PG], want[PG];
	int lfd, garbage, silent;

	(void)c;
	lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	assert_true(lfd >= 0);
	garbage = stray("GET / HTTP/1.0\r\n\r\nthis is not a faultline source\n");
	silent = stray(NULL);
	assert_int_equal(pthread_create(&th, NULL, fake_source, NULL), 0);
	assert_int_equal(fl_receiver_accept(&r, lfd, &plain, 1, err, sizeof(err)), 0);
	assert_int_equal(fl_receiver_wait_resume(r, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(fetch(fl_receiver_source(r), 3, buf, true), 0);
	fill_pattern(want, PG, 103);
	assert_memory_equal(buf, want, PG);
	pthread_join(th, NULL);
	fl_receiver_destroy(r);
	close(garbage);
	close(silent);
	close(lfd);
}

/* The pushed stream after the switch-over: more frames than the ring
 * holds, in a scattered order, every page owed. */
#define PUSH_FRAME (1u << 20)
#define PUSH_FRAMES 48u
#define PUSH_BYTES ((uint64_t)PUSH_FRAME * PUSH_FRAMES)
#define PIECE (256u << 10) /* receiver.c's OFFER_PIECE */

static uint64_t push_frame_at(unsigned i)
{
	return (uint64_t)(i * 29 % PUSH_FRAMES) * PUSH_FRAME;
}

static void *pushing_source(void *arg)
{
	struct fl_conn *ctl, *urg;
	struct fl_ctl m;
	uint8_t *owed = malloc(PUSH_BYTES / PG / 8);
	char *frame = malloc(PUSH_FRAME);

	(void)arg;
	connect_source_len(&ctl, &urg, PUSH_BYTES);
	memset(owed, 0xff, PUSH_BYTES / PG / 8);
	m = (struct fl_ctl){ .type = FL_CTL_OWED };
	m.owed.npages = PUSH_BYTES / PG;
	m.owed.bitmap = owed;
	assert_int_equal(fl_conn_send_ctl(ctl, &m), 0);
	m = (struct fl_ctl){ .type = FL_CTL_RESUME };
	assert_int_equal(fl_conn_send_ctl(ctl, &m), 0);
	for (unsigned i = 0; i < PUSH_FRAMES; i++) {
		uint64_t at = push_frame_at(i);

		for (uint64_t o = 0; o < PUSH_FRAME; o += PG)
			fill_pattern(frame + o, PG, (at + o) / PG + 1000);
		assert_int_equal(fl_conn_send_pages(ctl, 0, at, frame, PUSH_FRAME, 0), 0);
	}
	usleep(200 * 1000);
	fl_conn_close(ctl);
	fl_conn_close(urg);
	free(frame);
	free(owed);
	return NULL;
}

struct offers {
	struct fl_source_req *got[4096];
	size_t n;
};

static void offer_cb(struct fl_source_req *req, void *arg)
{
	struct offers *o = arg;

	assert_true(req->unasked);
	assert_true(o->n < 4096);
	o->got[o->n++] = req;
}

static bool page_is(const char *p, uint64_t page)
{
	char want[PG];

	fill_pattern(want, PG, page + 1000);
	return memcmp(p, want, PG) == 0;
}

/* Frames pushed after the switch-over are offered with their bytes (by
 * reference into the receive ring); what the monitor hands back as not
 * installed is kept, so a later request reads the same bytes; a monitor
 * that stops reading for a while does not stop the stream (frames then
 * land in staging); every page ends up counted as here. */
static void test_pushed_frames_beyond_the_ring_are_offered_and_kept(const struct fl_case *c)
{
	struct offers *o = calloc(1, sizeof(*o));
	struct fl_receiver *r;
	struct fl_source *s;
	uint64_t offered = 0;
	size_t pieces = 0, whole = 0;
	pthread_t th;
	char buf[PG];
	int lfd;

	(void)c;
	r = receive_from(pushing_source, NULL, 0, &th, &lfd);
	s = fl_receiver_source(r);
	/* Read nothing at first: the ring fills, and the stream goes on into
	 * staging. */
	usleep(400 * 1000);
	while (offered < PUSH_BYTES) {
		struct pollfd p = { .fd = s->event_fd, .events = POLLIN };

		assert_int_equal(poll(&p, 1, 10000), 1);
		o->n = 0;
		fl_source_reap(s, offer_cb, o);
		for (size_t i = 0; i < o->n; i++) {
			struct fl_source_req *q = o->got[i];

			for (uint64_t off = 0; off < q->len; off += PG)
				assert_true(page_is((const char *)q->data + off, (q->offset + off) / PG));
			offered += q->len;
			/* Every other piece of the ring's: "installed"; the rest:
			 * nobody took it, keep it. */
			q->installed = q->len == PIECE && (q->offset / PIECE) % 2 == 0;
			pieces += q->len == PIECE;
			whole += q->len == PUSH_FRAME;
			q->result = 0;
			fl_source_release(s, q);
		}
	}
	assert_int_equal(offered, PUSH_BYTES);
	assert_int_equal(fl_receiver_owed(r), 0);
	pthread_join(th, NULL);
	/* Both ways were taken: pieces of frames from the ring, and whole
	 * frames that landed in staging while the ring was full. */
	printf("# %zu pieces from the ring, %zu frames through staging\n", pieces, whole);
	assert_true(pieces > 0 && whole > 0);
	/* Pages kept are served from staging, after the source is gone. */
	for (uint64_t page = 0; page < PUSH_BYTES / PG; page++) {
		if ((page * PG / PIECE) % 2 == 0)
			continue; /* installed: nobody reads these again */
		memset(buf, 0xaa, PG);
		assert_int_equal(fetch(s, page, buf, false), 0);
		assert_true(page_is(buf, page));
	}
	fl_receiver_destroy(r);
	close(lfd);
	free(o);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_received_pages_served_even_after_the_source_dies);
	FL_ADD(test_garbage_and_silent_connections_before_the_source_cost_nothing);
	FL_ADD(test_a_silent_source_is_given_up_in_seconds);
	FL_ADD(test_pushed_frames_beyond_the_ring_are_offered_and_kept);
	return fl_run_cases(cases, n, argc, argv);
}
