// SPDX-License-Identifier: MIT
/*
 * The monitor's control sockets: restorers connect and hand over a
 * userfaultfd with their region list. Two protocols share one path from
 * accept to fl_monitor_adopt(): faultline's own handoff (faultline/handoff.h,
 * a binary header and region table, answered with an ack) and Firecracker's
 * (firecracker.h, one JSON array, never answered on success: Firecracker
 * does not read the socket). Each connection is read without blocking, with
 * a deadline, so a restorer that stalls, disconnects mid-handoff or sends
 * garbage costs the others nothing; a refused one is told why and closed,
 * and the monitor goes on serving.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "firecracker.h"
#include "monitor-internal.h"

#define HANDOFF_DEADLINE_S 10

struct control_conn {
	struct fl_monitor *m;
	enum control_proto proto;
	int fd, ufd;
	unsigned nfds; /* fds attached so far (only the first is kept) */
	pid_t peer;
	struct event *ev;
	size_t have;
	struct control_conn *next;
	union {
		struct fl_handoff_hdr hdr;
		char bytes[sizeof(struct fl_handoff_hdr) +
			   FL_HANDOFF_MAX_REGIONS * sizeof(struct fl_handoff_region)];
		char json[FC_MSG_MAX];
	} msg;
};

static void conn_close(struct control_conn *c)
{
	struct control_conn **pp;

	for (pp = &c->m->conns; *pp; pp = &(*pp)->next)
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

static void answer(struct control_conn *c, int status, const char *text)
{
	struct fl_handoff_ack ack = { status, (uint32_t)strlen(text) };

	if (c->proto == PROTO_FIRECRACKER) {
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

static void refuse(struct control_conn *c, int status, const char *why)
{
	/* Close our copy of the fd first: once the restorer hears "no", it
	 * may register the same memory again, which the kernel refuses while
	 * another userfaultfd still holds it. */
	if (c->ufd >= 0)
		close(c->ufd);
	c->ufd = -1;
	c->m->stats.handoffs_refused++;
	mon_log(c->m, 0, "%s from pid %d refused: %s",
		c->proto == PROTO_FIRECRACKER ? "Firecracker connection" : "handoff", c->peer, why);
	answer(c, status, why);
	conn_close(c);
}

static size_t wanted(const struct control_conn *c)
{
	if (c->have < sizeof(c->msg.hdr))
		return sizeof(c->msg.hdr);
	return sizeof(c->msg.hdr) + c->msg.hdr.nregions * sizeof(struct fl_handoff_region);
}

static void finish(struct control_conn *c)
{
	struct fl_monitor *m = c->m;
	char err[256] = "";
	pid_t pid = c->msg.hdr.pid ? c->msg.hdr.pid : c->peer;
	int ret;

	if (c->ufd < 0) {
		refuse(c, -EPROTO, "no userfaultfd was attached (SCM_RIGHTS)");
		return;
	}
	ret = fl_monitor_adopt(m, c->ufd, pid, c->msg.hdr.features,
			       (const struct fl_handoff_region *)(c->msg.bytes + sizeof(c->msg.hdr)),
			       c->msg.hdr.nregions, err, sizeof(err));
	if (ret) {
		refuse(c, ret, err);
		return;
	}
	c->ufd = -1; /* the monitor owns it now */
	m->stats.handoffs++;
	answer(c, 0, "ok");
	conn_close(c);
	fetch_kick(m);
}

/* Firecracker's message is complete and well formed: map its regions onto
 * the source and adopt its userfaultfd like any handoff. */
static void fc_finish(struct control_conn *c, const struct fc_region *r, size_t n)
{
	struct fl_monitor *m = c->m;
	struct fl_handoff_region *hr;
	uint64_t bytes = 0;
	char err[384] = "";
	int ret;

	if (c->ufd < 0) {
		refuse(c, -EPROTO, "no userfaultfd was attached to the region list (SCM_RIGHTS)");
		return;
	}
	if (c->nfds > 1) {
		snprintf(err, sizeof(err), "%u fds were attached; only Firecracker's anonymous-memory "
			 "mode (one userfaultfd) is supported, not guest_memfd", c->nfds);
		refuse(c, -EPROTO, err);
		return;
	}
	hr = calloc(n, sizeof(*hr));
	if (!hr) {
		refuse(c, -ENOMEM, "out of memory");
		return;
	}
	ret = fc_map_regions(m->src, r, n, hr, err, sizeof(err));
	/*
	 * Features: Firecracker did UFFDIO_API itself, asking for
	 * UFFD_FEATURE_EVENT_REMOVE only (its balloon frees guest memory with
	 * MADV_DONTNEED), and UFFDIO_API cannot be called twice on one fd to
	 * ask which it got. No FORK, REMAP or UNMAP events will come; REMOVE
	 * pages become zero pages (never an unregister).
	 */
	if (!ret)
		ret = fl_monitor_adopt(m, c->ufd, c->peer, UFFD_FEATURE_EVENT_REMOVE, hr, n,
				       err, sizeof(err));
	free(hr);
	if (ret) {
		refuse(c, ret, err);
		return;
	}
	c->ufd = -1; /* the monitor owns it now */
	m->stats.handoffs++;
	for (size_t i = 0; i < n; i++)
		bytes += r[i].size;
	mon_log(m, 1, "Firecracker pid %d: %zu regions, %.1f MiB of guest memory", c->peer, n,
		(double)bytes / (1 << 20));
	conn_close(c);
	fetch_kick(m);
}

static void fc_received(struct control_conn *c)
{
	struct fc_region r[FC_REGIONS_MAX];
	char err[256] = "";
	size_t n;
	int ret = fc_parse(c->msg.json, c->have, r, FC_REGIONS_MAX, &n, err, sizeof(err));

	if (ret == -EAGAIN && c->have == sizeof(c->msg.json)) {
		snprintf(err, sizeof(err), "Firecracker message: longer than %zu bytes",
			 sizeof(c->msg.json));
		ret = -EMSGSIZE;
	}
	if (ret == -EAGAIN)
		return; /* a valid beginning: the rest is on its way */
	if (ret) {
		refuse(c, ret, err);
		return;
	}
	fc_finish(c, r, n);
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
	struct control_conn *c = arg;
	char ctrl[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl, .msg_controllen = sizeof(ctrl) };
	ssize_t n;

	if (what & EV_TIMEOUT) {
		refuse(c, -ETIMEDOUT, c->have ? "the message was still incomplete after 10 s"
					      : "the restorer sent nothing for 10 s");
		return;
	}
	iov.iov_base = c->msg.bytes + c->have;
	iov.iov_len = c->proto == PROTO_FIRECRACKER ? sizeof(c->msg.json) - c->have
						    : wanted(c) - c->have;
	n = recvmsg((int)fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		char why[128];

		if (c->proto == PROTO_FIRECRACKER)
			snprintf(why, sizeof(why), "the client disconnected before its region list "
				 "was complete (%zu bytes received)", c->have);
		else
			snprintf(why, sizeof(why), "the restorer disconnected mid-handoff "
				 "(%zu of %zu bytes)", c->have, wanted(c));
		c->m->stats.handoffs_refused++;
		mon_log(c->m, 0, "handoff from pid %d abandoned: %s", c->peer, why);
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
	if (c->proto == PROTO_FIRECRACKER) {
		fc_received(c);
		return;
	}
	if (c->have == sizeof(c->msg.hdr)) {
		const struct fl_handoff_hdr *h = &c->msg.hdr;

		if (h->magic != FL_HANDOFF_MAGIC) {
			refuse(c, -EPROTO, "not a faultline handoff (bad magic)");
			return;
		}
		if (h->version != FL_HANDOFF_VERSION) {
			refuse(c, -EPROTO, "unsupported handoff version");
			return;
		}
		if (!h->nregions || h->nregions > FL_HANDOFF_MAX_REGIONS) {
			refuse(c, -EINVAL, "region count out of range (1..4096)");
			return;
		}
	}
	if (c->have == wanted(c) && c->have > sizeof(c->msg.hdr))
		finish(c);
}

static void on_accept_proto(evutil_socket_t fd, struct fl_monitor *m,
			    enum control_proto proto)
{
	struct control_conn *c;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct timeval deadline = { HANDOFF_DEADLINE_S, 0 };
	int s = accept4((int)fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (s < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(s);
		return;
	}
	c->m = m;
	c->proto = proto;
	c->fd = s;
	c->ufd = -1;
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		c->peer = cred.pid;
	c->ev = event_new(m->base, s, EV_READ | EV_PERSIST | EV_TIMEOUT, on_conn, c);
	event_priority_set(c->ev, 0);
	event_add(c->ev, &deadline);
	c->next = m->conns;
	m->conns = c;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	on_accept_proto(fd, arg, PROTO_FAULTLINE);
}

static void on_accept_fc(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	on_accept_proto(fd, arg, PROTO_FIRECRACKER);
}

int control_listen(struct fl_monitor *m, const char *path, enum control_proto proto,
		   char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s",
			 sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path); /* a stale socket from an earlier monitor */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		int e = errno;

		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	chmod(path, 0600); /* only our user may hand us memory */
	m->listen_fd[proto] = fd;
	m->listen_ev[proto] = event_new(m->base, fd, EV_READ | EV_PERSIST,
					proto == PROTO_FIRECRACKER ? on_accept_fc : on_accept, m);
	event_priority_set(m->listen_ev[proto], 0);
	event_add(m->listen_ev[proto], NULL);
	return 0;
}

void control_close(struct fl_monitor *m)
{
	while (m->conns)
		conn_close(m->conns);
	for (int k = 0; k < 2; k++) {
		if (m->listen_ev[k])
			event_free(m->listen_ev[k]);
		m->listen_ev[k] = NULL;
		if (m->listen_fd[k] >= 0) {
			struct sockaddr_un sa;
			socklen_t len = sizeof(sa);

			if (getsockname(m->listen_fd[k], (struct sockaddr *)&sa, &len) == 0 &&
			    sa.sun_path[0])
				unlink(sa.sun_path);
			close(m->listen_fd[k]);
		}
		m->listen_fd[k] = -1;
	}
}
