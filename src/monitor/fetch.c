// SPDX-License-Identifier: MIT
/*
 * Serving faults and streaming the rest.
 *
 * Rules, each enforced here:
 * - Faults first: a fault's read is submitted and flushed at once, as
 *   urgent; background reads are topped up only at the end of a callback,
 *   and the background pump runs at a lower libevent priority than the
 *   userfaultfds and the source's completions.
 * - A page is read from the source at most once per process: its state is
 *   REQUESTED while the read is in flight, and a second fault on it joins
 *   that read (UFFDIO_COPY wakes every thread waiting in the range).
 * - A completed read installs only pages still REQUESTED: a REMOVE that
 *   arrived meanwhile made them ZERO, and snapshot data must not resurrect
 *   them. Reads are located by source position, not address, so a REMAP
 *   or UNMAP while they were in flight is followed naturally.
 * - EAGAIN (an event is queued) defers the install or the fault until the
 *   userfaultfd has been read again: never spin, never drop.
 * - A page whose data cannot be trusted (the source says it is corrupt)
 *   is never installed: it is poisoned, so the program gets SIGBUS there
 *   instead of garbage or zeros.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "monitor-internal.h"

#define URGENT_BUFS 64
#define MAX_PAGE (2UL << 20)

int fetch_pool_init(struct fl_monitor *m)
{
	size_t nbg = m->opts.bg_inflight, chunk = m->opts.bg_chunk;
	struct mreq *reqs;
	char *p;

	m->pool_len = URGENT_BUFS * MAX_PAGE + nbg * chunk + MAX_PAGE;
	p = mmap(NULL, m->pool_len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	reqs = calloc(URGENT_BUFS + nbg, sizeof(*reqs));
	if (p == MAP_FAILED || !reqs) {
		free(reqs);
		return -ENOMEM;
	}
	m->pool = p;
	m->zeros = p + m->pool_len - MAX_PAGE;
	for (size_t i = 0; i < URGENT_BUFS + nbg; i++) {
		struct mreq *q = &reqs[i];

		if (i < URGENT_BUFS) {
			q->buf = p + i * MAX_PAGE;
			q->next = m->free_urgent;
			m->free_urgent = q;
		} else {
			q->buf = p + URGENT_BUFS * MAX_PAGE + (i - URGENT_BUFS) * chunk;
			q->next = m->free_bg;
			m->free_bg = q;
		}
	}
	m->reqs = reqs;
	return 0;
}

void fetch_pool_free(struct fl_monitor *m)
{
	if (m->pool)
		munmap(m->pool, m->pool_len);
	free(m->reqs);
	m->pool = NULL;
	m->reqs = NULL;
}

static void req_put(struct fl_monitor *m, struct mreq *q)
{
	if (q->req.urgent) {
		q->next = m->free_urgent;
		m->free_urgent = q;
		m->urgent_inflight--;
	} else {
		q->next = m->free_bg;
		m->free_bg = q;
		m->bg_inflight--;
	}
}

static void release(struct mreq *q)
{
	struct mproc *p = q->proc;

	p->inflight--;
	req_put(p->mon, q);
}

/* Zeros for [page, page+n) of r: ZEROPAGE, or COPY of zeros on hugetlb
 * (which has no zero page). Pages done are marked present. */
int fetch_zero(struct mproc *p, struct mregion *r, size_t page, size_t n)
{
	struct fl_monitor *m = p->mon;
	uint64_t addr = r->start + page * r->page;
	struct fl_resolve res = { 0 };
	int ret = 0;

	if (r->page > 4096) {
		for (size_t i = 0; i < n && !ret; i++) {
			struct fl_resolve one;

			ret = fl_uffd_copy(p->uffd, addr + i * r->page, m->zeros, r->page,
					   r->page, 0, &one);
			res.done += one.done;
			res.existed += one.existed;
		}
	} else {
		ret = fl_uffd_zeropage(p->uffd, addr, n * r->page, r->page, 0, &res);
	}
	ps_set_range(&r->ps, page, (res.done + res.existed) / r->page, PS_PRESENT);
	m->stats.pages_zeroed += res.done / r->page;
	m->stats.pages_existed += res.existed / r->page;
	if (ret == -EAGAIN)
		m->stats.eagain++;
	if (ret == -ESRCH)
		proc_kill(p, "ESRCH while installing zeros");
	return ret;
}

/* Faults that joined a read are served when it installs [addr, addr+len):
 * their latency and their threads' blocked time count from then. */
static void joined_served(struct mproc *p, uint64_t addr, uint64_t len)
{
	struct fl_monitor *m = p->mon;
	uint64_t now = 0;

	for (size_t i = 0; i < p->njoined;) {
		struct pfault *f = &p->joined[i];

		if (f->addr < addr || f->addr >= addr + len) {
			i++;
			continue;
		}
		if (!now)
			now = mon_now_ns();
		hist_record(&m->stats.latency, now - f->t_read);
		if (f->tid)
			stats_thread_blocked(&m->stats, f->tid, now - f->t_read);
		*f = p->joined[--p->njoined];
	}
}

/* Forget joined faults whose page is no longer being read (removed,
 * unmapped, poisoned): nothing will install it for them. */
static void joined_prune(struct mproc *p)
{
	for (size_t i = 0; i < p->njoined;) {
		struct mregion *r = proc_find(p, p->joined[i].addr);

		if (r && ps_get(&r->ps, (p->joined[i].addr - r->start) / r->page) == PS_REQUESTED)
			i++;
		else
			p->joined[i] = p->joined[--p->njoined];
	}
}

/* Install what a completed read brought, where each page lives now. */
static int install(struct mreq *q)
{
	struct mproc *p = q->proc;
	struct fl_monitor *m = p->mon;
	uint32_t psz = m->src->regions[q->req.region].page_size;
	uint64_t off = 0;

	while (off < q->req.len && !p->dead) {
		uint64_t src_off = q->req.offset + off, addr, run = 0;
		struct mregion *r = proc_find_src(p, q->req.region, src_off, &addr);
		struct fl_resolve res;
		size_t page;
		int ret;

		if (!r || ps_get(&r->ps, (addr - r->start) / psz) != PS_REQUESTED) {
			off += psz; /* unmapped, removed or present meanwhile */
			continue;
		}
		page = (addr - r->start) / psz;
		while (off + run < q->req.len && page + run / psz < r->ps.pages &&
		       ps_get(&r->ps, page + run / psz) == PS_REQUESTED)
			run += psz;
		ret = fl_uffd_copy(p->uffd, addr, q->buf + off, run, psz, 0, &res);
		ps_set_range(&r->ps, page, (res.done + res.existed) / psz, PS_PRESENT);
		if (p->njoined)
			joined_served(p, addr, res.done + res.existed);
		if (q->req.urgent)
			m->stats.pages_fault += res.done / psz;
		else
			m->stats.pages_prefetched += res.done / psz;
		m->stats.pages_existed += res.existed / psz;
		if (ret == -EAGAIN) {
			m->stats.eagain++;
			return -EAGAIN;
		}
		if (ret == -ESRCH) {
			proc_kill(p, "ESRCH while installing pages");
			return 0;
		}
		if (ret == -ENOENT && !(p->features & UFFD_FEATURE_EVENT_UNMAP)) {
			/* No mapping there and no UNMAP events to tell us: the
			 * program unmapped it. Forget the range. */
			ps_set_range(&r->ps, page, run / psz, PS_ZERO);
		} else if (ret < 0) {
			/* ENOMEM, or ENOENT while an event is on its way: owed
			 * again, fetched again later. */
			mon_log(m, ret == -ENOENT ? 2 : 0, "%s: installing %#llx (+%llu): %s",
				p->label, (unsigned long long)(addr + res.done + res.existed),
				(unsigned long long)run, strerror(-ret));
			ps_set_range(&r->ps, page + (res.done + res.existed) / psz,
				     (run - res.done - res.existed) / psz, PS_MISSING);
		}
		off += run;
	}
	return 0;
}

/* The source could not give trustworthy bytes: never install them. */
static void refuse(struct mreq *q)
{
	struct mproc *p = q->proc;
	struct fl_monitor *m = p->mon;
	const struct fl_region *g = &m->src->regions[q->req.region];

	mon_log(m, 0, "%s: source %s region %u (%s) bytes %#llx+%#llx unusable: %s; "
		"those pages are poisoned (SIGBUS on access), never filled with zeros",
		p->label, m->src->kind, q->req.region, g->name,
		(unsigned long long)q->req.offset, (unsigned long long)q->req.len,
		strerror(-q->req.result));
	for (uint64_t off = 0; off < q->req.len && !p->dead; off += g->page_size) {
		uint64_t addr;
		struct mregion *r = proc_find_src(p, q->req.region, q->req.offset + off, &addr);

		if (!r)
			continue;
		if (p->features & UFFD_FEATURE_POISON &&
		    fl_uffd_poison(p->uffd, addr, g->page_size, g->page_size, 0, NULL) == 0)
			ps_set(&r->ps, (addr - r->start) / g->page_size, PS_PRESENT);
		/* else it stays REQUESTED: the thread waits, it never reads
		 * garbage */
	}
}

void fetch_completed(struct fl_source_req *req, void *arg)
{
	struct mreq *q = (struct mreq *)req;
	struct mproc *p = q->proc;
	struct fl_monitor *m = arg;

	if (q->t_fault && !p->dead) {
		uint64_t ns = mon_now_ns() - q->t_fault;

		hist_record(&m->stats.latency, ns);
		if (q->tid)
			stats_thread_blocked(&m->stats, q->tid, ns);
		q->t_fault = 0;
	}
	if (p->dead) {
		release(q);
		return;
	}
	if (req->result < 0) {
		refuse(q);
		release(q);
		return;
	}
	if (req->result == 0 && !q->counted) {
		m->stats.bytes_read += req->len;
		q->counted = true;
	}
	if (install(q) == -EAGAIN) {
		q->next = p->deferred;
		p->deferred = q;
		return;
	}
	release(q);
}

static bool pfault_push(struct pfault **v, size_t *n, size_t *cap, struct pfault f)
{
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 16;
		struct pfault *nv = realloc(*v, c * sizeof(*nv));

		if (!nv)
			return false;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = f;
	return true;
}

static void defer_fault(struct mproc *p, uint64_t addr, uint32_t tid, uint64_t t)
{
	if (!pfault_push(&p->pending, &p->npending, &p->cap_pending,
			 (struct pfault){ addr, t, tid }))
		mon_log(p->mon, 0, "%s: out of memory queueing a fault", p->label);
}

static void record(struct fl_monitor *m, uint32_t region, uint64_t offset)
{
	if (m->record)
		fprintf(m->record, "%u %llu\n", region, (unsigned long long)offset);
}

/* An urgent one-page read for page of r. hurry: the page is already being
 * read in the background; this read only gets it sooner, so its bytes and
 * latency are not counted again (the joined fault's latency counts when
 * the page is installed, by whichever read lands first). 0, or -errno. */
static int submit_urgent(struct mproc *p, struct mregion *r, size_t page, uint64_t t,
			 uint32_t tid, bool hurry)
{
	struct fl_monitor *m = p->mon;
	uint64_t src_off = r->src_offset + page * r->page;
	struct mreq *q = m->free_urgent;
	int ret;

	if (!q)
		return -EBUSY;
	m->free_urgent = q->next;
	m->urgent_inflight++;
	memset(&q->req, 0, sizeof(q->req));
	q->req.region = r->src_region;
	q->req.offset = src_off;
	q->req.len = r->page;
	q->req.buf = q->buf;
	q->req.urgent = true;
	q->proc = p;
	q->t_fault = hurry ? 0 : t;
	q->tid = hurry ? 0 : tid;
	q->counted = hurry;
	ret = fl_source_submit(m->src, &q->req);
	if (ret < 0) {
		req_put(m, q);
		return ret;
	}
	p->inflight++;
	ps_set(&r->ps, page, PS_REQUESTED);
	fl_source_flush(m->src);
	if (m->src->event_fd < 0)
		fl_source_reap(m->src, fetch_completed, m);
	return 0;
}

/* A fault on a page whose read is in flight waits for it (its COPY wakes
 * every thread there); its latency counts when the page is installed. A
 * source whose background reads complete only as a whole (remote) gets an
 * urgent read of just this page, once per page. */
static void join(struct mproc *p, struct mregion *r, size_t page, uint64_t addr, uint64_t t,
		 uint32_t tid)
{
	struct fl_monitor *m = p->mon;
	uint64_t at = r->start + page * r->page;
	bool first = true;

	m->stats.faults_joined++;
	if (p->njoined >= 1024)
		joined_prune(p);
	for (size_t i = 0; i < p->njoined && first; i++)
		first = p->joined[i].addr < at || p->joined[i].addr >= at + r->page;
	if (!pfault_push(&p->joined, &p->njoined, &p->cap_joined, (struct pfault){ addr, t, tid }))
		return;
	if (first && m->src->hurry_joined && submit_urgent(p, r, page, t, tid, true) == 0)
		m->stats.faults_hurried++;
}

/* 0: handled (or joined); -EAGAIN/-EBUSY: try again later. */
static int fault_try(struct mproc *p, uint64_t addr, uint32_t tid, uint64_t t)
{
	struct fl_monitor *m = p->mon;
	struct mregion *r = proc_find(p, addr);
	uint64_t src_off;
	size_t page;
	int64_t z;
	int ret;

	if (!r) {
		/* Registered memory the snapshot never had (an mremap grew a
		 * region): it is new anonymous memory, so zeros are right. */
		ret = fl_uffd_zeropage(p->uffd, addr & ~4095ULL, 4096, 4096, 0, NULL);
		if (ret == 0)
			m->stats.faults_new_memory++;
		if (ret == -ESRCH)
			proc_kill(p, "ESRCH serving a fault");
		return ret == -EAGAIN ? ret : 0;
	}
	page = (addr - r->start) / r->page;
	src_off = r->src_offset + page * r->page;
	switch (ps_get(&r->ps, page)) {
	case PS_PRESENT: /* installed after the fault was raised */
		m->stats.faults_spurious++;
		fl_uffd_wake(p->uffd, r->start + page * r->page, r->page);
		return 0;
	case PS_REQUESTED:
		join(p, r, page, addr, t, tid);
		return 0;
	case PS_ZERO:
		ret = fetch_zero(p, r, page, 1);
		if (ret == 0) {
			m->stats.faults_zero++;
			hist_record(&m->stats.latency, mon_now_ns() - t);
		}
		return ret == -EAGAIN ? ret : 0;
	case PS_MISSING:
		break;
	}
	policy_on_fault(m, p, r, page);
	z = fl_source_zero_run(m->src, r->src_region, src_off, r->page);
	if (z > 0) {
		ret = fetch_zero(p, r, page, 1);
		if (ret == 0) {
			m->stats.faults_zero++;
			hist_record(&m->stats.latency, mon_now_ns() - t);
		}
		return ret == -EAGAIN ? ret : 0;
	}
	if (!m->free_urgent)
		return -EBUSY;
	record(m, r->src_region, src_off); /* pages read on a fault, in order */
	ret = submit_urgent(p, r, page, t, tid, false);
	if (ret == -EBUSY)
		return ret;
	if (ret < 0)
		mon_log(m, 0, "%s: the source refused page %#llx of region %u: %s", p->label,
			(unsigned long long)src_off, r->src_region, strerror(-ret));
	return 0;
}

void fetch_fault(struct mproc *p, uint64_t addr, uint32_t tid, uint64_t t_read)
{
	int ret;

	p->mon->stats.faults++;
	ret = fault_try(p, addr, tid, t_read);
	if ((ret == -EAGAIN || ret == -EBUSY) && !p->dead)
		defer_fault(p, addr, tid, t_read);
}

void fetch_retry_deferred(struct mproc *p)
{
	struct mreq *list = p->deferred;
	size_t n = p->npending;

	p->deferred = NULL;
	while (list && !p->dead) {
		struct mreq *q = list;

		list = q->next;
		fetch_completed(&q->req, p->mon);
	}
	while (list) { /* the process died meanwhile */
		struct mreq *q = list;

		list = q->next;
		release(q);
	}
	/* Faults: retry those queued before this pass, in order. */
	for (size_t i = 0; i < n && !p->dead; i++) {
		struct pfault f = p->pending[0];
		int ret;

		memmove(p->pending, p->pending + 1, (p->npending - 1) * sizeof(f));
		p->npending--;
		ret = fault_try(p, f.addr, f.tid, f.t_read);
		if (ret == -EAGAIN || ret == -EBUSY)
			defer_fault(p, f.addr, f.tid, f.t_read);
	}
}

/* Completions from an asynchronous source. */
void fetch_source_ready(struct fl_monitor *m)
{
	fl_source_reap(m->src, fetch_completed, m);
	/* Urgent buffers came back: faults that waited for one go now. */
	for (struct mproc *p = m->procs; p; p = p->next)
		if (!p->dead && (p->npending || p->deferred))
			fetch_retry_deferred(p);
}

/* Ask for a pump after whatever is pending at higher priority (faults,
 * completions) has run. */
void fetch_kick(struct fl_monitor *m)
{
	if (m->pump_ev)
		event_active(m->pump_ev, EV_TIMEOUT, 0);
}

/* Top up background reads; schedule another round if work remains. Runs
 * only from the low-priority pump event. */
void fetch_pump(struct fl_monitor *m)
{
	bool more = false, submitted = false;

	while (!m->opts.no_prefetch && !m->stopping && m->free_bg) {
		struct mproc *p;
		struct mregion *r;
		size_t page, n, data = 0;
		struct mreq *q;
		int64_t z;

		if (!policy_next(m, &p, &r, &page, &n))
			break;
		more = true;
		/* Zero runs are mapped, not read. */
		z = fl_source_zero_run(m->src, r->src_region, r->src_offset + page * r->page,
				       n * r->page);
		if (z > 0) {
			if (fetch_zero(p, r, page, (size_t)z / r->page) < 0) {
				more = false; /* an event is pending: its read pumps again */
				break;
			}
			continue;
		}
		while (data < n && fl_source_zero_run(m->src, r->src_region,
						       r->src_offset + (page + data) * r->page,
						       r->page) == 0)
			data++;
		q = m->free_bg;
		m->free_bg = q->next;
		m->bg_inflight++;
		memset(&q->req, 0, sizeof(q->req));
		q->req.region = r->src_region;
		q->req.offset = r->src_offset + page * r->page;
		q->req.len = data * r->page;
		q->req.buf = q->buf;
		q->proc = p;
		q->t_fault = 0;
		q->tid = 0;
		q->counted = false;
		if (fl_source_submit(m->src, &q->req) < 0) {
			req_put(m, q);
			break;
		}
		p->inflight++;
		ps_set_range(&r->ps, page, data, PS_REQUESTED);
		submitted = true;
	}
	if (submitted) {
		fl_source_flush(m->src);
		if (m->src->event_fd < 0)
			fl_source_reap(m->src, fetch_completed, m);
	}
	procs_reap(m);
	{
		uint64_t owed = 0;

		for (struct mproc *p = m->procs; p; p = p->next)
			for (size_t i = 0; !p->dead && i < p->nregions; i++)
				owed += p->regions[i].ps.owed;
		atomic_store(&m->owed, owed);
	}
	if (more)
		fetch_kick(m);
}
