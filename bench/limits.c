// SPDX-License-Identifier: MIT
/*
 * The machine's limits: memcpy bandwidth, one loopback TCP stream and
 * AES-128-GCM on one core (what a TLS stream can carry at most per core).
 * What new memory costs is measured before them, in cold.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static double memcpy_gbps(size_t len, int reps)
{
	char *a = map(len), *b = map(len);
	double v[32];

	if (!a || !b)
		return -1;
	memset(a, 1, len);
	for (int r = 0; r < reps; r++) {
		uint64_t t0 = now_ns();

		memcpy(b, a, len);
		v[r] = (double)len / (double)(now_ns() - t0);
	}
	munmap(a, len);
	munmap(b, len);
	return median(v, reps);
}

struct sink {
	int fd;
	size_t total;
};

static void *drain(void *arg)
{
	struct sink *s = arg;
	char *buf = malloc(1 << 20);
	ssize_t n;

	while (buf && (n = read(s->fd, buf, 1 << 20)) > 0)
		s->total += (size_t)n;
	free(buf);
	return NULL;
}

/* MSG_ZEROCOPY completions waiting on c's error queue: reaped; whether
 * the kernel said it copied the bytes after all (loopback does). */
static void zc_reap(int c, bool *copied)
{
	for (;;) {
		char ctl[128];
		struct msghdr mh = { .msg_control = ctl, .msg_controllen = sizeof(ctl) };
		struct cmsghdr *cm;

		if (recvmsg(c, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			return;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			struct sock_extended_err *e = (void *)CMSG_DATA(cm);

			if (e->ee_origin == SO_EE_ORIGIN_ZEROCOPY &&
			    (e->ee_code & SO_EE_CODE_ZEROCOPY_COPIED))
				*copied = true;
		}
	}
}

/* One loopback stream of len bytes in 1 MiB writes; with zc, sent with
 * MSG_ZEROCOPY (copied says whether the kernel copied anyway). */
static double tcp_gbps(size_t len, bool zc, bool *copied)
{
	int one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	struct sink s = { -1, 0 };
	char *buf = map(1 << 20);
	pthread_t th;
	uint64_t t0, t1;
	size_t sent = 0;

	if (ls < 0 || c < 0 || !buf || bind(ls, (void *)&sa, sizeof(sa)) ||
	    listen(ls, 1) || getsockname(ls, (void *)&sa, &sl) ||
	    connect(c, (void *)&sa, sizeof(sa)))
		return -1;
	if (zc && setsockopt(c, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)))
		return -1;
	s.fd = accept(ls, NULL, NULL);
	pthread_create(&th, NULL, drain, &s);
	t0 = now_ns();
	while (sent < len) {
		ssize_t n = zc ? send(c, buf, 1 << 20, MSG_ZEROCOPY) : write(c, buf, 1 << 20);

		if (zc)
			zc_reap(c, copied);
		if (n < 0 && zc && errno == ENOBUFS)
			continue; /* too many completions pending: reaped above */
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	shutdown(c, SHUT_WR);
	pthread_join(th, NULL);
	t1 = now_ns();
	close(c);
	close(s.fd);
	close(ls);
	munmap(buf, 1 << 20);
	return (double)s.total / (double)(t1 - t0);
}

/* A thread that answers each byte with one byte, until EOF. */
static void *echo(void *arg)
{
	int fd = *(int *)arg;
	char b;

	while (read(fd, &b, 1) == 1 && write(fd, &b, 1) == 1)
		;
	return NULL;
}

/* The loopback TCP round trip (one byte there and back, TCP_NODELAY), n
 * times: p50 and p99 in microseconds. A fault reply can never come back
 * faster than this. Returns -1 where it cannot run. */
static int tcp_rtt_us(int n, double *p50, double *p99)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1, s = -1, done = 0;
	double *v = calloc((size_t)n, sizeof(*v));
	pthread_t th;

	if (ls < 0 || c < 0 || !v || bind(ls, (void *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (void *)&sa, &sl) || connect(c, (void *)&sa, sizeof(sa)) ||
	    (s = accept(ls, NULL, NULL)) < 0 ||
	    pthread_create(&th, NULL, echo, &s)) {
		free(v);
		return -1;
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (; done < n; done++) {
		uint64_t t0 = now_ns();
		char b = 1;

		if (write(c, &b, 1) != 1 || read(c, &b, 1) != 1)
			break;
		v[done] = (double)(now_ns() - t0) / 1000.0;
	}
	shutdown(c, SHUT_WR);
	pthread_join(th, NULL);
	close(c);
	close(s);
	close(ls);
	if (done == n) {
		*p50 = percentile(v, (size_t)n, 50);
		*p99 = percentile(v, (size_t)n, 99);
	}
	free(v);
	return done == n ? 0 : -1;
}

/* GB/s of AES-128-GCM sealing 16 KiB records (TLS's largest) on one core. */
static double aes_gcm_gbps(size_t len)
{
	static const unsigned char key[16], iv[12];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	size_t rec = 16384, done = 0;
	unsigned char *in = map(rec), *out = map(rec + 32), tag[16];
	uint64_t t0;
	int n;

	if (!c || !in || !out)
		return -1;
	memset(in, 7, rec);
	t0 = now_ns();
	while (done < len) {
		if (EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, iv) != 1 ||
		    EVP_EncryptUpdate(c, out, &n, in, (int)rec) != 1 ||
		    EVP_EncryptFinal_ex(c, out + n, &n) != 1 ||
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
			break;
		done += rec;
	}
	t0 = now_ns() - t0;
	EVP_CIPHER_CTX_free(c);
	munmap(in, rec);
	munmap(out, rec + 32);
	return done < len ? -1 : (double)done / (double)t0;
}

/* KiB this guest has handed back to its host as free (free page
 * reporting), or -1 where the kernel does not report. */
void bench_limits(struct table *t, const struct bench_opts *o)
{
	struct row *r;
	size_t len = o->mib << 20;

	t->memcpy_gbps = memcpy_gbps(len, o->reps);
	r = table_add(t, "memcpy (DRAM to DRAM)", "-");
	r->gbps = t->memcpy_gbps;
	r->ns_per_page = 4096.0 / t->memcpy_gbps;
	snprintf(r->note, sizeof(r->note), "limit for page installs");

	t->tcp_gbps = tcp_gbps(len * 4, false, NULL);
	r = table_add(t, "loopback TCP, one stream", "1 MiB");
	r->gbps = t->tcp_gbps;
	r->ns_per_page = 4096.0 / t->tcp_gbps;
	snprintf(r->note, sizeof(r->note), "limit for the network path");

	{
		bool copied = false;

		r = table_add(t, "loopback TCP, MSG_ZEROCOPY", "1 MiB");
		r->gbps = tcp_gbps(len * 4, true, &copied);
		r->ns_per_page = 4096.0 / r->gbps;
		snprintf(r->note, sizeof(r->note), r->gbps < 0 ? "could not run here" :
			 copied ? "the kernel copied anyway (loopback): not used" :
				  "zero-copy sends");
	}

	r = table_add(t, "loopback TCP, round trip", "1 byte");
	r->ns_per_page = r->gbps = -1;
	if (tcp_rtt_us(o->faults, &r->p50_us, &r->p99_us))
		snprintf(r->note, sizeof(r->note), "could not run here");
	else
		snprintf(r->note, sizeof(r->note), "limit for a fault served over the network");

	r = table_add(t, "AES-128-GCM seal, one core", "16 KiB");
	r->gbps = aes_gcm_gbps(len);
	r->ns_per_page = 4096.0 / r->gbps;
	snprintf(r->note, sizeof(r->note), "limit for one TLS stream per core");
}
