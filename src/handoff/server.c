// SPDX-License-Identifier: MIT
/*
 * The handoff server: restorers connect to a unix socket and hand over a
 * userfaultfd with their region list. Two protocols share one path from
 * accept to the caller's accept function: faultline's own handoff
 * (faultline/handoff.h, a binary header and region table, answered with an
 * ack) and Firecracker's (firecracker.h, one JSON array, never answered on
 * success: Firecracker does not read the socket). Both end in the same
 * struct fl_handoff. Each connection is read without blocking, with a
 * deadline, so a restorer that stalls, disconnects mid-handoff or sends
 * garbage costs the others nothing; a refused one is told why and closed,
 * and the server goes on serving.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <faultline/handoff.h>

#include "firecracker.h"

#define HANDOFF_DEADLINE_S 10

struct fl_handoff_server {
	struct event_base *base;
	enum fl_handoff_proto proto;
	int listen_fd;
	struct event *listen_ev;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	fl_handoff_accept_fn accept;
	void *arg;
	int verbose;
	void (*refused)(void *arg, pid_t peer, int status, const char *why);
	struct fl_handoff_file_part *parts; /* Firecracker: the memory file */
	size_t nparts;
	char *kind;
	struct conn *conns;
};

/* One connection being read. */
struct conn {
	struct fl_handoff_server *s;
	int fd, ufd;
	unsigned nfds; /* fds attached so far (only the first is kept) */
	pid_t peer;
	struct event *ev;
	size_t have;
	struct conn *next;
	union {
		struct fl_handoff_hdr hdr;
		char bytes[sizeof(struct fl_handoff_hdr) +
			   FL_HANDOFF_MAX_REGIONS * sizeof(struct fl_handoff_region)];
		char json[FC_MSG_MAX];
	} msg;
};

__attribute__((format(printf, 3, 4)))
static void srv_log(const struct fl_handoff_server *s, int level, const char *fmt, ...)
{
	va_list ap;

	if (level > s->verbose)
		return;
	fprintf(stderr, "handoff: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void fl_handoff_free(struct fl_handoff *h)
{
	if (!h)
		return;
	if (h->uffd >= 0)
		close(h->uffd);
	h->uffd = -1;
	free(h->regions);
	h->regions = NULL;
	h->nregions = 0;
}

static void conn_close(struct conn *c)
{
	struct conn **pp;

	for (pp = &c->s->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	event_free(c->ev);
	close(c->fd);
	if (c->ufd >= 0)
		close(c->ufd);
	free(c);
}

static const char *what(const struct fl_handoff_server *s)
{
	return s->proto == FL_HANDOFF_FIRECRACKER ? "Firecracker connection" : "handoff";
}

/* Restorers of every release read at most 255 bytes of text: longer is cut. */
#define ACK_TEXT_MAX 255

static void answer(struct conn *c, int status, const char *text)
{
	size_t len = strlen(text);
	struct fl_handoff_ack ack = { status, (uint32_t)(len < ACK_TEXT_MAX ? len : ACK_TEXT_MAX) };

	if (c->s->proto == FL_HANDOFF_FIRECRACKER) {
		/* Firecracker reads nothing back; a stand-in or a person
		 * debugging with socat reads why it was refused. */
		char line[512];
		int len = snprintf(line, sizeof(line), "faultline: refused: %s\n", text);

		if (status && len > 0)
			(void)!send(c->fd, line, (size_t)len < sizeof(line) ? (size_t)len
									: sizeof(line) - 1,
				    MSG_NOSIGNAL);
		return;
	}
	if (send(c->fd, &ack, sizeof(ack), MSG_NOSIGNAL) == sizeof(ack))
		(void)!send(c->fd, text, ack.msglen, MSG_NOSIGNAL);
}

/* Refuse the connection: `early` when no handoff reached accept (the
 * refused callback hears of it; accept counts its own refusals). */
static void refuse(struct conn *c, int status, const char *why, bool early)
{
	struct fl_handoff_server *s = c->s;

	/* Close our copy of the fd first: once the restorer hears "no", it
	 * may register the same memory again, which the kernel refuses while
	 * another userfaultfd still holds it. */
	if (c->ufd >= 0)
		close(c->ufd);
	c->ufd = -1;
	srv_log(s, 0, "%s from pid %d refused: %s", what(s), c->peer, why);
	if (early && s->refused)
		s->refused(s->arg, c->peer, status, why);
	answer(c, status, why);
	conn_close(c);
}

/* A complete handoff: give it to the caller, answer, close. */
static void hand_over(struct conn *c, struct fl_handoff *h)
{
	struct fl_handoff_server *s = c->s;
	char err[512] = "";
	int ret;

	h->uffd = c->ufd;
	c->ufd = -1; /* h holds it now */
	ret = s->accept(s->arg, h, err, sizeof(err));
	if (ret) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-ret));
		fl_handoff_free(h); /* closes the fd before the restorer hears no */
		refuse(c, ret, err, false);
		return;
	}
	fl_handoff_free(h); /* whatever the taker left */
	answer(c, 0, "ok");
	conn_close(c);
}

static size_t wanted(const struct conn *c)
{
	if (c->have < sizeof(c->msg.hdr))
		return sizeof(c->msg.hdr);
	return sizeof(c->msg.hdr) + c->msg.hdr.nregions * sizeof(struct fl_handoff_region);
}

/* faultline's handoff is complete. */
static void fl_finish(struct conn *c)
{
	const struct fl_handoff_hdr *hdr = &c->msg.hdr;
	struct fl_handoff h = {
		.proto = FL_HANDOFF_FAULTLINE,
		.uffd = -1,
		.pid = hdr->pid ? hdr->pid : c->peer,
		.peer = c->peer,
		.features = hdr->features,
		.flags = hdr->flags,
		.nfds = c->nfds,
		.nregions = hdr->nregions,
	};

	if (c->ufd < 0) {
		refuse(c, -EPROTO, "no userfaultfd was attached (SCM_RIGHTS)", true);
		return;
	}
	h.regions = malloc(h.nregions * sizeof(*h.regions));
	if (!h.regions) {
		refuse(c, -ENOMEM, "out of memory", true);
		return;
	}
	memcpy(h.regions, c->msg.bytes + sizeof(*hdr), h.nregions * sizeof(*h.regions));
	hand_over(c, &h);
}

/* Firecracker's message is complete and well formed: map its regions onto
 * the source's and hand it over like any other. */
static void fc_finish(struct conn *c, const struct fc_region *r, size_t n)
{
	struct fl_handoff_server *s = c->s;
	/*
	 * Features: Firecracker did UFFDIO_API itself, asking for
	 * UFFD_FEATURE_EVENT_REMOVE only (its balloon frees guest memory with
	 * MADV_DONTNEED), and UFFDIO_API cannot be called twice on one fd to
	 * ask which it got. No FORK, REMAP or UNMAP events will come; REMOVE
	 * pages become zero pages (never an unregister).
	 *
	 * No EVENT_FORK is no loss here: guest memory belongs to one
	 * Firecracker process, which does not fork once the VM runs (the
	 * guest's own fork()s change guest page tables, not this mm), so
	 * there is no child to serve: say so with FL_HANDOFF_F_NO_FORK.
	 */
	struct fl_handoff h = {
		.proto = FL_HANDOFF_FIRECRACKER,
		.uffd = -1,
		.pid = c->peer,
		.peer = c->peer,
		.features = UFFD_FEATURE_EVENT_REMOVE,
		.flags = FL_HANDOFF_F_FEATURES_ASSUMED | FL_HANDOFF_F_NO_FORK,
		.nfds = c->nfds,
		.nregions = n,
	};
	uint64_t bytes = 0;
	pid_t peer = c->peer;
	char err[512] = "";
	int ret;

	if (c->ufd < 0) {
		refuse(c, -EPROTO, "no userfaultfd was attached to the region list (SCM_RIGHTS)",
		       true);
		return;
	}
	if (c->nfds > 1) {
		snprintf(err, sizeof(err), "%u fds were attached; only Firecracker's "
			 "anonymous-memory mode (one userfaultfd) is supported, not guest_memfd",
			 c->nfds);
		refuse(c, -EPROTO, err, true);
		return;
	}
	h.regions = calloc(n, sizeof(*h.regions));
	if (!h.regions) {
		refuse(c, -ENOMEM, "out of memory", true);
		return;
	}
	ret = fl__fc_map_regions(s->parts, s->nparts, s->kind, r, n, h.regions, err, sizeof(err));
	if (ret) {
		free(h.regions);
		refuse(c, ret, err, true);
		return;
	}
	for (size_t i = 0; i < n; i++)
		bytes += r[i].size;
	h.uffd = c->ufd;
	c->ufd = -1;
	ret = s->accept(s->arg, &h, err, sizeof(err));
	fl_handoff_free(&h);
	if (ret) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-ret));
		refuse(c, ret, err, false);
		return;
	}
	conn_close(c); /* nothing is answered: Firecracker does not read */
	srv_log(s, 1, "Firecracker pid %d: %zu regions, %.1f MiB of guest memory", peer, n,
		(double)bytes / (1 << 20));
}

static void fc_received(struct conn *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256] = "";
	size_t n;
	int ret = fl__fc_parse(c->msg.json, c->have, r, FC_REGIONS_MAX, &n, err, sizeof(err));

	if (ret == -EAGAIN && c->have == sizeof(c->msg.json)) {
		snprintf(err, sizeof(err), "Firecracker message: longer than %zu bytes",
			 sizeof(c->msg.json));
		ret = -EMSGSIZE;
	}
	if (ret == -EAGAIN)
		return; /* a valid beginning: the rest is on its way */
	if (ret) {
		refuse(c, ret, err, true);
		return;
	}
	fc_finish(c, r, n);
}

/* faultline's header is in: check it before reading the regions. */
static bool fl_header_ok(struct conn *c)
{
	const struct fl_handoff_hdr *h = &c->msg.hdr;
	char why[160];

	if (h->magic != FL_HANDOFF_MAGIC) {
		refuse(c, -EPROTO, "not a faultline handoff (bad magic)", true);
		return false;
	}
	if (h->version != FL_HANDOFF_VERSION) {
		refuse(c, -EPROTO, "unsupported handoff version", true);
		return false;
	}
	if (!h->nregions || h->nregions > FL_HANDOFF_MAX_REGIONS) {
		refuse(c, -EINVAL, "region count out of range (1..4096)", true);
		return false;
	}
	if (h->flags & ~FL_HANDOFF_WIRE_FLAGS) {
		snprintf(why, sizeof(why), "unknown handoff flags %#x (this monitor knows %#x)",
			 h->flags & ~FL_HANDOFF_WIRE_FLAGS, FL_HANDOFF_WIRE_FLAGS);
		refuse(c, -EPROTO, why, true);
		return false;
	}
	return true;
}

static void on_conn(evutil_socket_t fd, short ev, void *arg)
{
	struct conn *c = arg;
	bool fc = c->s->proto == FL_HANDOFF_FIRECRACKER;
	char ctrl[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl, .msg_controllen = sizeof(ctrl) };
	ssize_t n;

	if (ev & EV_TIMEOUT) {
		refuse(c, -ETIMEDOUT, c->have ? "the message was still incomplete after 10 s"
					      : "the restorer sent nothing for 10 s", true);
		return;
	}
	iov.iov_base = c->msg.bytes + c->have;
	iov.iov_len = fc ? sizeof(c->msg.json) - c->have : wanted(c) - c->have;
	n = recvmsg((int)fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		char why[128];

		if (fc)
			snprintf(why, sizeof(why), "the client disconnected before its region list "
				 "was complete (%zu bytes received)", c->have);
		else
			snprintf(why, sizeof(why), "the restorer disconnected mid-handoff "
				 "(%zu of %zu bytes)", c->have, wanted(c));
		srv_log(c->s, 0, "handoff from pid %d abandoned: %s", c->peer, why);
		if (c->s->refused)
			c->s->refused(c->s->arg, c->peer, -ECONNRESET, why);
		conn_close(c);
		return;
	}
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int got;

			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			c->nfds++;
			if (c->ufd < 0)
				c->ufd = got;
			else
				close(got); /* only one fd per handoff */
		}
	}
	c->have += (size_t)n;
	if (fc) {
		fc_received(c);
		return;
	}
	if (c->have == sizeof(c->msg.hdr) && !fl_header_ok(c))
		return;
	if (c->have == wanted(c) && c->have > sizeof(c->msg.hdr))
		fl_finish(c);
}

static void on_accept(evutil_socket_t fd, short ev, void *arg)
{
	struct fl_handoff_server *s = arg;
	struct conn *c;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct timeval deadline = { HANDOFF_DEADLINE_S, 0 };
	int sock = accept4((int)fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	(void)ev;
	if (sock < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(sock);
		return;
	}
	c->s = s;
	c->fd = sock;
	c->ufd = -1;
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		c->peer = cred.pid;
	c->ev = event_new(s->base, sock, EV_READ | EV_PERSIST | EV_TIMEOUT, on_conn, c);
	if (!c->ev) {
		close(sock);
		free(c);
		return;
	}
	event_priority_set(c->ev, 0);
	event_add(c->ev, &deadline);
	c->next = s->conns;
	s->conns = c;
}

int fl_handoff_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s",
			 sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		snprintf(err, errlen, "cannot create a unix socket: %s", strerror(e));
		return -e;
	}
	unlink(path); /* a stale socket from an earlier server */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		e = errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	chmod(path, 0600); /* only our user may hand us memory */
	return fd;
}

int fl_handoff_server_create(struct fl_handoff_server **out, struct event_base *base,
			     const char *path, enum fl_handoff_proto proto,
			     const struct fl_handoff_server_opts *opts,
			     fl_handoff_accept_fn accept, void *arg,
			     char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fl_handoff_server *s;
	int fd;

	*out = NULL;
	if (!base || !path || !accept ||
	    (proto != FL_HANDOFF_FAULTLINE && proto != FL_HANDOFF_FIRECRACKER)) {
		snprintf(err, errlen, "handoff server: an event base, a path, a protocol and an "
			 "accept function are required");
		return -EINVAL;
	}
	if (proto == FL_HANDOFF_FIRECRACKER && (!opts || !opts->nfile_parts)) {
		snprintf(err, errlen, "handoff server: Firecracker's regions name offsets in a "
			 "memory file; its layout (file_parts) is required");
		return -EINVAL;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s",
			 sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->base = base;
	s->proto = proto;
	s->listen_fd = -1;
	s->accept = accept;
	s->arg = arg;
	if (opts) {
		s->verbose = opts->verbose;
		s->refused = opts->refused;
	}
	if (proto == FL_HANDOFF_FIRECRACKER) {
		s->nparts = opts->nfile_parts;
		s->parts = malloc(s->nparts * sizeof(*s->parts));
		s->kind = strdup(opts->source_kind ? opts->source_kind : "page");
		if (!s->parts || !s->kind) {
			fl_handoff_server_destroy(s);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		memcpy(s->parts, opts->file_parts, s->nparts * sizeof(*s->parts));
	}
	fd = opts && opts->listen_fd_set ? opts->listen_fd : fl_handoff_listen(path, err, errlen);
	if (fd < 0) {
		fl_handoff_server_destroy(s);
		return fd;
	}
	s->listen_fd = fd;
	strcpy(s->path, path); /* ours to remove from here on */
	s->listen_ev = event_new(base, fd, EV_READ | EV_PERSIST, on_accept, s);
	if (!s->listen_ev) {
		snprintf(err, errlen, "cannot watch %s on the event loop", path);
		fl_handoff_server_destroy(s);
		return -ENOMEM;
	}
	event_priority_set(s->listen_ev, 0);
	event_add(s->listen_ev, NULL);
	*out = s;
	return 0;
}

void fl_handoff_server_destroy(struct fl_handoff_server *s)
{
	if (!s)
		return;
	while (s->conns)
		conn_close(s->conns);
	if (s->listen_ev)
		event_free(s->listen_ev);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		if (s->path[0])
			unlink(s->path);
	}
	free(s->parts);
	free(s->kind);
	free(s);
}
