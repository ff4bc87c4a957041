// SPDX-License-Identifier: GPL-2.0
/*
 * racewrite: regression test for the 3.15-era lost-write race (dirty shared
 * pages unmapped while another CPU still holds a writable TLB entry, then
 * cleaned and dropped before that CPU's last stores land).
 *
 * Writer threads each store an increasing counter into their own page of a
 * shared file mapping while a zapper thread loops MADV_DONTNEED over the
 * whole mapping. Every so often a writer pushes the file out of the page
 * cache with fadvise(POSIX_FADV_DONTNEED) and checks with pread() that the
 * file holds its last value. A lost write shows up as an older value.
 *
 * Expected: PASS on every kernel this project supports. Note: on tmpfs or
 * ramfs (the guest's root) fadvise cannot drop dirty-less pages, so the
 * writeback half of the race is only exercised on a disk-backed file
 * system; pass a directory as argv[1] (default $TMPDIR or /tmp).
 */
#include "fl_kabi.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/vfs.h>

#define PG 4096UL
#define NWRITERS 2
#define SECONDS 2.0

static volatile int stop;
static char *map;
static int fd;
static const char *failure;
static unsigned long fail_w, fail_want, fail_got;
static unsigned long writes[NWRITERS], checks[NWRITERS], zaps;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *writer(void *arg)
{
	unsigned long w = (unsigned long)arg, v = 0, got;
	volatile unsigned long *slot = (volatile unsigned long *)(map + w * PG);

	while (!stop) {
		*slot = ++v;
		writes[w]++;
		if ((v & 63) == 0) {
			/* with 2 CPUs the zapper needs turns too */
			sched_yield();
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			if (pread(fd, &got, sizeof(got), w * PG) != sizeof(got)) {
				failure = "pread failed";
				stop = 1;
				break;
			}
			checks[w]++;
			if (got != v) {
				failure = "file lost a write";
				fail_w = w;
				fail_want = v;
				fail_got = got;
				stop = 1;
				break;
			}
		}
	}
	return NULL;
}

static void *zapper(void *arg)
{
	(void)arg;
	while (!stop) {
		madvise(map, NWRITERS * PG, MADV_DONTNEED);
		zaps++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	pthread_t tw[NWRITERS], tz;
	unsigned long tw_sum = 0, tc_sum = 0;
	char path[4096];
	struct statfs sf;
	double t0;

	fl_test_name = "racewrite";
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(path, sizeof(path), "%s/fl-racewrite-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		FL_SKIP("mkstemp in %s: %s", dir, strerror(errno));
	unlink(path);
	FL_CHECK(!ftruncate(fd, NWRITERS * PG), "ftruncate: %s", strerror(errno));
	map = mmap(NULL, NWRITERS * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	FL_CHECK(map != MAP_FAILED, "mmap: %s", strerror(errno));
	if (madvise(map, PG, MADV_DONTNEED))
		FL_SKIP("madvise: %s (CONFIG_ADVISE_SYSCALLS?)", strerror(errno));
	fstatfs(fd, &sf);

	t0 = now();
	for (unsigned long i = 0; i < NWRITERS; i++)
		pthread_create(&tw[i], NULL, writer, (void *)i);
	pthread_create(&tz, NULL, zapper, NULL);
	/* under TCG the zapper can starve: insist on some zaps, up to 3x */
	while (!stop && (now() - t0 < SECONDS || (zaps < 2000 && now() - t0 < 3 * SECONDS)))
		usleep(10000);
	stop = 1;
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(tw[i], NULL);
	pthread_join(tz, NULL);
	for (int i = 0; i < NWRITERS; i++) {
		tw_sum += writes[i];
		tc_sum += checks[i];
	}
	printf("racewrite: fs magic 0x%lx, %lu writes, %lu file checks, %lu zaps in %.1f s\n",
	       (unsigned long)sf.f_type, tw_sum, tc_sum, zaps, now() - t0);
	if (failure && fail_want)
		FL_FAIL("%s: writer %lu stored %lu, file holds %lu", failure, fail_w, fail_want, fail_got);
	if (failure)
		FL_FAIL("%s", failure);
	FL_CHECK(tc_sum > 0 && zaps > 0, "no checks or zaps happened");
	FL_PASS("%lu checks against %lu zaps, no lost write", tc_sum, zaps);
}
