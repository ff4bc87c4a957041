// SPDX-License-Identifier: MIT
/*
 * A process tree for CRIU to dump and restore lazily, that knows its own
 * memory and checks every page after the restore.
 *
 *   criu-workload DIR MIB [single]
 *
 * The root fills A (MIB MiB) with a pattern, then forks: a child that
 * fills B and checks A and B after the restore, a zombie (exit 7, reaped
 * only after the restore), and a child that fills D and exits at once
 * after the restore, with D's pages still owed. Then it writes DIR/ready
 * and waits for DIR/go. The tree is dumped and restored meanwhile.
 *
 * After go the root at once forks a child that checks all of A (its pages
 * are still lazy: served after a FORK event), moves a quarter of A with
 * mremap, drops an eighth with MADV_DONTNEED (must read zeros), unmaps an
 * eighth, checks the rest, reaps everyone. Every process appends "ok NAME"
 * or "FAIL NAME: why" to DIR/results. Holds no file open across the dump.
 *
 * `single`: the root alone, which after go checks all of A (for restores
 * that are meant to fail: no child is left blocked on a page that never
 * comes).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096ul

static const char *dir;

static uint64_t word(uint64_t seed, uint64_t page, uint64_t j)
{
	return ((seed << 48) ^ (page << 10) ^ j ^ 0x5555) * 0x9E3779B97F4A7C15ull;
}

static void fill(char *p, size_t pages, uint64_t seed, size_t first)
{
	for (size_t i = 0; i < pages; i++) {
		uint64_t *w = (uint64_t *)(p + i * PAGE);

		for (size_t j = 0; j < PAGE / 8; j++)
			w[j] = word(seed, first + i, j);
	}
}

/* -1 if every page of p holds its pattern, else the first bad page. */
static long check(const char *p, size_t pages, uint64_t seed, size_t first, bool zeros)
{
	for (size_t i = 0; i < pages; i++) {
		const uint64_t *w = (const uint64_t *)(p + i * PAGE);

		for (size_t j = 0; j < PAGE / 8; j++)
			if (w[j] != (zeros ? 0 : word(seed, first + i, j)))
				return (long)i;
	}
	return -1;
}

static void result(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void result(const char *fmt, ...)
{
	char path[4096], line[512];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	line[n++] = '\n';
	snprintf(path, sizeof(path), "%s/results", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		(void)!write(fd, line, (size_t)n);
		close(fd);
	}
}

static void touch(const char *name)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
}

static void wait_go(void)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/go", dir);
	while (access(path, F_OK))
		usleep(2000);
}

static char *region(size_t pages, uint64_t seed)
{
	char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	madvise(p, pages * PAGE, MADV_NOHUGEPAGE); /* keep REMOVE/UNMAP at 4 KiB */
	fill(p, pages, seed, 0);
	return p;
}

#define CHECK(name, p, n, seed, first, zeros)                                              \
	do {                                                                               \
		long bad_ = check((p), (n), (seed), (first), (zeros));                    \
		if (bad_ >= 0) {                                                           \
			result("FAIL %s: page %ld of %zu differs", (name), bad_, (size_t)(n)); \
			ok = false;                                                        \
		}                                                                          \
	} while (0)

int main(int argc, char **argv)
{
	size_t pages, q;
	char *a;
	pid_t child, zombie, owed, forked;
	bool ok = true;
	int st;

	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "single"))) {
		fprintf(stderr, "usage: criu-workload DIR MIB [single]\n");
		return 2;
	}
	dir = argv[1];
	pages = (size_t)atol(argv[2]) * 256;
	q = pages / 8;
	signal(SIGBUS, SIG_DFL);
	a = region(pages, 1);
	if (argc == 4) {
		touch("ready");
		wait_go();
		CHECK("root A", a, pages, 1, 0, false);
		if (ok)
			result("ok root");
		return ok ? 0 : 1;
	}

	child = fork();
	if (child == 0) {
		char *b = region(pages / 4, 2);

		wait_go();
		CHECK("child A", a, pages, 1, 0, false);
		CHECK("child B", b, pages / 4, 2, 0, false);
		if (ok)
			result("ok child");
		_exit(ok ? 0 : 1);
	}
	zombie = fork();
	if (zombie == 0)
		_exit(7);
	owed = fork();
	if (owed == 0) {
		char *d = region(pages / 2, 3);

		(void)d;
		wait_go();
		result("ok owed"); /* exits with all of D still owed */
		_exit(0);
	}
	/* the zombie must be one at the dump */
	{
		siginfo_t si = { 0 };

		while (waitid(P_PID, (id_t)zombie, &si, WEXITED | WNOWAIT | WNOHANG) == 0 &&
		       si.si_pid == 0)
			usleep(1000);
	}
	touch("ready");
	wait_go();

	/* Right after the restore, with A's pages still lazy. */
	forked = fork();
	if (forked == 0) {
		CHECK("fork A", a, pages, 1, 0, false);
		if (ok)
			result("ok fork");
		_exit(ok ? 0 : 1);
	}
	{
		/* move A's pages [2q, 4q) elsewhere */
		char *spot = mmap(NULL, 2 * q * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *moved = mremap(a + 2 * q * PAGE, 2 * q * PAGE, 2 * q * PAGE,
				     MREMAP_MAYMOVE | MREMAP_FIXED, spot);

		if (spot == MAP_FAILED || moved == MAP_FAILED) {
			result("FAIL root: mremap: %s", strerror(errno));
			ok = false;
		} else {
			CHECK("root moved", moved, 2 * q, 1, 2 * q, false);
		}
		madvise(a + 4 * q * PAGE, q * PAGE, MADV_DONTNEED);
		CHECK("root dontneed", a + 4 * q * PAGE, q, 1, 4 * q, true);
		munmap(a + 5 * q * PAGE, q * PAGE);
		CHECK("root head", a, 2 * q, 1, 0, false);
		CHECK("root tail", a + 6 * q * PAGE, pages - 6 * q, 1, 6 * q, false);
	}
	if (waitpid(zombie, &st, 0) != zombie || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
		result("FAIL zombie: status %#x", st);
		ok = false;
	} else {
		result("ok zombie");
	}
	for (int i = 0; i < 3; i++) {
		pid_t w = i == 0 ? forked : i == 1 ? child : owed;

		if (waitpid(w, &st, 0) != w || !WIFEXITED(st) || WEXITSTATUS(st)) {
			result("FAIL root: child %d ended with status %#x", (int)w, st);
			ok = false;
		}
	}
	if (ok)
		result("ok root");
	return ok ? 0 : 1;
}
