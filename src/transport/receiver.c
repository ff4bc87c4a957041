// SPDX-License-Identifier: MIT
/*
 * The destination of a migration: the two connections from the source, a
 * staging area holding what has arrived, and the page source a monitor
 * serves the restored program from.
 *
 * Threads: one per connection receives frames into the staging area and
 * marks pages present; the monitor's thread calls the source functions.
 * After the switch-over the control connection's frames (the pushed
 * stream) land in a reused ring instead, are offered from there, and
 * count as present once the monitor hands them back
 * (receiver-staging.c says why).
 * A request whose pages are all here completes at once (by reference into
 * staging); otherwise it waits. A fault asks the source for its missing
 * pages on the urgent connection; a background request only waits, since
 * the source pushes every owed page on the control connection, from where
 * the last fault was (one stream; pages pushed that nobody asked for are
 * offered to the monitor as they land). Completions are handed over under
 * a lock and announced on an eventfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <faultline/migrate.h>

#include "receiver-internal.h"
#include "source-internal.h"
#include "util/bitmap.h"
#include "util/clock.h"
#include "util/thread-cpu.h"

static bool all_here(struct fl_receiver *r, const struct fl_source_req *q)
{
	struct rx_region *g = &r->rg[q->region];

	for (uint64_t p = q->offset / g->page; p < (q->offset + q->len) / g->page; p++)
		if (!fl__bitmap_test_atomic(g->have, p))
			return false;
	return true;
}

static void announce(struct fl_receiver *r)
{
	uint64_t one = 1;

	(void)!write(r->base.event_fd, &one, sizeof(one));
}

static int push(struct fl_source_req ***list, size_t *n, size_t *cap,
		struct fl_source_req *q)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct fl_source_req **l = realloc(*list, c * sizeof(*l));

		if (!l)
			return -ENOMEM;
		*list = l;
		*cap = c;
	}
	(*list)[(*n)++] = q;
	return 0;
}

/* Under the lock: move requests whose pages are all here to done. */
static void complete_ready(struct fl_receiver *r)
{
	size_t keep = 0;
	bool any = false;

	for (size_t i = 0; i < r->npending; i++) {
		struct fl_source_req *q = r->pending[i];

		/* Pages that are here are served even if the source is gone;
		 * only what can no longer arrive fails. */
		if (all_here(r, q) || r->failed) {
			if (all_here(r, q)) {
				/* By reference: after the switch-over the source
				 * is paused, so a page here never changes again
				 * (a re-send carries the same bytes). */
				q->data = r->rg[q->region].staging + q->offset;
				q->result = 0;
			} else {
				q->result = -ECONNRESET;
			}
			push(&r->done, &r->ndone, &r->cap_done, q);
			any = true;
		} else {
			r->pending[keep++] = q;
		}
	}
	r->npending = keep;
	if (any)
		announce(r);
}

/* Under the lock: pages the pushed stream brought that no request asked
 * for are offered to the monitor at once, installed as they land. */
static bool offer(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len,
		  char *data)
{
	struct fl_source_req *q = calloc(1, sizeof(*q));

	if (!q)
		return false; /* then they wait to be asked for */
	q->region = region;
	q->offset = offset;
	q->len = len;
	q->data = data;
	q->unasked = true;
	if (push(&r->done, &r->ndone, &r->cap_done, q)) {
		free(q);
		return false;
	}
	announce(r);
	return true;
}

void fl__rx_fail(struct fl_receiver *r, const char *fmt, const char *detail)
{
	pthread_mutex_lock(&r->lock);
	if (!r->failed && !r->finished && !r->all_in) {
		r->failed = true;
		snprintf(r->errmsg, sizeof(r->errmsg), fmt, detail);
		if (r->verbose)
			fprintf(stderr, "receive: %s\n", r->errmsg);
	}
	complete_ready(r);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* Pushed pages go to the monitor in pieces of at most this: each is
 * installed whole before it looks at its faults again (by UFFDIO_COPY
 * into new pages here, about 0.2 to 0.5 ms). */
#define OFFER_PIECE (256u << 10)

/* One connection's receiving: where its current frame's payload went. */
struct rx_in {
	struct fl_receiver *r;
	bool ctl;
	char *slot; /* in the ring, or NULL: in staging */
};

static void *page_buf(void *arg, uint32_t region, uint64_t offset, uint32_t len)
{
	struct rx_in *in = arg;
	struct fl_receiver *r = in->r;

	/* The connection checked the range against the region table. After
	 * the switch-over the pushed stream lands in the ring (fault
	 * replies, on the urgent connection, go where they belong). */
	in->slot = NULL;
	if (in->ctl && r->resumed && !r->no_ring)
		in->slot = fl__rx_ring_reserve(r, len);
	if (in->slot)
		return in->slot;
	fl__rx_staging_populate(r, region, offset, len);
	return r->rg[region].staging + offset;
}

/* Under the lock: pages [offset, offset+len) of a region are here (data
 * in staging, or zeros). Whether any was asked for by a fault. */
static bool mark_here(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len,
		      bool zero)
{
	struct rx_region *g = &r->rg[region];
	size_t first = offset / g->page, n = len / g->page;
	bool asked = false;

	for (size_t p = first; p < first + n; p++) {
		asked |= fl__bitmap_test_atomic(g->urgent, p);
		if (zero)
			fl__bitmap_set_atomic(g->zero, p);
		else
			fl__bitmap_clear_atomic(g->zero, p);
		fl__bitmap_clear_atomic(g->urgent, p);
		fl__bitmap_set_atomic(g->fresh, p);
		if (fl__bitmap_set_atomic(g->have, p) && r->resumed)
			atomic_fetch_sub(&r->owed, 1);
	}
	return asked;
}

/* A frame of the ring the monitor is done with (or that cannot be offered
 * to it): what it did not install goes to staging, then its pages count
 * as here, and its room is free again. */
static void land(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len,
		 const char *slot, bool installed)
{
	if (!installed) {
		fl__rx_staging_populate(r, region, offset, len);
		memcpy(r->rg[region].staging + offset, slot, len);
	} else {
		/* An older copy from pre-copy may sit there (a page dirtied
		 * again): it is not needed any more either. */
		fl__rx_staging_drop(r, region, offset, len, false);
	}
	pthread_mutex_lock(&r->lock);
	mark_here(r, region, offset, len, false);
	complete_ready(r);
	pthread_mutex_unlock(&r->lock);
	fl__rx_ring_free(r, slot, len);
}

/* Pages [offset, offset+len) of a region arrived (data or zeros), into
 * staging or, when slot, into the ring. */
static void arrived(struct fl_receiver *r, const struct fl_wire_hdr *h, char *slot)
{
	uint64_t len = h->kind == FL_WIRE_ZERO ? h->count : h->length;

	if (slot) {
		/* Offered in pieces, so that the monitor installs at most one
		 * piece between two looks at its faults; the pages count as
		 * here once they come back, so nothing reads them from
		 * staging before. */
		fl__rx_ring_commit(r, len);
		pthread_mutex_lock(&r->lock);
		r->bytes += len;
		for (uint64_t at = 0; at < len; at += OFFER_PIECE) {
			uint64_t n = len - at < OFFER_PIECE ? len - at : OFFER_PIECE;

			if (!offer(r, h->region, h->offset + at, n, slot + at)) {
				pthread_mutex_unlock(&r->lock);
				land(r, h->region, h->offset + at, len - at, slot + at, false);
				return;
			}
		}
		pthread_mutex_unlock(&r->lock);
		return;
	}
	if (h->kind == FL_WIRE_ZERO) /* staging may hold an older copy */
		fl__rx_staging_zap(r, h->region, h->offset, len);
	pthread_mutex_lock(&r->lock);
	bool asked = mark_here(r, h->region, h->offset, len, h->kind == FL_WIRE_ZERO);

	r->bytes += h->kind == FL_WIRE_PAGES ? h->length : 0;
	if (!asked && r->resumed && h->kind == FL_WIRE_PAGES)
		offer(r, h->region, h->offset, len, r->rg[h->region].staging + h->offset);
	complete_ready(r);
	pthread_mutex_unlock(&r->lock);
}

/* At switch-over: pages dirtied since they were sent are owed again. */
static void apply_owed(struct fl_receiver *r, const struct fl_ctl *m)
{
	struct rx_region *g = &r->rg[m->owed.region];

	pthread_mutex_lock(&r->lock);
	for (uint64_t i = 0; i < m->owed.npages; i++)
		if (m->owed.bitmap[i / 8] & (1u << (i % 8))) {
			fl__bitmap_clear_atomic(g->have, m->owed.first_page + i);
			fl__bitmap_clear_atomic(g->zero, m->owed.first_page + i);
		}
	pthread_mutex_unlock(&r->lock);
}

static void control(struct fl_receiver *r, struct fl_ctl *m)
{
	switch (m->type) {
	case FL_CTL_ROUND:
		if (m->round.end) {
			r->rounds = m->round.round;
		} else {
			/* What arrives from now on is current as of this round:
			 * a source that rejoins resends the rest of it. */
			pthread_mutex_lock(&r->lock);
			r->round_begun = m->round.round;
			for (size_t i = 0; i < r->n; i++)
				for (size_t w = 0; w < fl__bitmap_words(r->rg[i].pages); w++)
					atomic_store(&r->rg[i].fresh[w], 0);
			pthread_mutex_unlock(&r->lock);
		}
		if (r->verbose && !m->round.end)
			fprintf(stderr, "receive: pre-copy round %u: %llu pages\n", m->round.round,
				(unsigned long long)m->round.dirty_pages);
		break;
	case FL_CTL_OWED:
		apply_owed(r, m);
		break;
	case FL_CTL_RESUME: {
		uint64_t owed = 0;

		pthread_mutex_lock(&r->lock);
		for (size_t i = 0; i < r->n; i++)
			for (size_t p = 0; p < r->rg[i].pages; p++)
				owed += !fl__bitmap_test_atomic(r->rg[i].have, p);
		atomic_store(&r->owed, owed);
		r->blob = m->resume.blob;
		r->blob_len = m->resume.len;
		m->resume.blob = NULL;
		r->resumed = true;
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		break;
	}
	case FL_CTL_ERROR:
		fl__rx_fail(r, "the source gave up: %s", m->error.message);
		break;
	default:
		break;
	}
}

/* Receive on c until it fails, saying why. */
static void rx_loop(struct fl_receiver *r, struct fl_conn *c, char *why, size_t whylen)
{
	/* The source pings the control connection every second: silence
	 * there means it is gone (the urgent one is quiet between faults). */
	if (c == r->ctl)
		fl_conn_set_idle_timeout(c, FL_WIRE_SILENCE_S);
	for (;;) {
		struct fl_wire_hdr h;
		struct fl_ctl m;
		struct rx_in in = { .r = r, .ctl = c == r->ctl };
		int ret = fl_conn_recv(c, &h, &m, page_buf, &in, why, whylen);

		if (ret == -ETIMEDOUT && c == r->ctl)
			snprintf(why, whylen, "the source went silent: nothing on the control "
				 "connection for %d s", FL_WIRE_SILENCE_S);
		if (ret) {
			if (ret == -ECONNRESET)
				snprintf(why, whylen, "the source closed the %s connection",
					 c == r->ctl ? "control" : "urgent");
			return;
		}
		if (h.kind == FL_WIRE_CONTROL) {
			control(r, &m);
			fl_ctl_free(&m);
		} else {
			arrived(r, &h, h.kind == FL_WIRE_PAGES ? in.slot : NULL);
		}
	}
}

/* Whether a break is worth waiting out (not once we failed or finished). */
static bool may_rejoin(struct fl_receiver *r)
{
	bool ok;

	pthread_mutex_lock(&r->lock);
	ok = r->rejoin_s > 0 && r->listen_fd >= 0 && !r->failed && !r->finished;
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* The control connection's thread, and the one that waits for a source
 * that broke off to come back. */
static void *rx_control(void *arg)
{
	struct fl_receiver *r = arg;
	char why[256];

	fl__thread_name("fl-rx-control");

	for (;;) {
		rx_loop(r, r->ctl, why, sizeof(why));
		pthread_mutex_lock(&r->lock);
		if (r->broke[0]) /* the urgent connection broke first */
			snprintf(why, sizeof(why), "%s", r->broke);
		pthread_mutex_unlock(&r->lock);
		/* Even once every page is here: a source that did not get
		 * DONE comes back for it (a hang-up after DONE looks the same
		 * from here, and then nobody comes). */
		if (!may_rejoin(r)) {
			fl__rx_fail(r, "%s", why);
			return NULL;
		}
		if (!fl__rx_rejoin(r, why))
			return NULL;
	}
}

void *fl__rx_urgent(void *arg)
{
	struct fl_receiver *r = arg;
	char why[256];

	fl__thread_name("fl-rx-urgent");
	rx_loop(r, r->urg, why, sizeof(why));
	if (!may_rejoin(r)) {
		fl__rx_fail(r, "%s", why);
		return NULL;
	}
	/* The control thread waits for the source to come back. */
	pthread_mutex_lock(&r->lock);
	if (!r->broke[0])
		snprintf(r->broke, sizeof(r->broke), "%s", why);
	pthread_mutex_unlock(&r->lock);
	fl_conn_shutdown(r->ctl);
	return NULL;
}

/* ------------------------------------------------ the page source side */

static struct fl_receiver *rx(struct fl_source *s)
{
	return (struct fl_receiver *)s;
}

/* Ask the source, on the urgent connection, for the pages of [offset,
 * offset+len) a fault waits on that are not here and not asked for yet. */
int fl__rx_ask(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len)
{
	struct rx_region *g = &r->rg[region];
	uint64_t first = offset / g->page, end = (offset + len) / g->page;
	int ret = 0;

	pthread_rwlock_rdlock(&r->connlock);
	for (uint64_t p = first; p < end && !ret;) {
		uint64_t run = 0;
		struct fl_ctl m = { .type = FL_CTL_REQUEST };

		if (fl__bitmap_test_atomic(g->have, p) || !fl__bitmap_set_atomic(g->urgent, p)) {
			p++;
			continue;
		}
		while (p + run + 1 < end && !fl__bitmap_test_atomic(g->have, p + run + 1) &&
		       fl__bitmap_set_atomic(g->urgent, p + run + 1))
			run++;
		run++;
		m.request.region = region;
		m.request.offset = p * g->page;
		m.request.len = run * g->page;
		/* On a broken connection this fails; a source that rejoins is
		 * asked again for everything still pending. */
		ret = fl_conn_send_ctl(r->urg, &m);
		p += run;
	}
	pthread_rwlock_unlock(&r->connlock);
	return ret;
}

static int rx_submit(struct fl_source *s, struct fl_source_req *q)
{
	struct fl_receiver *r = rx(s);
	int ret = source_req_check(s, q);

	if (ret)
		return ret;
	if (q->len > s->max_req)
		return -E2BIG;
	q->result = 0;
	q->data = NULL;
	q->movable = false;
	q->unasked = false;
	pthread_mutex_lock(&r->lock);
	ret = push(&r->pending, &r->npending, &r->cap_pending, q);
	pthread_mutex_unlock(&r->lock);
	if (ret)
		return ret;
	/* Only a fault asks: the source pushes every owed page anyway, from
	 * where the last fault was, so a background request just waits for
	 * its pages (a second stream of our own would fight that one, and
	 * the source would send pages twice). */
	if (q->urgent && !all_here(r, q))
		ret = fl__rx_ask(r, q->region, q->offset, q->len);
	pthread_mutex_lock(&r->lock);
	complete_ready(r);
	pthread_mutex_unlock(&r->lock);
	return ret < 0 ? 0 : 0; /* a failed ask shows as the connection failing */
}

static int rx_flush(struct fl_source *s)
{
	(void)s;
	return 0; /* requests go out as they are submitted */
}

/* At most this many bytes of background completions per reap: each is
 * installed (about 0.25 ms per MiB by UFFDIO_COPY here) before the
 * monitor's loop reads its userfaultfds again, so a fault never waits
 * behind more than one such batch. After the switch-over every
 * pre-copied page completes at once: unbounded, a fault waited behind
 * hundreds of MiB of installs. */
#define REAP_BATCH_BYTES OFFER_PIECE

/* Fault replies first, then background completions up to the batch; the
 * rest stays done and is announced again for the next turn of the loop. */
static int rx_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct fl_receiver *r = rx(s);
	struct fl_source_req **list;
	size_t n = 0;
	uint64_t v;

	(void)!read(s->event_fd, &v, sizeof(v));
	pthread_mutex_lock(&r->lock);
	list = malloc((r->ndone ? r->ndone : 1) * sizeof(*list));
	if (!list) { /* hand over everything, as it stands */
		list = r->done;
		n = r->ndone;
		r->done = NULL;
		r->ndone = r->cap_done = 0;
	} else {
		n = fl__take_fault_first(r->done, &r->ndone, list, REAP_BATCH_BYTES);
		if (r->ndone)
			announce(r);
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++)
		done(list[i], arg);
	free(list);
	return (int)n;
}

static int rx_cancel(struct fl_source *s, struct fl_source_req *q)
{
	struct fl_receiver *r = rx(s);
	bool found;

	/* Pages already asked for still arrive into staging: harmless, the
	 * request is simply never handed back. */
	pthread_mutex_lock(&r->lock);
	found = fl__req_list_remove(r->pending, &r->npending, q) || fl__req_list_remove(r->done, &r->ndone, q);
	pthread_mutex_unlock(&r->lock);
	return found ? 0 : -ENOENT;
}

/* Staging is a second copy of RAM: once every process has a page (the
 * monitor says so with `installed`: each page of the range is in place in
 * every process that maps it, and nobody owes it), its staging copy goes
 * back to the kernel, so that the destination holds about RAM plus what
 * is in flight, not twice RAM. Such a page may still be part of a later
 * completion (a background read that also covered a fault's page), whose
 * installs skip it: nobody owes it. */
static void rx_release(struct fl_source *s, struct fl_source_req *q)
{
	struct fl_receiver *r = rx(s);

	if (q->unasked && fl__rx_ring_owns(r, q->data))
		land(r, q->region, q->offset, q->len, q->data, q->installed && q->result == 0);
	else if (q->installed && q->result == 0 && q->region < r->n &&
		 q->data == r->rg[q->region].staging + q->offset)
		fl__rx_staging_drop(r, q->region, q->offset, q->len, true);
	if (q->unasked)
		free(q);
}

static int64_t rx_zero_run(struct fl_source *s, uint32_t region, uint64_t offset,
			   uint64_t max)
{
	struct fl_receiver *r = rx(s);
	struct rx_region *g;
	uint64_t n = 0;

	if (region >= r->n)
		return -ERANGE;
	g = &r->rg[region];
	for (size_t p = offset / g->page; p < g->pages && n < max; p++, n += g->page)
		if (!fl__bitmap_test_atomic(g->have, p) || !fl__bitmap_test_atomic(g->zero, p))
			break;
	return (int64_t)(n < max ? n : max);
}

static void rx_destroy(struct fl_source *s)
{
	(void)s; /* the receiver owns everything */
}

static const struct fl_source_ops receiver_ops = {
	.submit = rx_submit,
	.flush = rx_flush,
	.reap = rx_reap,
	.cancel = rx_cancel,
	.release = rx_release,
	.zero_run = rx_zero_run,
	.destroy = rx_destroy,
};

/* ------------------------------------------------------------ lifecycle */

/* Refuse a connection, telling the peer why when it is a source that
 * came to rejoin (so it stops retrying at once). */
static int refuse(struct fl_conn *c, bool tell, char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	if (tell) {
		struct fl_ctl m = { .type = FL_CTL_ERROR, .error.code = -ESRCH };

		snprintf(m.error.message, sizeof(m.error.message), "%s", why);
		fl_conn_send_ctl(c, &m);
	}
	return -EPROTO;
}

/*
 * Read the source's hello on connection c and answer it. A first
 * connection takes the session the source names (session filled); every
 * other must name it (and, when rejoin, say it rejoins).
 */
int fl__rx_hello(struct fl_conn *c, uint32_t conn_kind, uint8_t session[16], bool rejoin,
		 char *err, size_t errlen)
{
	bool check = rejoin || conn_kind == FL_CONN_URGENT;
	const char *which = conn_kind == FL_CONN_URGENT ? "urgent" : "control";
	struct fl_wire_hdr h;
	struct fl_ctl m;
	char why[160];
	bool ok, came_back;
	int ret = fl_conn_recv(c, &h, &m, NULL, NULL, err, errlen);

	if (ret)
		return ret;
	ok = h.kind == FL_WIRE_CONTROL && m.type == FL_CTL_HELLO &&
	     m.hello.role == FL_ROLE_SOURCE && m.hello.conn == conn_kind &&
	     m.hello.version == FL_WIRE_VERSION;
	came_back = ok && m.hello.rejoin;
	if (h.kind == FL_WIRE_CONTROL)
		fl_ctl_free(&m);
	if (!ok) {
		snprintf(why, sizeof(why), "%s connection: expected the source's hello (version %d)",
			 which, FL_WIRE_VERSION);
		return refuse(c, false, err, errlen, why);
	}
	if (came_back != rejoin || (check && memcmp(m.hello.session, session, 16))) {
		snprintf(why, sizeof(why), "%s connection: %s", which,
			 came_back && !rejoin ? "a source rejoining a migration this receiver "
						"does not know" :
			 !came_back && rejoin ? "a new migration while the source of this one is "
						"expected back" :
						"a source of another migration (session differs)");
		return refuse(c, came_back, err, errlen, why);
	}
	if (!check)
		memcpy(session, m.hello.session, 16);
	m = (struct fl_ctl){ .type = FL_CTL_HELLO };
	m.hello.version = FL_WIRE_VERSION;
	m.hello.role = FL_ROLE_DEST;
	m.hello.conn = conn_kind;
	memcpy(m.hello.session, session, 16);
	return fl_conn_send_ctl(c, &m);
}

/* Wait until listen_fd has a connection, the deadline (ns on the
 * monotonic clock, 0: none) passes (-ETIMEDOUT) or the receiver ends. */
static int wait_connection(struct fl_receiver *r, int listen_fd, uint64_t deadline_ns)
{
	for (;;) {
		struct pollfd p = { .fd = listen_fd, .events = POLLIN };
		uint64_t now = fl__now_ns();
		int ms = 250, n;
		bool over;

		pthread_mutex_lock(&r->lock);
		over = r->finished || r->failed;
		pthread_mutex_unlock(&r->lock);
		if (over)
			return -ECANCELED;
		if (deadline_ns && now >= deadline_ns)
			return -ETIMEDOUT;
		if (deadline_ns && (deadline_ns - now) / 1000000 < (uint64_t)ms)
			ms = (int)((deadline_ns - now) / 1000000) + 1;
		n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/*
 * One connection of the source: accepted, authenticated (TLS), and its
 * hello read, each within a deadline. Anything else that connects first (a
 * port scanner, a garbage or silent client, another CA's certificate, a
 * second source with another session) costs a log line and at most the
 * deadline, and accepting goes on: only a broken listening socket, or
 * deadline_s passing (when > 0), ends it.
 */
int fl__rx_accept_source(struct fl_receiver *r, int listen_fd, uint32_t kind,
			 uint8_t session[16], bool rejoin, double deadline_s,
			 struct fl_conn **out, char *err, size_t errlen)
{
	uint64_t deadline_ns = deadline_s > 0 ? fl__now_ns() + (uint64_t)(deadline_s * 1e9) : 0;

	for (;;) {
		struct fl_conn *c;
		struct fl_tls_config t = r->tls;
		int ret = wait_connection(r, listen_fd, deadline_ns);

		if (ret == -ETIMEDOUT || ret == -ECANCELED) {
			snprintf(err, errlen, "%s", ret == -ETIMEDOUT ? "no source came" : "ended");
			return ret;
		}
		/* Only a source may write into the program's memory. */
		if (!t.peer_role)
			t.peer_role = "source";
		if (!ret)
			ret = fl_conn_accept(&c, listen_fd, &t, err, errlen);
		if (ret == -EBADF || ret == -EINVAL || ret == -ENOTSOCK || ret == -EOPNOTSUPP ||
		    ret == -EMFILE || ret == -ENFILE)
			return ret;
		if (!ret) {
			fl_conn_set_deadline(c, HELLO_DEADLINE_S);
			ret = fl__rx_hello(c, kind, session, rejoin, err, errlen);
			fl_conn_set_deadline(c, 0);
			if (!ret) {
				*out = c;
				return 0;
			}
			fl_conn_close(c);
		}
		if (r->verbose)
			fprintf(stderr, "receive: refused a connection: %s; still waiting for the "
				"source\n", err);
	}
}

static int setup_regions(struct fl_receiver *r, struct fl_ctl *m, char *err, size_t errlen)
{
	r->n = m->regions.n;
	r->regions = m->regions.regions;
	m->regions.regions = NULL;
	r->rg = calloc(r->n, sizeof(*r->rg));
	if (!r->rg)
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++) {
		struct rx_region *g = &r->rg[i];
		size_t words;

		g->page = r->regions[i].page_size;
		g->pages = r->regions[i].len / g->page;
		words = (g->pages + 63) / 64;
		g->staging = mmap(NULL, r->regions[i].len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		g->have = calloc(words, sizeof(uint64_t));
		g->zero = calloc(words, sizeof(uint64_t));
		g->fresh = calloc(words, sizeof(uint64_t));
		g->urgent = calloc(words, sizeof(uint64_t));
		g->drop = calloc(words, sizeof(uint64_t));
		g->staged = calloc(words, sizeof(uint64_t));
		if (g->staging == MAP_FAILED || !g->have || !g->zero || !g->fresh ||
		    !g->urgent || !g->drop || !g->staged) {
			if (g->staging == MAP_FAILED)
				g->staging = NULL;
			snprintf(err, errlen, "cannot stage region %zu (%s, %llu bytes)", i,
				 r->regions[i].name, (unsigned long long)r->regions[i].len);
			return -ENOMEM;
		}
	}
	fl_conn_set_regions(r->ctl, r->regions, r->n);
	fl_conn_set_regions(r->urg, r->regions, r->n);
	return 0;
}

int fl_receiver_accept(struct fl_receiver **out, int listen_fd,
		       const struct fl_tls_config *tls, int verbose, char *err,
		       size_t errlen)
{
	struct fl_receiver_opts o = { .verbose = verbose };

	return fl_receiver_accept_opts(out, listen_fd, tls, &o, err, errlen);
}

int fl_receiver_accept_opts(struct fl_receiver **out, int listen_fd,
			    const struct fl_tls_config *tls, const struct fl_receiver_opts *o,
			    char *err, size_t errlen)
{
	struct fl_receiver *r = calloc(1, sizeof(*r));
	struct fl_wire_hdr h;
	struct fl_ctl m;
	int ret;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_rwlock_init(&r->connlock, NULL);
	pthread_mutex_init(&r->hblock, NULL);
	pthread_mutex_init(&r->droplock, NULL);
	/* For measuring what populating staging saves (bench/migrate.sh). */
	r->no_populate = getenv("FAULTLINE_NO_POPULATE") != NULL;
	r->no_ring = getenv("FAULTLINE_NO_RING") != NULL;
	fl__rx_ring_init(r);
	r->verbose = o->verbose;
	r->tls = *tls;
	r->listen_fd = -1;
	r->base.ops = &receiver_ops;
	r->base.kind = "remote";
	r->base.event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = r->base.event_fd < 0 ? -errno : 0;
	if (!ret)
		ret = fl__rx_accept_source(r, listen_fd, FL_CONN_CONTROL, r->session, false, 0,
					   &r->ctl, err, errlen);
	if (!ret)
		ret = fl__rx_accept_source(r, listen_fd, FL_CONN_URGENT, r->session, false, 0,
					   &r->urg, err, errlen);
	if (!ret) {
		fl_conn_set_deadline(r->ctl, HELLO_DEADLINE_S);
		ret = fl_conn_recv(r->ctl, &h, &m, NULL, NULL, err, errlen);
		fl_conn_set_deadline(r->ctl, 0);
		if (!ret && (h.kind != FL_WIRE_CONTROL || m.type != FL_CTL_REGIONS)) {
			if (h.kind == FL_WIRE_CONTROL)
				fl_ctl_free(&m);
			snprintf(err, errlen, "expected the region table from the source");
			ret = -EPROTO;
		} else if (!ret) {
			ret = setup_regions(r, &m, err, errlen);
			fl_ctl_free(&m);
		}
	}
	if (!ret && o->rejoin_s > 0) {
		/* Ours: the caller may close its own once resumed. */
		r->listen_fd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 3);
		if (r->listen_fd < 0) {
			ret = -errno;
			snprintf(err, errlen, "cannot keep the listening socket: %s", strerror(errno));
		}
		r->rejoin_s = o->rejoin_s;
	}
	if (ret) {
		fl_receiver_destroy(r);
		return ret;
	}
	r->base.regions = r->regions;
	r->base.nregions = r->n;
	r->base.max_req = 64u << 20;
	fl__heartbeat_start(&r->hb, r->ctl);
	if (pthread_create(&r->ctl_thread, NULL, rx_control, r) == 0)
		r->ctl_started = true;
	if (pthread_create(&r->urg_thread, NULL, fl__rx_urgent, r) == 0)
		r->urg_started = true;
	if (r->verbose)
		fprintf(stderr, "receive: source %s connected (%s), %zu regions\n",
			fl_conn_peer(r->ctl), fl_conn_is_tls(r->ctl) ? "TLS" : "plain TCP", r->n);
	*out = r;
	return 0;
}

const struct fl_region *fl_receiver_regions(const struct fl_receiver *r, size_t *n)
{
	*n = r->n;
	return r->regions;
}

int fl_receiver_wait_resume(struct fl_receiver *r, const void **blob,
			    size_t *blob_len, char *err, size_t errlen)
{
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	while (!r->resumed && !r->failed)
		pthread_cond_wait(&r->cond, &r->lock);
	if (!r->resumed) {
		snprintf(err, errlen, "%s", r->errmsg);
		ret = -ECONNRESET;
	}
	pthread_mutex_unlock(&r->lock);
	if (blob)
		*blob = r->blob;
	if (blob_len)
		*blob_len = r->blob_len;
	return ret;
}

struct fl_source *fl_receiver_source(struct fl_receiver *r)
{
	return &r->base;
}

uint64_t fl_receiver_owed(const struct fl_receiver *r)
{
	return atomic_load(&r->owed);
}

int fl__rx_send_done(struct fl_receiver *r)
{
	struct fl_ctl m = { .type = FL_CTL_STATS };
	int ret;

	m.stats.n = r->nfinal;
	memcpy(m.stats.values, r->final_stats, r->nfinal * sizeof(uint64_t));
	pthread_rwlock_rdlock(&r->connlock);
	ret = fl_conn_send_ctl(r->ctl, &m);
	m = (struct fl_ctl){ .type = FL_CTL_DONE };
	if (!ret)
		ret = fl_conn_send_ctl(r->ctl, &m);
	pthread_rwlock_unlock(&r->connlock);
	return ret;
}

int fl_receiver_finish(struct fl_receiver *r, const uint64_t *stats, size_t n)
{
	/* All in first: the source hangs up as soon as it reads DONE, and
	 * that must not count as a failure. */
	pthread_mutex_lock(&r->lock);
	r->all_in = true;
	r->nfinal = n < FL_WIRE_STATS_MAX ? n : FL_WIRE_STATS_MAX;
	memcpy(r->final_stats, stats, r->nfinal * sizeof(uint64_t));
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_lock(&r->hblock);
	fl__heartbeat_stop(&r->hb);
	pthread_mutex_unlock(&r->hblock);
	if (r->verbose)
		fprintf(stderr, "receive: %.1f MiB of pages received; after the switch-over %llu "
			"frames through the receive ring, %llu into staging while it was full\n",
			(double)r->bytes / (1 << 20), (unsigned long long)r->ring.frames,
			(unsigned long long)r->ring.fallbacks);
	/* If this is lost in a break, a source that rejoins gets it again. */
	if (fl__rx_send_done(r) && r->rejoin_s <= 0)
		return -ECONNRESET;
	return 0;
}

unsigned fl_receiver_reconnects(const struct fl_receiver *r)
{
	return r->reconnects;
}

uint64_t fl_receiver_staging_released(const struct fl_receiver *r)
{
	return atomic_load(&r->staging_dropped);
}

const char *fl_receiver_error(struct fl_receiver *r)
{
	const char *e;

	pthread_mutex_lock(&r->lock);
	e = r->failed ? r->errmsg : NULL;
	pthread_mutex_unlock(&r->lock);
	return e;
}

void fl_receiver_destroy(struct fl_receiver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->finished = true;
	pthread_mutex_unlock(&r->lock);
	/* The control thread may be waiting for a source to rejoin: it sees
	 * finished within a poll interval, and stops its heartbeat itself. */
	pthread_rwlock_rdlock(&r->connlock);
	if (r->ctl)
		fl_conn_shutdown(r->ctl);
	if (r->urg)
		fl_conn_shutdown(r->urg);
	pthread_rwlock_unlock(&r->connlock);
	if (r->ctl_started)
		pthread_join(r->ctl_thread, NULL);
	pthread_mutex_lock(&r->hblock);
	fl__heartbeat_stop(&r->hb);
	pthread_mutex_unlock(&r->hblock);
	if (r->urg_started)
		pthread_join(r->urg_thread, NULL);
	if (r->ctl)
		fl_conn_close(r->ctl);
	if (r->urg)
		fl_conn_close(r->urg);
	if (r->listen_fd >= 0)
		close(r->listen_fd);
	for (size_t i = 0; r->rg && i < r->n; i++) {
		if (r->rg[i].staging)
			munmap(r->rg[i].staging, r->regions[i].len);
		free(r->rg[i].have);
		free(r->rg[i].zero);
		free(r->rg[i].fresh);
		free(r->rg[i].urgent);
		free(r->rg[i].drop);
		free(r->rg[i].staged);
	}
	free(r->rg);
	free(r->regions);
	free(r->blob);
	free(r->pending);
	for (size_t i = 0; i < r->ndone; i++)
		if (r->done[i]->unasked)
			free(r->done[i]);
	free(r->done);
	if (r->base.event_fd >= 0)
		close(r->base.event_fd);
	pthread_rwlock_destroy(&r->connlock);
	pthread_mutex_destroy(&r->hblock);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->droplock);
	fl__rx_ring_destroy(r);
	pthread_cond_destroy(&r->cond);
	free(r);
}
