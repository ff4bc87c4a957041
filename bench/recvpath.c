// SPDX-License-Identifier: MIT
/*
 * The migration receiver's data path, two ways, on the same loopback TCP
 * stream of wire-like frames (a 32-byte header naming where the payload
 * goes, then 1 MiB of pages written straight into a staging area):
 *
 * - blocking: a thread reads the header, then the payload, with read()
 *   (what src/transport/receiver.c does before the switch-over);
 * - ring: the same, each payload into a reused 16 MiB ring (what it does
 *   with the pushed stream after the switch-over);
 * - io_uring: the same reads as IORING_OP_RECV for the header and
 *   IORING_OP_READ_FIXED into the staging area registered as a fixed
 *   buffer (pinned once, no per-call page lookups).
 *
 * The payload's place is known only once its header is read, so each frame
 * is two dependent reads either way; the figure says whether io_uring's
 * fixed buffers pay for its submission round trips.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define FRAME (1u << 20)

struct frame_hdr {
	uint64_t offset;
	uint32_t len;
	uint32_t pad[5];
};

struct feeder {
	int fd;
	size_t total;
	char *src;
};

/* The sender: frames in a scattered order over the staging area. */
static void *feed(void *arg)
{
	struct feeder *f = arg;
	size_t frames = f->total / FRAME;

	for (size_t i = 0; i < frames; i++) {
		struct frame_hdr h = { .offset = (i * 7919 % frames) * FRAME, .len = FRAME };
		size_t done = 0;

		if (write(f->fd, &h, sizeof(h)) != sizeof(h))
			break;
		while (done < FRAME) {
			ssize_t n = write(f->fd, f->src + done, FRAME - done);

			if (n <= 0)
				return NULL;
			done += (size_t)n;
		}
	}
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

static int read_full(int fd, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static int rx_blocking(int fd, char *staging, size_t total)
{
	struct frame_hdr h;

	for (size_t got = 0; got < total; got += FRAME) {
		if (read_full(fd, &h, sizeof(h)) || h.len != FRAME || h.offset > total - FRAME ||
		    read_full(fd, staging + h.offset, h.len))
			return -1;
	}
	return 0;
}

/* The receiver's way after the switch-over: the same reads, into a 16 MiB
 * ring used again and again (on a host that builds a mapping the first
 * time the kernel writes each user page, this is what avoids that). */
#define RX_RING (16u << 20)

static int rx_ring(int fd, char *ring, size_t total)
{
	struct frame_hdr h;

	for (size_t got = 0; got < total; got += FRAME) {
		if (read_full(fd, &h, sizeof(h)) || h.len != FRAME || h.offset > total - FRAME ||
		    read_full(fd, ring + got % RX_RING, h.len))
			return -1;
	}
	return 0;
}

/* One operation, waited for; short reads are continued. */
static int ring_read(struct io_uring *ring, int fd, char *buf, size_t len, bool fixed)
{
	for (size_t done = 0; done < len;) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		struct io_uring_cqe *cqe;
		int res;

		if (fixed)
			io_uring_prep_read_fixed(sqe, fd, buf + done, (unsigned)(len - done), 0, 0);
		else
			io_uring_prep_recv(sqe, fd, buf + done, len - done, MSG_WAITALL);
		if (io_uring_submit_and_wait(ring, 1) < 1 || io_uring_wait_cqe(ring, &cqe))
			return -1;
		res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		if (res <= 0)
			return -1;
		done += (size_t)res;
	}
	return 0;
}

static int rx_uring(int fd, char *staging, size_t total, const char **why)
{
	struct io_uring ring;
	struct iovec iov = { staging, total };
	struct frame_hdr h;
	int ret = -1;

	if (io_uring_queue_init(8, &ring, 0)) {
		*why = "io_uring_queue_init failed";
		return -1;
	}
	if (io_uring_register_buffers(&ring, &iov, 1)) {
		*why = "cannot register the staging area (RLIMIT_MEMLOCK?)";
		goto out;
	}
	for (size_t got = 0; got < total; got += FRAME) {
		if (ring_read(&ring, fd, (char *)&h, sizeof(h), false) || h.len != FRAME ||
		    h.offset > total - FRAME ||
		    ring_read(&ring, fd, staging + h.offset, h.len, true)) {
			*why = "a read failed";
			goto out;
		}
	}
	ret = 0;
out:
	io_uring_queue_exit(&ring);
	return ret;
}

/* GB/s of one transfer of `total` bytes received the given way. */
static double run(size_t total, int how, const char **why)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s = -1;
	char *staging = mmap(NULL, total, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	char *src = mmap(NULL, FRAME, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct feeder f = { .total = total, .src = src };
	pthread_t th;
	uint64_t t0, t1;
	double gbps = -1;
	int ret;

	*why = "socket set-up failed";
	if (ls < 0 || c < 0 || staging == MAP_FAILED || src == MAP_FAILED ||
	    bind(ls, (void *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (void *)&sa, &sl) || connect(c, (void *)&sa, sizeof(sa)) ||
	    (s = accept(ls, NULL, NULL)) < 0)
		goto out;
	memset(src, 0x5a, FRAME);
	f.fd = c;
	t0 = now_ns();
	pthread_create(&th, NULL, feed, &f);
	ret = how == 1 ? rx_uring(s, staging, total, why) :
	      how == 2 ? rx_ring(s, staging, total) : rx_blocking(s, staging, total);
	if (ret)
		shutdown(s, SHUT_RDWR); /* unblock the feeder */
	pthread_join(th, NULL);
	t1 = now_ns();
	if (!ret && staging[how == 2 ? RX_RING - 1 : total - 1] == 0x5a)
		gbps = (double)total / (double)(t1 - t0);
	else if (!ret)
		*why = "the data did not arrive";
out:
	if (s >= 0)
		close(s);
	close(c);
	close(ls);
	if (staging != MAP_FAILED)
		munmap(staging, total);
	if (src != MAP_FAILED)
		munmap(src, FRAME);
	return gbps;
}

void bench_recv_path(struct table *t, const struct bench_opts *o)
{
	size_t total = o->mib << 20;
	double v[3][32];
	const char *why[3] = { "", "", "" };
	static const char *const name[3] = { "receive frames: read() into staging",
					     "receive frames: io_uring fixed buf",
					     "receive frames: read() into a ring" };
	static const char *const how[3] = { " (before the switch-over)", "",
					    " (after the switch-over)" };

	total -= total % FRAME;
	if (total < RX_RING)
		total = RX_RING;
	for (int r = 0; r < o->reps; r++)
		for (int k = 0; k < 3; k++)
			v[k][r] = run(total, k, &why[k]);
	for (int k = 0; k < 3; k++) {
		struct row *row = table_add(t, name[k], "1 MiB");
		double g = median(v[k], o->reps);

		if (g <= 0) {
			snprintf(row->note, sizeof(row->note), "not measured: %s", why[k]);
			continue;
		}
		row->gbps = g;
		row->ns_per_page = 4096.0 / g;
		snprintf(row->note, sizeof(row->note), "%.0f%% of loopback TCP%s",
			 100.0 * g / t->tcp_gbps, how[k]);
	}
}
