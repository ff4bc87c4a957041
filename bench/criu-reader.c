// SPDX-License-Identifier: MIT
/*
 * The program bench/criu.py dumps and restores lazily: MIB MiB of known
 * pages, then, once DIR/go exists (made before the restore starts), it
 * reads every page once at once, timing each first touch, and checks
 * every byte. Creates DIR/resumed at its first instruction after the
 * restore (the driver times it from outside: inside, CLOCK_REALTIME is not
 * to be trusted across CRIU's time namespace), then writes one line to
 * DIR/result:
 *   read_all_s p50_us p99_us max_us bad_pages
 *   criu-reader DIR MIB
 *
 * `criu-reader --floor MIB` times the same reading loop over MIB MiB the
 * kernel has just mapped (MADV_POPULATE_WRITE: present, never touched by
 * this CPU), and prints its seconds: the restored program's own floor.
 * However fast a daemon installs, the program's first touch of each new
 * mapping costs this much (5 us a page on these nested guests, whose
 * hypervisor learns each new mapping at its first use).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul

static double now(clockid_t c)
{
	struct timespec t;

	clock_gettime(c, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

/* Reads the first word of each page, timing each; returns the seconds. */
static double read_all(const uint64_t *m, size_t pages, float *lat)
{
	double t0 = now(CLOCK_MONOTONIC);

	for (size_t i = 0; i < pages; i++) {
		double a = now(CLOCK_MONOTONIC);
		volatile uint64_t v = m[i * (PAGE / 8)];

		lat[i] = (float)((now(CLOCK_MONOTONIC) - a) * 1e6);
		(void)v;
	}
	return now(CLOCK_MONOTONIC) - t0;
}

static int floor_only(size_t pages)
{
	uint64_t *m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	float *lat = calloc(pages, sizeof(float));

	if (m == MAP_FAILED || !lat)
		return 2;
	madvise(m, pages * PAGE, MADV_NOHUGEPAGE); /* as a restore installs: 4 KiB pages */
	if (madvise(m, pages * PAGE, MADV_POPULATE_WRITE)) {
		perror("criu-reader: MADV_POPULATE_WRITE");
		return 2;
	}
	printf("%.6f\n", read_all(m, pages, lat));
	return 0;
}

int main(int argc, char **argv)
{
	char path[4096];
	size_t pages;
	uint64_t *m;
	float *lat;
	double resumed, t0;
	size_t bad = 0;
	FILE *f;

	if (argc == 3 && !strcmp(argv[1], "--floor"))
		return floor_only((size_t)atol(argv[2]) * 256);
	if (argc != 3) {
		fprintf(stderr, "usage: criu-reader DIR MIB | --floor MIB\n");
		return 2;
	}
	pages = (size_t)atol(argv[2]) * 256;
	m = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lat = mmap(NULL, pages * sizeof(float), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || lat == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < pages; i++)
		for (size_t j = 0; j < PAGE / 8; j += 64)
			m[i * (PAGE / 8) + j] = (i << 16) ^ j ^ 0xfeed;
	snprintf(path, sizeof(path), "%s/ready", argv[1]);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	snprintf(path, sizeof(path), "%s/go", argv[1]);
	while (access(path, F_OK))
		usleep(1000);
	resumed = now(CLOCK_MONOTONIC);
	snprintf(path, sizeof(path), "%s/resumed", argv[1]);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	/* lat is lazy memory too: fault it in before timing anything. */
	memset(lat, 0, pages * sizeof(float));
	t0 = read_all(m, pages, lat);
	for (size_t i = 0; i < pages; i++)
		for (size_t j = 0; j < PAGE / 8; j += 64)
			if (m[i * (PAGE / 8) + j] != ((i << 16) ^ j ^ 0xfeed)) {
				bad++;
				break;
			}
	qsort(lat, pages, sizeof(float), cmp);
	snprintf(path, sizeof(path), "%s/result", argv[1]);
	f = fopen(path, "w");
	if (!f)
		return 2;
	(void)resumed;
	fprintf(f, "%.6f %.2f %.2f %.2f %zu\n", t0, lat[pages / 2],
		lat[pages * 99 / 100], lat[pages - 1], bad);
	fclose(f);
	return bad ? 1 : 0;
}
