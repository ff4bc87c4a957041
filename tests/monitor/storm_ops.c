// SPDX-License-Identifier: MIT
/*
 * What one worker thread of a storm process does, over and over: read the
 * shared pages, raid the contested slices of other threads, and change its
 * own slices (write, MADV_DONTNEED, munmap, mremap). Every change updates
 * the slice's page records under the process's fork lock, held shared, so
 * that fork() (which holds it exclusively) hands the child records that
 * match its memory exactly.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memtypes.h"
#include "storm.h"

#define MOVE_ROOM 4 /* hole left after a moved mapping to grow into in place */

/* ---- choosing pages ---- */

static unsigned rnd(struct storm_worker *w, unsigned n)
{
	return n ? (unsigned)(storm_rand(&w->rng) % n) : 0;
}

static void count_n(struct storm_worker *w, int what, unsigned long n)
{
	atomic_fetch_add_explicit(&storm_cfg.board->proc[w->proc->slot].count[what], n,
				  memory_order_relaxed);
}

static void count(struct storm_worker *w, int what)
{
	count_n(w, what, 1);
}

static void doing(struct storm_worker *w, enum storm_op op, const void *addr)
{
	count(w, op);
	atomic_store_explicit(&w->diag->slice, -1, memory_order_relaxed);
	atomic_store_explicit(&w->diag->op, op, memory_order_relaxed);
	atomic_store_explicit(&w->diag->addr, (uintptr_t)addr, memory_order_relaxed);
}

static int kind_of(const struct storm_page *pg)
{
	return atomic_load_explicit(&pg->kind, memory_order_relaxed);
}

static char *addr_of(const struct storm_page *pg)
{
	return (char *)atomic_load_explicit(&pg->addr, memory_order_relaxed);
}

/* A page still mapped, mostly from this depth's band of the slice: pages
 * no ancestor touched, so that every generation faults afresh. */
static int pick_page(struct storm_worker *w, struct storm_slice *sl)
{
	unsigned np = atomic_load_explicit(&sl->npages, memory_order_acquire);
	unsigned band = (unsigned)w->proc->depth * 32 % STORM_SLICE_PAGES;
	unsigned start = rnd(w, 4) ? band + rnd(w, 32) : rnd(w, np);

	for (unsigned k = 0; k < np; k++) {
		unsigned i = (start + k) % np;

		if (kind_of(&sl->page[i]) != K_GONE)
			return (int)i;
	}
	return -1;
}

/* Pages i, i+1, ... while each follows the previous one in the same
 * mapping: one range for madvise, munmap or mremap. */
static unsigned run_at(struct storm_slice *sl, unsigned i, unsigned want)
{
	unsigned np = atomic_load_explicit(&sl->npages, memory_order_relaxed), n = 1;

	while (n < want && i + n < np) {
		const struct storm_page *a = &sl->page[i + n - 1], *b = &sl->page[i + n];

		if (kind_of(b) == K_GONE || b->block != a->block || addr_of(b) != addr_of(a) + PG)
			break;
		n++;
	}
	return n;
}

static int owned_slice(struct storm_worker *w)
{
	int n = w->proc->nworkers;

	return w->idx + n * (int)rnd(w, STORM_SLICES / (unsigned)n);
}

/* ---- changes (the caller holds the fork lock shared) ---- */

static void set_kind(struct storm_slice *sl, unsigned i, unsigned n, int kind)
{
	for (unsigned k = i; k < i + n; k++)
		atomic_store_explicit(&sl->page[k].kind, (uint8_t)kind, memory_order_relaxed);
}

static void do_dontneed(struct storm_worker *w, struct storm_slice *sl, unsigned i, unsigned n)
{
	char *a = addr_of(&sl->page[i]);

	doing(w, DO_DONTNEED, a);
	if (madvise(a, n * PG, MADV_DONTNEED))
		storm_fail(w->proc, "MADV_DONTNEED %p +%u pages: %s", (void *)a, n,
			   strerror(errno));
	set_kind(sl, i, n, K_ZERO);
}

static void do_munmap(struct storm_worker *w, struct storm_slice *sl, unsigned i, unsigned n)
{
	char *a = addr_of(&sl->page[i]);

	doing(w, DO_MUNMAP, a);
	if (munmap(a, n * PG))
		storm_fail(w->proc, "munmap %p +%u pages: %s", (void *)a, n, strerror(errno));
	set_kind(sl, i, n, K_GONE);
	sl->gone += n;
}

/* Append `g` zero pages of block b at addr (an mremap grew a mapping). */
static void add_tail(struct storm_slice *sl, int b, char *addr, unsigned g)
{
	unsigned np = atomic_load_explicit(&sl->npages, memory_order_relaxed);

	for (unsigned t = 0; t < g; t++) {
		struct storm_page *pg = &sl->page[np + t];

		pg->block = (uint16_t)b;
		pg->src = -1;
		pg->stamp = 0;
		atomic_store_explicit(&pg->kind, K_ZERO, memory_order_relaxed);
		atomic_store_explicit(&pg->addr, (uintptr_t)(addr + t * PG), memory_order_relaxed);
	}
	/* Raiders read npages first: the records must be there before. */
	atomic_store_explicit(&sl->npages, np + g, memory_order_release);
}

/* Move pages [i, i+n) to a fresh place in the slice's reservation, grown
 * by g zero pages. Returns false if the reservation is used up. */
static bool do_move(struct storm_worker *w, struct storm_slice *sl, unsigned i, unsigned n,
		    unsigned g)
{
	int b = (int)sl->nblocks;
	char *from = addr_of(&sl->page[i]), *to, *got;
	unsigned need;

	if (atomic_load(&sl->npages) + g > STORM_SLICE_CAP)
		g = 0;
	need = n + g + MOVE_ROOM;
	/* Each generation may use its share of the blocks, so that its
	 * descendants can still move pages. */
	if (sl->resv_used + need > STORM_RESV_PAGES ||
	    sl->nblocks >= (unsigned)(w->proc->depth + 1) * (STORM_BLOCKS / (STORM_MAX_DEPTH + 1)))
		return false;
	to = sl->resv + (size_t)sl->resv_used * PG;
	doing(w, DO_MOVE, from);
	got = mremap(from, n * PG, (n + g) * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (got != to)
		storm_fail(w->proc, "mremap %p +%u pages to %p +%u pages: %s", (void *)from, n,
			   (void *)to, n + g, got == MAP_FAILED ? strerror(errno) : "elsewhere");
	sl->nblocks++;
	sl->resv_used += need;
	sl->block[b].end = (uintptr_t)(to + (n + g) * PG);
	sl->block[b].room_end = sl->block[b].end + MOVE_ROOM * PG;
	/* The room becomes a hole: only an in-place mremap may fill it. */
	if (munmap(to + (n + g) * PG, MOVE_ROOM * PG))
		storm_fail(w->proc, "munmap of the room after %p: %s", (void *)to,
			   strerror(errno));
	for (unsigned k = 0; k < n; k++) {
		sl->page[i + k].block = (uint16_t)b;
		atomic_store_explicit(&sl->page[i + k].addr, (uintptr_t)(to + k * PG),
				      memory_order_relaxed);
	}
	add_tail(sl, b, to + n * PG, g);
	count_n(w, C_GROWN_PAGES, g);
	return true;
}

/* ---- an owned slice: only this thread touches it ---- */

static void check(struct storm_worker *w, int s, unsigned i)
{
	struct storm_page *pg = &w->proc->slices[s].page[i];

	doing(w, DO_READ, addr_of(pg));
	storm_note_page(w->diag, s, i, pg);
	storm_check(w->proc, w->idx + 1, s, i, pg, addr_of(pg));
}

static void op_write(struct storm_worker *w, int s, unsigned i)
{
	struct storm_proc *p = w->proc;
	struct storm_page *pg = &p->slices[s].page[i];
	char buf[PG];
	uint64_t stamp = (uint64_t)p->pid << 32 | (uint64_t)w->idx << 24 | (++w->stamps & 0xffffff);

	fill_pattern(buf, PG, stamp);
	/* Fault the page in before taking the lock: a fork waiting for a
	 * write stuck in a fault would only hide that fault. */
	doing(w, DO_WRITE, addr_of(pg));
	storm_note_page(w->diag, s, i, pg);
	(void)*(volatile char *)addr_of(pg);
	pthread_rwlock_rdlock(&p->fork_lock);
	memcpy(addr_of(pg), buf, PG);
	pg->stamp = stamp;
	atomic_store_explicit(&pg->kind, K_OWN, memory_order_relaxed);
	pthread_rwlock_unlock(&p->fork_lock);
	check(w, s, i);
}

/* Grow the last page of a moved mapping into the hole after it, without
 * moving (mremap flags 0): the tail reads as zeros. */
static void op_grow_in_place(struct storm_worker *w, int s)
{
	struct storm_proc *p = w->proc;
	struct storm_slice *sl = &p->slices[s];
	unsigned np = atomic_load(&sl->npages), g = 1 + rnd(w, 4);
	int b = sl->nblocks > 1 ? 1 + (int)rnd(w, sl->nblocks - 1) : 0;
	struct storm_block *bl = &sl->block[b];
	char *last, *got;
	int i = -1;

	if (!b || bl->room_end <= bl->end)
		return;
	for (unsigned k = 0; k < np && i < 0; k++)
		if (sl->page[k].block == b && kind_of(&sl->page[k]) != K_GONE &&
		    (uintptr_t)addr_of(&sl->page[k]) == bl->end - PG)
			i = (int)k;
	if (i < 0)
		return; /* the mapping's last page moved or was unmapped */
	if (g > (bl->room_end - bl->end) / PG)
		g = (unsigned)((bl->room_end - bl->end) / PG);
	if (np + g > STORM_SLICE_CAP)
		return;
	last = (char *)(bl->end - PG);
	pthread_rwlock_rdlock(&p->fork_lock);
	doing(w, DO_GROW, last);
	got = mremap(last, PG, (1 + g) * PG, 0);
	if (got == MAP_FAILED && errno == ENOMEM) {
		bl->room_end = bl->end; /* something else took the hole */
	} else if (got != last) {
		storm_fail(p, "mremap %p: growing in place by %u pages: %s", (void *)last, g,
			   got == MAP_FAILED ? strerror(errno) : "moved");
	} else {
		add_tail(sl, b, (char *)bl->end, g);
		count_n(w, C_GROWN_PAGES, g);
		bl->end += g * PG;
	}
	pthread_rwlock_unlock(&p->fork_lock);
	check(w, s, (unsigned)i);
	if (got == last)
		check(w, s, atomic_load(&sl->npages) - 1);
}

static void owned_op(struct storm_worker *w, int s)
{
	struct storm_proc *p = w->proc;
	struct storm_slice *sl = &p->slices[s];
	unsigned r = rnd(w, 100), n, np = atomic_load(&sl->npages);
	int i = pick_page(w, sl);

	if (i < 0)
		return;
	if (r < 40) {
		check(w, s, (unsigned)i);
	} else if (r < 62) {
		op_write(w, s, (unsigned)i);
	} else if (r < 77) {
		n = run_at(sl, (unsigned)i, 1 + rnd(w, 8));
		pthread_rwlock_rdlock(&p->fork_lock);
		do_dontneed(w, sl, (unsigned)i, n);
		pthread_rwlock_unlock(&p->fork_lock);
		check(w, s, (unsigned)i);
		check(w, s, (unsigned)i + n - 1);
	} else if (r < 82) {
		n = run_at(sl, (unsigned)i, 1 + rnd(w, 4));
		if (sl->gone + n > np / 4)
			return; /* keep most of the slice to play with */
		pthread_rwlock_rdlock(&p->fork_lock);
		do_munmap(w, sl, (unsigned)i, n);
		pthread_rwlock_unlock(&p->fork_lock);
	} else if (r < 92) {
		bool moved;

		n = run_at(sl, (unsigned)i, 1 + rnd(w, 16));
		pthread_rwlock_rdlock(&p->fork_lock);
		moved = do_move(w, sl, (unsigned)i, n, rnd(w, 2) ? 1 + rnd(w, 4) : 0);
		pthread_rwlock_unlock(&p->fork_lock);
		check(w, s, (unsigned)i);
		if (moved && atomic_load(&sl->npages) > np)
			check(w, s, atomic_load(&sl->npages) - 1);
	} else if (r < 96) {
		op_grow_in_place(w, s);
	} else {
		n = run_at(sl, (unsigned)i, 1 + rnd(w, 16));
		for (unsigned k = 0; k < n; k++)
			check(w, s, (unsigned)i + k);
	}
}

/* ---- contested slices: the owner strikes, others raid ---- */

/* The owner announces where it strikes next, lets raiders fault there for
 * up to a few hundred microseconds (reads in flight), then strikes: a
 * DONTNEED, munmap or mremap over pages other threads wait on. */
static void contested_op(struct storm_worker *w, int s)
{
	struct storm_proc *p = w->proc;
	struct storm_slice *sl = &p->slices[s];
	unsigned r = rnd(w, 100), n, np = atomic_load(&sl->npages);
	int i = pick_page(w, sl);

	if (i < 0)
		return;
	if (r < 25) {
		check(w, s, (unsigned)i);
		return;
	}
	atomic_store(&sl->hot, (unsigned)i);
	usleep(rnd(w, 400));
	pthread_rwlock_rdlock(&p->fork_lock);
	/* seqlock: odd while the slice changes, so a raider knows whether its
	 * read overlapped a change. */
	atomic_fetch_add_explicit(&sl->seq, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	if (r < 65) {
		n = run_at(sl, (unsigned)i, 1 + rnd(w, 8));
		do_dontneed(w, sl, (unsigned)i, n);
	} else if (r < 80) {
		n = run_at(sl, (unsigned)i, 1 + rnd(w, 4));
		if (sl->gone + n <= np / 4)
			do_munmap(w, sl, (unsigned)i, n);
	} else {
		n = run_at(sl, (unsigned)i, 1 + rnd(w, 8));
		do_move(w, sl, (unsigned)i, n, rnd(w, 2) ? 1 + rnd(w, 2) : 0);
	}
	atomic_fetch_add_explicit(&sl->seq, 1, memory_order_release);
	pthread_rwlock_unlock(&p->fork_lock);
}

static void raid(struct storm_worker *w)
{
	struct storm_proc *p = w->proc;
	int s = (int)rnd(w, STORM_SLICES), tries = 0;
	struct storm_slice *sl;
	struct storm_page *pg;
	unsigned s1, s2, np, i;
	char got[PG], *addr;
	size_t len;
	int kind;

	while ((!p->slices[s].contested || s % p->nworkers == w->idx) && tries++ < STORM_SLICES)
		s = (s + 1) % STORM_SLICES;
	if (tries > STORM_SLICES)
		return;
	sl = &p->slices[s];
	np = atomic_load_explicit(&sl->npages, memory_order_acquire);
	i = (atomic_load_explicit(&sl->hot, memory_order_relaxed) + rnd(w, 8)) % np;
	pg = &sl->page[i];
	s1 = atomic_load_explicit(&sl->seq, memory_order_acquire);
	kind = kind_of(pg);
	addr = addr_of(pg);
	if (kind == K_GONE)
		return;
	doing(w, DO_RAID, addr);
	storm_note_page(w->diag, s, i, pg);
	len = storm_guarded_copy(got, addr);
	atomic_thread_fence(memory_order_acquire);
	s2 = atomic_load_explicit(&sl->seq, memory_order_relaxed);
	if (s1 != s2 || (s1 & 1))
		count(w, C_RAID_OVERLAP);
	if (len < PG)
		count(w, C_RAID_SEGV);
	storm_check_raid(p, w->idx + 1, s, i, pg, kind, s1 == s2 && !(s1 & 1), got, len);
}

/* ---- the shared pages: every thread, never changed ---- */

/* Threads take turns on one page at a time (a convoy), so several fault
 * on the same page at once; mostly in this depth's band of the shared
 * pages, which no ancestor read. */
static void shared_read(struct storm_worker *w)
{
	struct storm_proc *p = w->proc;
	unsigned long t = atomic_fetch_add(&p->shared_tick, 1);
	unsigned convoy = p->nworkers < 8 ? (unsigned)p->nworkers : 8, page;

	if (rnd(w, 4))
		page = (unsigned)p->depth % 4 * 256 +
		       (unsigned)((t / convoy * 97 + p->shared_offset) % 256);
	else
		page = rnd(w, STORM_SHARED);
	doing(w, DO_SHARED_READ, p->base + (size_t)page * PG);
	storm_check_shared(p, w->idx + 1, page);
}

void *storm_worker_run(void *arg)
{
	struct storm_worker *w = arg;
	struct storm_proc *p = w->proc;

	atomic_store(&w->diag->tid, (int)gettid());
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		unsigned r = rnd(w, 100);

		if (r < 30) {
			shared_read(w);
		} else if (r < 50) {
			raid(w);
		} else {
			int s = owned_slice(w);

			if (p->slices[s].contested)
				contested_op(w, s);
			else
				owned_op(w, s);
		}
		atomic_fetch_add_explicit(&w->diag->ops, 1, memory_order_relaxed);
	}
	doing(w, DO_IDLE, NULL);
	return NULL;
}
