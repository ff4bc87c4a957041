// SPDX-License-Identifier: GPL-2.0
/*
 * tap_runner NAME PROGRAM SECONDS [CASE-FILTER]
 *
 * (CASE-FILTER, if given, is the program's first argument: only the cases
 * whose names hold it run.)
 *
 * Runs one TAP test program of the project's suite (tests/uffd/test_*),
 * copies its TAP output to stdout (prefixed "<prog>| ") and the interesting
 * part of its stderr (cmocka's assertion messages, prefixed "<prog>! "),
 * and prints one line
 *
 *   FAULTLINE-RESULT NAME PASS|FAIL <passed/skipped/failed counts, failures>
 *
 * PASS means: a plan line, as many results as planned, every one "ok"
 * (skips allowed), exit status 0, within SECONDS. The program's cases fork
 * into their own process groups, so this process is a child subreaper and
 * kills whatever of the program is left when it exits or times out; that
 * makes it safe to use on the host too.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

struct stream {
	int fd;
	char buf[8192];
	size_t len;
	int is_tap;
};

static const char *prog_name;
static long plan = -1, passed, skipped, failed;
static char failures[1024];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void add_failure(const char *line)
{
	/* "not ok N - name # directive": keep the name */
	const char *name = strstr(line, " - ");
	size_t used = strlen(failures), n;
	const char *end;

	name = name ? name + 3 : line;
	end = strstr(name, " # ");
	n = end ? (size_t)(end - name) : strlen(name);
	if (used + n + 8 >= sizeof(failures)) {
		if (!strstr(failures, " ..."))
			strcat(failures, " ...");
		return;
	}
	if (used)
		failures[used++] = ' ';
	memcpy(failures + used, name, n);
	failures[used + n] = 0;
}

static int cmocka_noise(const char *line)
{
	static const char *const noise[] = {
		"[==========]", "[ RUN      ]", "[       OK ]", "[  PASSED  ]", NULL,
	};

	for (int i = 0; noise[i]; i++)
		if (!strncmp(line, noise[i], strlen(noise[i])))
			return 1;
	return !*line;
}

static void handle_line(struct stream *s, char *line)
{
	long n;

	if (!s->is_tap) {
		if (!cmocka_noise(line))
			printf("%s! %s\n", prog_name, line);
		return;
	}
	printf("%s| %s\n", prog_name, line);
	if (sscanf(line, "1..%ld", &n) == 1 && plan < 0)
		plan = n;
	else if (!strncmp(line, "ok ", 3))
		strstr(line, " # SKIP") ? skipped++ : passed++;
	else if (!strncmp(line, "not ok ", 7)) {
		failed++;
		add_failure(line);
	}
}

/* read what is there; returns 0 on EOF or error, 1 otherwise */
static int pump(struct stream *s)
{
	ssize_t r;
	char *nl;

	r = read(s->fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len);
	if (r <= 0)
		return r < 0 && errno == EAGAIN;
	s->len += r;
	s->buf[s->len] = 0;
	while ((nl = strchr(s->buf, '\n'))) {
		*nl = 0;
		handle_line(s, s->buf);
		s->len -= nl + 1 - s->buf;
		memmove(s->buf, nl + 1, s->len + 1);
	}
	if (s->len == sizeof(s->buf) - 1) { /* an overlong line: cut it */
		handle_line(s, s->buf);
		s->len = 0;
	}
	return 1;
}

/* as a subreaper, orphans of the program become our children: kill them */
static void kill_leftovers(void)
{
	char path[64], buf[512], *p;
	int found;

	do {
		DIR *d = opendir("/proc");
		struct dirent *e;

		found = 0;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name), ppid;
			FILE *f;

			if (pid <= 0)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/stat", pid);
			f = fopen(path, "re");
			if (!f)
				continue;
			if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) &&
			    sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == getpid()) {
				kill(pid, SIGKILL);
				found = 1;
			}
			fclose(f);
		}
		if (d)
			closedir(d);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			found = 1;
		if (found)
			usleep(10000);
	} while (found);
}

int main(int argc, char **argv)
{
	struct stream out = { .is_tap = 1 }, err = { 0 };
	int po[2], pe[2], status = 0, exited = 0, timed_out = 0;
	double t0 = now(), limit;
	char why[1400];
	pid_t pid;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s NAME PROGRAM SECONDS [CASE-FILTER]\n", argv[0]);
		return 2;
	}
	limit = atof(argv[3]);
	prog_name = strrchr(argv[2], '/') ? strrchr(argv[2], '/') + 1 : argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		printf("FAULTLINE-RESULT %s FAIL pipe: %s\n", argv[1], strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		dup2(po[1], STDOUT_FILENO);
		dup2(pe[1], STDERR_FILENO);
		execl(argv[2], argv[2], argc == 5 ? argv[4] : (char *)NULL, (char *)NULL);
		dprintf(STDERR_FILENO, "cannot exec %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	out.fd = po[0];
	err.fd = pe[0];
	fcntl(out.fd, F_SETFL, O_NONBLOCK);
	fcntl(err.fd, F_SETFL, O_NONBLOCK);
	printf("FAULTLINE-SUITE %s: running %s (limit %s s)\n", argv[1], argv[2], argv[3]);

	/* until the program itself exits: its cases' leftovers may hold the pipes */
	while (!exited) {
		struct pollfd p[2] = { { out.fd, POLLIN, 0 }, { err.fd, POLLIN, 0 } };

		/* stderr first: a case's messages are written before the TAP
		 * line that ends it, and the log should keep that order */
		if (poll(p, 2, 100) > 0) {
			if (p[1].revents)
				pump(&err);
			if (p[0].revents)
				pump(&out);
		}
		if (waitpid(pid, &status, WNOHANG) == pid)
			exited = 1;
		else if (now() - t0 > limit) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			timed_out = exited = 1;
		}
	}
	/* every writer of the pipes is gone after this: read them to EOF */
	kill_leftovers();
	fcntl(out.fd, F_SETFL, 0);
	fcntl(err.fd, F_SETFL, 0);
	while (pump(&err))
		;
	while (pump(&out))
		;
	if (err.len)
		handle_line(&err, err.buf);
	if (out.len)
		handle_line(&out, out.buf);

	snprintf(why, sizeof(why), "%ld cases: %ld passed, %ld skipped, %ld failed%s%s",
		 plan < 0 ? 0 : plan, passed, skipped, failed, failed ? ": " : "", failures);
	if (plan < 0)
		snprintf(why + strlen(why), sizeof(why) - strlen(why), "; no TAP plan");
	else if (passed + skipped + failed != plan)
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "; %ld results for a plan of %ld", passed + skipped + failed, plan);
	if (timed_out)
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "; timed out after %s s", argv[3]);
	else if (WIFSIGNALED(status))
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "; killed by signal %d", WTERMSIG(status));
	else if (WEXITSTATUS(status))
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "; exit status %d", WEXITSTATUS(status));
	snprintf(why + strlen(why), sizeof(why) - strlen(why), " (%.1f s)", now() - t0);
	printf("FAULTLINE-RESULT %s %s %s\n", argv[1],
	       !timed_out && WIFEXITED(status) && !WEXITSTATUS(status) && plan >= 0 &&
	       passed + skipped + failed == plan && !failed ? "PASS" : "FAIL", why);
	return 0;
}
