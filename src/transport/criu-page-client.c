// SPDX-License-Identifier: MIT
/*
 * CRIU's page server, client side. The server answers GETs strictly in
 * the order they came, each with a header echoing the pid and address and
 * then the pages, possibly fewer than asked (it stops at the end of one of
 * its pipe buffers). So the client keeps one FIFO of what it asked, checks
 * every reply header against its head, and asks again for the remainder
 * of a short reply (the new GET goes to the back). A reply that matches
 * nothing is a protocol error: the connection is dropped and every read in
 * flight fails, so its pages are poisoned by the monitor, never zeroed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "criu-page-client.h"
#include "util/thread-cpu.h"

#define PS_IOV_GET 7u
#define PS_IOV_ADD_F 6u
#define PS_CLOSE 0x1023u
#define PE_PRESENT 4u
#define PAGE 4096ull
/* Receive buffers are kept for reuse: a fresh one costs a first-touch
 * page fault per page in the reader, as much as receiving the bytes.
 * Small reads (a fault's page) take heap memory, which the allocator
 * keeps warm: a pool buffer would cost 2 MiB populated whenever faults
 * outnumber the pool. */
#define POOL_BUF (2ull << 20)
#define POOL_MAX 16
#define SMALL_BUF (64ull << 10)

struct ps_hdr {
	uint32_t cmd;
	uint32_t pad;
	uint64_t nr_pages;
	uint64_t vaddr;
	uint64_t dst_id;
};
_Static_assert(sizeof(struct ps_hdr) == 32, "CRIU's page_server_iov is 32 bytes");

/* One request to the server: possibly several GETs (short replies). */
struct pget {
	struct fl_source_req *req;
	int32_t pid;
	uint64_t vaddr;	  /* of the whole request */
	uint64_t pages, got;
	char *buf;
	bool cancelled;
	struct pget *next; /* the FIFO, then the done list */
};

struct criu_pclient {
	int fd, event_fd;
	pthread_t reader;
	bool reader_started;
	pthread_mutex_t lock;
	struct pget *head, *tail; /* what the server will answer next, in order */
	struct pget *done, *done_tail; /* finished, for take() */
	pthread_mutex_t pool_lock;
	char *pool[POOL_MAX];
	size_t npool;
	bool broken, closing, closed;
	int32_t status;
	char error[256];
};

static int send_all(int fd, const void *b, size_t n)
{
	const char *p = b;

	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int recv_all(int fd, void *b, size_t n)
{
	char *p = b;

	while (n) {
		ssize_t k = recv(fd, p, n, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -ECONNRESET;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static void signal_done(struct criu_pclient *c)
{
	uint64_t one = 1;

	(void)!write(c->event_fd, &one, sizeof(one));
}

static char *buf_get(struct criu_pclient *c, uint64_t len)
{
	char *b = NULL;

	if (len > POOL_BUF || len <= SMALL_BUF)
		return aligned_alloc(PAGE, (len + PAGE - 1) / PAGE * PAGE);
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool)
		b = c->pool[--c->npool];
	pthread_mutex_unlock(&c->pool_lock);
	if (!b) {
		b = mmap(NULL, POOL_BUF, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (b == MAP_FAILED)
			b = NULL;
	}
	return b;
}

static void buf_put(struct criu_pclient *c, char *b, uint64_t len)
{
	if (!b)
		return;
	if (len > POOL_BUF || len <= SMALL_BUF) {
		free(b);
		return;
	}
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool < POOL_MAX) {
		c->pool[c->npool++] = b;
		b = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (b)
		munmap(b, POOL_BUF);
}

static void pget_free(struct criu_pclient *c, struct pget *g)
{
	buf_put(c, g->buf, g->pages * PAGE);
	free(g);
}

/* With the lock held. */
static void complete(struct criu_pclient *c, struct pget *g, int result)
{
	if (g->cancelled) {
		pget_free(c, g);
		return;
	}
	g->req->result = result;
	g->req->data = result ? NULL : g->buf;
	if (result) {
		buf_put(c, g->buf, g->pages * PAGE);
		g->buf = NULL;
	}
	g->req->priv = (uint64_t)(uintptr_t)g;
	g->next = NULL;
	if (c->done_tail)
		c->done_tail->next = g;
	else
		c->done = g;
	c->done_tail = g;
}

/* With the lock held: append g to the FIFO and send its GET. */
static int ask(struct criu_pclient *c, struct pget *g)
{
	struct ps_hdr h = { .cmd = PS_IOV_GET, .nr_pages = g->pages - g->got,
			    .vaddr = g->vaddr + g->got * PAGE, .dst_id = (uint64_t)g->pid };

	g->next = NULL;
	if (c->tail)
		c->tail->next = g;
	else
		c->head = g;
	c->tail = g;
	return send_all(c->fd, &h, sizeof(h));
}

/* With the lock held: the connection is unusable; fail everything. */
static void breakdown(struct criu_pclient *c, int result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void breakdown(struct criu_pclient *c, int result, const char *fmt, ...)
{
	va_list ap;

	if (!c->broken) {
		va_start(ap, fmt);
		vsnprintf(c->error, sizeof(c->error), fmt, ap);
		va_end(ap);
		fprintf(stderr, "faultline: page server: %s\n", c->error);
	}
	c->broken = true;
	shutdown(c->fd, SHUT_RDWR);
	while (c->head) {
		struct pget *g = c->head;

		c->head = g->next;
		complete(c, g, result);
	}
	c->tail = NULL;
	signal_done(c);
}

static void *reader(void *arg)
{
	struct criu_pclient *c = arg;

	fl__thread_name("fl-criu-pages");

	for (;;) {
		struct ps_hdr h;
		struct pget *g;
		size_t have = 0;
		int ret = 0;

		/* A header, or after CLOSE the server's 4-byte status. */
		while (have < sizeof(h)) {
			ssize_t k = recv(c->fd, (char *)&h + have, sizeof(h) - have, 0);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				ret = k < 0 ? -errno : -ECONNRESET;
				break;
			}
			have += (size_t)k;
			pthread_mutex_lock(&c->lock);
			if (c->closing && !c->head && have >= 4) {
				memcpy(&c->status, &h, 4);
				c->closed = true;
				pthread_mutex_unlock(&c->lock);
				return NULL;
			}
			pthread_mutex_unlock(&c->lock);
		}
		pthread_mutex_lock(&c->lock);
		if (ret) {
			breakdown(c, -ECONNRESET, "the connection was lost%s%s",
				  ret != -ECONNRESET ? ": " : " (EOF)",
				  ret != -ECONNRESET ? strerror(-ret) : "");
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		g = c->head;
		if (!g) {
			breakdown(c, -EPROTO, "a reply (command %#x, %llu pages at %#llx, pid %llu) "
				  "to no request", h.cmd, (unsigned long long)h.nr_pages,
				  (unsigned long long)h.vaddr, (unsigned long long)h.dst_id);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		if (h.cmd != (PS_IOV_ADD_F | PE_PRESENT << 16) || h.dst_id != (uint64_t)g->pid ||
		    h.vaddr != g->vaddr + g->got * PAGE || !h.nr_pages ||
		    h.nr_pages > g->pages - g->got) {
			breakdown(c, -EPROTO, "malformed reply: command %#x, %llu pages at %#llx "
				  "for pid %llu, when %llu pages at %#llx for pid %d were asked for "
				  "(expected command %#x)", h.cmd, (unsigned long long)h.nr_pages,
				  (unsigned long long)h.vaddr, (unsigned long long)h.dst_id,
				  (unsigned long long)(g->pages - g->got),
				  (unsigned long long)(g->vaddr + g->got * PAGE), g->pid,
				  PS_IOV_ADD_F | PE_PRESENT << 16);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		pthread_mutex_unlock(&c->lock);
		/* g stays at the head (only this thread pops it): read its
		 * pages without the lock. A cancelled g is read and dropped. */
		ret = recv_all(c->fd, g->buf + g->got * PAGE, h.nr_pages * PAGE);
		pthread_mutex_lock(&c->lock);
		if (ret) {
			breakdown(c, -ECONNRESET, "the connection was lost in the middle of %llu "
				  "pages at %#llx for pid %d: %s", (unsigned long long)h.nr_pages,
				  (unsigned long long)h.vaddr, g->pid, strerror(-ret));
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		g->got += h.nr_pages;
		c->head = g->next;
		if (!c->head)
			c->tail = NULL;
		if (g->got == g->pages) {
			complete(c, g, 0);
			signal_done(c);
		} else if (g->cancelled) {
			complete(c, g, 0);
		} else if ((ret = ask(c, g))) {
			breakdown(c, -ECONNRESET, "asking for the rest of a short reply: %s",
				  strerror(-ret));
		}
		pthread_mutex_unlock(&c->lock);
	}
}

int fl__criu_pclient_create(struct criu_pclient **out, const char *addr, int port,
			    int event_fd, char *err, size_t errlen)
{
	struct criu_pclient *c = calloc(1, sizeof(*c));
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char ports[16];
	int one = 1, ret;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->event_fd = event_fd;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	snprintf(ports, sizeof(ports), "%d", port);
	ret = getaddrinfo(addr, ports, &hints, &ai);
	if (ret) {
		snprintf(err, errlen, "page server %s:%d: %s", addr, port, gai_strerror(ret));
		ret = -EINVAL;
		goto fail;
	}
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen)) {
		ret = -errno;
		snprintf(err, errlen, "connecting to the page server at %s:%d: %s (is `criu dump "
			 "--lazy-pages --address %s --port %d` running?)", addr, port,
			 strerror(errno), addr, port);
		goto fail;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((ret = -pthread_create(&c->reader, NULL, reader, c))) {
		snprintf(err, errlen, "starting the page-server reader: %s", strerror(-ret));
		goto fail;
	}
	c->reader_started = true;
	freeaddrinfo(ai);
	*out = c;
	return 0;
fail:
	if (ai)
		freeaddrinfo(ai);
	fl__criu_pclient_destroy(c);
	return ret;
}

int fl__criu_pclient_submit(struct criu_pclient *c, struct fl_source_req *r, int32_t pid,
			    uint64_t vaddr)
{
	struct pget *g = calloc(1, sizeof(*g));
	int ret;

	if (!g)
		return -ENOMEM;
	*g = (struct pget){ .req = r, .pid = pid, .vaddr = vaddr, .pages = r->len / PAGE };
	g->buf = buf_get(c, r->len);
	if (!g->buf) {
		free(g);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	if (c->broken || c->closing) {
		ret = -ECONNRESET;
		pthread_mutex_unlock(&c->lock);
		pget_free(c, g);
		return ret;
	}
	r->priv = (uint64_t)(uintptr_t)g;
	/* A failed send cuts the connection: the reader thread, which owns
	 * the FIFO's head, then fails every request in it, this one too. */
	if (ask(c, g))
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int fl__criu_pclient_cancel(struct criu_pclient *c, struct fl_source_req *r)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&c->lock);
	for (struct pget **pp = &c->done, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next)
		if ((*pp)->req == r) {
			struct pget *g = *pp;

			*pp = g->next;
			if (c->done_tail == g)
				c->done_tail = prev;
			pget_free(c, g);
			ret = 0;
			break;
		}
	for (struct pget *g = c->head; ret && g; g = g->next)
		if (g->req == r && !g->cancelled) {
			g->cancelled = true; /* its reply is read and dropped */
			ret = 0;
		}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

size_t fl__criu_pclient_take(struct criu_pclient *c, struct fl_source_req **out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&c->lock);
	while (c->done && n < max) {
		out[n++] = c->done->req;
		c->done = c->done->next;
	}
	if (!c->done)
		c->done_tail = NULL;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void fl__criu_pclient_release(struct criu_pclient *c, struct fl_source_req *r)
{
	struct pget *g = (struct pget *)(uintptr_t)r->priv;

	if (!g)
		return;
	pget_free(c, g);
	r->priv = 0;
}

int fl__criu_pclient_close(struct criu_pclient *c, char *err, size_t errlen)
{
	struct ps_hdr h = { .cmd = PS_CLOSE };
	int ret;

	pthread_mutex_lock(&c->lock);
	if (c->broken) {
		snprintf(err, errlen, "page server: %s", c->error);
		pthread_mutex_unlock(&c->lock);
		return -ECONNRESET;
	}
	c->closing = true;
	{
		/* A source that never answers must not hold this up forever. */
		struct timeval tv = { 30, 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	ret = send_all(c->fd, &h, sizeof(h));
	pthread_mutex_unlock(&c->lock);
	if (ret) {
		snprintf(err, errlen, "page server: sending CLOSE: %s", strerror(-ret));
		return ret;
	}
	pthread_join(c->reader, NULL);
	c->reader_started = false;
	if (!c->closed) {
		snprintf(err, errlen, "page server: no status after CLOSE: %s", c->error);
		return -ECONNRESET;
	}
	close(c->fd);
	c->fd = -1;
	if (c->status) {
		snprintf(err, errlen, "page server: CLOSE answered with status %d", c->status);
		return -EIO;
	}
	return 0;
}

const char *fl__criu_pclient_error(const struct criu_pclient *c)
{
	return c->error;
}

void fl__criu_pclient_destroy(struct criu_pclient *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	if (c->reader_started)
		pthread_join(c->reader, NULL);
	if (c->fd >= 0)
		close(c->fd);
	while (c->head) {
		struct pget *g = c->head;

		c->head = g->next;
		pget_free(c, g);
	}
	while (c->done) {
		struct pget *g = c->done;

		c->done = g->next;
		pget_free(c, g);
	}
	while (c->npool)
		munmap(c->pool[--c->npool], POOL_BUF);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
