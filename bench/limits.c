// SPDX-License-Identifier: MIT
/* The machine's limits: memcpy bandwidth and one loopback TCP stream. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

static double tcp_gbps(size_t len)
{
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
	s.fd = accept(ls, NULL, NULL);
	pthread_create(&th, NULL, drain, &s);
	t0 = now_ns();
	while (sent < len) {
		ssize_t n = write(c, buf, 1 << 20);

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

void bench_limits(struct table *t, const struct bench_opts *o)
{
	struct row *r;
	size_t len = o->mib << 20;

	t->memcpy_gbps = memcpy_gbps(len, o->reps);
	r = table_add(t, "memcpy (DRAM to DRAM)", "-");
	r->gbps = t->memcpy_gbps;
	r->ns_per_page = 4096.0 / t->memcpy_gbps;
	snprintf(r->note, sizeof(r->note), "limit for page installs");

	t->tcp_gbps = tcp_gbps(len * 4);
	r = table_add(t, "loopback TCP, one stream", "1 MiB");
	r->gbps = t->tcp_gbps;
	r->ns_per_page = 4096.0 / t->tcp_gbps;
	snprintf(r->note, sizeof(r->note), "limit for the network path");
}
