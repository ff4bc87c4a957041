// SPDX-License-Identifier: MIT
/*
 * A monitor serving memory of its own process (as a VMM serves its guest
 * RAM): pages read from a snapshot are copied from the reader's reused
 * buffers by default, and go into place with UFFDIO_MOVE when
 * FAULTLINE_MOVE asks for it, since the source's buffers and the memory
 * share one mm; memory of another process never does (MOVE takes both
 * addresses in the userfaultfd's mm). Every page read back equals the
 * snapshot's.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/monitor.h>
#include <faultline/snapshot.h>

#include "harness.h"
#include "memtypes.h"
#include "runner.h"

#define PAGES 2048 /* 8 MiB */

static void *run(void *m)
{
	fl_monitor_run(m);
	return NULL;
}

/* Serve PAGES of a snapshot into fresh memory of this process, handing
 * the monitor `pid` as the owner; read it all back. Returns pages moved. */
static uint64_t serve_and_read(pid_t pid, const char *dir)
{
	struct fl_monitor_opts o = { .keep_caps = true };
	struct fl_handoff_region hr = { .len = PAGES * PG, .page_size = PG };
	struct fl_snapshot *snap;
	struct fl_source *src;
	struct fl_monitor *m;
	struct fl_uffd u;
	struct fl_handoff h;
	char err[256], want[PG], *mem;
	pthread_t th;
	uint64_t moved;

	assert_int_equal(fl_snapshot_open(dir, &snap, err, sizeof(err)), 0);
	assert_int_equal(fl_source_snapshot_create(&src, snap, NULL), 0);
	if (fl_monitor_create(&m, src, &o, err, sizeof(err)))
		fail_msg("monitor: %s", err);
	mem = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	madvise(mem, PAGES * PG, MADV_NOHUGEPAGE);
	hr.addr = (uint64_t)(uintptr_t)mem;
	assert_int_equal(fl_uffd_create(&u, 0, UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON, 0,
					NULL), 0);
	assert_int_equal(fl_uffd_register(u.fd, hr.addr, PAGES * PG,
					  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
	h = (struct fl_handoff){ .uffd = dup(u.fd), .pid = pid, .features = u.features,
				 .flags = FL_HANDOFF_F_NO_FORK, .regions = &hr, .nregions = 1 };
	if (fl_monitor_adopt_handoff(m, &h, err, sizeof(err)))
		fail_msg("adopt: %s", err);
	assert_int_equal(pthread_create(&th, NULL, run, m), 0);
	for (size_t i = 0; i < PAGES; i++) {
		fill_pattern(want, PG, 0xABC00000ULL + i);
		if (memcmp(mem + i * PG, want, PG))
			fail_msg("page %zu differs from the snapshot", i);
	}
	fl_monitor_stop(m);
	pthread_join(th, NULL);
	moved = monitor_stat(m, "pages_moved");
	fl_monitor_destroy(m);
	fl_uffd_close(&u);
	munmap(mem, PAGES * PG);
	fl_source_destroy(src);
	fl_snapshot_close(snap);
	return moved;
}

static void write_snapshot(char *dir, size_t len)
{
	struct fl_region g = { .start = 0x100000000ULL, .len = PAGES * PG, .page_size = PG,
			       .prot = 3, .name = "ram" };
	char *data = malloc(PAGES * PG), err[256];
	const void *ptr[1] = { data };

	snprintf(dir, len, "/tmp/fl-inprocess-XXXXXX");
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < PAGES; i++)
		fill_pattern(data + i * PG, PG, 0xABC00000ULL + i);
	if (fl_snapshot_write(dir, &g, 1, ptr, FL_SNAPSHOT_REPLACE, err, sizeof(err)))
		fail_msg("snapshot: %s", err);
	free(data);
}

/* A snapshot served to `pid` with FAULTLINE_MOVE set or not: pages moved. */
static uint64_t serve(pid_t pid, bool move)
{
	char dir[64], cmd[128];
	uint64_t moved;

	if (move)
		setenv("FAULTLINE_MOVE", "1", 1);
	else
		unsetenv("FAULTLINE_MOVE");
	write_snapshot(dir, sizeof(dir));
	moved = serve_and_read(pid, dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return moved;
}

static void test_own_memory_is_copied_from_reused_buffers_by_default(const struct fl_case *c)
{
	(void)c;
	assert_int_equal(serve(getpid(), false), 0);
}

static void test_own_memory_is_filled_by_move_when_asked(const struct fl_case *c)
{
	(void)c;
	assert_true(serve(getpid(), true) > 0);
}

static void test_memory_of_another_owner_is_never_moved_into(const struct fl_case *c)
{
	(void)c;
	/* Claimed by another pid: the monitor must treat it as another mm. */
	assert_int_equal(serve(getppid(), true), 0);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_own_memory_is_copied_from_reused_buffers_by_default);
	FL_ADD(test_own_memory_is_filled_by_move_when_asked);
	FL_ADD(test_memory_of_another_owner_is_never_moved_into);
	return fl_run_cases(cases, n, argc, argv);
}
