// SPDX-License-Identifier: MIT
/*
 * A second thread for background installs (the push, prefetch reads).
 *
 * Why: each page installed by UFFDIO_COPY is a page the kernel allocates,
 * and on a host where fresh memory is slow (a guest's first touch of its
 * memory) one thread installs a few hundred MB/s. The monitor's thread
 * was the whole post-copy's bottleneck at 4 GiB; a second core installs
 * as fast again. Faults and everything else stay on the monitor's thread.
 *
 * What the helper does: only the UFFDIO_COPY of runs the monitor planned
 * from a background completion (the source's push, a prefetch read);
 * a fault's completion stays on the monitor's thread. It touches no page
 * state; the monitor applies each run's result on its own thread. A
 * completion that could not go in whole (EAGAIN, an event first) goes
 * back to the monitor's own retry path.
 *
 * Why it is safe with events racing it: the kernel zaps a MADV_DONTNEED
 * range only after the monitor has read its REMOVE event, so a copy that
 * lands after that read could bring back bytes the program threw away.
 * The monitor therefore holds the install lock (write) from each read of
 * a userfaultfd until that batch's events are applied, and bumps the
 * process's `helper_gen` for each of its events (and at its end); the
 * helper copies in short steps under the lock (read), each only while
 * that generation is what it was when the run was planned. A stale run
 * installs nothing more; its pages stay owed and come again by the usual
 * way. (An event of one process leaves another's installs as they were:
 * the monitor's own thread would do those after it too.) While an event is pending the
 * kernel itself refuses (EAGAIN), as for the monitor's own installs.
 *
 * Pages a run is installing are still MISSING (or REQUESTED) to the rest
 * of the monitor: a fault on one is installed by the monitor itself from
 * the run's bytes (fl__helper_fault), and whichever copy lands second
 * finds the page there (EEXIST), which is harmless since every copy of a
 * page holds the same bytes.
 *
 * FAULTLINE_INSTALL_THREADS=N sets how many (0: none, at most 4); by
 * default one per CPU but one. FL_TEST_INSTALL_DELAY_US makes
 * each run wait that long before its first step, for tests; with
 * FL_TEST_INSTALL_HELD_FILE=PATH the helper creates PATH when a run starts
 * waiting and PATH.tried when it has tried to install it, so that a test
 * knows the race it sets up is there instead of sleeping and hoping.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "util/thread-cpu.h"

/* Bytes copied per hold of the lock: the longest a read of faults waits
 * for the helper (32 pages; 0.1-0.5 ms into fresh memory here). 64 KiB
 * made the helper's own rate lower, 256 KiB the fault tail longer. */
#define STEP (128u << 10)
#define STALE 1 /* a run's result: an event came first */

struct batch {
	struct fl_source_req *req;
	size_t left; /* runs not applied yet */
	bool again;  /* a run was refused (EAGAIN) or went stale: retry */
};

struct run {
	struct run *next;
	struct run *pnext, *pprev; /* planned, not applied (monitor's thread) */
	struct batch *b;
	struct mproc *p;
	int uffd;
	uint64_t addr, len, page, gen;
	const char *data;
	int ret; /* 0, -errno, or STALE */
	struct fl_resolve res;
};

#define MAX_THREADS 4 /* a bound; measured only up to 2 */

struct helper {
	pthread_t thread[MAX_THREADS];
	unsigned nthreads, started;
	_Atomic bool stop;
	pthread_rwlock_t lock; /* write: the monitor reads and applies events */
	unsigned held;	       /* the monitor's nesting of the write hold */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct run *todo, **todo_tail, *done;
	struct run *planned; /* every run not applied yet: the monitor's own */
	int efd;
	struct event *ev;
	unsigned test_delay_us; /* FL_TEST_INSTALL_DELAY_US: tests widen races */
	char *test_held;	/* FL_TEST_INSTALL_HELD_FILE: and say when */
};

/* FL_TEST_INSTALL_HELD_FILE: create PATH + suffix (empty, mode 0600). */
static void test_mark(const struct helper *h, const char *suffix)
{
	char path[4096];
	int fd;

	if (!h->test_held)
		return;
	snprintf(path, sizeof(path), "%s%s", h->test_held, suffix);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* FL_TEST_INSTALL_DELAY_US: a run waits that long first (or until
 * stopped), so that tests can make events and faults race it. */
static void test_wait(struct helper *h)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += h->test_delay_us / 1000000;
	until.tv_nsec += (long)(h->test_delay_us % 1000000) * 1000;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	test_mark(h, "");
	pthread_mutex_lock(&h->mu);
	while (!h->stop && pthread_cond_timedwait(&h->cond, &h->mu, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&h->mu);
}

static void *helper_main(void *arg)
{
	struct fl_monitor *m = arg;
	struct helper *h = m->helper;

	fl__thread_name("fl-install");
	for (;;) {
		struct run *j;
		uint64_t one = 1;

		pthread_mutex_lock(&h->mu);
		while (!h->todo && !h->stop)
			pthread_cond_wait(&h->cond, &h->mu);
		if (!h->todo) {
			pthread_mutex_unlock(&h->mu);
			return NULL;
		}
		j = h->todo;
		h->todo = j->next;
		if (!h->todo)
			h->todo_tail = &h->todo;
		pthread_mutex_unlock(&h->mu);
		if (h->test_delay_us)
			test_wait(h);
		for (uint64_t off = 0; off < j->len && !j->ret;) {
			uint64_t n = j->len - off < STEP ? j->len - off : STEP;
			struct fl_resolve res = { 0 };

			pthread_rwlock_rdlock(&h->lock);
			if (h->stop || atomic_load(&j->p->helper_gen) != j->gen)
				j->ret = STALE;
			else
				j->ret = fl_uffd_copy(j->uffd, j->addr + off, j->data + off, n,
						      j->page, 0, &res);
			pthread_rwlock_unlock(&h->lock);
			j->res.done += res.done;
			j->res.existed += res.existed;
			off += res.done + res.existed;
			if (!j->ret && res.done + res.existed < n)
				j->ret = -EIO; /* no progress: never spin */
		}
		test_mark(h, ".tried");
		pthread_mutex_lock(&h->mu);
		j->next = h->done;
		h->done = j;
		pthread_mutex_unlock(&h->mu);
		(void)!write(h->efd, &one, sizeof(one));
	}
}

/* Pages [first, first+n) of r that are still owed become s. */
static void set_owed(struct mregion *r, size_t first, size_t n, enum page_state s)
{
	for (size_t pg = first; pg < first + n; pg++)
		if (fl__owed(ps_get(&r->ps, pg)))
			fl__ps_set_range(&r->ps, pg, 1, s);
}

/* A run that stopped on an error, as the monitor's own install_proc
 * does: with no UNMAP events to tell us, ENOENT means the program
 * unmapped the range (forgotten); else (ENOMEM, ENOENT with an event on
 * its way) what did not go in is owed again, fetched again later. */
static void failed(struct fl_monitor *m, struct mproc *p, struct mregion *r, struct run *j)
{
	uint64_t got = j->res.done + j->res.existed;

	if (j->ret == -ENOENT && !(p->features & UFFD_FEATURE_EVENT_UNMAP)) {
		if (r)
			fl__ps_set_range(&r->ps, (j->addr + got - r->start) / r->page,
					 (j->len - got) / r->page, PS_ZERO);
		return;
	}
	fl__mon_log(m, j->ret == -ENOENT ? 2 : 0, "%s: installing %#llx (+%llu pages): %s",
		    p->label, (unsigned long long)(j->addr + got),
		    (unsigned long long)((j->len - got) / j->page), strerror(-j->ret));
	if (r)
		set_owed(r, (j->addr + got - r->start) / r->page, (j->len - got) / r->page,
			 PS_MISSING);
}

/* On the monitor's thread: what one run did goes into the page states. */
static void apply(struct fl_monitor *m, struct run *j)
{
	struct mproc *p = j->p;
	struct batch *b = j->b;
	uint64_t got = j->res.done + j->res.existed;

	if (j->pprev)
		j->pprev->pnext = j->pnext;
	else
		m->helper->planned = j->pnext;
	if (j->pnext)
		j->pnext->pprev = j->pprev;
	p->helper_runs--;
	if (!p->dead && j->ret != STALE && atomic_load(&p->helper_gen) == j->gen) {
		struct mregion *r = fl__proc_find(p, j->addr);

		if (r && r->page != j->page)
			r = NULL;
		if (r && got) {
			set_owed(r, (j->addr - r->start) / r->page, got / r->page, PS_PRESENT);
			if (p->njoined)
				fl__joined_served(p, j->addr, got);
		}
		if (b->req->unasked)
			m->stats.pages_pushed += j->res.done / j->page;
		else
			m->stats.pages_prefetched += j->res.done / j->page;
		m->stats.pages_existed += j->res.existed / j->page;
		fl__gate_answer(p, j->ret);
		if (j->ret == -EAGAIN)
			b->again = true;
		else if (j->ret == -ESRCH)
			fl__proc_kill(p, "ESRCH while installing pages");
		else if (j->ret < 0)
			failed(m, p, r, j);
	} else if (!p->dead) {
		b->again = true; /* an event came first: retried as things are now */
	}
	if (--b->left == 0) {
		fl__fetch_offload_done(m, b->req, b->again);
		free(b);
	}
	free(j);
}

static void drain(struct fl_monitor *m)
{
	struct helper *h = m->helper;
	struct run *list, *rev = NULL;

	pthread_mutex_lock(&h->mu);
	list = h->done;
	h->done = NULL;
	pthread_mutex_unlock(&h->mu);
	while (list) { /* in the order they were done */
		struct run *n = list->next;

		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct run *n = rev->next;

		apply(m, rev);
		rev = n;
	}
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct fl_monitor *m = arg;
	uint64_t v;

	(void)what;
	(void)!read((int)fd, &v, sizeof(v));
	drain(m);
	fl__retry_drain(m);
	fl__fetch_kick(m);
	fl__procs_reap(m);
}

int fl__helper_init(struct fl_monitor *m)
{
	const char *env = getenv("FAULTLINE_INSTALL_THREADS");
	/* One core stays for the monitor's own thread (faults, events). */
	long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN) - 1;
	struct helper *h;
	pthread_rwlockattr_t a;

	if (n <= 0)
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->nthreads = n > MAX_THREADS ? MAX_THREADS : (unsigned)n;
	if (getenv("FL_TEST_INSTALL_DELAY_US"))
		h->test_delay_us = (unsigned)strtoul(getenv("FL_TEST_INSTALL_DELAY_US"), NULL, 10);
	if (h->test_delay_us && getenv("FL_TEST_INSTALL_HELD_FILE"))
		h->test_held = strdup(getenv("FL_TEST_INSTALL_HELD_FILE"));
	h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->ev = h->efd >= 0 ? event_new(m->base, h->efd, EV_READ | EV_PERSIST, on_done, m) : NULL;
	if (!h->ev) {
		if (h->efd >= 0)
			close(h->efd);
		free(h->test_held);
		free(h);
		return -ENOMEM;
	}
	event_priority_set(h->ev, 0);
	event_add(h->ev, NULL);
	/* The monitor's hold must not wait behind a stream of helper steps. */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&h->lock, &a);
	pthread_rwlockattr_destroy(&a);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cond, NULL);
	h->todo_tail = &h->todo;
	m->helper = h;
	return 0;
}

void fl__helper_hold(struct fl_monitor *m)
{
	struct helper *h = m->helper;

	if (h && !h->held++)
		pthread_rwlock_wrlock(&h->lock);
}

void fl__helper_changed(struct mproc *p)
{
	atomic_fetch_add(&p->helper_gen, 1);
}

void fl__helper_unhold(struct fl_monitor *m)
{
	struct helper *h = m->helper;

	if (!h || --h->held)
		return;
	pthread_rwlock_unlock(&h->lock);
}

/* Plan req's installs as runs for the helper: every owed run in every
 * process. False (nothing taken) when there is no helper, nothing owed,
 * or a process's mm is refusing (the caller's own path handles those). */
bool fl__helper_offload(struct fl_monitor *m, struct fl_source_req *req)
{
	struct helper *h = m->helper;
	struct run *head = NULL, **tail = &head;
	struct batch *b;

	if (!h || m->replaying || req->movable || req->result)
		return false;
	b = calloc(1, sizeof(*b));
	if (!b)
		return false;
	b->req = req;
	for (struct mproc *p = m->procs; p; p = p->next) {
		/* An mm refusing (an event in flight): as on the monitor's
		 * own path, its pages stay owed and a retry is armed. */
		bool open = p->dead || fl__gate_open(p);

		b->again |= !open;
		for (size_t i = 0; open && !p->dead && i < p->nregions; i++) {
			struct mregion *r = &p->regions[i];
			size_t first, n, run;

			if (!fl__region_src_overlap(r, req->region, req->offset, req->len, &first, &n))
				continue;
			for (size_t pg = first; pg < first + n; pg += run) {
				struct run *j;
				uint64_t off = r->src_offset + pg * r->page;

				run = 1;
				if (!fl__owed(ps_get(&r->ps, pg)))
					continue;
				while (pg + run < first + n && fl__owed(ps_get(&r->ps, pg + run)))
					run++;
				j = calloc(1, sizeof(*j));
				if (!j)
					goto undo;
				*j = (struct run){ .b = b, .p = p, .uffd = p->uffd,
						   .addr = r->start + pg * r->page, .len = run * r->page,
						   .page = r->page, .gen = atomic_load(&p->helper_gen),
						   .data = (const char *)req->data + (off - req->offset) };
				*tail = j;
				tail = &j->next;
				b->left++;
			}
		}
	}
	if (!b->left) {
		if (b->again)
			fl__retry_arm(m);
		free(b);
		return false;
	}
	while (h->started < h->nthreads) {
		if (pthread_create(&h->thread[h->started], NULL, helper_main, m))
			break;
		h->started++;
	}
	if (!h->started)
		goto undo;
	for (struct run *j = head; j; j = j->next) {
		j->p->helper_runs++;
		j->pnext = h->planned;
		if (h->planned)
			h->planned->pprev = j;
		h->planned = j;
	}
	pthread_mutex_lock(&h->mu);
	*h->todo_tail = head;
	h->todo_tail = tail;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->mu);
	return true;
undo:
	while (head) {
		struct run *n = head->next;

		free(head);
		head = n;
	}
	free(b);
	return false;
}

/* Pages a fault takes from a planned run at once: its own and the owed
 * ones after it, so that a program reading on does not fault again on
 * each page the helper has not reached yet. */
#define FAULT_WINDOW 16

int fl__helper_fault(struct mproc *p, struct mregion *r, size_t page)
{
	struct fl_monitor *m = p->mon;
	uint64_t addr = r->start + page * r->page;

	if (!m->helper)
		return 0;
	for (struct run *j = m->helper->planned; j; j = j->pnext) {
		struct fl_resolve res = { 0 };
		size_t n = 1;
		int ret;

		if (j->p != p || j->page != r->page || addr < j->addr || addr >= j->addr + j->len ||
		    j->gen != atomic_load(&p->helper_gen))
			continue;
		while (n < FAULT_WINDOW && addr + n * r->page < j->addr + j->len &&
		       fl__owed(ps_get(&r->ps, page + n)))
			n++;
		ret = fl_uffd_copy(p->uffd, addr, j->data + (addr - j->addr), n * r->page, r->page, 0,
				   &res);
		fl__gate_answer(p, ret);
		fl__ps_set_range(&r->ps, page, (res.done + res.existed) / r->page, PS_PRESENT);
		m->stats.pages_fault += res.done / r->page;
		m->stats.pages_existed += res.existed / r->page;
		if (p->njoined)
			fl__joined_served(p, addr, res.done + res.existed);
		if (ret == -ESRCH)
			fl__proc_kill(p, "ESRCH serving a fault");
		if (res.done + res.existed)
			return 1;
		return ret == -EAGAIN ? ret : ret == -ESRCH;
	}
	return 0;
}

/* Stop the thread; runs not done are applied as stale (their requests
 * released, nothing installed). */
static void helper_stop(struct fl_monitor *m)
{
	struct helper *h = m->helper;

	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->mu);
	for (unsigned i = 0; i < h->started; i++)
		pthread_join(h->thread[i], NULL);
	h->started = 0;
	pthread_mutex_lock(&h->mu);
	for (struct run *j = h->todo; j;) {
		struct run *n = j->next;

		j->ret = STALE;
		j->next = h->done;
		h->done = j;
		j = n;
	}
	h->todo = NULL;
	h->todo_tail = &h->todo;
	pthread_mutex_unlock(&h->mu);
	drain(m);
}

void fl__helper_free(struct fl_monitor *m)
{
	struct helper *h = m->helper;

	if (!h)
		return;
	helper_stop(m);
	event_free(h->ev);
	close(h->efd);
	pthread_rwlock_destroy(&h->lock);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cond);
	free(h->test_held);
	free(h);
	m->helper = NULL;
}
