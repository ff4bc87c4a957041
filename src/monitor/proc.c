// SPDX-License-Identifier: MIT
/*
 * Served processes, their regions and page states, and what the
 * non-cooperative events do to them (events.c reads and dispatches them).
 * This file owns the process list and the region tables; page states
 * change here on events, in fetch.c on installs, through pagestate.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor-internal.h"

struct mproc *fl__proc_new(struct fl_monitor *m, int uffd, pid_t pid, uint64_t features)
{
	struct mproc *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->mon = m;
	p->uffd = uffd;
	p->pidfd = -1;
	p->pid = pid;
	p->features = features;
	if (!m->replaying) { /* a replay watches its survivors at the end */
		p->uffd_ev = fl__events_watch(p);
		if (!p->uffd_ev) {
			free(p);
			return NULL;
		}
	}
	p->next = m->procs;
	m->procs = p;
	m->nprocs++;
	__atomic_add_fetch(&m->ever, 1, __ATOMIC_RELEASE);
	return p;
}

static void free_regions(struct mproc *p)
{
	for (size_t i = 0; i < p->nregions; i++)
		fl__ps_free(&p->regions[i].ps);
	free(p->regions);
	p->regions = NULL;
	p->nregions = 0;
}

/* The process is gone (pidfd, ESRCH, or the liveness probe): drop its
 * state now; the struct itself waits for reads still in flight. */
void fl__proc_kill(struct mproc *p, const char *why)
{
	struct fl_monitor *m = p->mon;

	if (p->dead)
		return;
	p->dead = true;
	if (m->replaying) {
		/* its fd is closed already, or is closed with the strays */
		p->uffd = -1;
	} else {
		m->stats.exits++;
		fl__mon_log(m, 1, "%s exited (%s)", p->label, why);
		fl__journal_gone(p);
	}
	if (p->uffd_ev)
		event_free(p->uffd_ev);
	if (p->pidfd_ev)
		event_free(p->pidfd_ev);
	p->uffd_ev = p->pidfd_ev = NULL;
	/* No helper install may use the fd once it is closed (or reused). */
	fl__helper_hold(m);
	fl__helper_changed(p);
	if (p->uffd >= 0)
		close(p->uffd);
	fl__helper_unhold(m);
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->uffd = p->pidfd = -1;
	free_regions(p);
	m->check_unwanted = true; /* its reads may serve nobody now */
	m->nprocs--;
	if (!m->nprocs && m->opts.exit_when_idle)
		event_base_loopbreak(m->base);
}

/* Free dead processes. Called only at the end of a top-level callback,
 * where no caller holds a process (reads point at source pages, never at
 * a process). */
void fl__procs_reap(struct fl_monitor *m)
{
	struct mproc **pp = &m->procs;

	while (*pp) {
		struct mproc *p = *pp;

		if (p->dead && !p->helper_runs) {
			*pp = p->next;
			free(p->pending);
			free(p->joined);
			free(p);
		} else {
			pp = &p->next;
		}
	}
}

struct mregion *fl__proc_find(struct mproc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->nregions;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct mregion *r = &p->regions[mid];

		if (addr < r->start)
			hi = mid;
		else if (addr >= r->start + r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

struct mregion *fl__proc_find_src(struct mproc *p, uint32_t src_region,
			      uint64_t src_off, uint64_t *addr)
{
	for (size_t i = 0; i < p->nregions; i++) {
		struct mregion *r = &p->regions[i];

		if (r->src_region == src_region && src_off >= r->src_offset &&
		    src_off < r->src_offset + r->len) {
			*addr = r->start + (src_off - r->src_offset);
			return r;
		}
	}
	return NULL;
}

bool fl__region_src_overlap(const struct mregion *r, uint32_t src_region, uint64_t offset,
			    uint64_t len, size_t *page, size_t *n)
{
	uint64_t lo, hi;

	if (r->src_region != src_region)
		return false;
	lo = offset > r->src_offset ? offset : r->src_offset;
	hi = offset + len < r->src_offset + r->len ? offset + len : r->src_offset + r->len;
	if (lo >= hi)
		return false;
	*page = (lo - r->src_offset) / r->page;
	*n = (hi - lo) / r->page;
	return true;
}

bool fl__proc_done(const struct mproc *p)
{
	return fl__proc_owed(p) == 0;
}

uint64_t fl__proc_owed(const struct mproc *p)
{
	uint64_t n = 0;

	for (size_t i = 0; i < p->nregions; i++)
		n += p->regions[i].ps.owed;
	return n;
}

static int cmp_region(const void *a, const void *b)
{
	const struct mregion *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Cut [start, end) out of the process's regions; the pieces cut out are
 * appended to `out` (if not NULL) with their page states. */
static int cut(struct mproc *p, uint64_t start, uint64_t end, struct mregion **out,
	       size_t *nout)
{
	struct mregion *keep = calloc(p->nregions * 2 + 1, sizeof(*keep));
	size_t nk = 0;

	if (!keep)
		return -ENOMEM;
	for (size_t i = 0; i < p->nregions; i++) {
		struct mregion *r = &p->regions[i];
		uint64_t rs = r->start, re = r->start + r->len;
		uint64_t cs = start > rs ? start : rs, ce = end < re ? end : re;

		if (cs >= ce) { /* untouched */
			keep[nk++] = *r;
			continue;
		}
		/* [rs, cs) stays, [cs, ce) is cut, [ce, re) stays */
		uint64_t bounds[4] = { rs, cs, ce, re };

		for (int part = 0; part < 3; part++) {
			uint64_t a = bounds[part], b = bounds[part + 1];
			struct mregion piece = *r;

			if (a >= b)
				continue;
			piece.start = a;
			piece.len = b - a;
			piece.src_offset = r->src_offset + (a - rs);
			piece.cursor = 0;
			if (fl__ps_slice(&piece.ps, &r->ps, (a - rs) / r->page, (b - a) / r->page)) {
				free(keep);
				return -ENOMEM;
			}
			if (part == 1) {
				if (out) {
					(*out)[(*nout)++] = piece;
				} else {
					fl__ps_free(&piece.ps);
				}
			} else {
				keep[nk++] = piece;
			}
		}
		fl__ps_free(&r->ps);
	}
	free(p->regions);
	p->regions = keep;
	p->nregions = nk;
	return 0;
}

static int add_regions(struct mproc *p, struct mregion *add, size_t n)
{
	struct mregion *r = realloc(p->regions, (p->nregions + n) * sizeof(*r));

	if (!r)
		return -ENOMEM;
	memcpy(r + p->nregions, add, n * sizeof(*r));
	p->regions = r;
	p->nregions += n;
	qsort(p->regions, p->nregions, sizeof(*r), cmp_region);
	return 0;
}

/* A thread waiting on a page in [start, start+len) whose page was taken
 * away (REMOVE, UNMAP, REMAP) must not sleep on a read that will now
 * install nothing there: wake it; it faults again and is served by what
 * the range is now (zeros, or SIGSEGV for memory that is gone). */
static void wake_range(struct mproc *p, uint64_t start, uint64_t len)
{
	if (p->dead || !len || p->mon->replaying)
		return;
	fl_uffd_wake(p->uffd, start, len);
	p->mon->stats.wakes++;
	p->mon->check_unwanted = true;
}

/* UNMAP: the range and its page states are gone. */
void fl__proc_unmap(struct mproc *p, uint64_t start, uint64_t end)
{
	if (cut(p, start, end, NULL, NULL))
		fl__proc_kill(p, "out of memory following munmap");
	wake_range(p, start, end - start);
}

/* REMAP: the page states move with the pages. */
void fl__proc_remap(struct mproc *p, uint64_t from, uint64_t to, uint64_t len)
{
	struct mregion *moved = calloc(p->nregions + 1, sizeof(*moved));
	size_t n = 0;

	if (!moved || cut(p, from, from + len, &moved, &n)) {
		free(moved);
		fl__proc_kill(p, "out of memory following mremap");
		return;
	}
	for (size_t i = 0; i < n; i++)
		moved[i].start = to + (moved[i].start - from);
	if (n && add_regions(p, moved, n))
		fl__proc_kill(p, "out of memory following mremap");
	free(moved);
	wake_range(p, from, len);
}

/* REMOVE: those pages are zeros now and must never be fetched again. */
void fl__proc_remove(struct mproc *p, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < p->nregions; i++) {
		struct mregion *r = &p->regions[i];
		uint64_t rs = r->start, re = r->start + r->len;
		uint64_t cs = start > rs ? start : rs, ce = end < re ? end : re;

		if (cs < ce)
			fl__ps_set_range(&r->ps, (cs - rs) / r->page, (ce - cs) / r->page, PS_ZERO);
	}
	wake_range(p, start, end - start);
}

/* FORK: a new process with a copy of the parent's page states at fork
 * time. Pages the parent had in flight are still owed to the child, and
 * stay REQUESTED there: a read installs into every process that owes its
 * pages. (While the FORK event is unread, the kernel refuses installs into
 * the parent with EAGAIN, so no page can go in between the child's copy of
 * the page tables and our copy of the states.) */
void fl__proc_fork(struct mproc *parent, int ufd, pid_t pid)
{
	struct fl_monitor *m = parent->mon;
	struct mproc *c = fl__proc_new(m, ufd, 0, parent->features);

	if (!c) {
		if (!m->replaying)
			close(ufd);
		fl__mon_log(m, 0, "cannot follow a fork of %s: out of memory", parent->label);
		return;
	}
	snprintf(c->label, sizeof(c->label), "fork child #%zu of %.40s", m->ever, parent->label);
	c->doomed = parent->doomed;
	c->hflags = parent->hflags;
	c->regions = calloc(parent->nregions ? parent->nregions : 1, sizeof(*c->regions));
	for (size_t i = 0; c->regions && i < parent->nregions; i++) {
		struct mregion *r = &c->regions[i];

		*r = parent->regions[i];
		if (fl__ps_slice(&r->ps, &parent->regions[i].ps, 0, parent->regions[i].ps.pages))
			break;
		c->nregions++;
	}
	if (c->nregions != parent->nregions) {
		fl__proc_kill(c, "out of memory copying page states");
	} else if (pid > 0) {
		/* kernel patch 3: a pidfd at once, no liveness probe needed */
		snprintf(c->label, sizeof(c->label), "fork child %d of %.40s", (int)pid,
			 parent->label);
		fl__mon_watch_pid(c, pid);
	}
	if (!m->replaying)
		fl__mon_log(m, 1, "%s forked: following the child", parent->label);
}
