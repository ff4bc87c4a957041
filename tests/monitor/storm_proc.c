// SPDX-License-Identifier: MIT
/*
 * A process of the storm: its workers, the children it forks on a seeded
 * schedule (the tree: 4 children, 3 grandchildren each, 3 great-
 * grandchildren each: 52 forks), an early _exit for some while their
 * threads are mid-fault, and a final check of every page. The root is the
 * subreaper of the whole tree: orphans of early exits come back to it, and
 * it fails if any process failed or died of a signal.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storm.h"

struct storm_cfg storm_cfg;

/* 4 + 4 * 3 + 4 * 3 * 3 = 52 forks. */
static const int fanout[STORM_MAX_DEPTH + 1] = { STORM_MAX_FANOUT, 3, 3, 0 };

/* This process's state; a fork child gets a copy and makes it its own. */
static struct storm_proc proc;
static struct storm_slice slices[STORM_SLICES];

static struct storm_proc_diag *diag(struct storm_proc *p)
{
	return &storm_cfg.board->proc[p->slot];
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull), (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Every page this process still has, against its record. */
static void final_check(struct storm_proc *p)
{
	struct storm_thread_diag *t = &diag(p)->thr[0];

	atomic_store(&diag(p)->state, ST_FINAL);
	atomic_store(&t->op, DO_FINAL_CHECK);
	for (int s = 0; s < STORM_SLICES; s++) {
		struct storm_slice *sl = &p->slices[s];
		unsigned np = atomic_load(&sl->npages);

		for (unsigned i = 0; i < np; i++) {
			struct storm_page *pg = &sl->page[i];

			if (atomic_load(&pg->kind) == K_GONE)
				continue;
			atomic_store(&t->addr, atomic_load(&pg->addr));
			storm_note_page(t, s, i, pg);
			storm_check(p, 0, s, i, pg, (const char *)atomic_load(&pg->addr));
		}
	}
	for (unsigned k = 0; k < 256; k++) {
		unsigned page = (unsigned)p->depth % 4 * 256 + k;

		atomic_store(&t->addr, (uintptr_t)(p->base + (size_t)page * PG));
		atomic_store(&t->slice, -1);
		storm_check_shared(p, 0, page);
	}
}

static int slot_of(pid_t pid)
{
	struct storm_board *b = storm_cfg.board;

	for (int i = 0; i < atomic_load(&b->nprocs) && i < STORM_MAX_PROCS; i++)
		if (atomic_load(&b->proc[i].pid) == pid)
			return i;
	return -1;
}

/* The root, subreaper of the tree: every process ends up its child (its
 * own, or orphans of parents that exited), so waiting until ECHILD waits
 * for all of them. */
static int reap_tree(struct storm_proc *p)
{
	struct storm_board *b = storm_cfg.board;
	int failed = 0, reaped = 0, forked, st;
	pid_t pid;

	atomic_store(&diag(p)->state, ST_REAPING);
	atomic_store(&diag(p)->thr[0].op, DO_REAP);
	while ((pid = waitpid(-1, &st, 0)) > 0 || errno == EINTR) {
		int slot = pid > 0 ? slot_of(pid) : -1;

		if (pid <= 0)
			continue;
		reaped++;
		if (WIFEXITED(st) && !WEXITSTATUS(st))
			continue;
		failed++;
		if (WIFSIGNALED(st))
			fprintf(stderr, "storm: process %d (slot %d, depth %d) was killed by "
				"signal %d (%s)\n", (int)pid, slot,
				slot >= 0 ? b->proc[slot].depth : -1, WTERMSIG(st),
				strsignal(WTERMSIG(st)));
		else
			fprintf(stderr, "storm: process %d (slot %d, depth %d) failed: exit "
				"code %d\n", (int)pid, slot, slot >= 0 ? b->proc[slot].depth : -1,
				WEXITSTATUS(st));
	}
	forked = atomic_load(&b->nprocs) - 1;
	fprintf(stderr, "# storm: %d processes (the root and %d forked), %d reaped, %d "
		"failed\n", forked + 1, forked, reaped, failed);
	if (reaped != forked)
		fprintf(stderr, "storm: %d forked processes but %d reaped\n", forked, reaped);
	return failed || reaped != forked;
}

static void start_workers(struct storm_proc *p)
{
	pthread_rwlockattr_t a;

	/* Writer first: fork() must not starve behind a stream of changes. */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&p->fork_lock, &a);
	pthread_rwlockattr_destroy(&a);
	atomic_store(&p->stop, false);
	atomic_store(&p->shared_tick, 0);
	p->shared_offset = (unsigned)(storm_rand(&p->rng) % 256);
	atomic_store(&diag(p)->thr[0].tid, (int)gettid());
	for (int i = 0; i < p->nworkers; i++) {
		struct storm_worker *w = &p->worker[i];

		*w = (struct storm_worker){ .proc = p, .idx = i, .rng = storm_mix(p->seed, (uint64_t)i),
					    .diag = &diag(p)->thr[i + 1] };
		if (pthread_create(&w->thread, NULL, storm_worker_run, w))
			storm_fail(p, "cannot start worker %d", i);
	}
	/* No fork() until every worker runs its loop: a thread still starting
	 * holds the sanitizer runtime's thread registry lock, and a child
	 * forked then would inherit it locked and hang in pthread_create. */
	for (int i = 0; i < p->nworkers; i++)
		while (!atomic_load(&p->worker[i].diag->tid))
			usleep(100);
}

static _Noreturn void run(struct storm_proc *p);

static void fork_child(struct storm_proc *p, int kid)
{
	struct storm_board *b = storm_cfg.board;
	int slot = atomic_fetch_add(&b->nprocs, 1);
	pid_t pid;

	if (slot >= STORM_MAX_PROCS)
		storm_fail(p, "more than %d processes", STORM_MAX_PROCS);
	b->proc[slot].parent = p->slot;
	b->proc[slot].depth = p->depth + 1;
	atomic_store(&b->proc[slot].state, ST_RUNNING);
	atomic_store(&diag(p)->thr[0].op, DO_FORK);
	atomic_fetch_add(&diag(p)->count[DO_FORK], 1);
	/* With the lock held no change is half done: the child's records
	 * match its memory. */
	pthread_rwlock_wrlock(&p->fork_lock);
	pid = fork();
	if (pid == 0) {
		/* Only this thread came along. */
		p->slot = slot;
		p->depth++;
		p->nworkers = STORM_CHILD_WORKERS;
		p->pid = getpid();
		/* From the place in the tree, not the slot (first come): the
		 * same seed gives each process the same choices. */
		p->seed = storm_mix(p->seed, (uint64_t)kid + 1000);
		p->rng = p->seed;
		atomic_store(&b->proc[slot].pid, p->pid);
		run(p);
	}
	pthread_rwlock_unlock(&p->fork_lock);
	if (pid < 0)
		storm_fail(p, "fork: %s", strerror(errno));
	atomic_store(&b->proc[slot].pid, pid);
	atomic_store(&diag(p)->thr[0].op, DO_IDLE);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static _Noreturn void run(struct storm_proc *p)
{
	uint64_t now = storm_now_ns(), span = p->deadline_ns > now ? p->deadline_ns - now : 0;
	uint64_t fork_at[STORM_MAX_FANOUT], exit_at = 0;
	int nkids = fanout[p->depth], k = 0, code = 0;

	start_workers(p);
	/* Children come in the first half of this process's life; an early
	 * exit (one process in five below the root) after the last of them. */
	for (int i = 0; i < nkids; i++)
		fork_at[i] = now + storm_rand(&p->rng) % (span / 2 + 1);
	qsort(fork_at, (size_t)nkids, sizeof(fork_at[0]), cmp_u64);
	if (p->depth && storm_rand(&p->rng) % 5 == 0) {
		uint64_t from = nkids ? fork_at[nkids - 1] : now;

		exit_at = from + storm_rand(&p->rng) % ((p->deadline_ns - from) * 9 / 10 + 1);
	}
	for (;;) {
		uint64_t next = p->deadline_ns;

		if (k < nkids && fork_at[k] < next)
			next = fork_at[k];
		if (exit_at && exit_at < next)
			next = exit_at;
		sleep_until(next);
		if (k < nkids && storm_now_ns() >= fork_at[k]) {
			fork_child(p, k);
			k++;
		} else if (exit_at && storm_now_ns() >= exit_at) {
			atomic_store(&diag(p)->state, ST_EARLY_EXIT);
			_exit(0); /* threads mid-fault */
		} else if (storm_now_ns() >= p->deadline_ns) {
			break;
		}
	}
	atomic_store(&p->stop, true);
	for (int i = 0; i < p->nworkers; i++)
		pthread_join(p->worker[i].thread, NULL);
	final_check(p);
	if (!p->depth)
		code = reap_tree(p);
	atomic_store(&diag(p)->state, code ? ST_FAILED : ST_DONE);
	_exit(code);
}

/* FL_STORM_NO_UFFD: the snapshot's bytes put there by hand, no monitor.
 * The storm must then always pass: a failure is the test's own bug. */
static char *map_local(void)
{
	size_t len = (DATA_PAGES + ZERO_PAGES) * PG;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (base == MAP_FAILED)
		_exit(90);
	madvise(base, len, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < DATA_PAGES; i++)
		expect_page(i, base + i * PG);
	return base;
}

static void init_slices(struct storm_proc *p)
{
	for (int s = 0; s < STORM_SLICES; s++) {
		struct storm_slice *sl = &slices[s];

		memset(sl, 0, sizeof(*sl));
		/* Two per four workers of a child, each owned by another. */
		sl->contested = storm_cfg.contested && s % 4 == s / 4 % 4;
		sl->nblocks = 1; /* block 0: the original mapping */
		sl->resv = mmap(NULL, STORM_RESV_PAGES * PG, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (sl->resv == MAP_FAILED)
			storm_fail(p, "cannot reserve address space: %s", strerror(errno));
		for (unsigned i = 0; i < STORM_SLICE_PAGES; i++) {
			struct storm_page *pg = &sl->page[i];
			size_t g = STORM_SHARED + (size_t)s * STORM_SLICE_PAGES + i;

			pg->src = (int32_t)g;
			atomic_store(&pg->kind, K_SNAP);
			atomic_store(&pg->addr, (uintptr_t)(p->base + g * PG));
		}
		atomic_store(&sl->npages, STORM_SLICE_PAGES);
	}
	p->slices = slices;
}

void storm_root(const char *sock)
{
	struct storm_proc *p = &proc;
	struct storm_board *b = storm_cfg.board;

	p->slot = atomic_fetch_add(&b->nprocs, 1);
	p->pid = getpid();
	atomic_store(&b->proc[p->slot].pid, p->pid);
	b->proc[p->slot].parent = -1;
	atomic_store(&b->proc[p->slot].state, ST_RUNNING);
	p->base = storm_cfg.no_uffd ? map_local() : workload_handoff(sock);
	init_slices(p);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		storm_fail(p, "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	storm_catch_segv();
	p->nworkers = STORM_ROOT_WORKERS;
	p->seed = storm_mix(storm_cfg.seed, 0);
	p->rng = p->seed;
	p->deadline_ns = storm_now_ns() + (uint64_t)(storm_cfg.seconds * 1e9);
	run(p);
}
