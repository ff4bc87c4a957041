/* SPDX-License-Identifier: MIT */
/*
 * The wire's heartbeat (WIRE.md): a thread that sends FL_CTL_PING on a
 * control connection every FL_WIRE_PING_S until stopped. Both ends run
 * one; each reads the other's control connection with an idle limit
 * (fl_conn_set_idle_timeout).
 */
#ifndef FL_TRANSPORT_HEARTBEAT_H
#define FL_TRANSPORT_HEARTBEAT_H

#include <pthread.h>
#include <stdbool.h>

#include <faultline/wire.h>

struct fl__heartbeat {
	struct fl_conn *c;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, started;
};

/* Start pinging c. A heartbeat that could not start is stopped harmlessly. */
void fl__heartbeat_start(struct fl__heartbeat *hb, struct fl_conn *c);
/* Stop and wait for the thread; once, or again harmlessly (also on a
 * zeroed struct that was never started). */
void fl__heartbeat_stop(struct fl__heartbeat *hb);

#endif
