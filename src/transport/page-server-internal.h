/* SPDX-License-Identifier: MIT */
/*
 * The source of a migration: its state, shared by page-server.c (rounds,
 * switch-over, post-copy) and page-server-session.c (connecting, and
 * rejoining the destination after a break).
 */
#ifndef FL_TRANSPORT_PAGE_SERVER_INTERNAL_H
#define FL_TRANSPORT_PAGE_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <faultline/migrate.h>

#include "heartbeat.h"
#include "precopy-forecast.h"

struct srv_region {
	const struct fl_region *g;
	size_t pages;
	uint64_t *owed;	  /* owed at switch-over */
	uint64_t *pushed; /* sent since the switch-over */
	/* The pre-copy round that last sent each page (0: none): what a
	 * destination that rejoins may lack (see resend_set). */
	uint16_t *sent_round;
};

struct bg_req {
	uint32_t region;
	uint64_t offset, len;
};

struct server {
	const struct fl_migrate_source_opts *o;
	const struct fl_migrate_memory *mem;
	const struct fl_region *regions;
	struct fl_tls_config tls;
	uint8_t session[16];
	struct fl_conn *ctl, *urg;
	struct srv_region *rg;
	size_t n;
	char *buf, *ubuf; /* main thread's and urgent thread's read buffers */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct bg_req *bg;
	size_t nbg, cap_bg;
	bool done, failed;
	/* A connection broke and the destination may take us back: the
	 * threads stop, the main thread rejoins (o->rejoin_s > 0). */
	bool broken;
	char broke[256];
	char errmsg[320];
	struct fl_migrate_report *rep;
	FILE *out;
	/* Progress of the current phase, bytes (zero pages included). */
	struct {
		char what[32];
		uint64_t total, done;
		double t0, last;
	} pg;
	uint64_t claimed; /* bytes claimed since the switch-over, under lock */
	unsigned round;	  /* the pre-copy round being sent (0: none) */
	/* The round being sent, watched while it runs (see round_watch):
	 * what was written since it began (n bitmaps, and a scratch one for
	 * dirty_collect), the forecast fitted to that, how far it got; cut:
	 * it stopped at (cut_region, cut_page), the rest of its list owed. */
	struct {
		uint64_t **written, *scratch;
		struct fl__forecast fc;
		double t0, precopy_t0;
		size_t pages, sent;
		bool cut;
		uint32_t cut_region;
		size_t cut_page;
	} rw;
	bool unowed_said; /* a request for pages not owed was logged */
	/* Where the last urgent request ended: the push jumps there. */
	bool hint_set;
	uint32_t hint_region;
	size_t hint_page;
	struct fl__heartbeat hb; /* Ping to the destination on ctl */
};

/* Where the destination stands when we rejoin it: its phase, the last
 * pre-copy round it saw begin, and per region the pages it holds
 * (pre-copy: since that round began; post-copy: all it has). */
struct standing {
	uint32_t phase, round;
	uint64_t **have; /* n bitmaps, freed by standing_free */
	size_t n;
};

void fl__standing_free(struct standing *st);

/* Connect both connections and say hello (rejoin: to this session after
 * a break, and read where the destination stands into *st). */
int fl__srv_open(struct server *s, bool rejoin, struct standing *st, char *err, size_t errlen);

/* After a break: close the old connections, reconnect with backoff until
 * o->rejoin_s has passed or the destination refuses us, and read where
 * it stands. The other threads must be stopped. */
int fl__srv_rejoin(struct server *s, const char *why, struct standing *st, char *err,
		   size_t errlen);

#endif
