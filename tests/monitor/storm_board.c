// SPDX-License-Identifier: MIT
/*
 * The board: a shared mapping every process of the storm writes what it
 * is doing to (its pid, its state, each thread's operation and address),
 * so that when the tree hangs the test can say where: which threads sleep,
 * in which kernel function, on which page, doing what.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storm.h"

const char *const storm_op_names[DO_NOPS] = {
	[DO_IDLE] = "idle",
	[DO_SHARED_READ] = "reading a shared page",
	[DO_READ] = "reading its page",
	[DO_WRITE] = "writing its page",
	[DO_DONTNEED] = "MADV_DONTNEED",
	[DO_MUNMAP] = "munmap",
	[DO_MOVE] = "mremap (move)",
	[DO_GROW] = "mremap (grow in place)",
	[DO_RAID] = "reading a contested page",
	[DO_FORK] = "fork",
	[DO_FINAL_CHECK] = "final check",
	[DO_REAP] = "waiting for the tree",
};

static const char *const state_names[] = {
	[ST_FREE] = "-", [ST_RUNNING] = "running", [ST_FINAL] = "final check",
	[ST_REAPING] = "waiting for the tree", [ST_DONE] = "done",
	[ST_EARLY_EXIT] = "exited early", [ST_FAILED] = "failed",
};

uint64_t storm_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

struct storm_board *storm_board_create(void)
{
	struct storm_board *b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return b == MAP_FAILED ? NULL : b;
}

void storm_board_destroy(struct storm_board *b)
{
	if (b)
		munmap(b, sizeof(*b));
}

/* The first line of a /proc file, without its newline ("" if none). */
static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = 0;
	if (f && fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	if (f)
		fclose(f);
}

/* Where a sleeping thread's page stands now: unmapped (an munmap or
 * mremap took it while the thread waited), mapped but missing (nobody
 * served it), or present (installed, but the thread was never woken). */
enum page_now { PAGE_UNKNOWN, PAGE_UNMAPPED, PAGE_MISSING, PAGE_PRESENT, PAGE_NOW_N };

static const char *const page_now_names[PAGE_NOW_N] = {
	[PAGE_UNKNOWN] = "", [PAGE_UNMAPPED] = "; its page is no longer mapped",
	[PAGE_MISSING] = "; its page is mapped, not present",
	[PAGE_PRESENT] = "; its page is mapped and present",
};

static enum page_now page_now(int pid, uintptr_t addr, char *vma, size_t vlen)
{
	char path[64], line[256];
	unsigned long lo, hi;
	bool mapped = false;
	uint64_t ent = 0;
	FILE *f;
	int fd;

	if (!addr)
		return PAGE_UNKNOWN;
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	while (f && !mapped && fgets(line, sizeof(line), f))
		mapped = sscanf(line, "%lx-%lx", &lo, &hi) == 2 && addr >= lo && addr < hi;
	if (f)
		fclose(f);
	if (!mapped)
		return PAGE_UNMAPPED;
	snprintf(vma, vlen, " (in %lx-%lx, %lu pages)", lo, hi, (hi - lo) / PG);
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, &ent, 8, (off_t)(addr / PG * 8)) != 8)
		ent = 0;
	if (fd >= 0)
		close(fd);
	return ent >> 63 ? PAGE_PRESENT : PAGE_MISSING;
}

/* The record of the slice page a thread is on, as the board has it. */
static void page_record(const struct storm_thread_diag *t, char *buf, size_t len)
{
	static const char *const kinds[] = { "snapshot", "own write", "zeros", "unmapped" };
	int slice = t ? atomic_load(&t->slice) : -1, block, src, kind;

	buf[0] = 0;
	if (slice < 0)
		return;
	block = atomic_load(&t->block);
	src = atomic_load(&t->src);
	kind = atomic_load(&t->kind) & 3;
	snprintf(buf, len, " (slice %d page %d: %s%s, source page %d, %s)", slice,
		 atomic_load(&t->idx), kinds[kind],
		 kind == K_SNAP && src >= DATA_PAGES ? " (zero region)" : "", src,
		 src < 0 ? "a tail an mremap grew" : block ? "moved by mremap" :
		 "where the handoff put it");
}

/* Threads asleep in userfaults, by what they were doing and where their
 * page stands now. */
struct sleepers {
	unsigned n, procs, by_op[DO_NOPS], by_page[PAGE_NOW_N];
};

static const struct storm_thread_diag *thread_of(const struct storm_proc_diag *d, int tid,
						 int *idx)
{
	for (int i = 0; i < STORM_MAX_THREADS; i++)
		if (atomic_load(&d->thr[i].tid) == tid) {
			*idx = i;
			return &d->thr[i];
		}
	return NULL;
}

/* One line per thread: its scheduler state and wait channel, the top of
 * its kernel stack when it sleeps, and what the board says it does. */
static void describe_process(const struct storm_proc_diag *d, int slot,
			     struct sleepers *z)
{
	int pid = atomic_load(&d->pid), st = atomic_load(&d->state), blocked = 0;
	char path[96], line[512], wchan[64], stack[128];
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = pid > 0 ? opendir(path) : NULL;
	fprintf(stderr, "#  slot %d pid %d depth %d parent slot %d: %s%s\n", slot, pid, d->depth,
		d->parent, st >= 0 && st <= ST_FAILED ? state_names[st] : "?",
		dir ? "" : " (gone)");
	while (dir && (e = readdir(dir))) {
		int tid = atoi(e->d_name), idx = -1;
		const struct storm_thread_diag *t;
		char *rp, state = '?', who[32], vma[64], rec[128];
		enum page_now now;
		bool asleep;

		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
		read_line(path, line, sizeof(line));
		rp = strrchr(line, ')');
		if (rp && rp[1] && rp[2])
			state = rp[2];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/wchan", pid, tid);
		read_line(path, wchan, sizeof(wchan));
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stack", pid, tid);
		read_line(path, stack, sizeof(stack));
		asleep = strstr(stack, "userfault") || strstr(wchan, "userfault");
		blocked += asleep;
		t = thread_of(d, tid, &idx);
		vma[0] = 0;
		now = asleep && t ? page_now(pid, atomic_load(&t->addr), vma, sizeof(vma)) :
				    PAGE_UNKNOWN;
		if (asleep) {
			z->n++;
			z->by_page[now]++;
			z->by_op[t ? atomic_load(&t->op) % DO_NOPS : DO_IDLE]++;
		}
		snprintf(who, sizeof(who), idx > 0 ? "worker %d" : idx ? "thread" : "main",
			 idx - 1);
		page_record(t, rec, sizeof(rec));
		fprintf(stderr, "#    tid %d %c wchan=%s [%s] %s: %s at %#lx%s%s%s, %lu ops\n",
			tid, state, wchan[0] ? wchan : "-", stack[0] ? stack : "-", who,
			t ? storm_op_names[atomic_load(&t->op) % DO_NOPS] : "?",
			t ? (unsigned long)atomic_load(&t->addr) : 0UL, rec,
			page_now_names[now], vma, t ? atomic_load(&t->ops) : 0UL);
	}
	if (dir) {
		closedir(dir);
		if (blocked)
			fprintf(stderr, "#    %d thread(s) asleep in a userfault\n", blocked);
		z->procs += blocked > 0;
	}
}

void storm_print_counts(void)
{
	struct storm_board *b = storm_cfg.board;
	unsigned long c[C_NCOUNTS] = { 0 };

	for (int i = 0; i < atomic_load(&b->nprocs) && i < STORM_MAX_PROCS; i++)
		for (int k = 0; k < C_NCOUNTS; k++)
			c[k] += atomic_load(&b->proc[i].count[k]);
	fprintf(stderr, "# storm: the tree did %lu shared reads, %lu reads, %lu writes, %lu "
		"DONTNEED, %lu munmap, %lu mremap moves, %lu in-place grows (%lu pages grown), "
		"%lu raids (%lu overlapped a change, %lu ended by SIGSEGV), %lu forks\n",
		c[DO_SHARED_READ], c[DO_READ], c[DO_WRITE], c[DO_DONTNEED], c[DO_MUNMAP],
		c[DO_MOVE], c[DO_GROW], c[C_GROWN_PAGES], c[DO_RAID], c[C_RAID_OVERLAP],
		c[C_RAID_SEGV], c[DO_FORK]);
}

static void kill_tree(struct storm_board *b, pid_t root)
{
	kill(root, SIGKILL);
	for (int i = 0; i < atomic_load(&b->nprocs) && i < STORM_MAX_PROCS; i++) {
		int pid = atomic_load(&b->proc[i].pid);

		if (pid > 0)
			kill(pid, SIGKILL);
	}
}

int storm_wait_root(pid_t root, uint64_t limit_ns, struct harness *h)
{
	struct storm_board *b = storm_cfg.board;
	struct sleepers z = { 0 };
	int st, n;

	for (;;) {
		pid_t r = waitpid(root, &st, WNOHANG);

		if (r == root)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0 && errno != EINTR)
			return -1;
		if (storm_now_ns() > limit_ns)
			break;
		usleep(20 * 1000);
	}
	n = atomic_load(&b->nprocs);
	fprintf(stderr, "# storm: HANG: the tree is not done long after the storm's end "
		"(seed %#llx). Its %d processes:\n", (unsigned long long)storm_cfg.seed, n);
	for (int i = 0; i < n && i < STORM_MAX_PROCS; i++)
		describe_process(&b->proc[i], i, &z);
	fprintf(stderr, "# storm: %u threads of %u processes asleep in userfaults; their "
		"pages now: %u no longer mapped, %u mapped but not present, %u present; they "
		"were:", z.n, z.procs, z.by_page[PAGE_UNMAPPED], z.by_page[PAGE_MISSING],
		z.by_page[PAGE_PRESENT]);
	for (int op = 0; op < DO_NOPS; op++)
		if (z.by_op[op])
			fprintf(stderr, " %u %s", z.by_op[op], storm_op_names[op]);
	fprintf(stderr, "\n");
	if (h) {
		/* Read from this thread while the monitor's runs: the numbers
		 * may be a little stale, which is all a diagnosis needs. */
		fprintf(stderr, "# storm: the monitor's statistics at the hang:\n");
		fl_monitor_print_stats(h->mon, stderr, false);
	}
	kill_tree(b, root);
	while (waitpid(root, &st, 0) < 0 && errno == EINTR)
		;
	return -1;
}
