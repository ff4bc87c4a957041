// SPDX-License-Identifier: MIT
/*
 * The source's connections to the destination: the first two, and the
 * two it opens again to rejoin after a break (WIRE.md, "Rejoining"): same
 * certificate rules, the same session, a hello that says it rejoins; the
 * destination answers with where it stands (REJOIN, then HAVE per
 * region), and the caller resends only what did not arrive.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "page-server-internal.h"
#include "util/bitmap.h"
#include "util/clock.h"

/* The standing arrives within this long of the hellos. */
#define STANDING_DEADLINE_S 10.0

void fl__standing_free(struct standing *st)
{
	for (size_t i = 0; st->have && i < st->n; i++)
		free(st->have[i]);
	free(st->have);
	st->have = NULL;
	st->n = 0;
}

/* Receive the next control message that is not a heartbeat. */
static int recv_ctl(struct fl_conn *c, struct fl_ctl *m, char *err, size_t errlen)
{
	for (;;) {
		struct fl_wire_hdr h;
		int ret = fl_conn_recv(c, &h, m, NULL, NULL, err, errlen);

		if (ret)
			return ret;
		if (h.kind != FL_WIRE_CONTROL) {
			snprintf(err, errlen, "the destination sent pages");
			return -EPROTO;
		}
		if (m->type != FL_CTL_PING)
			return 0;
	}
}

static int say_hello(struct server *s, struct fl_conn *c, uint32_t kind, bool rejoin,
		     char *err, size_t errlen)
{
	struct fl_ctl m = { .type = FL_CTL_HELLO };
	int ret;

	m.hello.version = FL_WIRE_VERSION;
	m.hello.role = FL_ROLE_SOURCE;
	m.hello.conn = kind;
	m.hello.rejoin = rejoin;
	memcpy(m.hello.session, s->session, 16);
	if ((ret = fl_conn_send_ctl(c, &m)))
		return ret;
	fl_conn_set_deadline(c, STANDING_DEADLINE_S);
	ret = recv_ctl(c, &m, err, errlen);
	fl_conn_set_deadline(c, 0);
	if (ret)
		return ret;
	if (m.type == FL_CTL_ERROR) {
		/* It does not know this migration (any more): no use retrying. */
		snprintf(err, errlen, "the destination refused us: %s", m.error.message);
		return -ESRCH;
	}
	if (m.type != FL_CTL_HELLO || m.hello.role != FL_ROLE_DEST ||
	    memcmp(m.hello.session, s->session, 16)) {
		fl_ctl_free(&m);
		snprintf(err, errlen, "the destination did not answer our hello");
		return -EPROTO;
	}
	return 0;
}

static int read_standing(struct server *s, struct standing *st, char *err, size_t errlen)
{
	struct fl_ctl m;
	int ret;

	fl_conn_set_deadline(s->ctl, STANDING_DEADLINE_S);
	ret = recv_ctl(s->ctl, &m, err, errlen);
	if (!ret && m.type != FL_CTL_REJOIN) {
		fl_ctl_free(&m);
		snprintf(err, errlen, "the destination did not say where it stands");
		ret = -EPROTO;
	}
	if (!ret) {
		st->phase = m.rejoin.phase;
		st->round = m.rejoin.round;
		st->n = s->n;
		st->have = calloc(s->n, sizeof(*st->have));
		ret = st->have ? 0 : -ENOMEM;
	}
	for (size_t i = 0; !ret && i < s->n; i++) {
		struct srv_region *g = &s->rg[i];

		ret = recv_ctl(s->ctl, &m, err, errlen);
		if (ret)
			break;
		if (m.type != FL_CTL_HAVE || m.owed.region != i || m.owed.first_page ||
		    m.owed.npages != g->pages) {
			fl_ctl_free(&m);
			snprintf(err, errlen, "the destination's page list %zu does not match "
				 "region %zu", i, i);
			ret = -EPROTO;
			break;
		}
		st->have[i] = calloc(fl__bitmap_words(g->pages) ? fl__bitmap_words(g->pages) : 1, 8);
		if (!st->have[i])
			ret = -ENOMEM;
		else /* little-endian: the wire's bytes are the words */
			memcpy(st->have[i], m.owed.bitmap, (g->pages + 7) / 8);
		fl_ctl_free(&m);
	}
	fl_conn_set_deadline(s->ctl, 0);
	if (ret)
		fl__standing_free(st);
	return ret;
}

int fl__srv_open(struct server *s, bool rejoin, struct standing *st, char *err, size_t errlen)
{
	int ret = fl_conn_connect(&s->ctl, s->o->to, &s->tls, err, errlen);

	if (!ret)
		ret = say_hello(s, s->ctl, FL_CONN_CONTROL, rejoin, err, errlen);
	if (!ret)
		ret = fl_conn_connect(&s->urg, s->o->to, &s->tls, err, errlen);
	if (!ret)
		ret = say_hello(s, s->urg, FL_CONN_URGENT, rejoin, err, errlen);
	if (!ret) {
		fl_conn_set_regions(s->ctl, s->regions, s->n);
		fl_conn_set_regions(s->urg, s->regions, s->n);
	}
	if (!ret && rejoin)
		ret = read_standing(s, st, err, errlen);
	if (ret) {
		fl_conn_close(s->ctl);
		fl_conn_close(s->urg);
		s->ctl = s->urg = NULL;
	}
	return ret;
}

int fl__srv_rejoin(struct server *s, const char *why, struct standing *st, char *err,
		   size_t errlen)
{
	double t0 = fl__now_s(), backoff = 0.1;
	int ret;

	fl__heartbeat_stop(&s->hb);
	fl_conn_close(s->ctl);
	fl_conn_close(s->urg);
	s->ctl = s->urg = NULL;
	if (s->o->verbose)
		fprintf(s->out, "migrate: the connection to the destination broke (%s); rejoining "
			"(for up to %.0f s)\n", why, s->o->rejoin_s);
	for (;;) {
		ret = fl__srv_open(s, true, st, err, errlen);
		if (!ret || ret == -ESRCH)
			break;
		if (fl__now_s() - t0 + backoff > s->o->rejoin_s) {
			char last[256];

			snprintf(last, sizeof(last), "%s", err);
			snprintf(err, errlen, "could not rejoin the destination within %.0f s of "
				 "the break (%s); last try: %s", s->o->rejoin_s, why, last);
			return -ETIMEDOUT;
		}
		nanosleep(&(struct timespec){ (time_t)backoff,
					      (long)((backoff - (double)(time_t)backoff) * 1e9) },
			  NULL);
		backoff = backoff * 2 > 2.0 ? 2.0 : backoff * 2;
	}
	if (ret)
		return ret;
	fl__heartbeat_start(&s->hb, s->ctl);
	s->rep->reconnects++;
	if (s->o->verbose)
		fprintf(s->out, "migrate: rejoined the destination after %.1f s (%s, reconnect %u)\n",
			fl__now_s() - t0, st->phase == FL_REJOIN_POSTCOPY ? "post-copy" : "pre-copy",
			s->rep->reconnects);
	return 0;
}
