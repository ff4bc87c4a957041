// SPDX-License-Identifier: GPL-2.0
/*
 * exit_event: UFFD_FEATURE_EVENT_EXIT (patch 1 of the series).
 *
 * A child creates a userfaultfd asking for UFFD_FEATURE_EVENT_EXIT,
 * registers a page, hands the fd to us over SCM_RIGHTS and exits. We do not
 * read the fd until the child has been reaped: its exit must complete
 * without any help from the monitor. Then poll() must report
 * POLLIN|POLLHUP, read() one UFFD_EVENT_EXIT with the child's pid, poll()
 * POLLHUP alone, and read() end of file.
 *
 * A second round does the same for a child with two threads, the
 * last of which exits while the other has already gone.
 *
 * Expected: PASS on the patched kernel; FAIL on an unpatched one (UFFDIO_API
 * rejects the feature).
 */
#include "fl_kabi.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int send_fd(int sock, int fd, char status)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &status, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (fd >= 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, 0) == 1 ? 0 : -1;
}

/* returns the fd, or -errno reported by the child */
static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char status = 0;
	struct iovec iov = { .iov_base = &status, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &mh, 0) != 1)
		return -EPIPE;
	if (status)
		return -status;
	cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -EPROTO;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static void *thread_exit(void *arg)
{
	(void)arg;
	usleep(20000);
	/* the main thread is gone already: this thread drops the mm */
	syscall(SYS_exit, 0);
	return NULL;
}

static void child(int sock, int threaded)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_EVENT_EXIT };
	struct uffdio_register reg = { 0 };
	pthread_t t;
	void *mem;
	int fd;

	fd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		send_fd(sock, -1, (char)errno);
		_exit(1);
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		send_fd(sock, -1, (char)errno);
		_exit(1);
	}
	mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (unsigned long)mem;
	reg.range.len = 4096;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (mem == MAP_FAILED || ioctl(fd, UFFDIO_REGISTER, &reg)) {
		send_fd(sock, -1, (char)errno);
		_exit(1);
	}
	if (send_fd(sock, fd, 0))
		_exit(1);
	if (threaded) {
		if (pthread_create(&t, NULL, thread_exit, NULL))
			_exit(1);
		/* leave only this thread's task: the other drops the mm */
		syscall(SYS_exit, 0);
	}
	_exit(0);
}

/* one round; returns only on success */
static void round_trip(int threaded)
{
	struct uffd_msg msg;
	struct pollfd pfd;
	int sv[2], fd, status, n;
	double t0, t_exit;
	pid_t pid, w;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		FL_FAIL("socketpair: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		FL_FAIL("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sv[0]);
		child(sv[1], threaded);
	}
	close(sv[1]);
	fd = recv_fd(sv[0]);
	close(sv[0]);
	if (fd < 0) {
		waitpid(pid, &status, 0);
		if (fd == -EINVAL)
			FL_FAIL("UFFDIO_API rejects UFFD_FEATURE_EVENT_EXIT: kernel lacks the exit event (EINVAL)");
		FL_FAIL("child could not set up its userfaultfd: %s", strerror(-fd));
	}

	/* reap the child without reading the uffd: exit must not block */
	t0 = now();
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (now() - t0 > 5.0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			FL_FAIL("child did not finish exiting within 5 s while its uffd was unread");
		}
		usleep(1000);
	}
	t_exit = now() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		FL_FAIL("child failed (status 0x%x)", status);

	pfd.fd = fd;
	pfd.events = POLLIN;
	n = poll(&pfd, 1, 2000);
	if (n != 1 || (pfd.revents & (POLLIN | POLLHUP)) != (POLLIN | POLLHUP))
		FL_FAIL("poll after exit: n=%d revents=0x%x, want POLLIN|POLLHUP",
			n, pfd.revents);
	n = read(fd, &msg, sizeof(msg));
	if (n != sizeof(msg))
		FL_FAIL("read exit event: n=%d %s", n, strerror(errno));
	if (msg.event != UFFD_EVENT_EXIT)
		FL_FAIL("got event 0x%x, want UFFD_EVENT_EXIT 0x%x", msg.event, UFFD_EVENT_EXIT);
	if ((pid_t)fl_msg_exit_pid(&msg) != pid)
		FL_FAIL("exit event pid %u, want %d", fl_msg_exit_pid(&msg), pid);
	n = poll(&pfd, 1, 0);
	if (n != 1 || pfd.revents != POLLHUP)
		FL_FAIL("poll after reading exit: n=%d revents=0x%x, want POLLHUP", n, pfd.revents);
	n = read(fd, &msg, sizeof(msg));
	if (n != 0)
		FL_FAIL("read after exit event returned %d (%s), want 0 (EOF)",
			n, n < 0 ? strerror(errno) : "data");
	close(fd);
	printf("exit_event: %s child %d exited in %.1f ms, event pid %u\n",
	       threaded ? "threaded" : "single-threaded", pid, t_exit * 1e3,
	       fl_msg_exit_pid(&msg));
}

int main(void)
{
	fl_test_name = "exit_event";
	setvbuf(stdout, NULL, _IONBF, 0);
	round_trip(0);
	round_trip(1);
	FL_PASS("UFFD_EVENT_EXIT delivered with the child's pid, exit not blocked, POLLHUP and EOF after");
}
