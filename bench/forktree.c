// SPDX-License-Identifier: MIT
/*
 * bench-forktree: a lazy restore whose restored process forks a tree of
 * workers that all read the restored memory (a container whose init
 * starts its workers at once).
 *
 * A snapshot of --mib MiB (pattern data, one 2 MiB hole in every 16 MiB)
 * is served from the page cache by the snapshot source and a monitor on a
 * thread, with a handoff server on the monitor's loop. The restored
 * process (forked from this one before the monitor thread starts) maps
 * the region, hands it over, reads the first eighth, then forks --procs
 * workers: sqrt(procs) children, each forking its share of the rest.
 * Every worker reads every page and checks it; the root waits for all.
 *
 * Measured for the tree and for one process that reads everything
 * itself, with background prefetch and without: the restore's time, bytes
 * read (the monitor's `bytes_read`, and what the page source delivered,
 * counted by a wrapper around it, with the pages it delivered more than
 * once), pages installed, faults and their latency, each beside the
 * machine's limits measured first in the same run: the first touch of
 * fresh memory and UFFDIO_COPY in 2 MiB calls. Never fails on a time:
 * exits 1 only when a page read differs from the snapshot or set-up
 * fails. A tree whose private copies would not fit in the memory
 * available is skipped, saying so (there is no swap to fall back on here,
 * and the OOM killer would pick among the machine's other users).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/handoff.h>
#include <faultline/monitor.h>
#include <faultline/snapshot.h>

#include "bench.h"

#define PG 4096UL
#define TOUCH_DIV 8		   /* the root reads this fraction before it forks */
#define HEADROOM (2ULL << 30)	   /* memory left to the machine's other users */
#define NO_PAGE ((size_t)-1)

/* ------------------------------------------------------------ the pattern */

static bool hole(size_t page)
{
	return (page >> 9) % 8 == 5; /* 2 MiB of every 16: zero runs, never read */
}

/* Word k of a page: any word can be recomputed alone (splitmix64). */
static uint64_t word(size_t page, size_t k)
{
	uint64_t z = ((uint64_t)page << 9 | k) + 0x9e3779b97f4a7c15ULL;

	if (hole(page))
		return 0;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fill(uint64_t *w, size_t pages)
{
	for (size_t i = 0; i < pages; i++)
		for (size_t k = 0; !hole(i) && k < PG / 8; k++)
			w[i * (PG / 8) + k] = word(i, k);
}

/* Read eight words of every page in [first, first + n), one in each 512
 * bytes, at offsets that move with the page and with `salt`: cheap
 * enough not to hide the faults, and the workers between them look at
 * every word. The first wrong page, or NO_PAGE. */
static size_t check(const char *mem, size_t first, size_t n, unsigned salt)
{
	for (size_t i = first; i < first + n; i++) {
		const volatile uint64_t *w = (const uint64_t *)(mem + i * PG);

		for (size_t j = 0; j < 8; j++) {
			size_t k = j * 64 + (salt * 61 + i * 13) % 64;

			if (w[k] != word(i, k))
				return i;
		}
	}
	return NO_PAGE;
}

/* ------------------------------------- a page source that counts reads */

/*
 * The monitor counts `bytes_read` once per read it means to make; a read
 * made only to hurry a page already in flight is not counted there. This
 * wrapper counts what the source really delivered, and the pages it had
 * delivered before, by kind of read.
 */
struct counting {
	struct fl_source pub; /* first: what the monitor holds */
	struct fl_source *in;
	uint8_t *seen;	      /* deliveries per page of region 0 (saturating) */
	uint64_t bytes, again_urgent, again_bg; /* the last two in pages */
	fl_source_done_fn done;
	void *arg;
};

static struct counting *cs(struct fl_source *s)
{
	return (struct counting *)s;
}

static int c_submit(struct fl_source *s, struct fl_source_req *r)
{
	return fl_source_submit(cs(s)->in, r);
}

static int c_flush(struct fl_source *s)
{
	return fl_source_flush(cs(s)->in);
}

static void c_done(struct fl_source_req *r, void *arg)
{
	struct counting *c = arg;

	if (r->result == 0 && !r->unasked && r->region == 0) {
		c->bytes += r->len;
		for (uint64_t off = r->offset; off < r->offset + r->len; off += PG) {
			uint8_t *n = &c->seen[off / PG];

			if (*n)
				*(r->urgent ? &c->again_urgent : &c->again_bg) += 1;
			if (*n < 255)
				(*n)++;
		}
	}
	c->done(r, c->arg);
}

static int c_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	cs(s)->done = done;
	cs(s)->arg = arg;
	return fl_source_reap(cs(s)->in, c_done, cs(s));
}

static int c_cancel(struct fl_source *s, struct fl_source_req *r)
{
	return fl_source_cancel(cs(s)->in, r);
}

static void c_release(struct fl_source *s, struct fl_source_req *r)
{
	fl_source_release(cs(s)->in, r);
}

static int64_t c_zero_run(struct fl_source *s, uint32_t region, uint64_t off, uint64_t max)
{
	return fl_source_zero_run(cs(s)->in, region, off, max);
}

static void c_destroy(struct fl_source *s)
{
	fl_source_destroy(cs(s)->in);
	free(cs(s)->seen);
	free(s);
}

static const struct fl_source_ops counting_ops = {
	c_submit, c_flush, c_reap, c_cancel, c_release, c_zero_run, c_destroy,
};

static struct counting *counting_create(struct fl_source *in)
{
	struct counting *c = calloc(1, sizeof(*c));

	if (c)
		c->seen = calloc(in->regions[0].len / PG, 1);
	if (!c || !c->seen) {
		free(c);
		fl_source_destroy(in);
		return NULL;
	}
	c->pub = *in;
	c->pub.ops = &counting_ops;
	c->in = in;
	return c;
}

/* ------------------------------------------------- the restored process */

struct cfg {
	size_t len, data;     /* image bytes, of which not holes */
	unsigned procs;	      /* workers below the restored root */
	char dir[64], sock[96];
};

static int work(const char *mem, size_t pages, unsigned id)
{
	size_t bad = check(mem, 0, pages, id);

	if (bad == NO_PAGE)
		return 0;
	fprintf(stderr, "bench-forktree: worker %u (pid %d): page %zu differs from the snapshot\n",
		id, getpid(), bad);
	return 1;
}

static int wait_all(void)
{
	int st, bad = 0;

	while (wait(&st) > 0)
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	return bad;
}

/* Map, hand over, read the first part, then either read everything
 * (procs 0) or fork the tree and wait for it. The exit code: 0 all
 * checked, 1 a page was wrong, 9x set-up failed. */
static int restored(const struct cfg *c, unsigned procs)
{
	size_t pages = c->len / PG;
	char *mem = mmap(NULL, c->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_handoff_region r = { .len = c->len, .page_size = PG };
	struct fl_uffd u;
	unsigned kids = 1, id = 1, bad = 0;
	char err[256];

	if (mem == MAP_FAILED)
		return 90;
	madvise(mem, c->len, MADV_NOHUGEPAGE);
	r.addr = (uint64_t)(uintptr_t)mem;
	if (fl_restore_handoff(c->sock, &r, 1, &u, err, sizeof(err))) {
		fprintf(stderr, "bench-forktree: %s\n", err);
		return 91;
	}
	/* u.fd stays open: the restorer's own copy. */
	if (work(mem, pages / TOUCH_DIV, 0))
		return 1;
	if (!procs)
		return work(mem, pages, 0);
	while ((kids + 1) * (kids + 1) <= procs)
		kids++;
	for (unsigned i = 0; i < kids; i++) {
		unsigned grand = (procs - kids) / kids + (i < (procs - kids) % kids);
		pid_t pid = fork();

		if (pid < 0) {
			perror("bench-forktree: fork");
			bad = 1;
			break;
		}
		if (pid == 0) {
			for (unsigned g = 0; g < grand; g++) {
				pid_t gp = fork();

				if (gp == 0)
					_exit(work(mem, pages, id + 1 + g));
				bad |= gp < 0;
			}
			bad |= (unsigned)work(mem, pages, id);
			_exit(bad | (unsigned)wait_all());
		}
		id += 1 + grand;
	}
	return bad | (unsigned)wait_all();
}

/* --------------------------------------------------------------- a run */

struct result {
	const char *skipped; /* why not run, or NULL */
	int status;	     /* the restored root's exit code */
	double secs;
	uint64_t bytes_read, installed, on_fault, faults, joined, hurried, forks;
	uint64_t p50_ns, p99_ns;
	uint64_t src_bytes, again_urgent, again_bg;
};

static void *monitor_thread(void *arg)
{
	fl_monitor_run(arg);
	return NULL;
}

static int adopt(void *arg, struct fl_handoff *h, char *err, size_t errlen)
{
	return fl_monitor_adopt_handoff(arg, h, err, errlen);
}

static uint64_t stat_of(const char *json, const char *key)
{
	char pat[64];
	const char *at;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	at = strstr(json, pat);
	return at ? strtoull(at + strlen(pat), NULL, 10) : 0;
}

static uint64_t mem_available(void)
{
	char line[128];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb << 10;
}

static int run(const struct cfg *c, struct fl_snapshot *snap, unsigned procs, bool prefetch,
	       struct result *out)
{
	struct fl_monitor_opts o = { .keep_caps = true, .no_prefetch = !prefetch };
	/* Every process owes every page it did not share with the root at the
	 * fork, and gets its own copy of each: private anonymous memory. */
	uint64_t need = c->data + procs * (c->data - c->data / TOUCH_DIV) +
			(procs + 1) * (c->len / PG) * 8 /* page tables */;
	uint64_t avail = mem_available();
	struct fl_source *in = NULL;
	struct counting *src = NULL;
	struct fl_monitor *m = NULL;
	struct fl_handoff_server *srv = NULL;
	char err[256], *json = NULL;
	size_t jlen = 0;
	pthread_t th;
	uint64_t t0;
	pid_t root;
	FILE *f;
	int st = 0, ret;

	memset(out, 0, sizeof(*out));
	if (need + HEADROOM > avail) {
		static char why[200];
		uint64_t each = c->data - c->data / TOUCH_DIV + (c->len / PG) * 8, fit = 0;

		if (avail > HEADROOM + c->data + each)
			fit = (avail - HEADROOM - c->data) / each - 1;
		snprintf(why, sizeof(why), "skipped: the private copies of %u processes need "
			 "%.1f GiB, %.1f GiB available (--procs %llu fits)", procs + 1,
			 (double)need / (1 << 30), (double)avail / (1 << 30),
			 (unsigned long long)fit);
		out->skipped = why;
		return 0;
	}
	if ((ret = fl_source_snapshot_create(&in, snap, NULL)))
		return ret;
	if (!(src = counting_create(in)))
		return -ENOMEM;
	if ((ret = fl_monitor_create(&m, &src->pub, &o, err, sizeof(err))) ||
	    (ret = fl_handoff_server_create(&srv, fl_monitor_event_base(m), c->sock,
					    FL_HANDOFF_FAULTLINE, NULL, adopt, m, err,
					    sizeof(err)))) {
		fprintf(stderr, "bench-forktree: %s\n", err);
		goto done;
	}
	/* Fork before the monitor thread starts: a child of a multithreaded
	 * process inherits every lock another thread held at that instant. The
	 * root blocks in its handoff until the loop runs. */
	root = fork();
	if (root < 0) {
		ret = -errno;
		goto done;
	}
	if (root == 0)
		_exit(restored(c, procs));
	t0 = now_ns();
	if ((ret = -pthread_create(&th, NULL, monitor_thread, m))) {
		kill(root, SIGKILL);
		waitpid(root, NULL, 0);
		goto done;
	}
	if (waitpid(root, &st, 0) != root)
		st = 0xff00; /* reported as exit code 255 */
	out->secs = (double)(now_ns() - t0) / 1e9;
	out->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	fl_monitor_stop(m);
	pthread_join(th, NULL);

	f = open_memstream(&json, &jlen);
	fl_monitor_print_stats(m, f, true);
	fclose(f);
	out->bytes_read = stat_of(json, "bytes_read");
	out->on_fault = stat_of(json, "pages_copied_on_fault");
	out->installed = out->on_fault + stat_of(json, "pages_prefetched") +
			 stat_of(json, "pages_pushed");
	out->joined = stat_of(json, "faults_joined");
	out->hurried = stat_of(json, "faults_hurried");
	out->forks = stat_of(json, "fork");
	free(json);
	fl_monitor_fault_stats(m, &out->faults, &out->p50_ns, &out->p99_ns);
	out->src_bytes = src->bytes;
	out->again_urgent = src->again_urgent;
	out->again_bg = src->again_bg;
done:
	fl_handoff_server_destroy(srv);
	fl_monitor_destroy(m);
	if (src)
		fl_source_destroy(&src->pub);
	return ret;
}

/* ------------------------------------------------- the machine's limits */

static char *fresh(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE); /* 4 KiB pages, as the restore gets */
	return p;
}

/* Seconds to write a fresh mapping of len (first touch), and to read and
 * check it once present (a worker's own work without faults). */
static void first_touch(size_t len, double *touch_s, double *check_s)
{
	char *p = fresh(len);
	uint64_t t0;

	*touch_s = *check_s = -1;
	if (!p)
		return;
	t0 = now_ns();
	memset(p, 0, len); /* a write: each page allocated, not the zero page */
	*touch_s = (double)(now_ns() - t0) / 1e9;
	fill((uint64_t *)p, len / PG);
	t0 = now_ns();
	if (check(p, 0, len / PG, 0) == NO_PAGE)
		*check_s = (double)(now_ns() - t0) / 1e9;
	munmap(p, len);
}

/* UFFDIO_COPY into a fresh registered mapping in 2 MiB calls: GB/s. */
static double copy_gbps(size_t len)
{
	const size_t chunk = 2UL << 20;
	char *dst = fresh(len), *from = fresh(chunk);
	struct fl_uffd u = { .fd = -1 };
	uint64_t t0, t1 = 0;
	int ret = -1;

	if (dst && from && !fl_uffd_create(&u, 0, 0, 0, NULL) &&
	    !fl_uffd_register(u.fd, (uint64_t)(uintptr_t)dst, len, UFFDIO_REGISTER_MODE_MISSING,
			      NULL)) {
		memset(from, 0xa5, chunk);
		t0 = now_ns();
		ret = 0;
		for (size_t off = 0; off + chunk <= len && !ret; off += chunk)
			ret = fl_uffd_copy(u.fd, (uint64_t)(uintptr_t)(dst + off), from, chunk, PG, 0,
					   NULL);
		t1 = now_ns() - t0;
	}
	fl_uffd_close(&u);
	if (dst)
		munmap(dst, len);
	if (from)
		munmap(from, chunk);
	return ret ? -1 : (double)len / (double)t1;
}

static double med3(double a, double b, double c)
{
	return a > b ? (b > c ? b : a > c ? c : a) : (a > c ? a : b > c ? c : b);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *out)
{
	fprintf(out, "usage: bench-forktree [--mib N] [--procs N]\n"
		     "  --mib N    image size (default 512)\n"
		     "  --procs N  workers forked below the restored process (default 56:\n"
		     "             sqrt(N) children, each forking its share of the rest)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mib", required_argument, NULL, 'm' }, { "procs", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	struct cfg c = { .procs = 56 };
	struct fl_region reg = { .start = 0x100000000ULL, .page_size = PG, .prot = 3,
				 .name = "forktree" };
	struct fl_snapshot *snap = NULL;
	struct result res[4];
	char names[4][40], tree[24];
	double touch[3], chk[3], cp[3], touch_s, check_s, copy;
	size_t n = 512;
	const void *ptr[1];
	char err[256], *data;
	struct utsname un;
	int opt, ret, failed = 0;

	while ((opt = getopt_long(argc, argv, "m:p:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'm': n = strtoul(optarg, NULL, 0); break;
		case 'p': c.procs = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (n < 16 || n > (1 << 20) || c.procs < 1 || c.procs > 4096) {
		fprintf(stderr, "bench-forktree: --mib must be 16 or more, --procs 1..4096\n");
		return 2;
	}
	c.len = n << 20;
	snprintf(tree, sizeof(tree), "%u workers", c.procs);
	for (size_t i = 0; i < c.len / PG; i++)
		c.data += hole(i) ? 0 : PG;

	fprintf(stderr, "measuring the first touch and UFFDIO_COPY (%zu MiB)...\n", n);
	for (int i = 0; i < 3; i++) {
		first_touch(c.len, &touch[i], &chk[i]);
		cp[i] = copy_gbps(c.len);
	}
	touch_s = med3(touch[0], touch[1], touch[2]);
	check_s = med3(chk[0], chk[1], chk[2]);
	copy = med3(cp[0], cp[1], cp[2]);

	snprintf(c.dir, sizeof(c.dir), "/var/tmp/faultline-forktree-XXXXXX");
	if (!mkdtemp(c.dir)) {
		perror("bench-forktree: mkdtemp in /var/tmp");
		return 1;
	}
	snprintf(c.sock, sizeof(c.sock), "%s/handoff.sock", c.dir);
	reg.len = c.len;
	data = fresh(c.len);
	if (!data) {
		fprintf(stderr, "bench-forktree: no memory for a %zu MiB image\n", n);
		rmdir(c.dir);
		return 1;
	}
	fill((uint64_t *)data, c.len / PG);
	ptr[0] = data;
	ret = fl_snapshot_write(c.dir, &reg, 1, ptr, 0, err, sizeof(err));
	munmap(data, c.len);
	if (ret || (ret = fl_snapshot_open(c.dir, &snap, err, sizeof(err)))) {
		fprintf(stderr, "bench-forktree: %s\n", err);
		failed = 1;
		goto out;
	}
	for (int k = 0; k < 4; k++) {
		unsigned procs = k < 2 ? 0 : c.procs;

		fprintf(stderr, "restoring: %s, %s...\n", procs ? "fork tree" : "one process",
			k % 2 ? "faults only" : "with prefetch");
		snprintf(names[k], sizeof(names[k]), "%s, %s", procs ? tree : "one process",
			 k % 2 ? "faults only" : "prefetch");
		ret = run(&c, snap, procs, k % 2 == 0, &res[k]);
		if (ret) {
			fprintf(stderr, "bench-forktree: run failed: %s\n", strerror(-ret));
			failed = 1;
			goto out;
		}
		if (procs && !res[k].skipped && res[k].forks != procs)
			fprintf(stderr, "bench-forktree: the monitor saw %llu forks, not %u\n",
				(unsigned long long)res[k].forks, procs);
		if (res[k].status) {
			fprintf(stderr, "bench-forktree: the restored process exited with %d "
					"(1: a page differed from the snapshot)\n", res[k].status);
			failed = 1;
		}
	}

	uname(&un);
	printf("bench-forktree: Linux %s, %ld CPUs; image %zu MiB (%zu MiB data, the rest "
	       "holes), served from the page cache\n", un.release, sysconf(_SC_NPROCESSORS_ONLN),
	       n, c.data >> 20);
	printf("tree: the restored root reads the first 1/%d, then forks %u workers; every "
	       "worker reads and checks every page\n\n", TOUCH_DIV, c.procs);
	printf("limits (this run, median of 3):\n");
	printf("  first touch: memset of a fresh mapping  %8.1f ms  %5.2f GB/s\n", touch_s * 1e3,
	       (double)c.len / touch_s / 1e9);
	printf("  a worker's reads, every page present    %8.1f ms\n", check_s * 1e3);
	if (copy > 0)
		printf("  UFFDIO_COPY, 2 MiB per call                      %5.2f GB/s\n\n", copy);
	else
		printf("  UFFDIO_COPY, 2 MiB per call: not available here\n\n");

	printf("%-24s %7s %6s %8s %6s %8s %6s %8s %7s %7s\n", "restore", "time s", "x one",
	       "read MiB", "/data", "src MiB", "/data", "again pg", "urgent", "bg");
	for (int k = 0; k < 4; k++) {
		const struct result *r = &res[k];

		printf("%-24s ", names[k]);
		if (r->skipped) {
			printf("%s\n", r->skipped);
			continue;
		}
		printf("%7.2f %6.2f %8.0f %6.2f %8.0f %6.2f %8llu %7llu %7llu\n", r->secs,
		       k >= 2 && !res[k - 2].skipped ? r->secs / res[k - 2].secs : 1.0,
		       (double)r->bytes_read / (1 << 20), (double)r->bytes_read / (double)c.data,
		       (double)r->src_bytes / (1 << 20), (double)r->src_bytes / (double)c.data,
		       (unsigned long long)(r->again_urgent + r->again_bg),
		       (unsigned long long)r->again_urgent, (unsigned long long)r->again_bg);
	}
	printf("\n%-24s %8s %6s %7s %6s %7s %7s %7s %7s %7s %7s\n", "restore", "inst MiB",
	       "/data", "fault %", "x COPY", "x touch", "faults", "joined", "hurried", "p50 us",
	       "p99 us");
	for (int k = 0; k < 4; k++) {
		const struct result *r = &res[k];
		double inst = (double)r->installed * PG;

		if (r->skipped)
			continue;
		printf("%-24s %8.0f %6.2f %7.1f %6.2f %7.2f %7llu %7llu %7llu %7.1f %7.1f\n",
		       names[k], inst / (1 << 20), inst / (double)c.data,
		       r->installed ? 100.0 * (double)r->on_fault / (double)r->installed : 0.0,
		       copy > 0 ? r->secs / (inst / (copy * 1e9)) : -1.0,
		       r->secs / (inst / ((double)c.len / touch_s)), (unsigned long long)r->faults,
		       (unsigned long long)r->joined, (unsigned long long)r->hurried,
		       (double)r->p50_ns / 1e3, (double)r->p99_ns / 1e3);
	}
	printf("\nx one: time / the same mode's one-process restore. read: the monitor's "
	       "bytes_read; src: what\nthe page source delivered; again pg: pages it delivered "
	       "more than once, by urgent (one-page)\nor background reads; /data: per byte of "
	       "the image that is not holes (ideal 1.00). inst: pages\ninstalled (copied on "
	       "fault, prefetched, pushed), in every process; fault %%: of those, copied\nby a "
	       "fault's read; x COPY, x touch: time / (inst at the UFFDIO_COPY rate, at the "
	       "first-touch\nrate): the floors of one install thread and of fresh private "
	       "pages.\n");
out:
	fl_snapshot_close(snap);
	{
		static const char *files[] = { "manifest.pb", "pages", "checksums", "handoff.sock" };
		char path[160];

		for (size_t i = 0; i < 4; i++) {
			snprintf(path, sizeof(path), "%s/%s", c.dir, files[i]);
			unlink(path);
		}
		rmdir(c.dir);
	}
	return failed;
}
