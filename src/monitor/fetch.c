// SPDX-License-Identifier: MIT
/*
 * Serving faults and streaming the rest: requests to the page source,
 * and what their completions install.
 *
 * Rules, each enforced here:
 * - Faults first: a fault's read is submitted and flushed at once, as
 *   urgent; background reads are topped up only from the low-priority pump.
 *   A fault on a page whose read is in flight joins it, and (the first time)
 *   gets an urgent one-page read too: a background read may complete only as
 *   a whole, and a fault never waits behind one.
 * - A read is of source pages, not of one process's: its completion
 *   installs into every live process that still owes those pages (MISSING
 *   or REQUESTED there), so a fork tree reads each page once. A submitted
 *   read marks the pages REQUESTED wherever they were MISSING.
 * - A completion installs only pages still owed: a REMOVE that arrived
 *   meanwhile made them ZERO, and snapshot data must not resurrect them.
 *   Pages are found by source position, so a REMAP or UNMAP while the read
 *   was in flight is followed naturally.
 * - EAGAIN (an event is pending, or the kernel still says so after it was
 *   read) keeps the completion and its data and queues it on the retry
 *   queue (retry.c); nothing is dropped, nothing spins.
 * - A read that fails (checksum, source gone, deadline) never installs:
 *   the pages are poisoned, so a thread touching them gets SIGBUS and the
 *   log names the page and the cause; a process whose userfaultfd cannot
 *   poison is killed with that message instead.
 * - Data arrives by reference: installed with UFFDIO_MOVE when the source
 *   says its buffer may be taken, only one process owes it, and that
 *   process's memory is ours (MOVE works within the userfaultfd's mm: an
 *   in-process VMM); else UFFDIO_COPY. Then released to the source.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor-internal.h"
#include "util/clock.h"

#define URGENT_REQS 256
#define POISON_LOG_MAX 16
#define MAX_PAGE (2UL << 20)

int fl__fetch_pool_init(struct fl_monitor *m)
{
	size_t nbg = m->opts.bg_inflight;
	struct mreq *reqs = calloc(URGENT_REQS + nbg, sizeof(*reqs));

	m->zeros = calloc(1, MAX_PAGE);
	if (!reqs || !m->zeros) {
		free(reqs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < URGENT_REQS + nbg; i++) {
		struct mreq *q = &reqs[i];

		q->urgent_slot = i < URGENT_REQS;
		q->next = q->urgent_slot ? m->free_urgent : m->free_bg;
		if (q->urgent_slot)
			m->free_urgent = q;
		else
			m->free_bg = q;
	}
	m->reqs = reqs;
	m->nreqs = URGENT_REQS + nbg;
	return 0;
}

void fl__fetch_pool_free(struct fl_monitor *m)
{
	free(m->reqs);
	free(m->zeros);
	m->reqs = NULL;
	m->zeros = NULL;
}

static struct mreq *req_get(struct fl_monitor *m, bool urgent)
{
	struct mreq **list = urgent ? &m->free_urgent : &m->free_bg;
	struct mreq *q = *list;

	if (!q)
		return NULL;
	*list = q->next;
	memset(&q->req, 0, sizeof(q->req));
	q->next = NULL;
	q->busy = true;
	q->cancelled = q->deferred = false;
	q->t_fault = q->t_submit = 0;
	q->tid = 0;
	q->counted = q->hurry = q->offloaded = q->inline_only = false;
	if (urgent)
		m->urgent_inflight++;
	else
		m->bg_inflight++;
	return q;
}

static void req_put(struct fl_monitor *m, struct mreq *q)
{
	q->busy = false;
	if (q->urgent_slot) {
		q->next = m->free_urgent;
		m->free_urgent = q;
		m->urgent_inflight--;
	} else {
		q->next = m->free_bg;
		m->free_bg = q;
		m->bg_inflight--;
	}
}

/* Whether no process can need req's bytes again: every page of its range
 * lies in some live process's memory, and none owes it any more. A page
 * no process maps yet (a restorer still handing over) may be wanted
 * later, so it keeps the whole request's copy. */
static bool nobody_needs(struct fl_monitor *m, const struct fl_source_req *req)
{
	size_t pages = 0, page_size = 0, covered = 0;
	uint64_t *seen = NULL;
	bool needed = false;

	for (struct mproc *p = m->procs; p && !needed; p = p->next)
		for (size_t i = 0; !p->dead && !needed && i < p->nregions; i++) {
			struct mregion *r = &p->regions[i];
			size_t first, n;

			if (!fl__region_src_overlap(r, req->region, req->offset, req->len, &first, &n))
				continue;
			if (!seen) {
				page_size = r->page;
				pages = req->len / page_size;
				seen = calloc((pages + 63) / 64, sizeof(uint64_t));
				if (!seen)
					return false;
			}
			if (r->page != page_size) {
				needed = true; /* mixed page sizes: keep it simple */
				break;
			}
			for (size_t pg = first; pg < first + n; pg++) {
				enum page_state st = ps_get(&r->ps, pg);
				size_t k = (r->src_offset + pg * r->page - req->offset) / page_size;

				if (st == PS_MISSING || st == PS_REQUESTED) {
					needed = true;
					break;
				}
				if (k < pages && !(seen[k / 64] & (1ULL << (k % 64)))) {
					seen[k / 64] |= 1ULL << (k % 64);
					covered++;
				}
			}
		}
	free(seen);
	return !needed && pages && covered == pages;
}

/* Done with a completion: its data goes back to the source, which may
 * drop its copy when nobody needs a page of it any more. An unasked
 * request is the source's own, freed by release(): read it before. */
void fl__fetch_finish(struct fl_monitor *m, struct fl_source_req *req)
{
	bool unasked = req->unasked;

	req->installed = req->result == 0 && nobody_needs(m, req);
	fl_source_release(m->src, req);
	if (!unasked)
		req_put(m, (struct mreq *)req);
}

/* Backoff of the EAGAIN gate: from 20 us, doubling, to 1 ms. */
#define GATE_FIRST_US 20
#define GATE_MAX_US 1000

bool fl__gate_open(struct mproc *p)
{
	if (!p->again_ns || fl__now_ns() >= p->again_ns)
		return true;
	p->mon->stats.eagain_skipped++;
	return false;
}

void fl__gate_answer(struct mproc *p, int ret)
{
	if (ret != -EAGAIN) {
		p->again_ns = 0;
		p->again_us = 0;
		return;
	}
	p->mon->stats.eagain++;
	p->again_us = !p->again_us ? GATE_FIRST_US :
		      p->again_us * 2 > GATE_MAX_US ? GATE_MAX_US : p->again_us * 2;
	p->again_ns = fl__now_ns() + p->again_us * 1000ull;
}

/* Zeros for [page, page+n) of r: ZEROPAGE, or COPY of zeros on hugetlb
 * (which has no zero page). Pages done are marked present. */
int fl__fetch_zero(struct mproc *p, struct mregion *r, size_t page, size_t n)
{
	struct fl_monitor *m = p->mon;
	uint64_t addr = r->start + page * r->page;
	struct fl_resolve res = { 0 };
	int ret = 0;

	if (!fl__gate_open(p))
		return -EAGAIN;
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
	fl__ps_set_range(&r->ps, page, (res.done + res.existed) / r->page, PS_PRESENT);
	m->stats.pages_zeroed += res.done / r->page;
	m->stats.pages_existed += res.existed / r->page;
	fl__gate_answer(p, ret);
	if (ret == -ESRCH)
		fl__proc_kill(p, "ESRCH while installing zeros");
	return ret;
}

/* Faults that joined a read are served when [addr, addr+len) is
 * installed: their latency and their threads' blocked time count then. */
void fl__joined_served(struct mproc *p, uint64_t addr, uint64_t len)
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
			now = fl__now_ns();
		fl__hist_record(&m->stats.latency, now - f->t_read);
		if (f->tid)
			fl__stats_thread_blocked(&m->stats, f->tid, now - f->t_read);
		*f = p->joined[--p->njoined];
	}
}

/* Forget joined faults whose page is no longer being read (removed,
 * unmapped, poisoned): the event that took it away woke them. */
static void joined_prune(struct mproc *p)
{
	for (size_t i = 0; i < p->njoined;) {
		struct mregion *r = fl__proc_find(p, p->joined[i].addr);

		if (r && ps_get(&r->ps, (p->joined[i].addr - r->start) / r->page) == PS_REQUESTED)
			i++;
		else
			p->joined[i] = p->joined[--p->njoined];
	}
}

/* Install one run of owed pages at addr from data. MOVE when allowed,
 * COPY otherwise (and for what MOVE refused). */
static int install_run(struct mproc *p, struct mregion *r, uint64_t addr, const char *data,
		       uint64_t len, bool move, struct fl_resolve *res)
{
	int ret;

	if (move && !r->no_move) {
		ret = fl_uffd_move(p->uffd, addr, (uint64_t)(uintptr_t)data, len, r->page, 0, res);
		p->mon->stats.pages_moved += res->done / r->page;
		if (ret == 0 || ret == -EAGAIN || ret == -ESRCH)
			return ret;
		/* Not anonymous private memory (shmem, hugetlb), or the
		 * buffer's page is not exclusively ours: copy the rest. */
		if (ret == -EINVAL)
			r->no_move = true;
		uint64_t skip = res->done + res->existed;
		struct fl_resolve more = { 0 };

		ret = fl_uffd_copy(p->uffd, addr + skip, data + skip, len - skip, r->page, 0, &more);
		res->done += more.done;
		res->existed += more.existed;
		return ret;
	}
	return fl_uffd_copy(p->uffd, addr, data, len, r->page, 0, res);
}

/* Install what req brought into one process, wherever those source pages
 * live in it now. -EAGAIN: some could not go in yet (retry later). */
static int install_proc(struct mproc *p, struct fl_source_req *req, bool move)
{
	/* UFFDIO_MOVE takes src in the userfaultfd's mm, not ours: moving
	 * from our buffer into another process would take whatever that
	 * process has at the same address. */
	move = move && p->same_mm;
	struct fl_monitor *m = p->mon;
	bool urgent = req->urgent && !req->unasked;
	int again = 0;

	if (!fl__gate_open(p))
		return -EAGAIN;
	for (size_t i = 0; i < p->nregions && !p->dead; i++) {
		struct mregion *r = &p->regions[i];
		size_t first, n;

		if (!fl__region_src_overlap(r, req->region, req->offset, req->len, &first, &n))
			continue;
		for (size_t page = first; page < first + n && !p->dead;) {
			uint64_t off = r->src_offset + page * r->page, addr = r->start + page * r->page;
			struct fl_resolve res = { 0 };
			size_t run;
			int ret;

			if (!fl__owed(ps_get(&r->ps, page))) {
				page++;
				continue;
			}
			for (run = 1; page + run < first + n && fl__owed(ps_get(&r->ps, page + run)); run++)
				;
			ret = install_run(p, r, addr, (const char *)req->data + (off - req->offset),
					  run * r->page, move, &res);
			fl__ps_set_range(&r->ps, page, (res.done + res.existed) / r->page, PS_PRESENT);
			if (p->njoined)
				fl__joined_served(p, addr, res.done + res.existed);
			if (urgent)
				m->stats.pages_fault += res.done / r->page;
			else if (req->unasked)
				m->stats.pages_pushed += res.done / r->page;
			else
				m->stats.pages_prefetched += res.done / r->page;
			m->stats.pages_existed += res.existed / r->page;
			fl__gate_answer(p, ret);
			if (ret == -EAGAIN) {
				/* The whole mm refuses until its event is done. */
				return -EAGAIN;
			}
			if (ret == -ESRCH) {
				fl__proc_kill(p, "ESRCH while installing pages");
				return 0;
			}
			if (ret == -ENOENT && !(p->features & UFFD_FEATURE_EVENT_UNMAP)) {
				/* No mapping there and no UNMAP events to tell us:
				 * the program unmapped it. Forget the range. */
				fl__ps_set_range(&r->ps, page, run, PS_ZERO);
			} else if (ret < 0) {
				/* ENOMEM, or ENOENT while an event is on its way:
				 * owed again, fetched again later. */
				uint64_t got = (res.done + res.existed) / r->page;

				fl__mon_log(m, ret == -ENOENT ? 2 : 0, "%s: installing %#llx (+%zu pages): %s",
					p->label, (unsigned long long)(addr + got * r->page), run - got,
					strerror(-ret));
				fl__ps_set_range(&r->ps, page + got, run - got, PS_MISSING);
			}
			page += run;
		}
	}
	return again;
}

/* How many live processes owe any page of req's range. */
static size_t owers(struct fl_monitor *m, const struct fl_source_req *req, bool requested_only)
{
	size_t n = 0;

	for (struct mproc *p = m->procs; p; p = p->next) {
		bool any = false;

		for (size_t i = 0; !p->dead && !any && i < p->nregions; i++) {
			struct mregion *r = &p->regions[i];
			size_t first, n;

			if (!fl__region_src_overlap(r, req->region, req->offset, req->len, &first, &n))
				continue;
			for (size_t page = first; page < first + n && !any; page++) {
				enum page_state s = ps_get(&r->ps, page);

				any = requested_only ? s == PS_REQUESTED : fl__owed(s);
			}
		}
		n += any;
	}
	return n;
}

/* Install into every process that owes these pages. 0, or -EAGAIN when
 * some process must be retried. */
static int install_all(struct fl_monitor *m, struct fl_source_req *req)
{
	bool move = req->movable && owers(m, req, false) == 1;
	int again = 0;

	for (struct mproc *p = m->procs; p; p = p->next)
		if (!p->dead && install_proc(p, req, move) == -EAGAIN)
			again = -EAGAIN;
	return again;
}

/* The pid to signal for p: its own, else the thread group of a thread
 * seen faulting in it (a fork child comes without a pid). */
static pid_t proc_pid(const struct mproc *p)
{
	char path[64], line[128];
	FILE *f;
	pid_t tgid = 0;

	if (p->pid > 0)
		return p->pid;
	if (!p->last_tid)
		return 0;
	snprintf(path, sizeof(path), "/proc/%u/status", p->last_tid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Tgid: %d", &tgid) == 1)
			break;
	fclose(f);
	return tgid;
}

/* A process owes pages that can never come and cannot be made to SIGBUS
 * (the kernel refused UFFDIO_POISON): it is killed, never fed zeros. */
void fl__fetch_doom(struct mproc *p, const char *why)
{
	pid_t pid = proc_pid(p);

	if (!p->doomed)
		fl__mon_log(p->mon, 0, "%s: %s; the kernel cannot poison its pages (UFFDIO_POISON "
			"refused: older than 6.6), so the process is killed rather than given "
			"zeros", p->label, why);
	p->doomed = true;
	if (pid > 0) {
		kill(pid, SIGKILL);
		p->mon->stats.killed++;
	} else {
		fl__mon_log(p->mon, 0, "%s: no pid known yet: killed at its next fault", p->label);
	}
}

/* The source could not give trustworthy bytes for req: never install
 * them. Every owed page of the range is poisoned in every process that
 * owes it (SIGBUS on access), each named in the log. */
static void refuse(struct fl_monitor *m, struct fl_source_req *req)
{
	const struct fl_region *g = &m->src->regions[req->region];

	for (struct mproc *p = m->procs; p; p = p->next) {
		for (size_t i = 0; !p->dead && i < p->nregions; i++) {
			struct mregion *r = &p->regions[i];
			size_t first, n;

			if (!fl__region_src_overlap(r, req->region, req->offset, req->len, &first, &n))
				continue;
			for (size_t page = first; page < first + n && !p->dead; page++) {
				uint64_t off = r->src_offset + page * r->page;
				uint64_t addr = r->start + page * r->page;
				char why[256];
				int ret;

				if (!fl__owed(ps_get(&r->ps, page)))
					continue;
				snprintf(why, sizeof(why), "page %#llx (source %s region %u '%s' "
					 "offset %#llx) can never be had: %s",
					 (unsigned long long)addr, m->src->kind, req->region, g->name,
					 (unsigned long long)off, strerror(-req->result));
				/* While an event is in flight the page stays owed
				 * and is refused again at the retry. */
				if (!fl__gate_open(p))
					break;
				/* UFFDIO_POISON needs no feature bit (kernel 6.6
				 * on): an fd set up by someone else without
				 * UFFD_FEATURE_POISON (CRIU's, and its fork
				 * children's, whose pid the event does not give)
				 * still gets SIGBUS. Only a kernel without it
				 * (EINVAL, ENOTTY) leaves killing. */
				ret = fl_uffd_poison(p->uffd, addr, r->page, r->page, 0, NULL);
				fl__gate_answer(p, ret);
				if (ret == -EAGAIN)
					break;
				if (ret == -EINVAL || ret == -ENOTTY) {
					fl__fetch_doom(p, why);
					break;
				}
				if (ret == -ESRCH) {
					fl__proc_kill(p, "ESRCH while poisoning");
					break;
				}
				fl__ps_set(&r->ps, page, PS_PRESENT);
				m->stats.pages_poisoned++;
				/* A lost source can poison every owed page: name
				 * the first ones, count the rest. */
				if (m->stats.pages_poisoned <= POISON_LOG_MAX)
					fl__mon_log(m, 0, "%s: %s; poisoned: SIGBUS on access, never "
						    "zeros", p->label, why);
				if (m->stats.pages_poisoned == POISON_LOG_MAX)
					fl__mon_log(m, 0, "further poisoned pages are counted, not "
						    "logged (pages_poisoned in the statistics)");
			}
		}
	}
}

static void count_latency(struct fl_monitor *m, struct mreq *q)
{
	uint64_t ns;

	if (!q->t_fault)
		return;
	ns = fl__now_ns() - q->t_fault;
	fl__hist_record(&m->stats.latency, ns);
	if (q->tid)
		fl__stats_thread_blocked(&m->stats, q->tid, ns);
	q->t_fault = 0;
}

/* One completion (asked or not): install, refuse, or queue for a retry. */
static void complete(struct fl_monitor *m, struct fl_source_req *req)
{
	struct mreq *q = req->unasked ? NULL : (struct mreq *)req;

	if (q && q->cancelled) { /* withdrawn too late to stop it */
		fl__fetch_finish(m, req);
		return;
	}
	if (req->result < 0) {
		if (q)
			count_latency(m, q);
		m->stats.reads_failed++;
		refuse(m, req);
		fl__fetch_finish(m, req);
		return;
	}
	if (q && !q->counted) {
		/* A read that only hurries a page already being read counts
		 * apart: the source delivered it twice. */
		if (q->hurry)
			m->stats.bytes_reread += req->len;
		else
			m->stats.bytes_read += req->len;
		q->counted = true;
	}
	/* Background completions go to the install helper, when there is
	 * one; a fault's stays here (fl__fetch_offload_done finishes them). */
	if ((!q || (!req->urgent && !q->inline_only)) && fl__helper_offload(m, req)) {
		if (q)
			q->offloaded = true;
		return;
	}
	if (install_all(m, req) == -EAGAIN) {
		if (!q) {
			/* Unasked pages cannot be held: whatever did not go
			 * in is still owed and will be asked for. */
			fl__fetch_finish(m, req);
			fl__retry_arm(m);
			return;
		}
		if (!q->deferred) {
			q->deferred = true;
			q->next = m->deferred;
			m->deferred = q;
		}
		fl__retry_arm(m);
		return;
	}
	if (q)
		count_latency(m, q);
	fl__fetch_finish(m, req);
}

void fl__fetch_offload_done(struct fl_monitor *m, struct fl_source_req *req, bool again)
{
	struct mreq *q = req->unasked ? NULL : (struct mreq *)req;

	if (q) {
		q->offloaded = false;
		if (again && !q->cancelled) {
			/* Its bytes are still wanted: the monitor's own path
			 * retries them, with the states as they are now. */
			q->inline_only = true;
			q->deferred = true;
			q->next = m->deferred;
			m->deferred = q;
			fl__retry_arm(m);
			return;
		}
	}
	fl__fetch_finish(m, req);
	if (again)
		fl__retry_arm(m);
}

void fl__fetch_completed(struct fl_source_req *req, void *arg)
{
	complete(arg, req);
}

/* Retry every deferred completion once; those still refused stay queued. */
bool fl__fetch_retry_deferred(struct fl_monitor *m)
{
	struct mreq *list = m->deferred;

	m->deferred = NULL;
	while (list) {
		struct mreq *q = list;

		list = q->next;
		q->deferred = false;
		q->next = NULL;
		complete(m, &q->req);
	}
	return m->deferred != NULL;
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
		fl__mon_log(p->mon, 0, "%s: out of memory queueing a fault", p->label);
	fl__retry_arm(p->mon);
}

static void record(struct fl_monitor *m, uint32_t region, uint64_t offset)
{
	if (m->opts.on_fault_page)
		m->opts.on_fault_page(m->opts.on_fault_arg, region, offset);
}

/* Mark [offset, offset+len) of a source region REQUESTED in every live
 * process where it is MISSING: one read serves them all. */
static void mark_requested(struct fl_monitor *m, uint32_t region, uint64_t offset, uint64_t len)
{
	for (struct mproc *p = m->procs; p; p = p->next)
		for (size_t i = 0; !p->dead && i < p->nregions; i++) {
			struct mregion *r = &p->regions[i];
			size_t first, n;

			if (!fl__region_src_overlap(r, region, offset, len, &first, &n))
				continue;
			for (size_t page = first; page < first + n; page++)
				if (ps_get(&r->ps, page) == PS_MISSING)
					fl__ps_set(&r->ps, page, PS_REQUESTED);
		}
}

static int submit(struct fl_monitor *m, struct mreq *q, uint32_t region, uint64_t offset,
		  uint64_t len, bool urgent)
{
	int ret;

	q->req.region = region;
	q->req.offset = offset;
	q->req.len = len;
	q->req.urgent = urgent;
	q->req.cookie = q;
	q->t_submit = fl__now_ns();
	ret = fl_source_submit(m->src, &q->req);
	if (ret < 0) {
		req_put(m, q);
		return ret;
	}
	mark_requested(m, region, offset, len);
	return 0;
}

/* An urgent one-page read for page of r. hurry: the page is already being
 * read; this read only gets it sooner, so its bytes and latency are not
 * counted again (the joined fault's latency counts when the page is
 * installed, by whichever read lands first). 0, or -errno. */
static int submit_urgent(struct mproc *p, struct mregion *r, size_t page, uint64_t t,
			 uint32_t tid, bool hurry)
{
	struct fl_monitor *m = p->mon;
	struct mreq *q = req_get(m, true);
	int ret;

	if (!q)
		return -EBUSY;
	q->t_fault = hurry ? 0 : t;
	q->tid = hurry ? 0 : tid;
	q->hurry = hurry;
	ret = submit(m, q, r->src_region, r->src_offset + page * r->page, r->page, true);
	if (ret == 0)
		fl_source_flush(m->src);
	return ret;
}

/* The read in flight (submitted, not cancelled) covering source page
 * off of region, preferring an urgent one; NULL if none. */
static struct mreq *read_in_flight(struct fl_monitor *m, uint32_t region, uint64_t off)
{
	struct mreq *any = NULL;

	for (size_t i = 0; i < m->nreqs; i++) {
		struct mreq *q = &m->reqs[i];

		if (!q->busy || q->cancelled || q->req.region != region || off < q->req.offset ||
		    off >= q->req.offset + q->req.len)
			continue;
		if (q->req.urgent)
			return q;
		any = q;
	}
	return any;
}

/* A fault on a page whose read is in flight waits for it (the install
 * wakes every thread there); its latency counts when the page is
 * installed. Unless an urgent read of the page is already in flight, it
 * gets one: the read in flight may be a long background one (not from a
 * source that answers in order: that one would come after it). */
static int join(struct mproc *p, struct mregion *r, size_t page, uint64_t addr, uint64_t t,
		uint32_t tid, const struct mreq *inflight)
{
	struct fl_monitor *m = p->mon;

	if (p->njoined >= 1024)
		joined_prune(p);
	if (!inflight->req.urgent && !m->src->in_order) {
		int ret = submit_urgent(p, r, page, t, tid, true);

		if (ret == -EBUSY)
			return ret; /* retried when a request comes back */
		if (ret == 0)
			m->stats.faults_hurried++;
	}
	m->stats.faults_joined++;
	pfault_push(&p->joined, &p->njoined, &p->cap_joined, (struct pfault){ addr, t, tid });
	return 0;
}

static int zero_fault(struct mproc *p, struct mregion *r, size_t page, uint64_t t)
{
	int ret = fl__fetch_zero(p, r, page, 1);

	if (ret == 0) {
		p->mon->stats.faults_zero++;
		fl__hist_record(&p->mon->stats.latency, fl__now_ns() - t);
	}
	return ret == -EAGAIN ? ret : 0;
}

/* Bytes the install helper holds for the page are here already: no read
 * needed. 1: served; 0: not; -EAGAIN. */
static int served_from_helper(struct mproc *p, struct mregion *r, size_t page, uint32_t tid,
			      uint64_t t)
{
	struct fl_monitor *m = p->mon;
	int ret = fl__helper_fault(p, r, page);

	if (ret > 0) {
		uint64_t ns = fl__now_ns() - t;

		m->stats.faults_joined++; /* joined the helper's bytes */
		fl__hist_record(&m->stats.latency, ns);
		if (tid)
			fl__stats_thread_blocked(&m->stats, tid, ns);
	}
	return ret;
}

/* 0: handled (or joined); -EAGAIN/-EBUSY: try again later. */
static int fault_try(struct mproc *p, uint64_t addr, uint32_t tid, uint64_t t)
{
	struct fl_monitor *m = p->mon;
	struct mregion *r = fl__proc_find(p, addr);
	uint64_t src_off;
	size_t page;
	int ret;

	if (!r) {
		/* Registered memory the snapshot never had (an mremap grew a
		 * region): it is new anonymous memory, so zeros are right.
		 * ENOENT: unmapped meanwhile; the UNMAP woke the thread. */
		ret = fl_uffd_zeropage(p->uffd, addr & ~4095ULL, 4096, 4096, 0, NULL);
		if (ret == 0)
			m->stats.faults_new_memory++;
		if (ret == -ESRCH)
			fl__proc_kill(p, "ESRCH serving a fault");
		return ret == -EAGAIN ? ret : 0;
	}
	page = (addr - r->start) / r->page;
	src_off = r->src_offset + page * r->page;
	switch (ps_get(&r->ps, page)) {
	case PS_PRESENT:
		/* Either installed after the fault was raised (the install
		 * woke the thread already: a spurious fault), or installed and
		 * then dropped behind our back: MADV_DONTNEED zaps after its
		 * REMOVE event was read, so a page installed in between is
		 * gone with no event left to say so (MADV_FREE pages go the
		 * same way). Missing memory the program had dropped is zeros:
		 * ZEROPAGE answers "existed" (and wakes) in the first case and
		 * fills the page in the second; never a livelock of wakes. */
		ret = fl__fetch_zero(p, r, page, 1);
		if (ret == 0)
			m->stats.faults_spurious++;
		return ret == -EAGAIN ? ret : 0;
	case PS_REQUESTED: {
		const struct mreq *q;

		ret = served_from_helper(p, r, page, tid, t);
		if (ret)
			return ret < 0 ? ret : 0;
		q = read_in_flight(m, r->src_region, src_off);

		if (q)
			return join(p, r, page, addr, t, tid, q);
		/* Owed, but no read will bring it (a bug elsewhere, or a
		 * read withdrawn under us): never let the thread sleep on
		 * it. Read it again. */
		m->stats.reads_reissued++;
		fl__mon_log(m, 1, "%s: page %#llx was owed with no read in flight: reading it "
			    "again", p->label, (unsigned long long)addr);
		fl__ps_set(&r->ps, page, PS_MISSING);
		break;
	}
	case PS_ZERO:
		return zero_fault(p, r, page, t);
	case PS_MISSING:
		break;
	}
	fl__policy_on_fault(m, p, r, page);
	if (fl_source_zero_run(m->src, r->src_region, src_off, r->page) > 0)
		return zero_fault(p, r, page, t);
	ret = served_from_helper(p, r, page, tid, t);
	if (ret)
		return ret < 0 ? ret : 0;
	if (!m->free_urgent)
		return -EBUSY;
	record(m, r->src_region, src_off); /* pages read on a fault, in order */
	ret = submit_urgent(p, r, page, t, tid, false);
	if (ret == -EBUSY)
		return ret;
	if (ret < 0) {
		struct fl_source_req bad = { .region = r->src_region, .offset = src_off,
					     .len = r->page, .result = ret };

		fl__mon_log(m, 0, "%s: the source refused page %#llx of region %u: %s", p->label,
			(unsigned long long)src_off, r->src_region, strerror(-ret));
		refuse(m, &bad);
	}
	return 0;
}

void fl__fetch_fault(struct mproc *p, uint64_t addr, uint32_t tid, uint64_t t_read)
{
	int ret;

	p->mon->stats.faults++;
	if (tid)
		p->last_tid = tid;
	if (p->doomed) {
		fl__fetch_doom(p, "it faulted on memory that can never be served");
		return;
	}
	ret = fault_try(p, addr, tid, t_read);
	if ((ret == -EAGAIN || ret == -EBUSY) && !p->dead)
		defer_fault(p, addr, tid, t_read);
}

/* Retry the process's queued faults once, in order. Returns true if some
 * are still queued. */
bool fl__fetch_retry_faults(struct mproc *p)
{
	size_t n = p->npending;

	for (size_t i = 0; i < n && !p->dead; i++) {
		struct pfault f = p->pending[0];
		int ret;

		memmove(p->pending, p->pending + 1, (p->npending - 1) * sizeof(f));
		p->npending--;
		ret = fault_try(p, f.addr, f.tid, f.t_read);
		if (ret == -EAGAIN || ret == -EBUSY)
			pfault_push(&p->pending, &p->npending, &p->cap_pending, f);
	}
	return !p->dead && p->npending;
}

/* Completions from the source. */
void fl__fetch_source_ready(struct fl_monitor *m)
{
	fl_source_reap(m->src, fl__fetch_completed, m);
}

/* Withdraw reads that no live process waits for any more (after UNMAP,
 * REMAP out of a region, or an exit): the source stops working on them,
 * and their bytes reach nobody. */
void fl__fetch_cancel_unwanted(struct fl_monitor *m)
{
	for (size_t i = 0; i < m->nreqs; i++) {
		struct mreq *q = &m->reqs[i];

		if (!q->busy || q->cancelled || q->deferred || q->offloaded ||
		    owers(m, &q->req, true))
			continue;
		m->stats.reads_cancelled++;
		if (fl_source_cancel(m->src, &q->req) == 0)
			req_put(m, q);
		else
			q->cancelled = true; /* its completion is on its way */
	}
}

/* Urgent reads older than the deadline: the source is not answering. Each
 * is withdrawn and its pages end as if the read failed (SIGBUS). */
void fl__fetch_check_deadlines(struct fl_monitor *m)
{
	uint64_t now = fl__now_ns(), limit = (uint64_t)m->opts.read_deadline_ms * 1000000;

	if (!limit)
		return;
	for (size_t i = 0; i < m->nreqs; i++) {
		struct mreq *q = &m->reqs[i];
		struct fl_source_req failed;

		if (!q->busy || q->cancelled || q->deferred || q->offloaded || !q->req.urgent ||
		    now - q->t_submit < limit)
			continue;
		fl__mon_log(m, 0, "source %s: no answer for region %u offset %#llx within %u ms",
			m->src->kind, q->req.region, (unsigned long long)q->req.offset,
			m->opts.read_deadline_ms);
		failed = q->req;
		failed.result = -ETIMEDOUT;
		if (fl_source_cancel(m->src, &q->req) == 0)
			req_put(m, q);
		else
			q->cancelled = true;
		m->stats.reads_failed++;
		refuse(m, &failed);
	}
}

/* Teardown: withdraw every read; completions that could not be withdrawn
 * any more are collected and released. After this, nothing of ours is in
 * the source. */
static void release_only(struct fl_source_req *req, void *arg)
{
	fl__fetch_finish(arg, req);
}

void fl__fetch_cancel_all(struct fl_monitor *m)
{
	while (m->deferred) {
		struct mreq *q = m->deferred;

		m->deferred = q->next;
		q->deferred = false;
		fl__fetch_finish(m, &q->req);
	}
	for (size_t i = 0; i < m->nreqs; i++) {
		struct mreq *q = &m->reqs[i];

		if (!q->busy || q->cancelled)
			continue;
		if (fl_source_cancel(m->src, &q->req) == 0)
			req_put(m, q);
		else
			q->cancelled = true; /* already in the source's done list */
	}
	/* Those, and pages pushed unasked meanwhile, come back now: released,
	 * never installed. A source may hand them over in batches. */
	while (fl_source_reap(m->src, release_only, m) > 0)
		;
}

/* Ask for a pump after whatever is pending at higher priority (faults,
 * completions) has run. */
void fl__fetch_kick(struct fl_monitor *m)
{
	if (m->pump_ev)
		event_active(m->pump_ev, EV_TIMEOUT, 0);
}

/* Top up background reads; schedule another round if work remains. Runs
 * only from the low-priority pump event. */
void fl__fetch_pump(struct fl_monitor *m)
{
	bool more = false, submitted = false;

	while (!m->opts.no_prefetch && !m->stopping && m->free_bg) {
		struct mproc *p;
		struct mregion *r;
		size_t page, n, data = 0;
		struct mreq *q;
		int64_t z;

		if (!fl__policy_next(m, &p, &r, &page, &n))
			break;
		more = true;
		/* Zero runs are mapped, not read. */
		z = fl_source_zero_run(m->src, r->src_region, r->src_offset + page * r->page,
				       n * r->page);
		if (z > 0) {
			if (fl__fetch_zero(p, r, page, (size_t)z / r->page) < 0) {
				fl__retry_arm(m); /* an event is pending: pump again later */
				more = false;
				break;
			}
			continue;
		}
		while (data < n && fl_source_zero_run(m->src, r->src_region,
						       r->src_offset + (page + data) * r->page,
						       r->page) == 0)
			data++;
		if ((uint64_t)data * r->page > m->src->max_req)
			data = m->src->max_req / r->page;
		q = req_get(m, false);
		if (submit(m, q, r->src_region, r->src_offset + page * r->page, data * r->page,
			   false) < 0)
			break;
		submitted = true;
	}
	if (submitted)
		fl_source_flush(m->src);
	fl__procs_reap(m);
	{
		uint64_t owed_pages = 0;

		for (struct mproc *p = m->procs; p; p = p->next)
			if (!p->dead)
				owed_pages += fl__proc_owed(p);
		atomic_store(&m->owed, owed_pages);
	}
	if (more)
		fl__fetch_kick(m);
}
