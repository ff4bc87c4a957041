// SPDX-License-Identifier: MIT
/*
 * The one retry queue: completions held back by EAGAIN (fetch.c's deferred
 * list) and faults that could not be served yet (each process's pending
 * list: EAGAIN, or no request free). It is drained at the end of every
 * callback of the loop, and by a timer with backoff.
 *
 * Why a timer: the kernel answers EAGAIN to every resolve while a
 * non-cooperative event is pending, and keeps answering it until the
 * thread that raised the event has been woken and has gone on, which can
 * be after we read the event. Nothing becomes readable when that happens;
 * a queue retried only on the next event or completion can wait for ever
 * (a program under --no-prefetch, or at the end of the stream).
 */
#include "monitor-internal.h"

#define RETRY_FIRST_MS 1
#define RETRY_MAX_MS 50

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct fl_monitor *m = arg;

	(void)fd;
	(void)what;
	m->retry_armed = false;
	m->stats.retries++;
	fl__retry_drain(m);
	fl__fetch_kick(m);
}

int fl__retry_init(struct fl_monitor *m)
{
	m->retry_ev = event_new(m->base, -1, 0, on_retry, m);
	if (!m->retry_ev)
		return -ENOMEM;
	event_priority_set(m->retry_ev, 0);
	m->retry_ms = RETRY_FIRST_MS;
	return 0;
}

/* Something waits on the queue: make sure the timer will come. */
void fl__retry_arm(struct fl_monitor *m)
{
	struct timeval tv;

	if (m->retry_armed || !m->retry_ev)
		return;
	tv.tv_sec = m->retry_ms / 1000;
	tv.tv_usec = (m->retry_ms % 1000) * 1000;
	event_add(m->retry_ev, &tv);
	m->retry_armed = true;
	/* Back off while the kernel keeps refusing; reset once it clears. */
	m->retry_ms = m->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : m->retry_ms * 2;
}

/* One pass over the queue. Leaves the timer armed while anything waits. */
void fl__retry_drain(struct fl_monitor *m)
{
	bool left = fl__fetch_retry_deferred(m);

	if (m->check_unwanted) {
		m->check_unwanted = false;
		fl__fetch_cancel_unwanted(m);
	}
	for (struct mproc *p = m->procs; p; p = p->next)
		if (!p->dead && p->npending)
			left |= fl__fetch_retry_faults(p);
	if (left)
		fl__retry_arm(m);
	else
		m->retry_ms = RETRY_FIRST_MS;
}
