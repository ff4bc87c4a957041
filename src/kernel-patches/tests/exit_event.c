// SPDX-License-Identifier: GPL-2.0
/*
 * exit_event: UFFD_FEATURE_EVENT_EXIT (patch 1 of the series).
 *
 * A child creates a userfaultfd asking for UFFD_FEATURE_EVENT_EXIT,
 * registers a page, lets us take the fd (pidfd_getfd) and exits. We do not
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
#include <sys/wait.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif

/*
 * The guest kernel has no CONFIG_NET, so no SCM_RIGHTS: the child reports
 * its fd number (or errno) on a pipe and we take the fd with pidfd_getfd().
 */
static void report(int wfd, int fd, int err)
{
	int msg[2] = { fd, err };

	if (write(wfd, msg, sizeof(msg)) != sizeof(msg))
		_exit(1);
}

static void *thread_exit(void *arg)
{
	(void)arg;
	usleep(20000);
	/* the main thread is gone already: this thread drops the mm */
	syscall(SYS_exit, 0);
	return NULL;
}

static void child(int wfd, int rfd, int threaded)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_EVENT_EXIT };
	struct uffdio_register reg = { 0 };
	pthread_t t;
	void *mem;
	int fd;

	fd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		report(wfd, -1, errno);
		_exit(1);
	}
	if (ioctl(fd, UFFDIO_API, &api)) {
		report(wfd, -1, errno);
		_exit(1);
	}
	mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg.range.start = (unsigned long)mem;
	reg.range.len = 4096;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (mem == MAP_FAILED || ioctl(fd, UFFDIO_REGISTER, &reg)) {
		report(wfd, -1, errno);
		_exit(1);
	}
	report(wfd, fd, 0);
	/* wait until the monitor holds the fd, then go */
	if (read(rfd, &api, 1) != 1)
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
	int up[2], down[2], msg2[2], fd, pidfd, status, n;
	double t0, t_exit;
	pid_t pid, w;

	if (pipe(up) || pipe(down))
		FL_FAIL("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		FL_FAIL("fork: %s", strerror(errno));
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		child(up[1], down[0], threaded);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], msg2, sizeof(msg2)) != sizeof(msg2)) {
		msg2[0] = -1;
		msg2[1] = EPIPE;
	}
	if (msg2[0] < 0) {
		waitpid(pid, &status, 0);
		if (msg2[1] == EINVAL)
			FL_FAIL("UFFDIO_API rejects UFFD_FEATURE_EVENT_EXIT: kernel lacks the exit event (EINVAL)");
		FL_FAIL("child could not set up its userfaultfd: %s", strerror(msg2[1]));
	}
	pidfd = (int)syscall(__NR_pidfd_open, pid, 0);
	fd = pidfd < 0 ? -1 : (int)syscall(__NR_pidfd_getfd, pidfd, msg2[0], 0);
	if (fd < 0) {
		n = errno;
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		FL_SKIP("cannot take the child's userfaultfd with pidfd_getfd: %s", strerror(n));
	}
	close(pidfd);
	/* let the child exit; from here on nobody reads the uffd until reaped */
	if (write(down[1], "x", 1) != 1)
		FL_FAIL("pipe write: %s", strerror(errno));
	close(down[1]);
	close(up[0]);

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
	if (fl_msg_exit_flags(&msg) != 0)
		FL_FAIL("exit event flags 0x%x after an exit, want 0", fl_msg_exit_flags(&msg));
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

/* read one message from a non-blocking uffd, waiting up to 5 s */
static int read_msg(int fd, struct uffd_msg *msg)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (poll(&pfd, 1, 5000) != 1)
		return -ETIMEDOUT;
	return read(fd, msg, sizeof(*msg)) == sizeof(*msg) ? 0 : -errno;
}

/* take fd number @num of @pid with pidfd_getfd() */
static int steal_fd(pid_t pid, int num)
{
	int pidfd = (int)syscall(__NR_pidfd_open, pid, 0), fd;

	if (pidfd < 0)
		return -1;
	fd = (int)syscall(__NR_pidfd_getfd, pidfd, num, 0);
	close(pidfd);
	return fd;
}

/*
 * A uffd that asked for EVENT_FORK|EVENT_EXIT: the process forks, the
 * monitor gets the child's uffd from UFFD_EVENT_FORK. That context was
 * created before the grandchild had a pid; its exit must still report the
 * right pid, and the parent's exit its own.
 */
static void round_fork(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_EVENT_EXIT | UFFD_FEATURE_EVENT_FORK };
	struct uffdio_register reg = { 0 };
	int up[2], down[2], msg2[2], fd, cfd, status;
	struct uffd_msg msg;
	pid_t pid, gpid = 0;
	void *mem;

	if (pipe(up) || pipe(down))
		FL_FAIL("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		fd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 || ioctl(fd, UFFDIO_API, &api))
			report(up[1], -1, errno), _exit(1);
		mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		reg.range.start = (unsigned long)mem;
		reg.range.len = 4096;
		reg.mode = UFFDIO_REGISTER_MODE_MISSING;
		if (mem == MAP_FAILED || ioctl(fd, UFFDIO_REGISTER, &reg))
			report(up[1], -1, errno), _exit(1);
		report(up[1], fd, 0);
		if (read(down[0], &api, 1) != 1)
			_exit(1);
		/* blocks until the monitor reads UFFD_EVENT_FORK */
		gpid = fork();
		if (gpid == 0)
			_exit(0);
		if (write(up[1], &gpid, sizeof(gpid)) != sizeof(gpid))
			_exit(1);
		waitpid(gpid, &status, 0);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], msg2, sizeof(msg2)) != sizeof(msg2) || msg2[0] < 0) {
		waitpid(pid, &status, 0);
		FL_FAIL("fork round: child could not set up its uffd: %s", strerror(msg2[1]));
	}
	fd = steal_fd(pid, msg2[0]);
	if (fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		FL_SKIP("pidfd_getfd: %s", strerror(errno));
	}
	if (write(down[1], "x", 1) != 1)
		FL_FAIL("pipe write: %s", strerror(errno));
	if (read_msg(fd, &msg) || msg.event != UFFD_EVENT_FORK)
		FL_FAIL("fork round: no UFFD_EVENT_FORK (event 0x%x)", msg.event);
	cfd = (int)msg.arg.fork.ufd;
	if (read(up[0], &gpid, sizeof(gpid)) != sizeof(gpid))
		FL_FAIL("fork round: no grandchild pid");
	waitpid(pid, &status, 0);
	if (read_msg(cfd, &msg) || msg.event != UFFD_EVENT_EXIT)
		FL_FAIL("fork round: no UFFD_EVENT_EXIT on the forked uffd (event 0x%x)", msg.event);
	if ((pid_t)fl_msg_exit_pid(&msg) != gpid)
		FL_FAIL("fork round: forked uffd reports pid %u, want %d", fl_msg_exit_pid(&msg), gpid);
	if (read_msg(fd, &msg) || msg.event != UFFD_EVENT_EXIT ||
	    (pid_t)fl_msg_exit_pid(&msg) != pid)
		FL_FAIL("fork round: parent uffd: event 0x%x pid %u, want EXIT pid %d",
			msg.event, fl_msg_exit_pid(&msg), pid);
	close(cfd);
	close(fd);
	close(up[0]);
	close(down[1]);
	printf("exit_event: forked uffd reported grandchild %d, parent uffd child %d\n", gpid, pid);
}

/*
 * execve() drops the old mm: the event comes although the process lives on.
 */
static void round_exec(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_EXIT };
	int up[2], down[2], msg2[2] = { -1, 0 }, fd, status;
	struct uffd_msg msg;
	pid_t pid;

	if (pipe(up) || pipe(down))
		FL_FAIL("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		char *argv[] = { "exit_event", "--exec-child", NULL };

		close(up[0]);
		close(down[1]);
		fd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		if (fd < 0 || ioctl(fd, UFFDIO_API, &api))
			report(up[1], -1, errno), _exit(1);
		report(up[1], fd, 0);
		if (read(down[0], &api, 1) != 1)
			_exit(1);
		execv("/proc/self/exe", argv);
		_exit(1);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], msg2, sizeof(msg2)) != sizeof(msg2) || msg2[0] < 0) {
		waitpid(pid, &status, 0);
		FL_FAIL("exec round: child could not set up its uffd: %s", strerror(msg2[1]));
	}
	fd = steal_fd(pid, msg2[0]);
	if (fd < 0)
		FL_FAIL("exec round: pidfd_getfd: %s", strerror(errno));
	if (write(down[1], "x", 1) != 1)
		FL_FAIL("pipe write: %s", strerror(errno));
	if (read_msg(fd, &msg) || msg.event != UFFD_EVENT_EXIT ||
	    (pid_t)fl_msg_exit_pid(&msg) != pid)
		FL_FAIL("exec round: event 0x%x pid %u, want EXIT pid %d", msg.event,
			fl_msg_exit_pid(&msg), pid);
	if (fl_msg_exit_flags(&msg) != UFFD_EXIT_FLAG_EXEC)
		FL_FAIL("exec round: exit event flags 0x%x, want UFFD_EXIT_FLAG_EXEC",
			fl_msg_exit_flags(&msg));
	if (waitpid(pid, &status, WNOHANG) != 0)
		FL_FAIL("exec round: the process should still run its new image");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(fd);
	close(up[0]);
	close(down[1]);
	printf("exit_event: execve in %d reported while the process runs on\n", pid);
}

/*
 * Many short-lived processes whose uffds the monitor closes at random
 * moments, racing release against the exit path; the kernel must survive
 * and every uffd still open must end with exactly one UFFD_EVENT_EXIT.
 */
static void round_stress(void)
{
	enum { N = 64 };
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_EXIT };
	int up[2], msg2[2], fd[N], status, got = 0, closed = 0;
	struct uffd_msg msg;
	pid_t pid[N];

	for (int i = 0; i < N; i++) {
		if (pipe(up))
			FL_FAIL("pipe: %s", strerror(errno));
		pid[i] = fork();
		if (pid[i] == 0) {
			int f = fl_uffd_open(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

			close(up[0]);
			if (f < 0 || ioctl(f, UFFDIO_API, &api))
				report(up[1], -1, errno), _exit(1);
			report(up[1], f, 0);
			usleep((i % 7) * 300);
			_exit(0);
		}
		close(up[1]);
		if (read(up[0], msg2, sizeof(msg2)) != sizeof(msg2) || msg2[0] < 0)
			FL_FAIL("stress: child %d could not set up its uffd", i);
		close(up[0]);
		fd[i] = steal_fd(pid[i], msg2[0]);
		/* the child may be gone already: then it is an exited mm */
		if (fd[i] >= 0 && i % 3 == 0) {
			usleep((i % 5) * 200);
			close(fd[i]);
			fd[i] = -1;
			closed++;
		}
	}
	for (int i = 0; i < N; i++)
		waitpid(pid[i], &status, 0);
	for (int i = 0; i < N; i++) {
		if (fd[i] < 0)
			continue;
		if (read_msg(fd[i], &msg) || msg.event != UFFD_EVENT_EXIT ||
		    (pid_t)fl_msg_exit_pid(&msg) != pid[i])
			FL_FAIL("stress: uffd %d: event 0x%x pid %u, want EXIT pid %d", i,
				msg.event, fl_msg_exit_pid(&msg), pid[i]);
		if (read(fd[i], &msg, sizeof(msg)) != 0)
			FL_FAIL("stress: uffd %d: second read is not EOF", i);
		got++;
		close(fd[i]);
	}
	printf("exit_event: stress: %d exits reported, %d uffds closed early\n", got, closed);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--exec-child")) {
		sleep(10);
		return 0;
	}
	fl_test_name = "exit_event";
	setvbuf(stdout, NULL, _IONBF, 0);
	round_trip(0);
	round_trip(1);
	round_fork();
	round_exec();
	round_stress();
	FL_PASS("UFFD_EVENT_EXIT with the right pid after exit, last-thread exit, fork-inherited uffd and execve; exit never blocked; POLLHUP and EOF after");
}
