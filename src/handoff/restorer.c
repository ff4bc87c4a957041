// SPDX-License-Identifier: MIT
/*
 * The restorer's side of the userfaultfd handoff: create and register the
 * fd, send it with the region list, read the monitor's answer. What the
 * kernel refuses is never dropped silently: a missing EVENT_FORK (fork
 * children would read zeros) or a user-mode-only fd (kernel accesses
 * would fail with EFAULT) happens only when the caller said it may.
 */
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

int fl_handoff_send_flags(int sock, const struct fl_uffd *u, pid_t pid, uint32_t flags,
			  const struct fl_handoff_region *regions, size_t n,
			  char *err, size_t errlen)
{
	struct fl_handoff_hdr h = {
		.magic = FL_HANDOFF_MAGIC,
		.version = FL_HANDOFF_VERSION,
		.nregions = (uint16_t)n,
		.features = u->features,
		.pid = pid,
		.flags = flags,
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
	if (flags & ~FL_HANDOFF_WIRE_FLAGS)
		return fail(err, errlen, -EINVAL, "handoff: flags %#x cannot be sent (only %#x)",
			    flags, FL_HANDOFF_WIRE_FLAGS);
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

int fl_handoff_send(int sock, const struct fl_uffd *u, pid_t pid,
		    const struct fl_handoff_region *regions, size_t n,
		    char *err, size_t errlen)
{
	return fl_handoff_send_flags(sock, u, pid, 0, regions, n, err, errlen);
}

/* Why the kernel gave no userfaultfd that handles faults raised inside
 * the kernel, and the three ways to fix it. */
static int no_kernel_faults(char *err, size_t errlen, const struct fl_uffd_privilege *p)
{
	return fail(err, errlen, -EPERM,
		    "creating a userfaultfd that also serves faults raised inside the kernel "
		    "(KVM, O_DIRECT, process_vm_readv, io_uring into restored memory): refused, "
		    "this process has no CAP_SYS_PTRACE, vm.unprivileged_userfaultfd is %d (not 1) "
		    "and /dev/userfaultfd is %s. Fix one: run with CAP_SYS_PTRACE, `sysctl "
		    "vm.unprivileged_userfaultfd=1`, or give this user read-write access to "
		    "/dev/userfaultfd; or, if such accesses can never touch a missing page, accept "
		    "a user-mode-only fd (fl_restore_handoff_opts(), allow_user_mode_only)",
		    p->unprivileged_sysctl, !p->dev_userfaultfd ? "absent" :
		    p->dev_userfaultfd_rw ? "usable" : "not ours to open");
}

/*
 * The userfaultfd, as complete as the kernel and the caller allow: first
 * everything; without EVENT_FORK (it always needs CAP_SYS_PTRACE) only if
 * the caller accepts unserved fork children; user-mode-only only if the
 * caller accepts that too. POISON is in `want` and so asked for wherever
 * the kernel offers it (fl_uffd_create asks for want & offered).
 */
static int create_uffd(struct fl_uffd *u, uint64_t want, const struct fl_restore_opts *o,
		       char *err, size_t errlen)
{
	struct fl_uffd_privilege p;
	int ret = fl_uffd_create(u, 0, want, 0, NULL);

	if (ret != -EPERM)
		goto out;
	fl_uffd_privilege_check(&p);
	ret = fl_uffd_create(u, 0, want & ~UFFD_FEATURE_EVENT_FORK, 0, NULL);
	if (!o->allow_no_fork) {
		fl_uffd_close(u);
		return fail(err, errlen, -EPERM,
			    "the kernel refused UFFD_FEATURE_EVENT_FORK: following fork() needs "
			    "CAP_SYS_PTRACE, which this process lacks (vm.unprivileged_userfaultfd=1 "
			    "and access to /dev/userfaultfd allow a userfaultfd, but not EVENT_FORK). "
			    "Without it a child this process forks would read zeros where it had "
			    "data. Fix: run the restorer with CAP_SYS_PTRACE (as root, or `setcap "
			    "cap_sys_ptrace+ep` on its binary)%s; or, if its fork children need not "
			    "be served, accept that (fl_restore_handoff_opts(), allow_no_fork)",
			    ret == -EPERM ? ", which also lets it serve faults raised inside the "
					    "kernel" : "");
	}
	if (ret != -EPERM)
		goto out;
	if (!o->allow_user_mode_only)
		return no_kernel_faults(err, errlen, &p);
	ret = fl_uffd_create(u, FL_UFFD_USER_MODE_ONLY, want & ~UFFD_FEATURE_EVENT_FORK, 0, NULL);
out:
	if (ret)
		return fail(err, errlen, ret, "creating a userfaultfd: %s (see `faultline probe`)",
			    strerror(-ret));
	return 0;
}

int fl_restore_handoff(const char *socket_path,
		       const struct fl_handoff_region *regions, size_t n,
		       struct fl_uffd *u, char *err, size_t errlen)
{
	return fl_restore_handoff_opts(socket_path, regions, n, NULL, u, err, errlen);
}

int fl_restore_handoff_opts(const char *socket_path,
			    const struct fl_handoff_region *regions, size_t n,
			    const struct fl_restore_opts *o, struct fl_uffd *u,
			    char *err, size_t errlen)
{
	static const struct fl_restore_opts strict = { 0 };
	uint64_t want = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EVENT_EXIT |
			UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS |
			UFFD_FEATURE_POISON;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ret, sock;

	if (!o)
		o = &strict;
	ret = create_uffd(u, want, o, err, errlen);
	if (ret)
		return ret;
	if (!fl_uffd_has(u, UFFD_FEATURE_EVENT_FORK) && !o->allow_no_fork) {
		fl_uffd_close(u);
		return fail(err, errlen, -EOPNOTSUPP,
			    "this kernel offers no UFFD_FEATURE_EVENT_FORK: a child this process "
			    "forks would read zeros where it had data. Fix: a kernel with it (4.11 "
			    "and later); or, if fork children need not be served, accept that "
			    "(fl_restore_handoff_opts(), allow_no_fork)");
	}
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
	ret = fl_handoff_send_flags(sock, u, 0, o->allow_no_fork ? FL_HANDOFF_F_NO_FORK : 0,
				    regions, n, err, errlen);
	close(sock);
	if (ret)
		fl_uffd_close(u);
	return ret;
}
