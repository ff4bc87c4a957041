/* SPDX-License-Identifier: MIT */
/*
 * The receiver's state, shared by receiver.c (connections, staging, the
 * page source) and receiver-rejoin.c (a source coming back after a break).
 */
#ifndef FL_TRANSPORT_RECEIVER_INTERNAL_H
#define FL_TRANSPORT_RECEIVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <faultline/migrate.h>

#include "heartbeat.h"

/* A connection has this long to authenticate and say hello. */
#define HELLO_DEADLINE_S 5.0

struct rx_region {
	char *staging;
	size_t pages, page;
	_Atomic uint64_t *have;	 /* arrived (and still current) */
	_Atomic uint64_t *zero;	 /* arrived as a zero range */
	_Atomic uint64_t *fresh; /* arrived since the last pre-copy round began */
	_Atomic uint64_t *urgent; /* requested for a fault */
	_Atomic uint64_t *drop;	  /* staging to hand back (receiver-staging.c) */
	_Atomic uint64_t *staged; /* staging may hold bytes (populated, written) */
};

/* The ring the pushed stream lands in after the switch-over
 * (receiver-staging.c): frames in flight, oldest first. */
#define RX_RING_ENTS 256
struct rx_ring_ent {
	size_t start, len;
	size_t left; /* bytes not handed back; freed at 0, oldest first */
};
struct rx_ring {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *mem;
	size_t size, head, reserved;
	struct rx_ring_ent ent[RX_RING_ENTS];
	unsigned first, count;
	bool broken, stalled;
	uint64_t frames, fallbacks;
};

struct fl_receiver {
	struct fl_source base; /* first: the monitor's view */
	/* The connections: replaced only by the control thread when the
	 * source rejoins, under connlock (written), while senders hold it
	 * (read). */
	struct fl_conn *ctl, *urg;
	pthread_rwlock_t connlock;
	struct fl_region *regions;
	struct rx_region *rg;
	size_t n;
	pthread_t ctl_thread, urg_thread;
	bool ctl_started, urg_started;
	struct fl__heartbeat hb; /* Ping to the source on ctl */
	pthread_mutex_t hblock;	 /* hb started/stopped under it */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool resumed, failed, finished;
	/* Every page is here and DONE was sent (with these statistics, sent
	 * again to a source that rejoins without having read it). */
	bool all_in;
	uint64_t final_stats[FL_WIRE_STATS_MAX];
	_Atomic uint64_t staging_dropped; /* bytes of staging handed back */
	pthread_mutex_t droplock;	  /* drop bitmaps and drop_pending */
	uint64_t drop_pending;		  /* bytes marked, not yet dropped */
	bool no_populate;		  /* FAULTLINE_NO_POPULATE: fault staging in */
	bool no_ring;			  /* FAULTLINE_NO_RING: all into staging */
	struct rx_ring ring;
	size_t nfinal;
	char errmsg[320];
	void *blob;
	size_t blob_len;
	struct fl_source_req **pending, **done;
	size_t npending, ndone, cap_pending, cap_done;
	_Atomic uint64_t owed;
	int verbose;
	uint64_t bytes, rounds;
	uint32_t round_begun; /* the last pre-copy round that began */
	/* Rejoin: the session, the listening socket (our dup) and how long a
	 * broken migration waits for its source (0: it fails at once). */
	uint8_t session[16];
	int listen_fd;
	double rejoin_s;
	struct fl_tls_config tls;
	char broke[256]; /* why the connections broke (the urgent thread's) */
	unsigned reconnects;
};

/* receiver.c */
void fl__rx_fail(struct fl_receiver *r, const char *fmt, const char *detail);
void *fl__rx_urgent(void *arg);
int fl__rx_hello(struct fl_conn *c, uint32_t conn_kind, uint8_t session[16], bool rejoin,
		 char *err, size_t errlen);
int fl__rx_accept_source(struct fl_receiver *r, int listen_fd, uint32_t kind,
			 uint8_t session[16], bool rejoin, double deadline_s,
			 struct fl_conn **out, char *err, size_t errlen);
int fl__rx_send_done(struct fl_receiver *r);

/* receiver-staging.c */
/* Before any write to staging: the pages are populated and marked staged
 * (only staged pages are ever zapped). */
void fl__rx_staging_populate(struct fl_receiver *r, uint32_t region, uint64_t offset,
			     uint64_t len);
/* Zap at once what staging holds of the range (a zero range arrived). */
void fl__rx_staging_zap(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len);
/* Staging of [offset, offset+len) is not needed any more (held: it holds
 * these pages, so count them as handed back). */
void fl__rx_staging_drop(struct fl_receiver *r, uint32_t region, uint64_t offset,
			 uint64_t len, bool held);
void fl__rx_ring_init(struct fl_receiver *r);
void fl__rx_ring_destroy(struct fl_receiver *r);
/* Room for len bytes (the control thread only), or NULL: use staging. */
char *fl__rx_ring_reserve(struct fl_receiver *r, size_t len);
/* The reserved room holds a frame now. */
void fl__rx_ring_commit(struct fl_receiver *r, size_t len);
bool fl__rx_ring_owns(const struct fl_receiver *r, const void *p);
/* [p, p+len) of a frame is handed back. */
void fl__rx_ring_free(struct fl_receiver *r, const void *p, size_t len);
int fl__rx_ask(struct fl_receiver *r, uint32_t region, uint64_t offset, uint64_t len);

/* receiver-rejoin.c: after a break, wait for the source to come back
 * within the deadline and bring it up to date (false: it did not, and
 * the receiver has failed). Called by the control thread. */
bool fl__rx_rejoin(struct fl_receiver *r, const char *why);

#endif
