// SPDX-License-Identifier: GPL-2.0
/*
 * fork_pid: UFFD_EVENT_FORK carries the child's pid (patch 3 of the series),
 * so a monitor can open a pidfd for each child as soon as it reads the event.
 *
 * This process opens a userfaultfd with UFFD_FEATURE_EVENT_FORK over one
 * registered page; a monitor thread reads it. The main thread forks N
 * children one after another (fork() waits until the event is read). For
 * each: the event's pid (uffd_msg.arg.fork.pid, the 32 bits after ufd) must
 * equal fork()'s return, and pidfd_open() on it, made by the monitor right
 * after reading the event, before fork() has returned in the parent, must
 * work and name that child (it becomes readable when the child exits).
 *
 * PASS: all N as above. FAIL "fork event pid 0" on a kernel without the
 * patch, which leaves the field 0.
 */
#include "fl_kabi.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

#define NCHILD 16

static int uffd;
static struct {
	uint32_t pid;	/* from the event */
	int pidfd;	/* opened by the monitor at once, or -errno */
	int ufd;
} seen[NCHILD];
static int nseen;

static uint32_t fork_msg_pid(const struct uffd_msg *m)
{
	uint32_t pid;

	/* arg.fork = { __u32 ufd; __u32 pid; } */
	memcpy(&pid, (const char *)&m->arg + sizeof(uint32_t), sizeof(pid));
	return pid;
}

static void *monitor(void *arg)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };
	struct uffd_msg msg;

	(void)arg;
	while (nseen < NCHILD) {
		if (poll(&pfd, 1, 10000) != 1)
			break;
		if (read(uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_FORK)
			continue;
		seen[nseen].ufd = (int)msg.arg.fork.ufd;
		seen[nseen].pid = fork_msg_pid(&msg);
		seen[nseen].pidfd = seen[nseen].pid ?
			(int)syscall(__NR_pidfd_open, seen[nseen].pid, 0) : -ESRCH;
		if (seen[nseen].pidfd < 0 && seen[nseen].pid)
			seen[nseen].pidfd = -errno;
		__atomic_store_n(&nseen, nseen + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_FORK };
	struct uffdio_register reg = { 0 };
	pid_t pids[NCHILD];
	pthread_t thr;
	char *mem;

	fl_test_name = "fork_pid";
	setvbuf(stdout, NULL, _IONBF, 0);
	uffd = fl_uffd_open(O_CLOEXEC);
	if (uffd < 0)
		FL_SKIP("userfaultfd: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_API, &api))
		FL_SKIP("UFFD_FEATURE_EVENT_FORK unsupported: %s", strerror(errno));
	mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FL_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	reg.range.start = (unsigned long)mem;
	reg.range.len = 4096;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	FL_CHECK(!ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER: %s", strerror(errno));
	FL_CHECK(!pthread_create(&thr, NULL, monitor, NULL), "pthread_create");

	for (int i = 0; i < NCHILD; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(0); /* never touches the registered page */
		FL_CHECK(pids[i] > 0, "fork: %s", strerror(errno));
		/* fork() returned: the event was read; the monitor records it */
		while (__atomic_load_n(&nseen, __ATOMIC_ACQUIRE) <= i)
			usleep(100);
	}
	pthread_join(thr, NULL);

	for (int i = 0; i < NCHILD; i++) {
		struct pollfd pfd = { .fd = seen[i].pidfd, .events = POLLIN };
		int status;

		if (seen[i].pid == 0) {
			for (int j = 0; j < NCHILD; j++)
				waitpid(pids[j], &status, 0);
			FL_FAIL("fork event pid 0 (child %d, fork() returned %d): the kernel does not report the child's pid in UFFD_EVENT_FORK",
				i, pids[i]);
		}
		FL_CHECK(seen[i].pid == (uint32_t)pids[i],
			 "fork event %d carries pid %u, fork() returned %d", i, seen[i].pid, pids[i]);
		FL_CHECK(seen[i].pidfd >= 0, "pidfd_open(%u) right after the event: %s",
			 seen[i].pid, strerror(-seen[i].pidfd));
		/* the pidfd names that child: readable once it exited */
		FL_CHECK(waitpid(pids[i], &status, 0) == pids[i], "waitpid: %s", strerror(errno));
		FL_CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN),
			 "pidfd of child %d not readable after it exited", pids[i]);
		close(seen[i].pidfd);
		close(seen[i].ufd);
	}
	FL_PASS("%d forks: each UFFD_EVENT_FORK carries fork()'s pid; pidfd_open() on it works at once", NCHILD);
}
