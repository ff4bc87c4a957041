// SPDX-License-Identifier: MIT
/* The restorer's side of the userfaultfd handoff. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <faultline/handoff.h>

static int fail(char *err, size_t len, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && len) {
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len, int timeout_ms)
{
	char *p = buf;

	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r = poll(&pfd, 1, timeout_ms);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fl_handoff_send(int sock, const struct fl_uffd *u, pid_t pid,
		    const struct fl_handoff_region *regions, size_t n,
		    char *err, size_t errlen)
{
	struct fl_handoff_hdr h = {
		.magic = FL_HANDOFF_MAGIC,
		.version = FL_HANDOFF_VERSION,
		.nregions = (uint16_t)n,
		.features = u->features,
		.pid = pid,
	};
	char ctrl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl, .msg_controllen = sizeof(ctrl) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	struct fl_handoff_ack ack;
	char text[256] = "";
	int ret;

	if (!n || n > FL_HANDOFF_MAX_REGIONS)
		return fail(err, errlen, -EINVAL, "handoff: %zu regions (1..%d allowed)",
			    n, FL_HANDOFF_MAX_REGIONS);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &u->fd, sizeof(int));
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != sizeof(h))
		return fail(err, errlen, -errno, "handoff: sending the userfaultfd: %s",
			    strerror(errno));
	ret = write_all(sock, regions, n * sizeof(*regions));
	if (ret)
		return fail(err, errlen, ret, "handoff: sending the region list: %s",
			    strerror(-ret));
	ret = read_all(sock, &ack, sizeof(ack), 30000);
	if (ret)
		return fail(err, errlen, ret, "handoff: no answer from the monitor: %s",
			    strerror(-ret));
	if (ack.msglen >= sizeof(text) ||
	    read_all(sock, text, ack.msglen, 5000))
		return fail(err, errlen, -EPROTO, "handoff: malformed answer from the monitor");
	text[ack.msglen] = 0;
	if (ack.status)
		return fail(err, errlen, ack.status < 0 ? ack.status : -EPROTO,
			    "monitor refused the handoff: %s", text);
	return 0;
}

int fl_restore_handoff(const char *socket_path,
		       const struct fl_handoff_region *regions, size_t n,
		       struct fl_uffd *u, char *err, size_t errlen)
{
	uint64_t want = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EVENT_EXIT |
			UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_POISON |
			UFFD_FEATURE_MISSING_HUGETLBFS;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ret, sock;

	ret = fl_uffd_create(u, 0, want, 0, NULL);
	if (ret == -EPERM) /* EVENT_FORK needs CAP_SYS_PTRACE */
		ret = fl_uffd_create(u, 0, want & ~UFFD_FEATURE_EVENT_FORK, 0, NULL);
	if (ret == -EPERM)
		ret = fl_uffd_create(u, FL_UFFD_USER_MODE_ONLY,
				     want & ~UFFD_FEATURE_EVENT_FORK, 0, NULL);
	if (ret)
		return fail(err, errlen, ret, "creating a userfaultfd: %s (see `faultline probe`)",
			    strerror(-ret));
	for (size_t i = 0; i < n; i++) {
		ret = fl_uffd_register(u->fd, regions[i].addr, regions[i].len,
				       UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret) {
			fl_uffd_close(u);
			return fail(err, errlen, ret, "registering region %zu [%#llx, +%#llx): %s",
				    i, (unsigned long long)regions[i].addr,
				    (unsigned long long)regions[i].len, strerror(-ret));
		}
	}
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		fl_uffd_close(u);
		return fail(err, errlen, -ENAMETOOLONG, "socket path too long: %s", socket_path);
	}
	strcpy(sa.sun_path, socket_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		if (sock >= 0)
			close(sock);
		fl_uffd_close(u);
		return fail(err, errlen, ret, "connecting to the monitor at %s: %s",
			    socket_path, strerror(-ret));
	}
	ret = fl_handoff_send(sock, u, 0, regions, n, err, errlen);
	close(sock);
	if (ret)
		fl_uffd_close(u);
	return ret;
}
