// SPDX-License-Identifier: MIT
/*
 * Wire connections: TCP (+ TLS 1.3, tls.c), whole frames in and out.
 *
 * Threads: one thread receives while others send (the page server answers
 * requests while its stream thread pushes background pages). Sends take
 * send_lock for a whole frame, so frames never interleave. OpenSSL's SSL
 * object is not safe for a read and a write at the same time, so every
 * SSL call also takes io_lock, and nobody sleeps holding it: the socket is
 * non-blocking, and a call that would block drops the lock and waits in
 * poll(2). To the caller every function still blocks until done.
 * fl_conn_shutdown() shuts the socket down, which makes that poll return,
 * so a thread blocked in fl_conn_recv wakes with -ECONNRESET.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "util/clock.h"
#include "wire-inject.h"
#include "wire-internal.h"

#define CONNECT_TIMEOUT_MS 10000
#define HANDSHAKE_TIMEOUT_MS 20000
#define SERVER_HANDSHAKE_TIMEOUT_MS 5000
#define COALESCE 16384 /* header + payload up to this: one write, one TLS record */

struct fl_conn {
	int fd;
	SSL *ssl; /* NULL: plain TCP */
	pthread_mutex_t send_lock; /* one frame at a time */
	pthread_mutex_t io_lock;   /* one SSL call at a time, never held asleep */
	struct fl_region *regions;
	size_t nregions;
	atomic_bool shut;
	_Atomic uint64_t idle_ns;     /* 0: none; else a wait fails once nothing
					 has arrived for this long */
	_Atomic uint64_t last_rx_ns;  /* when bytes last arrived */
	_Atomic uint64_t deadline_ns; /* 0: none; else a read or write waiting
					 past it fails with -ETIMEDOUT */
	char peer[INET6_ADDRSTRLEN + 16];
	uint64_t frames_sent; /* under send_lock */
	bool stalled;	      /* injected: nothing sent arrives any more */
};

/* ------------------------------------------------------------ addresses */

/* "host:port", "[v6]:port" -> host and port strings. */
static int split_host_port(const char *s, char *host, size_t hlen, char *port,
			   size_t plen)
{
	const char *colon, *h = s, *hend;

	if (*s == '[') {
		hend = strchr(s, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		h = s + 1;
		colon = hend + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hend = colon;
	}
	if ((size_t)(hend - h) >= hlen || strlen(colon + 1) >= plen || !colon[1])
		return -EINVAL;
	memcpy(host, h, hend - h);
	host[hend - h] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "(address family %d)", sa->sa_family);
	}
}

/*
 * A peer that vanishes without FIN or RST (host gone, link cut, a
 * firewall dropping state) would otherwise leave a read waiting for ever:
 * keepalive probes an idle connection after KEEPIDLE s, every KEEPINTVL s,
 * KEEPCNT times; TCP_USER_TIMEOUT fails a connection whose sent data goes
 * unacknowledged that long. Together: a dead peer is noticed within about
 * 20 s, busy or idle.
 */
#define KEEPIDLE_S 5
#define KEEPINTVL_S 2
#define KEEPCNT 5
#define USER_TIMEOUT_MS 20000

static int set_socket_options(int fd)
{
	int one = 1, idle = KEEPIDLE_S, intvl = KEEPINTVL_S, cnt = KEEPCNT;
	unsigned ut = USER_TIMEOUT_MS;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut)))
		return -errno;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
		return -errno;
	return 0;
}

/* ------------------------------------------------------------ creation */

static struct fl_conn *conn_new(int fd, const struct sockaddr *peer)
{
	struct fl_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_mutex_init(&c->io_lock, NULL);
	atomic_init(&c->shut, false);
	addr_str(peer, c->peer, sizeof(c->peer));
	return c;
}

/* Plain TCP: refused unless asked for, and off loopback unless forced. */
static int plain_allowed(const struct fl_tls_config *cfg, const struct sockaddr *sa,
			 const char *who, char *err, size_t errlen)
{
	if (!cfg->plain)
		return 0;
	if (!cfg->force_plain && !is_loopback(sa)) {
		fl__wire_err(err, errlen, "%s: plain TCP (no TLS) is allowed only on loopback; this peer is not: use TLS, or force plain TCP if the network is trusted",
			 who);
		return -EPERM;
	}
	return 0;
}

/* Finish a connected socket: options, the plain/TLS decision, the
 * handshake. Consumes fd. */
static int conn_start(struct fl_conn **out, int fd, const struct fl_tls_config *cfg,
		      bool server, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct fl_conn *c;
	int ret;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl)) {
		ret = -errno;
		fl__wire_err(err, errlen, "getpeername: %s", strerror(errno));
		close(fd);
		return ret;
	}
	c = conn_new(fd, (struct sockaddr *)&ss);
	if (!c) {
		close(fd);
		fl__wire_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = set_socket_options(fd);
	if (ret) {
		fl__wire_err(err, errlen, "%s: socket options: %s", c->peer, strerror(-ret));
		goto fail;
	}
	if (cfg->plain) {
		ret = plain_allowed(cfg, (struct sockaddr *)&ss, c->peer, err, errlen);
		if (ret)
			goto fail;
		*out = c;
		return 0;
	}
	c->ssl = fl__wire_tls_new(fd, cfg, server, c->peer, err, errlen);
	if (!c->ssl) {
		ret = -EINVAL;
		goto fail;
	}
	/* A server waits less: a client that never speaks holds up the next. */
	ret = fl__wire_tls_handshake(c->ssl, fd, server, c->peer,
				     server ? SERVER_HANDSHAKE_TIMEOUT_MS : HANDSHAKE_TIMEOUT_MS, err,
				     errlen);
	if (!ret && (cfg->peer_role || cfg->peer_name))
		ret = fl__wire_tls_check_peer(c->ssl, cfg->peer_role, cfg->peer_name, c->peer, err,
					      errlen);
	if (ret)
		goto fail;
	*out = c;
	return 0;
fail:
	fl_conn_close(c);
	return ret;
}

static int connect_one(const struct addrinfo *ai, int *fdp, char *err, size_t errlen)
{
	struct pollfd p = { .events = POLLOUT };
	char who[INET6_ADDRSTRLEN + 16];
	int fd, e = 0, r;
	socklen_t el = sizeof(e);

	addr_str(ai->ai_addr, who, sizeof(who));
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0) {
		fl__wire_err(err, errlen, "%s: socket: %s", who, strerror(errno));
		return -errno;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		e = errno;
		goto fail;
	}
	p.fd = fd;
	do
		r = poll(&p, 1, CONNECT_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		e = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) || e)
		goto fail;
	*fdp = fd;
	return 0;
fail:
	fl__wire_err(err, errlen, "%s: connect: %s", who, strerror(e ? e : errno));
	close(fd);
	return -(e ? e : errno);
}

int fl_conn_connect(struct fl_conn **out, const char *host_port,
		    const struct fl_tls_config *cfg, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char host[256], port[16];
	int fd = -1, ret = -EHOSTUNREACH, r;

	*out = NULL;
	if (split_host_port(host_port, host, sizeof(host), port, sizeof(port))) {
		fl__wire_err(err, errlen, "'%s' is not host:port (IPv6 in brackets: [::1]:7700)", host_port);
		return -EINVAL;
	}
	r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		fl__wire_err(err, errlen, "%s: %s", host_port, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		char who[INET6_ADDRSTRLEN + 16];

		addr_str(ai->ai_addr, who, sizeof(who));
		/* Checked before connecting: plain TCP never leaves the host
		 * by accident, not even as a SYN. */
		ret = plain_allowed(cfg, ai->ai_addr, who, err, errlen);
		if (ret)
			continue;
		ret = connect_one(ai, &fd, err, errlen);
		if (!ret)
			break;
	}
	freeaddrinfo(res);
	if (ret)
		return ret;
	return conn_start(out, fd, cfg, false, err, errlen);
}

int fl_conn_listen(const char *addr_port, int *port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], ps[16];
	int fd, one = 1, r, ret;

	if (split_host_port(addr_port, host, sizeof(host), ps, sizeof(ps))) {
		fl__wire_err(err, errlen, "'%s' is not addr:port (0.0.0.0:7700, [::]:7700, 127.0.0.1:0)", addr_port);
		return -EINVAL;
	}
	r = getaddrinfo(host[0] ? host : NULL, ps, &hints, &res);
	if (r) {
		fl__wire_err(err, errlen, "%s: %s", addr_port, gai_strerror(r));
		return -EINVAL;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		ret = -errno;
		fl__wire_err(err, errlen, "%s: socket: %s", addr_port, strerror(errno));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 16)) {
		ret = -errno;
		fl__wire_err(err, errlen, "%s: cannot listen: %s", addr_port, strerror(errno));
		close(fd);
		goto out;
	}
	if (port) {
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	}
	ret = fd;
out:
	freeaddrinfo(res);
	return ret;
}

int fl_conn_accept(struct fl_conn **out, int listen_fd,
		   const struct fl_tls_config *cfg, char *err, size_t errlen)
{
	int fd;

	*out = NULL;
	do
		fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		fl__wire_err(err, errlen, "accept: %s", strerror(errno));
		return -errno;
	}
	return conn_start(out, fd, cfg, true, err, errlen);
}

/* --------------------------------------------------------------- bytes */

void fl_conn_set_deadline(struct fl_conn *c, double seconds)
{
	atomic_store(&c->deadline_ns, seconds > 0 ? fl__now_ns() + (uint64_t)(seconds * 1e9) : 0);
}

void fl_conn_set_idle_timeout(struct fl_conn *c, double seconds)
{
	atomic_store(&c->last_rx_ns, fl__now_ns());
	atomic_store(&c->idle_ns, seconds > 0 ? (uint64_t)(seconds * 1e9) : 0);
}

/* Wait until fd is ready, or the connection's deadline passes (errno
 * ETIMEDOUT). 0, or -errno with errno set. */
static int wait_fd(struct fl_conn *c, short events)
{
	struct pollfd p = { .fd = c->fd, .events = events };

	for (;;) {
		uint64_t dl = atomic_load(&c->deadline_ns), idle = atomic_load(&c->idle_ns), now;

		/* Silence counts only while waiting to read. */
		if (idle && (events & POLLIN)) {
			uint64_t quiet = atomic_load(&c->last_rx_ns) + idle;

			if (!dl || quiet < dl)
				dl = quiet;
		}
		int ms = -1, n;

		if (dl) {
			now = fl__now_ns();
			if (now >= dl) {
				errno = ETIMEDOUT;
				return -ETIMEDOUT;
			}
			ms = (int)((dl - now) / 1000000) + 1;
		}
		n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* Some bytes in: > 0 bytes, 0 at the end of the stream, or -errno (with
 * the reason in err). */
static ssize_t io_read(struct fl_conn *c, void *buf, size_t len, char *err, size_t errlen)
{
	for (;;) {
		short want = POLLIN;

		if (c->ssl) {
			size_t n = 0;
			int r, e;
			char why[512];

			pthread_mutex_lock(&c->io_lock);
			ERR_clear_error();
			errno = 0;
			r = SSL_read_ex(c->ssl, buf, len, &n);
			e = r ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ &&
			    e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_ZERO_RETURN)
				fl__wire_tls_reason(c->ssl, why, sizeof(why));
			pthread_mutex_unlock(&c->io_lock);
			if (r) {
				atomic_store(&c->last_rx_ns, fl__now_ns());
				return (ssize_t)n;
			}
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_WANT_WRITE)
				want = POLLOUT;
			else if (e != SSL_ERROR_WANT_READ) {
				if (atomic_load(&c->shut))
					return 0;
				fl__wire_err(err, errlen, "%s: TLS: %s", c->peer, why);
				return -ECONNABORTED;
			}
		} else {
			ssize_t n = recv(c->fd, buf, len, 0);

			if (n > 0)
				atomic_store(&c->last_rx_ns, fl__now_ns());
			if (n >= 0)
				return n;
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				int e = errno;

				fl__wire_err(err, errlen, "%s: %s", c->peer, strerror(e));
				return -e;
			}
		}
		if (wait_fd(c, want)) {
			int e = errno;

			fl__wire_err(err, errlen, "%s: %s", c->peer,
				     e == ETIMEDOUT ? "nothing arrived within the deadline" : strerror(e));
			return -e;
		}
	}
}

/* All of len bytes in. *got says how many arrived before an end of
 * stream (then the return is 0 with *got < len). */
static int read_full(struct fl_conn *c, void *buf, size_t len, size_t *got, char *err,
		     size_t errlen)
{
	*got = 0;
	while (*got < len) {
		ssize_t n = io_read(c, (char *)buf + *got, len - *got, err, errlen);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return 0;
		*got += (size_t)n;
	}
	return 0;
}

static int write_full(struct fl_conn *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		short want = POLLOUT;

		if (c->ssl) {
			size_t n = 0;
			int r, e;

			pthread_mutex_lock(&c->io_lock);
			ERR_clear_error();
			r = SSL_write_ex(c->ssl, p, len, &n);
			e = r ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
			ERR_clear_error();
			pthread_mutex_unlock(&c->io_lock);
			if (r) {
				p += n;
				len -= n;
				continue;
			}
			if (e == SSL_ERROR_WANT_READ)
				want = POLLIN;
			else if (e != SSL_ERROR_WANT_WRITE)
				return e == SSL_ERROR_SYSCALL && errno ? -errno : -ECONNABORTED;
		} else {
			ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

			if (n >= 0) {
				p += n;
				len -= (size_t)n;
				continue;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return -errno;
		}
		if (atomic_load(&c->shut))
			return -ESHUTDOWN;
		if (wait_fd(c, want))
			return -errno;
	}
	return 0;
}

/* TLS records gather in the socket BIO (tls.c) until a flush: send them.
 * 0, or -errno. */
static int flush_out(struct fl_conn *c)
{
	if (!c->ssl)
		return 0;
	for (;;) {
		BIO *b;
		int r, e;
		bool retry;

		pthread_mutex_lock(&c->io_lock);
		b = SSL_get_wbio(c->ssl);
		errno = 0;
		r = b ? BIO_flush(b) : 1;
		retry = r <= 0 && BIO_should_retry(b);
		e = errno;
		pthread_mutex_unlock(&c->io_lock);
		if (r > 0)
			return 0;
		if (!retry)
			return e ? -e : -EIO;
		if (atomic_load(&c->shut))
			return -ESHUTDOWN;
		if (wait_fd(c, POLLOUT))
			return -errno;
	}
}

/* -------------------------------------------------------------- frames */

/* A test's injected fault (wire-inject.h), under send_lock: 1 when the
 * frame is not to be sent normally, with *ret what the send returns. */
static int injected(struct fl_conn *c, const uint8_t *hdr, const void *payload, size_t len,
		    int *ret)
{
	size_t cut = 0;

	if (c->stalled) { /* gone silent: the peer must notice by itself */
		*ret = 0;
		return 1;
	}
	switch (fl__wire_inject_pick(c->frames_sent++, FL_WIRE_HDR_SIZE + len, &cut)) {
	case FL_FAULT_NONE:
		return 0;
	case FL_FAULT_STALL:
		c->stalled = true;
		*ret = 0;
		return 1;
	case FL_FAULT_TRUNCATE:
		/* Part of the frame goes out, then the reset. */
		if (!write_full(c, hdr, cut < FL_WIRE_HDR_SIZE ? cut : FL_WIRE_HDR_SIZE) &&
		    cut > FL_WIRE_HDR_SIZE)
			write_full(c, payload, cut - FL_WIRE_HDR_SIZE);
		flush_out(c);
		/* fall through */
	case FL_FAULT_RESET:
		shutdown(c->fd, SHUT_RDWR);
		*ret = -ECONNRESET;
		return 1;
	}
	return 0;
}

static int send_frame(struct fl_conn *c, const struct fl_wire_hdr *h, const void *payload,
		      size_t len)
{
	uint8_t hdr[FL_WIRE_HDR_SIZE];
	int ret;

	fl_wire_hdr_pack(h, hdr);
	pthread_mutex_lock(&c->send_lock);
	if (injected(c, hdr, payload, len, &ret)) {
		pthread_mutex_unlock(&c->send_lock);
		return ret;
	}
	if (len <= COALESCE - FL_WIRE_HDR_SIZE) {
		/* A request, a small control message, one urgent page: one
		 * write, one TLS record, one TCP segment when it fits. */
		uint8_t buf[COALESCE];

		memcpy(buf, hdr, sizeof(hdr));
		if (len)
			memcpy(buf + sizeof(hdr), payload, len);
		ret = write_full(c, buf, sizeof(hdr) + len);
	} else {
		ret = write_full(c, hdr, sizeof(hdr));
		if (!ret)
			ret = write_full(c, payload, len);
	}
	if (!ret)
		ret = flush_out(c);
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

int fl_conn_send_ctl(struct fl_conn *c, const struct fl_ctl *m)
{
	struct fl_wire_hdr h = { .kind = FL_WIRE_CONTROL };
	uint8_t *buf;
	size_t len;
	int ret;

	ret = fl_ctl_encode(m, &buf, &len);
	if (ret)
		return ret;
	h.length = (uint32_t)len;
	if (m->type == FL_CTL_REQUEST)
		h.flags = FL_WIRE_URGENT;
	ret = send_frame(c, &h, buf, len);
	free(buf);
	return ret;
}

int fl_conn_send_pages(struct fl_conn *c, uint32_t region, uint64_t offset,
		       const void *data, uint32_t len, unsigned flags)
{
	struct fl_wire_hdr h = { .kind = FL_WIRE_PAGES, .flags = flags, .region = region,
				 .length = len, .offset = offset, .count = len };

	/* The receiver would refuse it: say so here, to the sender. */
	if (!len || len > FL_WIRE_MAX_PAGES || len % WIRE_PAGE || offset % WIRE_PAGE ||
	    (flags & ~(unsigned)FL_WIRE_URGENT))
		return -EINVAL;
	return send_frame(c, &h, data, len);
}

int fl_conn_send_zero(struct fl_conn *c, uint32_t region, uint64_t offset,
		      uint64_t len, unsigned flags)
{
	struct fl_wire_hdr h = { .kind = FL_WIRE_ZERO, .flags = flags, .region = region,
				 .offset = offset, .count = len };

	if (!len || len % WIRE_PAGE || offset % WIRE_PAGE || (flags & ~(unsigned)FL_WIRE_URGENT))
		return -EINVAL;
	return send_frame(c, &h, NULL, 0);
}

int fl_conn_set_regions(struct fl_conn *c, const struct fl_region *r, size_t n)
{
	struct fl_region *copy = NULL;

	if (n > FL_WIRE_MAX_REGIONS)
		return -EINVAL;
	if (n) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, r, n * sizeof(*copy));
	}
	free(c->regions);
	c->regions = copy;
	c->nregions = n;
	return 0;
}

/* Read and drop n payload bytes nobody wants. */
static int drain(struct fl_conn *c, size_t n, size_t *got, char *err, size_t errlen)
{
	char sink[16384];
	size_t part;
	int ret;

	*got = 0;
	while (*got < n) {
		size_t want = n - *got < sizeof(sink) ? n - *got : sizeof(sink);

		ret = read_full(c, sink, want, &part, err, errlen);
		*got += part;
		if (ret || part < want)
			return ret;
	}
	return 0;
}

int fl_conn_recv(struct fl_conn *c, struct fl_wire_hdr *h, struct fl_ctl *ctl,
		 fl_conn_page_buf_fn buf_fn, void *arg, char *err, size_t errlen)
{
	uint8_t hdr[FL_WIRE_HDR_SIZE], *payload = NULL;
	struct fl_ctl dropped;
	char why[512] = "";
	size_t got;
	void *dst;
	int ret;

	ret = read_full(c, hdr, sizeof(hdr), &got, err, errlen);
	if (ret)
		return ret;
	if (got == 0) {
		fl__wire_err(err, errlen, "%s: %s", c->peer,
			 atomic_load(&c->shut) ? "the connection was shut down" : "the peer closed the connection");
		return -ECONNRESET;
	}
	if (got < sizeof(hdr)) {
		fl__wire_err(err, errlen, "%s: frame header truncated: the stream ended after %zu of %d bytes",
			 c->peer, got, FL_WIRE_HDR_SIZE);
		return -EPROTO;
	}
	ret = fl_wire_hdr_unpack(hdr, h, c->regions, c->nregions, why, sizeof(why));
	if (ret) {
		fl__wire_err(err, errlen, "%s: %s", c->peer, why);
		return ret;
	}

	switch (h->kind) {
	case FL_WIRE_CONTROL:
		payload = malloc(h->length ? h->length : 1);
		if (!payload) {
			fl__wire_err(err, errlen, "%s: out of memory for a %u-byte control message", c->peer, h->length);
			return -ENOMEM;
		}
		ret = read_full(c, payload, h->length, &got, err, errlen);
		if (ret)
			break;
		if (got < h->length) {
			fl__wire_err(err, errlen, "%s: control payload truncated: the stream ended after %zu of %u bytes",
				 c->peer, got, h->length);
			ret = -EPROTO;
			break;
		}
		if (!ctl)
			ctl = &dropped;
		ret = fl_ctl_decode(payload, h->length, ctl, why, sizeof(why));
		if (!ret && c->regions) {
			ret = fl__wire_ctl_check_regions(ctl, c->regions, c->nregions, why, sizeof(why));
			if (ret)
				fl_ctl_free(ctl);
		}
		if (ret)
			fl__wire_err(err, errlen, "%s: %s", c->peer, why);
		else if (ctl == &dropped)
			fl_ctl_free(ctl);
		break;
	case FL_WIRE_PAGES:
		dst = buf_fn ? buf_fn(arg, h->region, h->offset, h->length) : NULL;
		if (dst)
			ret = read_full(c, dst, h->length, &got, err, errlen);
		else
			ret = drain(c, h->length, &got, err, errlen);
		if (!ret && got < h->length) {
			fl__wire_err(err, errlen, "%s: page payload truncated: the stream ended after %zu of %u bytes",
				 c->peer, got, h->length);
			ret = -EPROTO;
		}
		break;
	default: /* FL_WIRE_ZERO: the header is all */
		break;
	}
	free(payload);
	return ret;
}

/* ----------------------------------------------------------- the rest */

int fl_conn_fd(const struct fl_conn *c)
{
	return c->fd;
}

const char *fl_conn_peer(const struct fl_conn *c)
{
	return c->peer;
}

bool fl_conn_is_tls(const struct fl_conn *c)
{
	return c->ssl != NULL;
}

void fl_conn_shutdown(struct fl_conn *c)
{
	if (!c)
		return;
	atomic_store(&c->shut, true);
	shutdown(c->fd, SHUT_RDWR);
}

void fl_conn_close(struct fl_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* A close_notify if the socket takes it now; never wait. */
		if (!atomic_load(&c->shut) && SSL_is_init_finished(c->ssl)) {
			SSL_shutdown(c->ssl);
			(void)BIO_flush(SSL_get_wbio(c->ssl));
		}
		ERR_clear_error();
		SSL_free(c->ssl);
	}
	close(c->fd);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->io_lock);
	free(c->regions);
	free(c);
}
