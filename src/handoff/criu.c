// SPDX-License-Identifier: MIT
/*
 * CRIU's lazy-pages socket (criu.h). One connection, read without blocking
 * on the caller's loop, as a small state machine: a pid (4 bytes), then
 * for a live process one byte with its userfaultfd attached; after
 * `nprocs` records, the finished word. Each read asks for exactly the
 * bytes of the current step, so an fd is always read with the byte it
 * came with. The daemon never writes to this socket.
 *
 * A refusal cannot be told to CRIU, and closing a userfaultfd that still
 * owes pages makes the kernel map zeros there: a process whose handoff is
 * refused is killed instead, with the reason logged.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "criu.h"

enum step { WANT_LISTEN, WANT_PID, WANT_FD, WANT_FINISHED, DONE };

struct criu_handoff {
	struct event_base *base;
	int listen_fd, fd;
	struct event *listen_ev, *ev;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t nprocs, records;
	int verbose;
	enum step step;
	unsigned char buf[4];
	size_t have;
	int32_t pid;
	uint64_t features; /* what CRIU asks for, as far as the kernel has it */
	struct criu_handoff_ops ops;
	void *arg;
};

__attribute__((format(printf, 3, 4)))
static void hlog(const struct criu_handoff *s, int level, const char *fmt, ...)
{
	va_list ap;

	if (level > s->verbose)
		return;
	fprintf(stderr, "lazy-pages: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void stop_reading(struct criu_handoff *s)
{
	if (s->ev)
		event_free(s->ev);
	s->ev = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static void fail(struct criu_handoff *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct criu_handoff *s, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	hlog(s, 0, "criu restore: %s", why);
	stop_reading(s);
	s->step = DONE;
	if (s->ops.failed)
		s->ops.failed(s->arg, why);
}

/* One record with its fd: build the handoff and give it away. */
static void take(struct criu_handoff *s, int ufd, pid_t host_pid)
{
	struct fl_handoff h = { .proto = FL_HANDOFF_CRIU, .uffd = ufd, .pid = host_pid,
				.features = s->features, .flags = FL_HANDOFF_F_FEATURES_ASSUMED,
				.nfds = 1 };
	char err[512] = "";
	int ret;

	ret = s->ops.regions(s->arg, s->pid, &h, err, sizeof(err));
	if (ret == 0 && h.nregions == 0) {
		/* Nothing lazy: every fault there is a page CRIU never saw,
		 * which the kernel fills with zeros once no uffd is left. */
		hlog(s, 1, "pid %d (host pid %d): no lazy pages; its userfaultfd is closed",
		     s->pid, (int)host_pid);
		fl_handoff_free(&h);
		return;
	}
	if (ret == 0)
		ret = s->ops.accept(s->arg, &h, err, sizeof(err));
	if (ret) {
		hlog(s, 0, "pid %d (host pid %d) refused: %s; it is killed rather than left "
		     "to read zeros", s->pid, (int)host_pid, err);
		if (host_pid > 0)
			kill(host_pid, SIGKILL);
	} else {
		hlog(s, 1, "pid %d (host pid %d): %zu lazy ranges", s->pid, (int)host_pid,
		     h.nregions);
	}
	fl_handoff_free(&h);
}

/* Read the current step's bytes. 1: complete, 0: more to come, -1: failed. */
static int read_step(struct criu_handoff *s, size_t want, int *ufd, pid_t *cred_pid)
{
	char cbuf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = { s->buf + s->have, want - s->have };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(s->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	int nfds = 0;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0) {
		fail(s, "reading the lazy-pages socket: %s", strerror(errno));
		return -1;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[8];

			memcpy(fds, CMSG_DATA(c), (k < 8 ? k : 8) * sizeof(int));
			for (size_t i = 0; i < k && i < 8; i++) {
				if (*ufd < 0)
					*ufd = fds[i];
				else
					close(fds[i]);
				nfds++;
			}
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
			   cred_pid) {
			struct ucred cr;

			memcpy(&cr, CMSG_DATA(c), sizeof(cr));
			*cred_pid = cr.pid;
		}
	}
	if (n == 0) {
		if (*ufd >= 0)
			close(*ufd);
		*ufd = -1;
		fail(s, "the connection closed after %zu of %zu records%s", s->records,
		     s->nprocs, s->step == WANT_FINISHED ? ", before the 'restore finished' word" :
		     "");
		return -1;
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		if (*ufd >= 0)
			close(*ufd);
		*ufd = -1;
		fail(s, "record %zu (pid %d): control message truncated (more than one fd?)",
		     s->records + 1, s->pid);
		return -1;
	}
	s->have += (size_t)n;
	if (nfds && s->step != WANT_FD) {
		fail(s, "an fd arrived outside a record's fd byte (record %zu)", s->records + 1);
		goto drop;
	}
	if (nfds > 1) {
		fail(s, "record %zu (pid %d) carried %d fds, CRIU sends exactly one",
		     s->records + 1, s->pid, nfds);
		goto drop;
	}
	return s->have == want;
drop:
	if (*ufd >= 0)
		close(*ufd);
	*ufd = -1;
	return -1;
}

static void on_data(evutil_socket_t fd, short what, void *arg)
{
	struct criu_handoff *s = arg;

	(void)fd;
	(void)what;
	for (;;) {
		int ufd = -1, r;
		pid_t cred = 0;
		uint32_t word;

		switch (s->step) {
		case WANT_PID:
			if ((r = read_step(s, 4, &ufd, NULL)) <= 0)
				return;
			memcpy(&s->pid, s->buf, 4);
			s->have = 0;
			if (s->pid == 0 || s->pid == INT32_MIN) {
				fail(s, "record %zu: pid %d is not a process", s->records + 1, s->pid);
				return;
			}
			if (s->pid < 0) {
				hlog(s, 1, "pid %d is a zombie: no memory to serve", -s->pid);
				s->records++;
				s->step = s->records == s->nprocs ? WANT_FINISHED : WANT_PID;
			} else {
				s->step = WANT_FD;
			}
			break;
		case WANT_FD:
			r = read_step(s, 1, &ufd, &cred);
			if (r < 0) {
				if (ufd >= 0)
					close(ufd);
				return;
			}
			if (r == 0) {
				if (ufd >= 0) /* an fd with no byte: cannot happen */
					close(ufd);
				return;
			}
			s->have = 0;
			if (ufd < 0) {
				fail(s, "record %zu (pid %d) came without its userfaultfd",
				     s->records + 1, s->pid);
				return;
			}
			s->records++;
			s->step = s->records == s->nprocs ? WANT_FINISHED : WANT_PID;
			take(s, ufd, cred);
			break;
		case WANT_FINISHED:
			if ((r = read_step(s, 4, &ufd, NULL)) <= 0)
				return;
			memcpy(&word, s->buf, 4);
			s->have = 0;
			if (word != CRIU_RESTORE_FINISHED) {
				fail(s, "after %zu records, %#x instead of the 'restore finished' word "
				     "%#x", s->records, word, CRIU_RESTORE_FINISHED);
				return;
			}
			hlog(s, 1, "restore finished: %zu processes", s->records);
			stop_reading(s);
			s->step = DONE;
			if (s->ops.finished)
				s->ops.finished(s->arg);
			return;
		default:
			return;
		}
	}
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct criu_handoff *s = arg;
	int one = 1;

	(void)what;
	s->fd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (s->fd < 0)
		return;
	/* Exactly one connection: criu restore's. */
	event_free(s->listen_ev);
	s->listen_ev = NULL;
	close(s->listen_fd);
	s->listen_fd = -1;
	unlink(s->path);
	/* Each record is sent by the restored process itself: its
	 * credentials say which host pid it is. */
	setsockopt(s->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	s->ev = event_new(s->base, s->fd, EV_READ | EV_PERSIST, on_data, s);
	if (!s->ev) {
		fail(s, "out of memory");
		return;
	}
	event_priority_set(s->ev, 0);
	event_add(s->ev, NULL);
	s->step = WANT_PID;
	hlog(s, 1, "criu restore connected");
}

int fl__criu_handoff_create(struct criu_handoff **out, struct event_base *base,
			    const char *path, size_t nprocs, int verbose,
			    const struct criu_handoff_ops *ops, void *arg, char *err,
			    size_t errlen)
{
	struct criu_handoff *s = calloc(1, sizeof(*s));
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	uint64_t have = 0;
	int one = 1;

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->base = base;
	s->fd = -1;
	s->nprocs = nprocs;
	s->verbose = verbose;
	s->ops = *ops;
	s->arg = arg;
	/* CRIU opened the fd asking for these; the kernel granted what it has. */
	fl_uffd_probe(0, &have, NULL);
	s->features = have & (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			      UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP);
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a unix socket", path);
		free(s);
		return -ENAMETOOLONG;
	}
	strcpy(s->path, path);
	strcpy(a.sun_path, path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unlink(path);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(s->listen_fd, 10)) {
		int e = errno;

		snprintf(err, errlen, "listening on %s: %s", path, strerror(e));
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		free(s);
		return -e;
	}
	setsockopt(s->listen_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	s->listen_ev = event_new(base, s->listen_fd, EV_READ | EV_PERSIST, on_accept, s);
	if (!s->listen_ev) {
		close(s->listen_fd);
		unlink(path);
		free(s);
		return -ENOMEM;
	}
	event_add(s->listen_ev, NULL);
	s->step = WANT_LISTEN;
	*out = s;
	return 0;
}

void fl__criu_handoff_destroy(struct criu_handoff *s)
{
	if (!s)
		return;
	stop_reading(s);
	if (s->listen_ev)
		event_free(s->listen_ev);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->path);
	}
	free(s);
}
