// SPDX-License-Identifier: MIT
/* The monitor's life: set-up, adopting processes, the loop, statistics. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "util/clock.h"

#define PROBE_INTERVAL_MS 200
#define WATCHDOG_TICKS 5 /* every second */

void fl__mon_log(struct fl_monitor *m, int level, const char *fmt, ...)
{
	va_list ap;

	if (level > m->opts.verbose)
		return;
	fprintf(stderr, "monitor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void on_source(evutil_socket_t fd, short what, void *arg)
{
	struct fl_monitor *m = arg;

	(void)what;
	(void)fd;
	fl__fetch_source_ready(m); /* reap drains the eventfd itself */
	fl__retry_drain(m);
	fl__fetch_kick(m);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fl__fetch_pump(arg);
}

static void on_pidfd(evutil_socket_t fd, short what, void *arg)
{
	struct mproc *p = arg;

	(void)fd;
	(void)what;
	fl__proc_kill(p, "pidfd");
	fl__retry_drain(p->mon);
	fl__fetch_kick(p->mon);
}

void fl__mon_watch_pid(struct mproc *p, pid_t pid)
{
	p->pid = pid;
	if (p->mon->replaying)
		return; /* fl__mon_watch() at the end */
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0)
		return; /* the liveness probe covers it */
	p->pidfd_ev = event_new(p->mon->base, p->pidfd, EV_READ, on_pidfd, p);
	event_priority_set(p->pidfd_ev, 0);
	event_add(p->pidfd_ev, NULL);
}

/*
 * The last line of "never asleep for ever": once a second, every thread
 * waiting in a region of a process that still owes pages is woken. One
 * whose page is still missing faults again and is served from the page's
 * state as it is now (a read in flight is joined; a page owed with none is
 * read again). Costs one ioctl per region, and a fault per thread that
 * really waits on a slow source.
 */
static void watchdog(struct fl_monitor *m)
{
	for (struct mproc *p = m->procs; p; p = p->next) {
		if (p->dead || fl__proc_done(p))
			continue;
		for (size_t i = 0; i < p->nregions; i++)
			fl_uffd_wake(p->uffd, p->regions[i].start, p->regions[i].len);
		m->stats.idle_wakes++;
	}
}

/*
 * Upstream has no exit event, and a fork child comes without a pid, so no
 * pidfd. An exited process's userfaultfd never becomes readable; its
 * resolves answer ESRCH. A process we owe nothing more would never be
 * resolved again, so probe: WRITEPROTECT (un-protect, a no-op for us)
 * answers ESRCH once the mm is gone, and something else while it lives.
 */
static void on_probe(evutil_socket_t fd, short what, void *arg)
{
	struct fl_monitor *m = arg;

	(void)fd;
	(void)what;
	for (struct mproc *p = m->procs; p; p = p->next)
		if (!p->dead && p->pidfd < 0 && !(p->features & UFFD_FEATURE_EVENT_EXIT) &&
		    fl_uffd_writeprotect(p->uffd, 1ULL << 30, 4096, false,
					 FL_RESOLVE_DONTWAKE) == -ESRCH)
			fl__proc_kill(p, "ESRCH from the liveness probe");
	fl__fetch_check_deadlines(m);
	if (++m->probe_ticks % WATCHDOG_TICKS == 0)
		watchdog(m);
	fl__retry_drain(m);
	fl__fetch_kick(m);
}

static void on_stop(evutil_socket_t fd, short what, void *arg);


static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct fl_monitor *m = arg;

	(void)what;
	if (sig == SIGUSR1) {
		m->opts.on_sigusr1(m, m->opts.sigusr1_arg);
		return;
	}
	fl__mon_log(m, 0, "signal %d: stopping", (int)sig);
	fl_monitor_stop(m);
}

/* After set-up the monitor only reads and resolves fds it was handed and
 * opens pidfds; the one thing it may still have to do to someone else's
 * process is end it, when a page can never come and the fd has no
 * UFFD_FEATURE_POISON (CRIU's, for one): CAP_KILL, if held, stays.
 * Everything else goes, for its thread and whatever it starts:
 * capabilities, the bounding and ambient sets, and no_new_privs is set. */
static void drop_capabilities(struct fl_monitor *m)
{
	static const int keep[] = { CAP_KILL };
	char err[256];

	if (fl_privileges_keep(keep, 1, err, sizeof(err)) == 0)
		fl__mon_log(m, 2, "dropped every capability but CAP_KILL");
	else
		fl__mon_log(m, 0, "could not drop privileges: %s", err);
}

int fl_monitor_create(struct fl_monitor **out, struct fl_source *source,
		      const struct fl_monitor_opts *opts, char *err, size_t errlen)
{
	struct fl_monitor *m = calloc(1, sizeof(*m));
	struct timeval probe = { 0, PROBE_INTERVAL_MS * 1000 };
	int ret;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->src = source;
	m->opts = *opts;
	{
		struct fl_uffd_series s;

		/* kernel patch 3, on proof only: fork children get a pidfd */
		m->fork_pid = fl_uffd_series_probe(&s) == 0 && s.fork_pid;
	}
	if (!m->opts.bg_inflight)
		m->opts.bg_inflight = 4;
	if (!m->opts.bg_chunk)
		m->opts.bg_chunk = 2UL << 20;
	m->base = event_base_new();
	if (!m->base || event_base_priority_init(m->base, 2)) {
		snprintf(err, errlen, "cannot create the event loop");
		fl_monitor_destroy(m);
		return -ENOMEM;
	}
	if (source->event_fd < 0) {
		snprintf(err, errlen, "the %s page source has no event fd", source->kind);
		fl_monitor_destroy(m);
		return -EINVAL;
	}
	if (source->max_req < (2u << 20)) {
		snprintf(err, errlen, "the %s page source takes reads of at most %llu bytes "
			 "(2 MiB needed)", source->kind, (unsigned long long)source->max_req);
		fl_monitor_destroy(m);
		return -EINVAL;
	}
	if (m->opts.bg_chunk > source->max_req)
		m->opts.bg_chunk = source->max_req;
	ret = fl__fetch_pool_init(m);
	if (!ret)
		ret = fl__retry_init(m);
	if (!ret)
		ret = fl__helper_init(m);
	if (ret) {
		snprintf(err, errlen, "cannot allocate read buffers");
		fl_monitor_destroy(m);
		return ret;
	}
	m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->stop_ev = event_new(m->base, m->stop_fd, EV_READ | EV_PERSIST, on_stop, m);
	event_add(m->stop_ev, NULL);
	m->pump_ev = event_new(m->base, -1, 0, on_pump, m);
	event_priority_set(m->pump_ev, 1); /* below faults and completions */
	m->probe_ev = event_new(m->base, -1, EV_PERSIST, on_probe, m);
	event_add(m->probe_ev, &probe);
	m->sig_ev = evsignal_new(m->base, SIGTERM, on_signal, m);
	event_add(m->sig_ev, NULL);
	m->int_ev = evsignal_new(m->base, SIGINT, on_signal, m);
	event_add(m->int_ev, NULL);
	if (m->opts.on_sigusr1) {
		m->usr1_ev = evsignal_new(m->base, SIGUSR1, on_signal, m);
		event_add(m->usr1_ev, NULL);
	}
	m->src_ev = event_new(m->base, source->event_fd, EV_READ | EV_PERSIST, on_source, m);
	event_priority_set(m->src_ev, 0);
	event_add(m->src_ev, NULL);
	ret = fl__policy_set_replay(m, opts->replay, opts->nreplay, err, errlen);
	if (ret) {
		fl_monitor_destroy(m);
		return ret;
	}
	m->stats.t_start = fl__now_ns();
	*out = m;
	return 0;
}

static bool is_userfaultfd(int fd)
{
	char path[64], link[64] = "";

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (readlink(path, link, sizeof(link) - 1) < 0)
		return false;
	return strcmp(link, "anon_inode:[userfaultfd]") == 0;
}

static int cmp_hregion(const void *a, const void *b)
{
	const struct fl_handoff_region *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Every region must name a real source region, fit inside it, use its page
 * size, be page aligned, and not overlap another. */
static int validate(struct fl_monitor *m, struct fl_handoff_region *r, size_t n,
		    char *err, size_t errlen)
{
	qsort(r, n, sizeof(*r), cmp_hregion);
	for (size_t i = 0; i < n; i++) {
		const struct fl_region *g;
		uint64_t pg;

		if (r[i].source_region >= m->src->nregions) {
			snprintf(err, errlen, "region at %#llx names source region %u, but the "
				 "source has %zu", (unsigned long long)r[i].addr,
				 r[i].source_region, m->src->nregions);
			return -EINVAL;
		}
		g = &m->src->regions[r[i].source_region];
		pg = g->page_size;
		if (r[i].page_size != pg) {
			snprintf(err, errlen, "region at %#llx: page size %u, the source's "
				 "region %u (%s) has %llu", (unsigned long long)r[i].addr,
				 r[i].page_size, r[i].source_region, g->name,
				 (unsigned long long)pg);
			return -EINVAL;
		}
		if (!r[i].len || (r[i].addr | r[i].len | r[i].source_offset) % pg) {
			snprintf(err, errlen, "region at %#llx (+%#llx, source offset %#llx) is "
				 "empty or not aligned to its %llu-byte pages",
				 (unsigned long long)r[i].addr, (unsigned long long)r[i].len,
				 (unsigned long long)r[i].source_offset, (unsigned long long)pg);
			return -EINVAL;
		}
		if (r[i].source_offset > g->len || r[i].len > g->len - r[i].source_offset) {
			snprintf(err, errlen, "region at %#llx wants %#llx bytes at offset %#llx "
				 "of source region %u (%s), which has only %#llx",
				 (unsigned long long)r[i].addr, (unsigned long long)r[i].len,
				 (unsigned long long)r[i].source_offset, r[i].source_region,
				 g->name, (unsigned long long)g->len);
			return -ERANGE;
		}
		if (i && r[i - 1].addr + r[i - 1].len > r[i].addr) {
			snprintf(err, errlen, "regions at %#llx and %#llx overlap",
				 (unsigned long long)r[i - 1].addr, (unsigned long long)r[i].addr);
			return -EINVAL;
		}
	}
	return 0;
}

int fl__mon_adopt(struct fl_monitor *m, int uffd, pid_t pid, uint64_t features,
		  uint32_t flags, const struct fl_handoff_region *regions, size_t n,
		  char *err, size_t errlen)
{
	struct fl_handoff_region *r;
	struct mproc *p;
	int ret;

	/* (a replay checks its survivors' fds once it is over) */
	if (!m->replaying && !is_userfaultfd(uffd)) {
		snprintf(err, errlen, "the fd handed over is not a userfaultfd");
		return -EBADF;
	}
	/* Without EVENT_FORK the kernel drops the registration in a fork
	 * child: its missing pages would read as zeros, silently. Only the
	 * sender can know that no child will need them. */
	if (!(features & UFFD_FEATURE_EVENT_FORK) && !(flags & FL_HANDOFF_F_NO_FORK)) {
		char who[32] = "";

		if (pid)
			snprintf(who, sizeof(who), " of pid %d", (int)pid);
		snprintf(err, errlen, "the userfaultfd%s lacks UFFD_FEATURE_EVENT_FORK: a "
			 "child the process forks would read zeros where it had data. Create it "
			 "with EVENT_FORK (needs CAP_SYS_PTRACE) or, if the process never forks, "
			 "say so (allow_no_fork, FL_HANDOFF_F_NO_FORK)", who);
		return -EPERM;
	}
	if (!n || n > FL_HANDOFF_MAX_REGIONS) {
		snprintf(err, errlen, "%zu regions (1..%d allowed)", n, FL_HANDOFF_MAX_REGIONS);
		return -EINVAL;
	}
	r = malloc(n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	memcpy(r, regions, n * sizeof(*r));
	ret = validate(m, r, n, err, errlen);
	if (ret) {
		free(r);
		return ret;
	}
	p = fl__proc_new(m, uffd, pid, features);
	if (!p) {
		free(r);
		return -ENOMEM;
	}
	if (pid)
		snprintf(p->label, sizeof(p->label), "pid %d", (int)pid);
	else
		snprintf(p->label, sizeof(p->label), "process #%zu", m->ever);
	/* UFFDIO_MOVE moves pages within the userfaultfd's own mm: only when
	 * that is ours (a VMM serving its RAM in-process) can a source buffer
	 * of ours be moved into place. */
	p->same_mm = pid == getpid();
	p->hflags = flags;
	p->regions = calloc(n, sizeof(*p->regions));
	for (size_t i = 0; p->regions && i < n; i++) {
		struct mregion *g = &p->regions[i];

		g->start = r[i].addr;
		g->len = r[i].len;
		g->page = r[i].page_size;
		g->src_region = r[i].source_region;
		g->src_offset = r[i].source_offset;
		if (fl__ps_init(&g->ps, r[i].len / r[i].page_size))
			break;
		p->nregions++;
	}
	free(r);
	if (p->nregions != n) {
		p->uffd = m->replaying ? -1 : dup(uffd); /* the caller's on failure */
		fl__proc_kill(p, "out of memory");
		return -ENOMEM;
	}
	if (m->replaying) {
		p->pid = pid;
		return 0;
	}
	fl__journal_adopted(p);
	fl__mon_watch(p);
	fl__mon_log(m, 1, "serving %s: %zu regions", p->label, n);
	return 0;
}

void fl__mon_watch(struct mproc *p)
{
	if (!p->uffd_ev)
		p->uffd_ev = fl__events_watch(p);
	if (p->pid > 0 && p->pidfd < 0)
		fl__mon_watch_pid(p, p->pid);
	/* A monitor that died may have read faults it never answered: those
	 * threads sleep with no message left in the queue. Wake every thread
	 * waiting in the regions; one still missing its page faults again and
	 * is seen here. Harmless when nobody waits (a first handoff). */
	for (size_t i = 0; i < p->nregions; i++)
		fl_uffd_wake(p->uffd, p->regions[i].start, p->regions[i].len);
}

int fl_monitor_use_journal(struct fl_monitor *m, int fd, bool resume, char *err,
			   size_t errlen)
{
	size_t nrec = 0;
	int ret;

	if (m->journal || m->ever) {
		snprintf(err, errlen, "a journal is set before the first process is served");
		return -EBUSY;
	}
	ret = fl__journal_attach(m, fd, err, errlen);
	if (ret || !resume)
		return ret;
	ret = fl__journal_replay(m, &nrec, err, errlen);
	if (ret)
		return ret;
	for (struct mproc *p = m->procs; p; p = p->next) {
		if (p->dead)
			continue;
		if (!is_userfaultfd(p->uffd)) {
			fl__mon_log(m, 0, "journal: %s: fd %d is no userfaultfd any more; not "
				    "served", p->label, p->uffd);
			p->uffd = -1;
			fl__proc_kill(p, "its fd was lost");
			continue;
		}
		fl__mon_watch(p);
		fl__mon_log(m, 1, "resumed %s: %zu regions, %llu pages owed", p->label,
			    p->nregions, (unsigned long long)fl__proc_owed(p));
	}
	fl__procs_reap(m);
	fl__mon_log(m, 1, "resumed from the journal: %zu processes, %zu records", m->nprocs,
		    nrec);
	return 0;
}

int fl_monitor_adopt(struct fl_monitor *m, int uffd, pid_t pid,
		     uint64_t features, const struct fl_handoff_region *regions,
		     size_t n, char *err, size_t errlen)
{
	return fl__mon_adopt(m, uffd, pid, features, 0, regions, n, err, errlen);
}

int fl_monitor_adopt_handoff(struct fl_monitor *m, struct fl_handoff *h, char *err,
			     size_t errlen)
{
	int ret = fl__mon_adopt(m, h->uffd, h->pid, h->features, h->flags, h->regions, h->nregions,
			err, errlen);

	if (ret) {
		m->stats.handoffs_refused++;
		return ret;
	}
	h->uffd = -1; /* ours now */
	m->stats.handoffs++;
	fl__fetch_kick(m);
	return 0;
}

void fl_monitor_count_refused_handoff(struct fl_monitor *m)
{
	m->stats.handoffs_refused++;
}

struct event_base *fl_monitor_event_base(struct fl_monitor *m)
{
	return m->base;
}

int fl_monitor_run(struct fl_monitor *m)
{
	/* Set-up is over: the caller's sockets on our loop are bound. */
	if (!m->opts.keep_caps)
		drop_capabilities(m);
	fl__fetch_kick(m);
	if (m->ever && !m->nprocs && m->opts.exit_when_idle)
		return 0;
	return event_base_dispatch(m->base) < 0 ? -EIO : 0;
}

/* May be called from any thread: the loop hears it on an eventfd. */
void fl_monitor_stop(struct fl_monitor *m)
{
	uint64_t one = 1;

	m->stopping = true;
	(void)!write(m->stop_fd, &one, sizeof(one));
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct fl_monitor *m = arg;
	uint64_t v;

	(void)what;
	(void)!read((int)fd, &v, sizeof(v));
	event_base_loopbreak(m->base);
}

void fl_monitor_get_stats(struct fl_monitor *m, struct fl_monitor_stats *out)
{
	fl__stats_get(&m->stats, fl__now_ns(), out);
}

void fl_monitor_fault_stats(struct fl_monitor *m, uint64_t *faults, uint64_t *p50_ns,
			    uint64_t *p99_ns)
{
	*faults = m->stats.faults;
	*p50_ns = fl__hist_percentile(&m->stats.latency, 50);
	*p99_ns = fl__hist_percentile(&m->stats.latency, 99);
}

static int by_blocked(const void *a, const void *b)
{
	const struct fl_thread_stat *x = a, *y = b;

	return x->blocked_ns < y->blocked_ns ? 1 : x->blocked_ns > y->blocked_ns ? -1 : 0;
}

size_t fl_monitor_thread_stats(struct fl_monitor *m, struct fl_thread_stat *out, size_t max)
{
	size_t n = m->stats.ntids;
	struct fl_thread_stat *all = calloc(n ? n : 1, sizeof(*all));

	if (!all)
		return 0;
	for (size_t i = 0; i < n; i++)
		all[i] = (struct fl_thread_stat){ m->stats.tids[i].tid, m->stats.tids[i].faults,
						  m->stats.tids[i].blocked_ns };
	qsort(all, n, sizeof(*all), by_blocked);
	n = n < max ? n : max;
	memcpy(out, all, n * sizeof(*out));
	free(all);
	return n;
}

size_t fl_monitor_ever_served(const struct fl_monitor *m)
{
	return __atomic_load_n(&m->ever, __ATOMIC_ACQUIRE);
}

uint64_t fl_monitor_owed_pages(const struct fl_monitor *m)
{
	return atomic_load(&m->owed);
}

void fl_monitor_destroy(struct fl_monitor *m)
{
	if (!m)
		return;
	for (struct mproc *p = m->procs; p; p = p->next)
		if (!p->dead)
			fl__proc_kill(p, "monitor shutting down");
	fl__helper_free(m); /* its runs are stale now: released, not installed */
	/* Withdraw every read first: after this returns, no completion of
	 * ours runs and nothing is installed anywhere. */
	if (m->src && m->reqs)
		fl__fetch_cancel_all(m);
	fl__procs_reap(m);
	free(m->replay);
	struct event *evs[] = { m->src_ev, m->pump_ev, m->sig_ev, m->int_ev, m->usr1_ev,
				m->probe_ev, m->stop_ev, m->retry_ev };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	fl__fetch_pool_free(m);
	fl__journal_detach(m);
	if (m->stop_fd > 0)
		close(m->stop_fd);
	if (m->base)
		event_base_free(m->base);
	free(m);
}
