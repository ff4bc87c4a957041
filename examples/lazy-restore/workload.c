// SPDX-License-Identifier: MIT
/*
 * lazy-workload: a program whose memory is snapshotted and restored lazily.
 *
 *   lazy-workload-source --mib N --state FILE   (source.c)
 *       fills N MiB with known data, records its address and SHA-256 in
 *       FILE, then waits to be snapshotted (faultline snapshot --pid).
 *   lazy-workload restore --state FILE --snapshot DIR --socket PATH
 *       maps the region again at the same address, EMPTY, hands it to a
 *       running `faultline monitor` and goes on at once: three children
 *       fork off and mremap, MADV_DONTNEED and munmap parts of their copy
 *       and exit at different times, each checking what it reads; the
 *       parent then hashes all of its memory and compares.
 *     --linger MS  the children wait MS after their change, then check
 *       again (a grandchild too): long enough to kill the monitor while
 *       pages are owed (tests/cli/test_monitor.py).
 *     --churn N    the MADV_DONTNEED child also drops and touches pages
 *       of its dropped quarter N times, one page at a time (many events).
 */
#include <errno.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline/handoff.h>
#include <faultline/snapshot.h>

#include "workload-data.h"

static int check(const char *who, const char *p, size_t first, size_t n)
{
	uint64_t want[PG / 8];

	for (size_t i = first; i < first + n; i++) {
		page_data(i, want);
		if (memcmp(p + (i - first) * PG, want, PG)) {
			fprintf(stderr, "%s: page %zu differs from the snapshot\n", who, i);
			return 1;
		}
	}
	return 0;
}

static int is_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

static unsigned linger_ms, churn;

/* Drop and touch pages of [p, p+len) one at a time, n times: each a
 * REMOVE event and a fault on a page that must come back zero. */
static int do_churn(char *p, size_t len)
{
	for (unsigned i = 0; i < churn; i++) {
		char *pg = p + (size_t)i * 7919 * PG % len;

		pg[i % PG] = 1;
		if (madvise(pg, PG, MADV_DONTNEED) || pg[(i * 13) % PG])
			return 1;
	}
	return 0;
}

/* After the linger: the dropped quarter still zero, the last one as
 * snapshotted, in this child and in a child of its own. */
static int late_checks(char *mem, size_t pages)
{
	size_t q = pages / 4;
	pid_t g;
	int st;

	usleep(linger_ms * 1000);
	if (!is_zero(mem + 2 * q * PG, q * PG)) {
		fprintf(stderr, "child madvise: dropped pages are not zero after the linger\n");
		return 14;
	}
	g = fork();
	if (g == 0)
		_exit(check("grandchild", mem + 3 * q * PG, 3 * q, pages - 3 * q) ||
		      !is_zero(mem + 2 * q * PG, q * PG));
	if (g < 0 || waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st))
		return 15;
	return 0;
}

/* The children: each changes its own copy of the memory, checks, exits. */
static int child(int which, char *mem, size_t pages)
{
	size_t q = pages / 4;
	char *dst;

	switch (which) {
	case 0: /* mremap the second quarter elsewhere, check it there */
		dst = mmap(NULL, q * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mremap(mem + q * PG, q * PG, q * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != dst)
			return 10;
		usleep(100 * 1000 + linger_ms * 1000);
		return check("child mremap", dst, q, q) || check("child mremap", mem, 0, q);
	case 1: /* drop the third quarter: zeros now, never snapshot data */
		if (madvise(mem + 2 * q * PG, q * PG, MADV_DONTNEED))
			return 11;
		if (!is_zero(mem + 2 * q * PG, q * PG)) {
			fprintf(stderr, "child madvise: dropped pages are not zero\n");
			return 12;
		}
		if (do_churn(mem + 2 * q * PG, q * PG)) {
			fprintf(stderr, "child madvise: a page dropped again is not zero\n");
			return 16;
		}
		usleep(300 * 1000);
		return (linger_ms ? late_checks(mem, pages) : 0) ||
		       check("child madvise", mem + 3 * q * PG, 3 * q, pages - 3 * q);
	default: /* unmap the first quarter, check the rest */
		if (munmap(mem, q * PG))
			return 13;
		usleep(linger_ms * 1000);
		return check("child munmap", mem + q * PG, q, pages - q);
	}
}

static int do_restore(const char *state, const char *dir, const char *sock)
{
	struct fl_handoff_region hr = { .page_size = PG };
	const struct fl_region *regions;
	struct fl_snapshot *snap;
	struct fl_uffd u;
	char err[512], sha[65], got[65];
	void *addr;
	size_t len, n, pages;
	int pid0, bad = 0;
	double t0 = now();
	char *mem;
	FILE *f = fopen(state, "re");

	if (!f || fscanf(f, "%p %zu %64s %d", &addr, &len, sha, &pid0) != 4) {
		fprintf(stderr, "lazy-workload: cannot read the state file %s\n", state);
		return 1;
	}
	fclose(f);
	if (fl_snapshot_open(dir, &snap, err, sizeof(err))) {
		fprintf(stderr, "lazy-workload: %s\n", err);
		return 1;
	}
	regions = fl_snapshot_regions(snap, &n);
	for (size_t i = 0; i < n; i++)
		if (regions[i].start <= (uint64_t)(uintptr_t)addr &&
		    (uint64_t)(uintptr_t)addr + len <= regions[i].start + regions[i].len) {
			hr.source_region = (uint32_t)i;
			hr.source_offset = (uint64_t)(uintptr_t)addr - regions[i].start;
			hr.len = len;
		}
	fl_snapshot_close(snap);
	if (!hr.len) {
		fprintf(stderr, "lazy-workload: the snapshot has no region at %p\n", addr);
		return 1;
	}
	mem = mmap(addr, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (mem != addr) {
		fprintf(stderr, "lazy-workload: cannot map %p again: %s\n", addr, strerror(errno));
		return 1;
	}
	madvise(mem, len, MADV_NOHUGEPAGE);
	hr.addr = (uint64_t)(uintptr_t)mem;
	if (fl_restore_handoff(sock, &hr, 1, &u, err, sizeof(err))) {
		fprintf(stderr, "lazy-workload: %s\n", err);
		return 1;
	}
	/* u.fd stays open: if the monitor died we would wait, not read zeros. */
	printf("restore: running %.1f ms after start, memory still empty\n", (now() - t0) * 1e3);
	fflush(stdout);
	pages = len / PG;
	pid_t kids[3];

	for (int i = 0; i < 3; i++) {
		kids[i] = fork();
		if (kids[i] == 0)
			_exit(child(i, mem, pages));
	}
	sha256_hex(mem, len, got);
	printf("restore: parent hashed %zu MiB in %.2f s\n", len >> 20, now() - t0);
	for (int i = 0; i < 3; i++) {
		int st;

		waitpid(kids[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "restore: child %d failed (status %d)\n", i,
				WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			bad = 1;
		}
	}
	printf("restore: children that mremapped, madvised and munmapped their copies: %s\n",
	       bad ? "FAILED" : "all verified");
	if (strcmp(got, sha)) {
		fprintf(stderr, "restore: MEMORY DIFFERS: sha256 %s, snapshot time %s\n", got, sha);
		return 1;
	}
	printf("restore: memory equals the snapshot (sha256 %.16s...)\n", got);
	return bad;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' }, { "state", required_argument, NULL, 't' },
		{ "snapshot", required_argument, NULL, 's' }, { "socket", required_argument, NULL, 'S' },
		{ "linger", required_argument, NULL, 'l' }, { "churn", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state = NULL, *dir = NULL, *sock = NULL;
	size_t mib = 256;
	int c;

	while ((c = getopt_long(argc, argv, "m:t:s:S:l:c:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mib = strtoul(optarg, NULL, 0); break;
		case 't': state = optarg; break;
		case 's': dir = optarg; break;
		case 'S': sock = optarg; break;
		case 'l': linger_ms = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'c': churn = (unsigned)strtoul(optarg, NULL, 0); break;
		default: return 2;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "restore") && state && dir && sock)
		return do_restore(state, dir, sock);
	(void)mib;
	fprintf(stderr, "usage: lazy-workload restore --state FILE --snapshot DIR --socket PATH "
			"[--linger MS] [--churn N]\n"
			"(the program to snapshot is lazy-workload-source)\n");
	return 2;
}
