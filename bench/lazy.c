// SPDX-License-Identifier: MIT
/*
 * Lazy restore from a snapshot in the page cache: time to first
 * instruction, time until all memory is present, and the fault latency the
 * program sees while the background stream runs. Quoted against the raw
 * UFFDIO_COPY rate and fault round trip measured earlier in the same run.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/monitor.h>
#include <faultline/snapshot.h>

#include "bench.h"

#define PG 4096UL

struct lazy_run {
	double first_ms, all_s, p50_us, p99_us;
	int err;
};

static void *monitor_thread(void *arg)
{
	fl_monitor_run(arg);
	return NULL;
}

static void fill(char *mem, size_t len)
{
	uint64_t x = 88172645463325252ULL;

	for (size_t off = 0; off < len; off += PG) {
		uint64_t *w = (uint64_t *)(mem + off);

		if ((off >> 21) % 8 == 5) /* some zero runs, as real memory has */
			continue;
		for (size_t k = 0; k < PG / 8; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[k] = x;
		}
	}
}

static struct lazy_run run(size_t len, const char *dir, int touches)
{
	struct lazy_run out = { 0 };
	struct fl_region reg = { .start = 0x100000000ULL, .len = len, .page_size = PG,
				 .prot = 3, .name = "bench" };
	/* as `faultline monitor` serves a snapshot (CLI_LOCAL_BG_* in src/cli/cli.h) */
	struct fl_monitor_opts o = { .keep_caps = true, .bg_chunk = 512u << 10, .bg_inflight = 8 };
	struct fl_handoff_region hr = { .len = len, .page_size = PG };
	struct fl_handoff h;
	struct fl_snapshot *snap = NULL;
	struct fl_source *src = NULL;
	struct fl_monitor *m = NULL;
	struct fl_uffd u = { .fd = -1 };
	char err[256], *mem, *data;
	double *lat = calloc((size_t)touches, sizeof(double));
	const void *ptr[1];
	pthread_t th;
	uint64_t t0, t1;
	unsigned seed = 3;
	int n = 0;

	data = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (data == MAP_FAILED || !lat) {
		out.err = -ENOMEM;
		return out;
	}
	fill(data, len);
	ptr[0] = data;
	out.err = fl_snapshot_write(dir, &reg, 1, ptr, FL_SNAPSHOT_REPLACE, err, sizeof(err));
	munmap(data, len);
	if (out.err || (out.err = fl_snapshot_open(dir, &snap, err, sizeof(err))) ||
	    (out.err = fl_source_snapshot_create(&src, snap, NULL)) ||
	    (out.err = fl_monitor_create(&m, src, &o, err, sizeof(err))))
		goto done;
	/* The restore starts here: map, register, hand over, run. */
	t0 = now_ns();
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(mem, len, MADV_NOHUGEPAGE);
	hr.addr = (uint64_t)(uintptr_t)mem;
	/* This process never forks with the restored memory: no EVENT_FORK. */
	if ((out.err = fl_uffd_create(&u, 0, UFFD_FEATURE_THREAD_ID, 0, NULL)) ||
	    (out.err = fl_uffd_register(u.fd, hr.addr, len, UFFDIO_REGISTER_MODE_MISSING, NULL)))
		goto done;
	/* Our own memory: the monitor may move its read buffers into place. */
	h = (struct fl_handoff){ .uffd = dup(u.fd), .pid = getpid(), .features = u.features,
				 .flags = FL_HANDOFF_F_NO_FORK, .regions = &hr, .nregions = 1 };
	if ((out.err = fl_monitor_adopt_handoff(m, &h, err, sizeof(err)))) {
		close(h.uffd);
		goto done;
	}
	pthread_create(&th, NULL, monitor_thread, m);
	/* First instruction: the program touches its first page. */
	(void)*(volatile char *)mem;
	t1 = now_ns();
	out.first_ms = (double)(t1 - t0) / 1e6;
	/* Random touches while the stream runs: each timed by the program. */
	for (int i = 0; i < touches; i++) {
		volatile char *p = mem + ((size_t)rand_r(&seed) % (len / PG)) * PG;
		uint64_t a = now_ns();

		(void)*p;
		lat[n++] = (double)(now_ns() - a) / 1000.0;
	}
	while (fl_monitor_owed_pages(m))
		usleep(200);
	out.all_s = (double)(now_ns() - t0) / 1e9;
	out.p50_us = percentile(lat, (size_t)n, 50);
	out.p99_us = percentile(lat, (size_t)n, 99);
	fl_monitor_stop(m);
	pthread_join(th, NULL);
	munmap(mem, len);
done:
	fl_monitor_destroy(m);
	fl_source_destroy(src);
	fl_snapshot_close(snap);
	fl_uffd_close(&u);
	free(lat);
	return out;
}

void bench_lazy_restore(struct table *t, const struct bench_opts *o)
{
	size_t sizes[2] = { o->mib << 20, (o->mib << 20) * 4 };
	const char *dir = "/var/tmp/faultline-bench-snapshot";
	double copy_gbps = -1, rtt = -1;

	for (size_t i = 0; i < t->n; i++) {
		if (!strcmp(t->rows[i].what, "UFFDIO_COPY") && !strcmp(t->rows[i].per_call, "2 MiB"))
			copy_gbps = t->rows[i].gbps;
		if (!strcmp(t->rows[i].what, "fault round trip, across cores"))
			rtt = t->rows[i].p50_us;
	}
	for (int k = 0; k < 2; k++) {
		char name[64], size[32];
		struct lazy_run r = run(sizes[k], dir, o->faults / 4);
		struct row *a, *b;

		snprintf(size, sizeof(size), "%zu MiB", sizes[k] >> 20);
		snprintf(name, sizeof(name), "lazy restore, first instruction");
		a = table_add(t, name, size);
		snprintf(name, sizeof(name), "lazy restore, all present");
		b = table_add(t, name, size);
		if (r.err) {
			snprintf(a->note, sizeof(a->note), "failed: %s", strerror(-r.err));
			continue;
		}
		a->ms_per_gib = -1;
		snprintf(a->note, sizeof(a->note), "%.2f ms to the first page", r.first_ms);
		b->gbps = (double)sizes[k] / (r.all_s * 1e9);
		b->p50_us = r.p50_us;
		b->p99_us = r.p99_us;
		snprintf(b->note, sizeof(b->note),
			 "%.2f s; %.0f%% of raw COPY; faults vs %.1f us raw round trip",
			 r.all_s, copy_gbps > 0 ? 100.0 * b->gbps / copy_gbps : 0.0, rtt);
	}
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "%s/manifest.pb", dir);
		unlink(cmd);
		snprintf(cmd, sizeof(cmd), "%s/pages", dir);
		unlink(cmd);
		snprintf(cmd, sizeof(cmd), "%s/checksums", dir);
		unlink(cmd);
		rmdir(dir);
	}
}
