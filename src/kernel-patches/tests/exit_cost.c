// SPDX-License-Identifier: GPL-2.0
/*
 * exit_cost: the figures behind the cover letter's answer to "the exit
 * event is superfluous, resolves already fail with ESRCH". Not a test: it
 * passes whenever it could measure, and is not in the harness' default list
 * (run.sh --tests exit_cost; also runs on the host, without the event).
 *
 * What faultline's monitor does without the event (src/monitor/monitor.c):
 * every PROBE_MS it issues one UFFDIO_WRITEPROTECT (un-protect, DONTWAKE)
 * of one page per process it has no pidfd for (fork children: no pid), and
 * takes ESRCH as "gone". Measured here:
 *
 *   probe     ns per probe ioctl on a live process's userfaultfd
 *   esrch     after the child's exit was reaped, how long until the probe
 *             ioctl answers ESRCH (probing back to back); the monitor adds
 *             up to PROBE_MS on top, PROBE_MS / 2 on average
 *   event     (UFFD_FEATURE_EVENT_EXIT) from the child's last instruction
 *             before _exit() to poll() waking the monitor on its uffd
 *   exec      the child execve()s and lives on: whether its pidfd reports
 *             anything within 200 ms (it does not), what the probe says
 *             (ESRCH: indistinguishable from an exit), and the event
 *             (UFFD_EXIT_FLAG_EXEC) with its latency
 */
#include "fl_kabi.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

#define PROBE_MS 200 /* PROBE_INTERVAL_MS of src/monitor/monitor.c */
#define NPROBE 20000

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* the probe faultline's monitor issues */
static int probe(int fd)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = 1UL << 30, .len = 4096 },
		.mode = UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
	};

	return ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

static double *t_exit;	 /* shared: set by the child just before _exit */
static uint64_t features;

/* a real child with its own mm: fork, open the uffd, pass its number back */
static pid_t spawn_proc(int mode, int *fd_out)
{
	int up[2], down[2], n = -1;
	pid_t pid;

	FL_CHECK(!pipe(up) && !pipe(down), "pipe: %s", strerror(errno));
	pid = fork();
	FL_CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		struct uffdio_api api = { .api = UFFD_API, .features = features };
		int fd = fl_uffd_open(O_NONBLOCK);
		char c;

		if (fd < 0 || ioctl(fd, UFFDIO_API, &api))
			fd = -1;
		if (write(up[1], &fd, sizeof(fd)) != sizeof(fd) || fd < 0)
			_exit(3);
		if (read(down[0], &c, 1) != 1)
			_exit(3);
		if (mode == 1) {
			char *argv[] = { "exit_cost", "--idle", NULL };

			*t_exit = now();
			execv("/proc/self/exe", argv);
			_exit(4);
		}
		*t_exit = now();
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], &n, sizeof(n)) != sizeof(n) || n < 0)
		FL_SKIP("child could not open a userfaultfd");
	{
		int pidfd = (int)syscall(__NR_pidfd_open, pid, 0);

		*fd_out = pidfd < 0 ? -1 : (int)syscall(__NR_pidfd_getfd, pidfd, n, 0);
		if (*fd_out < 0)
			FL_SKIP("pidfd_getfd: %s", strerror(errno));
		close(pidfd);
	}
	t_exit[1] = down[1]; /* the go pipe */
	close(up[0]);
	return pid;
}

static void go(void)
{
	int fd = (int)t_exit[1];

	FL_CHECK(write(fd, "x", 1) == 1, "go: %s", strerror(errno));
	close(fd);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	struct uffdio_api api = { .api = UFFD_API };
	double probe_ns, esrch_us[5], event_us = -1, exec_event_us = -1, t0;
	int fd, exec_probe = 0, exec_flags = -1, pidfd_said = 0, status;
	int has_exit, tmp;
	char buf[600], ev[100], ex[100];
	pid_t pid;

	if (argc > 1 && !strcmp(argv[1], "--idle")) {
		sleep(2);
		return 0;
	}
	fl_test_name = "exit_cost";
	setvbuf(stdout, NULL, _IONBF, 0);
	t_exit = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	FL_CHECK(t_exit != MAP_FAILED, "mmap");
	tmp = fl_uffd_open(O_NONBLOCK);
	if (tmp < 0 || ioctl(tmp, UFFDIO_API, &api))
		FL_SKIP("userfaultfd: %s", strerror(errno));
	close(tmp);
	/* only with the series' proof in fdinfo (see src/uffd/series.c) */
	has_exit = 0;
	if (api.features & UFFD_FEATURE_EVENT_EXIT) {
		char path[64];
		FILE *f;

		tmp = fl_uffd_open(O_NONBLOCK);
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", tmp);
		f = fopen(path, "r");
		while (f && fgets(buf, sizeof(buf), f))
			if (!strncmp(buf, "exit_event:\t17:20000", 20))
				has_exit = 1;
		if (f)
			fclose(f);
		close(tmp);
	}
	features = has_exit ? UFFD_FEATURE_EVENT_EXIT : 0;

	/* probe cost on a live process */
	pid = spawn_proc(0, &fd);
	t0 = now();
	for (int i = 0; i < NPROBE; i++)
		probe(fd);
	probe_ns = (now() - t0) / NPROBE * 1e9;
	FL_CHECK(probe(fd) != -ESRCH, "probe says ESRCH for a live process");

	/* ESRCH after exit, probing back to back */
	for (int r = 0; r < 5; r++) {
		if (r) {
			close(fd);
			pid = spawn_proc(0, &fd);
		}
		go();
		FL_CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
		t0 = now();
		while (probe(fd) != -ESRCH && now() - t0 < 1)
			;
		esrch_us[r] = (now() - t0) * 1e6;
	}
	qsort(esrch_us, 5, sizeof(double), cmp);
	close(fd);

	if (has_exit) {
		struct pollfd pfd = { .events = POLLIN };
		double lat[5];

		for (int r = 0; r < 5; r++) {
			pid = spawn_proc(0, &fd);
			pfd.fd = fd;
			go();
			FL_CHECK(poll(&pfd, 1, 5000) == 1, "no exit event within 5 s");
			lat[r] = (now() - *t_exit) * 1e6;
			waitpid(pid, &status, 0);
			close(fd);
		}
		qsort(lat, 5, sizeof(double), cmp);
		event_us = lat[2];
	}

	/* execve: the process lives on */
	{
		struct pollfd pp = { .events = POLLIN }, pu = { .events = POLLIN };
		struct uffd_msg msg;

		pid = spawn_proc(1, &fd);
		pp.fd = (int)syscall(__NR_pidfd_open, pid, 0);
		pu.fd = fd;
		go();
		if (has_exit) {
			FL_CHECK(poll(&pu, 1, 5000) == 1, "no exit event after execve within 5 s");
			exec_event_us = (now() - *t_exit) * 1e6;
			if (read(fd, &msg, sizeof(msg)) == sizeof(msg) && msg.event == UFFD_EVENT_EXIT)
				exec_flags = (int)fl_msg_exit_flags(&msg);
		}
		usleep(50000);
		t0 = now();
		while (probe(fd) != -ESRCH && now() - t0 < 1)
			;
		exec_probe = probe(fd) == -ESRCH;
		pidfd_said = poll(&pp, 1, 200) == 1;
		FL_CHECK(kill(pid, 0) == 0, "the exec'd child is gone");
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(fd);
	}

	snprintf(ev, sizeof(ev), "%.0f us from _exit() to poll() (median of 5)", event_us);
	snprintf(ex, sizeof(ex), "EXIT with UFFD_EXIT_FLAG_EXEC %.0f us after execve()", exec_event_us);
	snprintf(buf, sizeof(buf),
		 "probe %.0f ns per process per %d ms tick; ESRCH %.0f us after reaping (median of 5), "
		 "+ up to %d ms probe period; exit event %s; execve: pidfd %s, probe %s, event %s",
		 probe_ns, PROBE_MS, esrch_us[2], PROBE_MS,
		 event_us < 0 ? "n/a (kernel without the series)" : ev,
		 pidfd_said ? "readable (!)" : "silent",
		 exec_probe ? "ESRCH (reads as an exit)" : "no ESRCH",
		 exec_flags < 0 ? "n/a" : exec_flags == UFFD_EXIT_FLAG_EXEC ? ex :
		 "EXIT without the exec flag (!)");
	FL_PASS("%s", buf);
}
