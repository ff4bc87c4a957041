// SPDX-License-Identifier: MIT
/*
 * A served process's userfaultfd: read it, apply each non-cooperative
 * event at once (proc.c), then hand each fault to fetch.c, then drain the
 * retry queue. Every event blocks the program's thread that caused it until we
 * have read it; it is applied before anything else is installed (a resolve
 * that raced with it answered EAGAIN and is retried after this).
 */
#include <string.h>

#include "monitor-internal.h"
#include "uffd/events-internal.h"
#include "util/clock.h"

void fl__events_apply(struct mproc *p, const struct fl_uffd_event *e)
{
	struct fl_monitor *m = p->mon;

	switch (e->kind) {
	case FL_EVENT_FORK:
		m->stats.fork++;
		/* the child's pid is trusted only on the series' proof */
		fl__proc_fork(p, e->fork.ufd, m->fork_pid ? e->fork.pid : 0);
		break;
	case FL_EVENT_REMAP:
		m->stats.remap++;
		fl__proc_remap(p, e->remap.from, e->remap.to, e->remap.len);
		break;
	case FL_EVENT_REMOVE:
		m->stats.remove++;
		fl__proc_remove(p, e->range.start, e->range.end);
		break;
	case FL_EVENT_UNMAP:
		m->stats.unmap++;
		fl__proc_unmap(p, e->range.start, e->range.end);
		break;
	case FL_EVENT_EXIT: /* patched kernels: no probing needed */
		fl__proc_kill(p, "exit event");
		break;
	default:
		fl__mon_log(m, 0, "%s: unknown userfaultfd message %u ignored", p->label,
			    e->unknown.type);
	}
}

/*
 * Read everything pending on the process's userfaultfd. Each batch read
 * is applied events first, faults after, whatever their order in it: the
 * read itself completes the events (a fork is done, its child's page
 * tables copied, from the moment its message is read), so a fault of the
 * same batch served first would install a page into the parent only while
 * the child's page states, copied next, said it was there. Serving a fault
 * after the events is what it would have met anyway: the page where the
 * events left it (zeros after REMOVE, elsewhere after REMAP, gone after
 * UNMAP; the thread is woken for those and faults again).
 * Returns the number of messages, or -errno.
 */
static int read_events(struct mproc *p)
{
	struct fl_monitor *m = p->mon;
	struct uffd_msg own[JOURNAL_INBOX], *msgs;
	struct fl_uffd_event ev[JOURNAL_INBOX];
	uint64_t now = fl__now_ns();
	int n, total = 0;

	do {
		/* into the journal when there is one: see journal.c */
		msgs = fl__journal_inbox(p);
		/* From the read until its events are applied, the install
		 * helper copies nothing (install-helper.c says why). */
		fl__helper_hold(m);
		n = fl__uffd_read_raw(p->uffd, msgs ? msgs : own, JOURNAL_INBOX);
		if (n < 0) {
			fl__helper_unhold(m);
			if (msgs)
				fl__journal_inbox_done(m);
			return n;
		}
		if (msgs)
			fl__journal_inbox_read(m, (size_t)n);
		for (int i = 0; i < n; i++)
			fl_uffd_decode(msgs ? &msgs[i] : &own[i], &ev[i]);
		for (int i = 0; i < n && !p->dead; i++)
			if (ev[i].kind != FL_EVENT_PAGEFAULT) {
				fl__helper_changed(p);
				fl__events_apply(p, &ev[i]);
				/* What held the mm is being done: try at once. */
				p->again_ns = 0;
			}
		fl__helper_unhold(m);
		for (int i = 0; i < n && !p->dead; i++)
			if (ev[i].kind == FL_EVENT_PAGEFAULT)
				fl__fetch_fault(p, ev[i].fault.address, ev[i].fault.tid, now);
		if (msgs)
			fl__journal_inbox_done(m);
		total += n;
	} while (n == JOURNAL_INBOX && !p->dead);
	return total;
}

static void on_uffd(evutil_socket_t fd, short what, void *arg)
{
	struct mproc *p = arg;
	int n;

	(void)fd;
	(void)what;
	n = read_events(p);
	if (n < 0 && !p->dead)
		fl__mon_log(p->mon, 0, "%s: reading its userfaultfd: %s", p->label, strerror(-n));
	fl__retry_drain(p->mon);
	fl__fetch_kick(p->mon);
}

/* Watch p's userfaultfd on the loop, above the background pump. */
struct event *fl__events_watch(struct mproc *p)
{
	struct event *e = event_new(p->mon->base, p->uffd, EV_READ | EV_PERSIST, on_uffd, p);

	if (e) {
		event_priority_set(e, 0);
		event_add(e, NULL);
	}
	return e;
}
