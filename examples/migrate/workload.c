// SPDX-License-Identifier: MIT
/*
 * migrate-workload: a program that keeps writing to its memory while it is
 * migrated post-copy to another host, and checks that memory afterwards.
 * It uses the library the way a VMM does (faultline/vmm.h): its
 * guest-RAM-like region is handed to fl_vmm_migrate(), which reads it,
 * tracks dirty pages (WP_ASYNC + PAGEMAP_SCAN) for the pre-copy rounds
 * and calls back to pause the writers at the switch-over.
 *
 *   migrate-workload source --mib N --to HOST:PORT (--certs DIR | --plain)
 *   faultline receive --listen ADDR --exec "migrate-workload dest" ...
 *
 * Memory: page 0 holds a header with the count of page writes; every other
 * page holds its version in its first word and a pattern derived from
 * (page, version) in the rest. The destination checks every page against
 * its version and that the versions add up to the count: a lost, stale,
 * torn or zeroed page cannot pass. With --sha FILE the source records the
 * SHA-256 of its memory at the switch-over and the destination compares.
 *
 * --rate N: a service rather than a stress: the writers do N operations a
 * second in all (each reads one of its pages and checks it against its
 * version; every other one then writes the page's next version), and
 * both sides report the rate they kept: before the migration, during
 * pre-copy, while post-copy brings the pages in (the destination watches
 * with mincore() until every page is there) and after. Without it the
 * writers write as fast as they can, and the destination reads all of its
 * memory at once on arrival.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <faultline/handoff.h>
#include <faultline/migrate.h>
#include <faultline/uffd.h>
#include <faultline/vmm.h>

#include "../common/sha256-hex.h"

#define PG 4096UL
#define BASE 0x7e0000000000ULL /* clear of ASan's shadow, too */
#define MAGIC 0x57524b4c4f4144ULL

struct header {
	uint64_t magic, pages;
	_Atomic uint64_t writes;
};

struct work {
	char *mem;
	size_t len, pages;
	int writers;
	double rate;		 /* operations a second in all; 0: flat out */
	_Atomic uint64_t ops;	 /* operations done (rate mode) */
	atomic_bool bad;	 /* a read found a page not matching its version */
	uint64_t ops_mark, t_mark; /* where pre-copy began (source) */
	atomic_bool stop, quit;
	atomic_int parked;
	pthread_t *threads;
	const char *sha_file;
	pthread_t sha_thread;
	bool sha_started;
};

static void fill(char *page, size_t p, uint64_t version)
{
	uint64_t *w = (uint64_t *)page, x = (p + 1) * 0x9E3779B97F4A7C15ULL ^ version;

	for (size_t k = 1; k < PG / 8; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
	w[0] = version;
}

static bool page_ok(const char *page, size_t p)
{
	static __thread char want[PG];

	fill(want, p, *(const uint64_t *)page);
	return !memcmp(want, page, PG);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Rate mode: sleep until operation n of this writer is due. A writer
 * more than 100 ms behind (stalled on a fault) drops what it owes rather
 * than catch up: the rates reported are the service's own, not a backlog
 * burst. Returns the start of the schedule, moved when it drops. */
static uint64_t pace(const struct work *w, uint64_t t0, uint64_t n)
{
	double ns_per_op = 1e9 * w->writers / w->rate;
	uint64_t due = t0 + (uint64_t)((double)n * ns_per_op), now = now_ns();

	if (now > due + 100000000ull)
		return now - (uint64_t)((double)n * ns_per_op);
	if (due > now + 50000) {
		struct timespec d = { (time_t)((due - now) / 1000000000ull),
				      (long)((due - now) % 1000000000ull) };

		nanosleep(&d, NULL);
	}
	return t0;
}

static void *writer(void *arg)
{
	struct work *w = arg;
	static atomic_int next_id;
	int id = atomic_fetch_add(&next_id, 1) % w->writers;
	unsigned seed = (unsigned)id + 1;
	struct header *h = (struct header *)w->mem;
	uint64_t t0 = now_ns(), n = 0;

	for (;;) {
		size_t p;

		if (atomic_load(&w->stop)) {
			atomic_fetch_add(&w->parked, 1);
			while (atomic_load(&w->stop)) {
				if (atomic_load(&w->quit))
					return NULL;
				usleep(1000);
			}
			atomic_fetch_sub(&w->parked, 1);
			t0 = now_ns(); /* the rate starts again, no catching up */
			n = 0;
		}
		/* Each writer owns the pages p with p % writers == id. */
		p = 1 + (size_t)id + (size_t)w->writers *
			((size_t)rand_r(&seed) % ((w->pages - 1) / (size_t)w->writers));
		if (p >= w->pages)
			continue;
		if (w->rate > 0) {
			if ((n & 15) == 0)
				t0 = pace(w, t0, n);
			n++;
			atomic_fetch_add(&w->ops, 1);
			if (!page_ok(w->mem + p * PG, p)) {
				if (!atomic_exchange(&w->bad, true))
					fprintf(stderr, "migrate-workload: page %zu is not what its "
							"version says, read while running\n", p);
				continue;
			}
			if (n & 1)
				continue; /* a read only */
		}
		fill(w->mem + p * PG, p, *(uint64_t *)(w->mem + p * PG) + 1);
		atomic_fetch_add(&h->writes, 1);
	}
	return NULL;
}

static void start_writers(struct work *w)
{
	w->threads = calloc((size_t)w->writers, sizeof(pthread_t));
	for (int i = 0; i < w->writers; i++)
		pthread_create(&w->threads[i], NULL, writer, w);
}

static void pause_writers(struct work *w)
{
	atomic_store(&w->stop, true);
	while (atomic_load(&w->parked) < w->writers)
		usleep(100);
}

/* Paused writers leave for good; everything is freed. */
static void end_writers(struct work *w)
{
	atomic_store(&w->quit, true);
	for (int i = 0; i < w->writers; i++)
		pthread_join(w->threads[i], NULL);
	free(w->threads);
	w->threads = NULL;
}

/* ---- the library's view of our memory: faultline/vmm.h reads it and
 * tracks its dirty pages (uffd-wp); we only pause the writers ---- */

/* The memory at the switch-over, hashed while the destination already
 * runs: the writers stay paused here and the page server only reads, so
 * this costs no downtime. Written whole (rename), the destination waits. */
static void *hash_switchover(void *arg)
{
	struct work *w = arg;
	char sha[65], tmp[4096];
	FILE *f;

	sha256_hex(w->mem, w->len, sha);
	printf("source: memory sha256 at the switch-over %.16s...\n", sha);
	fflush(stdout);
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->sha_file);
	f = fopen(tmp, "we");
	if (f) {
		fprintf(f, "%s\n", sha);
		if (fclose(f) == 0)
			rename(tmp, w->sha_file);
	}
	return NULL;
}

static int mem_pause(void *ctx, void **blob, size_t *len)
{
	struct work *w = ctx;
	struct header *h = (struct header *)w->mem;
	char *state = malloc(64);

	pause_writers(w);
	if (w->rate > 0)
		printf("source: ops/s during pre-copy %.0f\n",
		       (double)(atomic_load(&w->ops) - w->ops_mark) * 1e9 /
			       (double)(now_ns() - w->t_mark));
	printf("source: paused after %llu page writes\n",
	       (unsigned long long)atomic_load(&h->writes));
	fflush(stdout);
	if (w->sha_file)
		w->sha_started = pthread_create(&w->sha_thread, NULL, hash_switchover, w) == 0;
	/* The "device state" a VMM would send: here, the write count. */
	*len = (size_t)snprintf(state, 64, "writes=%llu",
				(unsigned long long)atomic_load(&h->writes));
	*blob = state;
	return 0;
}

static int run_source(struct work *w, struct fl_migrate_source_opts *o, double seconds)
{
	struct fl_vmm_ram ram = { .len = w->len, .guest_addr = BASE, .name = "workload" };
	struct fl_vmm_source_hooks hooks = { .pause = mem_pause, .ctx = w };
	struct fl_migrate_report rep;
	struct header *h;
	char err[512];
	int ret;

	w->mem = mmap((void *)BASE, w->len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (w->mem != (void *)BASE) {
		perror("migrate-workload: mmap");
		return 1;
	}
	madvise(w->mem, w->len, MADV_NOHUGEPAGE);
	for (size_t p = 1; p < w->pages; p++)
		fill(w->mem + p * PG, p, 1);
	h = (struct header *)w->mem;
	h->magic = MAGIC;
	h->pages = w->pages;
	start_writers(w);
	printf("source: %zu MiB, %d writer threads running\n", w->len >> 20, w->writers);
	fflush(stdout);
	w->t_mark = now_ns();
	usleep((useconds_t)(seconds * 1e6)); /* it works for a while first */
	if (w->rate > 0) {
		printf("source: ops/s before the migration %.0f (asked for %.0f)\n",
		       (double)atomic_load(&w->ops) * 1e9 / (double)(now_ns() - w->t_mark), w->rate);
		fflush(stdout);
	}
	w->ops_mark = atomic_load(&w->ops);
	w->t_mark = now_ns();
	ram.host = w->mem;
	ret = fl_vmm_migrate(&ram, 1, &hooks, o, &rep, err, sizeof(err));
	if (w->sha_started)
		pthread_join(w->sha_thread, NULL);
	if (ret) {
		fprintf(stderr, "migrate-workload: %s\n", err);
		pause_writers(w);
		end_writers(w);
		return 1;
	}
	fl_migrate_report_print(&rep, stdout);
	end_writers(w); /* paused at the switch-over; the program lives on there */
	return 0;
}

/* ---- the destination: the restorer ---- */

/* The region of $FAULTLINE_REGIONS ("INDEX:START:LEN:PAGESIZE:NAME;...")
 * holding [addr, addr+len): fills the handoff's source region and offset. */
static int find_region(uint64_t addr, uint64_t len, struct fl_handoff_region *hr)
{
	const char *env = getenv("FAULTLINE_REGIONS");

	while (env && *env) {
		unsigned i;
		unsigned long long start, rlen;

		if (sscanf(env, "%u:%llx:%llx:", &i, &start, &rlen) == 3 &&
		    start <= addr && addr + len <= start + rlen) {
			hr->source_region = i;
			hr->source_offset = addr - start;
			return 0;
		}
		env = strchr(env, ';');
		if (env)
			env++;
	}
	return -ENOENT;
}

static int verify(struct work *w, const char *when)
{
	struct header *h = (struct header *)w->mem;
	uint64_t sum = 0;

	if (h->magic != MAGIC || h->pages != w->pages) {
		fprintf(stderr, "dest: header wrong %s\n", when);
		return 1;
	}
	for (size_t p = 1; p < w->pages; p++) {
		if (!page_ok(w->mem + p * PG, p)) {
			fprintf(stderr, "dest: page %zu is not what its version says %s\n", p, when);
			return 1;
		}
		sum += *(uint64_t *)(w->mem + p * PG) - 1;
	}
	if (sum != atomic_load(&h->writes)) {
		fprintf(stderr, "dest: %llu page writes counted, pages hold %llu %s\n",
			(unsigned long long)atomic_load(&h->writes), (unsigned long long)sum, when);
		return 1;
	}
	printf("dest: memory consistent %s: %llu page writes, every page matches\n", when,
	       (unsigned long long)sum);
	return 0;
}

/* A plain process migrated by pid (faultline migrate --pid): the state
 * file it wrote says where its data was and what it hashed to. */
static int run_dest_state(const char *path)
{
	struct fl_handoff_region hr = { .page_size = PG };
	unsigned long long addr = 0;
	size_t len = 0;
	char sha[65], got[65], err[512], *mem;
	struct fl_uffd u;
	int pid;
	FILE *f = fopen(path, "re");

	if (!f || fscanf(f, "%llx %zu %64s %d", &addr, &len, sha, &pid) != 4) {
		fprintf(stderr, "dest: cannot read the state file %s\n", path);
		return 1;
	}
	fclose(f);
	if (!find_region(addr, len, &hr))
		hr.len = len;
	if (!hr.len) {
		fprintf(stderr, "dest: no region holds %#llx\n", addr);
		return 1;
	}
	mem = mmap((void *)(uintptr_t)addr, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (mem != (void *)(uintptr_t)addr) {
		perror("dest: mmap");
		return 1;
	}
	hr.addr = addr;
	if (fl_restore_handoff(getenv("FAULTLINE_SOCKET"), &hr, 1, &u, err, sizeof(err))) {
		fprintf(stderr, "dest: %s\n", err);
		return 1;
	}
	sha256_hex(mem, len, got);
	if (strcmp(got, sha)) {
		fprintf(stderr, "dest: MEMORY DIFFERS: %s, the state file says %s\n", got, sha);
		return 1;
	}
	printf("dest: memory equals the state file's (sha256 %.16s...), pid %d moved\n", got, pid);
	return 0;
}

/* Pages of [mem, mem+len) present here (mincore), or -1. */
static long resident(const struct work *w, unsigned char *vec)
{
	long n = 0;

	if (mincore(w->mem, w->len, vec))
		return -1;
	for (size_t i = 0; i < w->pages; i++)
		n += vec[i] & 1;
	return n;
}

/* Rate mode on the destination: the service runs while post-copy brings
 * the pages in, and for `seconds` after; its rate is reported for each
 * phase (and the slowest 100 ms while pages were arriving). */
static int run_service(struct work *w, double seconds, uint64_t t_resume)
{
	unsigned char *vec = malloc(w->pages);
	uint64_t t_all = 0, ops_all = 0, last = 0, t_last = t_resume, end = 0;
	double slowest = -1;

	if (!vec)
		return 1;
	start_writers(w);
	for (;;) {
		uint64_t t, o;
		long have;

		usleep(100 * 1000);
		t = now_ns();
		o = atomic_load(&w->ops);
		if (!t_all) {
			double r = (double)(o - last) * 1e9 / (double)(t - t_last);

			if (slowest < 0 || r < slowest)
				slowest = r;
			have = resident(w, vec);
			if (have < 0 || (size_t)have == w->pages || t - t_resume > 600 * 1000000000ull) {
				t_all = t;
				ops_all = o;
				end = t + (uint64_t)(seconds * 1e9);
			}
		} else if (t >= end) {
			break;
		}
		last = o;
		t_last = t;
	}
	pause_writers(w);
	printf("dest: ops/s during post-copy %.0f (slowest 100 ms: %.0f) over %.2f s, "
	       "after %.0f (asked for %.0f)\n",
	       (double)ops_all * 1e9 / (double)(t_all - t_resume), slowest,
	       (double)(t_all - t_resume) / 1e9,
	       (double)(atomic_load(&w->ops) - ops_all) * 1e9 / (double)(now_ns() - t_all), w->rate);
	free(vec);
	end_writers(w);
	if (atomic_load(&w->bad))
		return 1;
	return verify(w, "after post-copy with the service running");
}

static int run_dest(struct work *w, double seconds)
{
	struct fl_handoff_region hr = { .addr = BASE, .len = w->len, .page_size = PG };
	struct fl_uffd u;
	char err[512], sha[65], want[80] = "";
	struct timespec t0, t1;
	const char *state = getenv("FAULTLINE_DEVICE_STATE");

	if (find_region(BASE, w->len, &hr)) {
		fprintf(stderr, "dest: no region at %#llx in $FAULTLINE_REGIONS\n", BASE);
		return 1;
	}
	w->mem = mmap((void *)BASE, w->len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (w->mem != (void *)BASE) {
		perror("dest: mmap");
		return 1;
	}
	madvise(w->mem, w->len, MADV_NOHUGEPAGE);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (fl_restore_handoff(getenv("FAULTLINE_SOCKET"), &hr, 1, &u, err, sizeof(err))) {
		fprintf(stderr, "dest: %s\n", err);
		return 1;
	}
	/* Running from here on, memory arriving as it is touched. */
	if (w->rate > 0)
		return run_service(w, seconds > 0 ? seconds : 1, now_ns());
	if (state) {
		FILE *f = fopen(state, "re");
		char line[64] = "";

		if (f && fgets(line, sizeof(line), f))
			printf("dest: device state from the source: %s\n", line);
		if (f)
			fclose(f);
	}
	sha256_hex(w->mem, w->len, sha);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("dest: resumed; all %zu MiB read back in %.2f s\n", w->len >> 20,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (w->sha_file) {
		FILE *f = NULL;

		/* The source hashes its frozen memory after the switch-over. */
		for (int i = 0; i < 2400 && !(f = fopen(w->sha_file, "re")); i++)
			usleep(50 * 1000);

		if (!f || !fgets(want, sizeof(want), f)) {
			fprintf(stderr, "dest: cannot read %s\n", w->sha_file);
			return 1;
		}
		fclose(f);
		want[strcspn(want, "\n")] = 0;
		if (strcmp(want, sha)) {
			fprintf(stderr, "dest: MEMORY DIFFERS from the source at the switch-over:\n"
					"  here   %s\n  source %s\n", sha, want);
			return 1;
		}
		printf("dest: memory equals the source's at the switch-over (sha256 %.16s...)\n", sha);
	}
	if (verify(w, "after the migration"))
		return 1;
	start_writers(w); /* and it keeps working */
	usleep((useconds_t)(seconds * 1e6));
	pause_writers(w);
	end_writers(w);
	return verify(w, "after running on here");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' }, { "to", required_argument, NULL, 't' },
		{ "writers", required_argument, NULL, 'w' }, { "sha", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 'S' }, { "certs", required_argument, NULL, 'c' },
		{ "plain", no_argument, NULL, 'p' }, { "postcopy-only", no_argument, NULL, 'P' },
		{ "state", required_argument, NULL, 'T' },
		{ "max-rounds", required_argument, NULL, 'R' },
		{ "downtime-target", required_argument, NULL, 'D' },
		{ "postcopy-after", required_argument, NULL, 'A' },
		{ "reconnect-deadline", required_argument, NULL, 'r' },
		{ "rate", required_argument, NULL, 'O' },
		{ NULL, 0, NULL, 0 },
	};
	struct work w = { .writers = 2 };
	struct fl_migrate_source_opts o = { .verbose = 1, .rejoin_s = 60 };
	char cert[4096], key[4096], ca[4096];
	const char *state = NULL;
	size_t mib = 256;
	double seconds = 1.0;
	int c;

	while ((c = getopt_long(argc, argv, "m:t:w:s:S:c:pPT:R:D:A:r:O:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mib = strtoul(optarg, NULL, 0); break;
		case 't': o.to = optarg; break;
		case 'w': w.writers = atoi(optarg); break;
		case 's': w.sha_file = optarg; break;
		case 'S': seconds = atof(optarg); break;
		case 'c':
			snprintf(cert, sizeof(cert), "%s/source.crt", optarg);
			snprintf(key, sizeof(key), "%s/source.key", optarg);
			snprintf(ca, sizeof(ca), "%s/ca.crt", optarg);
			o.tls.cert = cert;
			o.tls.key = key;
			o.tls.ca = ca;
			break;
		case 'p': o.tls.plain = true; break;
		case 'P': o.postcopy_only = true; break;
		case 'T': state = optarg; break;
		case 'R': o.max_rounds = (unsigned)atoi(optarg); break;
		case 'D': o.target_downtime_s = atof(optarg) / 1e3; break; /* ms */
		case 'A': o.postcopy_after_s = atof(optarg); break;
		case 'r': o.rejoin_s = atof(optarg); break;
		case 'O': w.rate = atof(optarg); break;
		default: return 2;
		}
	}
	w.len = mib << 20;
	w.pages = w.len / PG;
	if (w.writers < 1 || mib < 1 || optind >= argc) {
		fprintf(stderr, "usage: migrate-workload source --mib N --to HOST:PORT (--certs DIR | --plain)\n"
				"         [--max-rounds N] [--downtime-target MS] [--postcopy-after SECONDS]\n"
				"         [--reconnect-deadline SECONDS] [--rate OPS]\n"
				"       migrate-workload dest --mib N [--rate OPS] [--seconds S]\n"
				"         (started by faultline receive --exec)\n");
		return 2;
	}
	if (!strcmp(argv[optind], "source") && o.to)
		return run_source(&w, &o, seconds);
	if (!strcmp(argv[optind], "dest"))
		return state ? run_dest_state(state) : run_dest(&w, seconds);
	fprintf(stderr, "migrate-workload: say source or dest\n");
	return 2;
}
