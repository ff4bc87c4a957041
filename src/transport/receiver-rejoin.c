// SPDX-License-Identifier: MIT
/*
 * A source that comes back after a break (WIRE.md, "Rejoining").
 *
 * When a connection of a migration breaks (a reset, a silent peer, a
 * malformed frame), the receiver keeps everything: staging, what is owed,
 * the monitor's pending requests. Its control thread stops the urgent
 * thread and the heartbeat, and accepts again on the listening socket,
 * for at most the rejoin deadline, only the source of this migration
 * (same certificate rules, the same session, a hello that says it
 * rejoins). It tells the source where it stands (REJOIN: pre-copy round
 * or post-copy, then one HAVE bitmap per region), swaps the connections
 * in, and asks again for every page still pending. Pages that arrive twice
 * are counted once (the bitmaps say what is here). Only when the deadline
 * passes does what can no longer arrive fail, as for a lost source.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "receiver-internal.h"
#include "source-internal.h"
#include "util/bitmap.h"
#include "util/clock.h"

/* REJOIN, then per region the pages held: pre-copy, those received since
 * the round began (the rest of the round is resent); post-copy, all that
 * are here. Only the control thread runs (the urgent one is stopped). */
static int send_standing(struct fl_receiver *r, struct fl_conn *c)
{
	struct fl_ctl m = { .type = FL_CTL_REJOIN };
	int ret;

	m.rejoin.phase = r->resumed ? FL_REJOIN_POSTCOPY : FL_REJOIN_PRECOPY;
	m.rejoin.round = r->round_begun;
	if ((ret = fl_conn_send_ctl(c, &m)))
		return ret;
	for (size_t i = 0; i < r->n; i++) {
		struct rx_region *g = &r->rg[i];
		size_t words = fl__bitmap_words(g->pages);
		uint64_t *bm = calloc(words ? words : 1, sizeof(*bm));

		if (!bm)
			return -ENOMEM;
		for (size_t w = 0; w < words; w++)
			bm[w] = atomic_load(r->resumed ? &g->have[w] : &g->fresh[w]);
		m = (struct fl_ctl){ .type = FL_CTL_HAVE };
		m.owed.region = (uint32_t)i;
		m.owed.npages = g->pages;
		/* Little-endian words are the wire's bytes (as for OWED). */
		m.owed.bitmap = (uint8_t *)bm;
		ret = fl_conn_send_ctl(c, &m);
		free(bm);
		if (ret)
			return ret;
	}
	return 0;
}

/* Ask again for every page a pending fault still lacks: what was asked
 * on the broken connections may never have reached the source. */
static void ask_again(struct fl_receiver *r)
{
	struct want {
		uint32_t region;
		uint64_t offset, len;
		bool urgent;
	} *w;
	size_t n = 0;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < fl__bitmap_words(r->rg[i].pages); k++) {
			atomic_store(&r->rg[i].urgent[k], 0);
		}
	w = calloc(r->npending ? r->npending : 1, sizeof(*w));
	for (size_t i = 0; w && i < r->npending; i++)
		w[n++] = (struct want){ r->pending[i]->region, r->pending[i]->offset,
					r->pending[i]->len, r->pending[i]->urgent };
	pthread_mutex_unlock(&r->lock);
	/* Faults only: the rest comes with the source's push. */
	for (size_t i = 0; i < n; i++)
		if (w[i].urgent)
			fl__rx_ask(r, w[i].region, w[i].offset, w[i].len);
	free(w);
}

/* Accept the source's two connections again, before the deadline. */
static int accept_again(struct fl_receiver *r, uint64_t deadline_ns, struct fl_conn **ctl,
			struct fl_conn **urg, char *err, size_t errlen)
{
	for (;;) {
		double left = (double)(deadline_ns - fl__now_ns()) / 1e9;
		int ret;

		if (fl__now_ns() >= deadline_ns)
			return -ETIMEDOUT;
		ret = fl__rx_accept_source(r, r->listen_fd, FL_CONN_CONTROL, r->session, true, left,
					   ctl, err, errlen);
		if (ret)
			return ret;
		/* The source connects its urgent connection right after. */
		left = (double)(deadline_ns - fl__now_ns()) / 1e9;
		if (left > 2 * HELLO_DEADLINE_S)
			left = 2 * HELLO_DEADLINE_S;
		ret = fl__rx_accept_source(r, r->listen_fd, FL_CONN_URGENT, r->session, true,
					   left > 0.1 ? left : 0.1, urg, err, errlen);
		if (!ret) {
			fl_conn_set_regions(*ctl, r->regions, r->n);
			fl_conn_set_regions(*urg, r->regions, r->n);
			ret = send_standing(r, *ctl);
			if (!ret)
				return 0;
			fl_conn_close(*urg);
			*urg = NULL;
		}
		fl_conn_close(*ctl);
		*ctl = NULL;
		if (ret == -ECANCELED)
			return ret;
		if (r->verbose)
			fprintf(stderr, "receive: a rejoin attempt failed: %s\n", err);
	}
}

bool fl__rx_rejoin(struct fl_receiver *r, const char *why)
{
	uint64_t t0 = fl__now_ns();
	uint64_t deadline_ns = t0 + (uint64_t)(r->rejoin_s * 1e9);
	struct fl_conn *ctl = NULL, *urg = NULL, *old_ctl, *old_urg;
	char err[256] = "", msg[320];
	bool all_in;
	int ret;

	pthread_mutex_lock(&r->lock);
	all_in = r->all_in;
	pthread_mutex_unlock(&r->lock);
	if (r->verbose && !all_in) /* else most likely the source's hang-up after DONE */
		fprintf(stderr, "receive: the connection to the source broke (%s); waiting up to "
			"%.0f s for it to rejoin\n", why, r->rejoin_s);
	/* Quiesce what uses the old connections. */
	pthread_mutex_lock(&r->hblock);
	fl__heartbeat_stop(&r->hb);
	pthread_mutex_unlock(&r->hblock);
	fl_conn_shutdown(r->ctl);
	fl_conn_shutdown(r->urg);
	if (r->urg_started) {
		pthread_join(r->urg_thread, NULL);
		r->urg_started = false;
	}
	ret = accept_again(r, deadline_ns, &ctl, &urg, err, sizeof(err));
	pthread_mutex_lock(&r->lock);
	all_in = r->all_in;
	if (!ret && (r->finished || r->failed))
		ret = -ECANCELED;
	pthread_mutex_unlock(&r->lock);
	if (ret) {
		fl_conn_close(ctl);
		fl_conn_close(urg);
		if (ret != -ECANCELED && !all_in) {
			if (r->resumed)
				snprintf(msg, sizeof(msg), "the source did not rejoin within %.0f s "
					 "of the break (%s); %llu pages can never arrive", r->rejoin_s,
					 why, (unsigned long long)atomic_load(&r->owed));
			else
				snprintf(msg, sizeof(msg), "the source did not rejoin within %.0f s "
					 "of the break (%s), before the switch-over", r->rejoin_s, why);
			fl__rx_fail(r, "%s", msg);
		}
		return false;
	}
	pthread_rwlock_wrlock(&r->connlock);
	old_ctl = r->ctl;
	old_urg = r->urg;
	r->ctl = ctl;
	r->urg = urg;
	pthread_rwlock_unlock(&r->connlock);
	fl_conn_close(old_ctl);
	fl_conn_close(old_urg);
	pthread_mutex_lock(&r->lock);
	r->broke[0] = 0;
	r->reconnects++;
	pthread_mutex_unlock(&r->lock);
	r->urg_started = pthread_create(&r->urg_thread, NULL, fl__rx_urgent, r) == 0;
	if (all_in) {
		fl__rx_send_done(r); /* it came back for this */
	} else {
		pthread_mutex_lock(&r->hblock);
		fl__heartbeat_start(&r->hb, r->ctl);
		pthread_mutex_unlock(&r->hblock);
	}
	ask_again(r);
	if (r->verbose && all_in)
		fprintf(stderr, "receive: the source rejoined after %.1f s (reconnect %u) for "
			"the DONE it missed\n", (double)(fl__now_ns() - t0) / 1e9, r->reconnects);
	else if (r->verbose && r->resumed)
		fprintf(stderr, "receive: the source rejoined after %.1f s (reconnect %u); %llu "
			"pages still owed\n", (double)(fl__now_ns() - t0) / 1e9, r->reconnects,
			(unsigned long long)atomic_load(&r->owed));
	else if (r->verbose)
		fprintf(stderr, "receive: the source rejoined after %.1f s (reconnect %u), in "
			"pre-copy round %u\n", (double)(fl__now_ns() - t0) / 1e9, r->reconnects,
			r->round_begun);
	return true;
}
