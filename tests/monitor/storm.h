/* SPDX-License-Identifier: MIT */
/*
 * The storm: one restored process of many threads, and the tree of
 * processes it forks, all faulting on lazy memory while they write,
 * MADV_DONTNEED, munmap and mremap it, and some exit mid-fault. Each
 * process knows, page by page, what every byte must be, and checks whole
 * pages against it.
 *
 * Memory (the harness's two regions, mapped as one area at `base`):
 *   pages [0, STORM_SHARED)            snapshot pages every thread reads
 *                                     and no one changes (concurrent
 *                                     faults on the same page);
 *   STORM_SLICES slices of 128 pages   each owned by one thread of a
 *                                     process, the only one that changes
 *                                     it. The slices of region 1 hold
 *                                     zeros in the snapshot.
 * A "contested" slice is changed only by DONTNEED, munmap and mremap, and
 * other threads ("raiders") read it meanwhile, with a seqlock telling them
 * whether a change overlapped their read: events over pages that other
 * threads are faulting on.
 */
#ifndef FL_TEST_STORM_H
#define FL_TEST_STORM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

#define STORM_SHARED 1024
#define STORM_SLICES 32
#define STORM_SLICE_PAGES 128
#define STORM_TAIL_MAX 64 /* pages an mremap may add to a slice, in all */
#define STORM_SLICE_CAP (STORM_SLICE_PAGES + STORM_TAIL_MAX)
#define STORM_BLOCKS 256     /* mappings an mremap made, per slice */
#define STORM_RESV_PAGES 8192 /* address space per slice for mremap targets */
#define STORM_ROOT_WORKERS 32
#define STORM_CHILD_WORKERS 4
#define STORM_MAX_DEPTH 3
#define STORM_MAX_FANOUT 4 /* children of one process */
#define STORM_MAX_PROCS 64
#define STORM_MAX_THREADS (STORM_ROOT_WORKERS + 1)

_Static_assert(STORM_SHARED + STORM_SLICES * STORM_SLICE_PAGES == DATA_PAGES + ZERO_PAGES,
	       "the shared pages and the slices cover both regions");
_Static_assert(STORM_SLICES % STORM_CHILD_WORKERS == 0, "slices split evenly");

/* What a page must hold. */
enum storm_kind {
	K_SNAP, /* the snapshot's bytes of source page `src` (zeros past region 0) */
	K_OWN,	/* fill_pattern(stamp): this process or an ancestor wrote it */
	K_ZERO, /* zeros: MADV_DONTNEED'd, or the tail an mremap grew */
	K_GONE, /* unmapped: never touched again */
};

struct storm_page {
	_Atomic uintptr_t addr;	 /* where it lives now */
	_Atomic uint8_t kind;
	uint16_t block;		 /* mapping it is in: 0 the original, else an mremap's */
	int32_t src;		 /* source page; -1 for a grown tail */
	uint64_t stamp;		 /* K_OWN */
};

/* A mapping an mremap made in the slice's reservation: [.., end) holds
 * pages, [end, room_end) is a hole it may grow into in place. */
struct storm_block {
	uintptr_t end, room_end;
};

struct storm_slice {
	_Atomic unsigned seq;	 /* odd while its owner changes a contested slice */
	_Atomic unsigned hot;	 /* contested: the page the owner strikes next */
	_Atomic unsigned npages; /* grows with mremap tails */
	bool contested;
	unsigned gone, nblocks, resv_used;
	char *resv; /* PROT_NONE reservation for mremap targets */
	struct storm_block block[STORM_BLOCKS];
	struct storm_page page[STORM_SLICE_CAP];
};

/* Set by the test before it spawns the root; inherited down the tree. */
struct storm_cfg {
	double seconds;
	uint64_t seed;
	bool no_uffd;	/* memory filled locally: validates the checker */
	bool contested; /* contested slices and raids (else every slice is owned) */
	struct storm_board *board;
};
extern struct storm_cfg storm_cfg;

/* ---- the board: shared memory the test reads to diagnose a hang ---- */

enum storm_op {
	DO_IDLE, DO_SHARED_READ, DO_READ, DO_WRITE, DO_DONTNEED, DO_MUNMAP, DO_MOVE,
	DO_GROW, DO_RAID, DO_FORK, DO_FINAL_CHECK, DO_REAP, DO_NOPS
};
extern const char *const storm_op_names[DO_NOPS];

enum storm_state { ST_FREE, ST_RUNNING, ST_FINAL, ST_REAPING, ST_DONE, ST_EARLY_EXIT,
		   ST_FAILED };

struct storm_thread_diag {
	_Atomic int tid;
	_Atomic int op;
	_Atomic uintptr_t addr;
	_Atomic unsigned long ops;
	/* The slice page it is on (slice -1: none), and that page's record. */
	_Atomic int slice, idx, kind, src, block;
};

/* How often each thing happened in a process: proof the storm was one. */
enum storm_count { C_RAID_OVERLAP = DO_NOPS, C_RAID_SEGV, C_GROWN_PAGES, C_NCOUNTS };

struct storm_proc_diag {
	_Atomic int pid;
	int parent, depth;
	_Atomic int state;
	_Atomic unsigned long count[C_NCOUNTS]; /* by storm_op, then storm_count */
	struct storm_thread_diag thr[STORM_MAX_THREADS]; /* [0] is the main thread */
};

struct storm_board {
	_Atomic int nprocs;
	struct storm_proc_diag proc[STORM_MAX_PROCS];
};

struct storm_board *storm_board_create(void);
void storm_board_destroy(struct storm_board *b);
/* Wait for the root workload until `limit_ns` (CLOCK_MONOTONIC). Returns
 * its exit code, or -1 after a hang: every process of the tree described
 * (thread states, wait channels, what each thread was doing), the monitor's
 * statistics printed (h may be NULL), and the tree killed. */
int storm_wait_root(pid_t root, uint64_t limit_ns, struct harness *h);
/* One line: what the whole tree did, summed over its processes. */
void storm_print_counts(void);
uint64_t storm_now_ns(void);

static inline void storm_note_page(struct storm_thread_diag *d, int slice, unsigned idx,
				   const struct storm_page *pg)
{
	atomic_store_explicit(&d->slice, slice, memory_order_relaxed);
	atomic_store_explicit(&d->idx, (int)idx, memory_order_relaxed);
	atomic_store_explicit(&d->kind, atomic_load_explicit(&pg->kind, memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&d->src, pg->src, memory_order_relaxed);
	atomic_store_explicit(&d->block, pg->block, memory_order_relaxed);
}

/* ---- a process of the tree ---- */

struct storm_proc;

/* The per-worker view: its generator, its stamp counter and its slot on
 * the board. */
struct storm_worker {
	struct storm_proc *proc;
	int idx;
	pthread_t thread;
	uint64_t rng;
	uint64_t stamps;
	struct storm_thread_diag *diag;
};

struct storm_proc {
	int slot, depth, nworkers;
	pid_t pid;
	uint64_t seed, rng;
	char *base;
	uint64_t deadline_ns;
	pthread_rwlock_t fork_lock; /* changes hold it shared, fork() exclusive */
	atomic_bool stop;
	atomic_ulong shared_tick;
	unsigned shared_offset;
	struct storm_slice *slices;
	struct storm_worker worker[STORM_ROOT_WORKERS];
};

/* The root workload (spawn()'s fn): memory handed over to the monitor at
 * sock, or filled locally when storm_cfg.no_uffd. Never returns. */
void storm_root(const char *sock);

/* storm_ops.c: one worker's loop, until proc->stop. */
void *storm_worker_run(void *arg);

/* storm_guard.c: catch SIGSEGV in this process (before its threads start),
 * then copy the page at src: returns the bytes copied before a SIGSEGV
 * ended the copy (the page was unmapped or moved away), PG if none. */
void storm_catch_segv(void);
size_t storm_guarded_copy(char *dst, const char *src);

/* storm_pages.c: the checker. */
void storm_expected(const struct storm_page *p, int kind, char *buf);
/* Compare the page at addr with what it must hold; on a difference report
 * who, where, what was expected and the first differing bytes, and exit. */
void storm_check(struct storm_proc *p, int thread, int slice, unsigned idx,
		 const struct storm_page *pg, const char *addr);
void storm_check_shared(struct storm_proc *p, int thread, unsigned page);
/* A raider's read of a contested page, copied into got (got_len bytes
 * before a SIGSEGV ended it, PG if none). exact: no change overlapped, so
 * the page must be exactly `kind`; otherwise `kind`'s bytes, then possibly
 * zeros (a DONTNEED struck mid-copy), then possibly the end (an munmap or
 * mremap did). */
void storm_check_raid(struct storm_proc *p, int thread, int slice, unsigned idx,
		      const struct storm_page *pg, int kind, bool exact, const char *got,
		      size_t got_len);
_Noreturn void storm_fail(struct storm_proc *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline uint64_t storm_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t storm_mix(uint64_t a, uint64_t b)
{
	uint64_t z = a + 0x9E3779B97F4A7C15ULL * (b + 1);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return (z ^ (z >> 31)) | 1;
}

#endif
