// SPDX-License-Identifier: MIT
/* The wire's heartbeat (heartbeat.h). */
#include <time.h>

#include "heartbeat.h"
#include "util/thread-cpu.h"

static void *run(void *arg)
{
	struct fl__heartbeat *hb = arg;
	const struct fl_ctl ping = { .type = FL_CTL_PING };

	fl__thread_name("fl-heartbeat");

	pthread_mutex_lock(&hb->lock);
	while (!hb->stop) {
		struct timespec t;

		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_sec += FL_WIRE_PING_S;
		pthread_cond_timedwait(&hb->cond, &hb->lock, &t);
		if (hb->stop)
			break;
		pthread_mutex_unlock(&hb->lock);
		if (fl_conn_send_ctl(hb->c, &ping)) {
			pthread_mutex_lock(&hb->lock);
			break; /* the connection's reader says why */
		}
		pthread_mutex_lock(&hb->lock);
	}
	pthread_mutex_unlock(&hb->lock);
	return NULL;
}

void fl__heartbeat_start(struct fl__heartbeat *hb, struct fl_conn *c)
{
	hb->c = c;
	hb->stop = false;
	pthread_mutex_init(&hb->lock, NULL);
	pthread_cond_init(&hb->cond, NULL);
	hb->started = pthread_create(&hb->thread, NULL, run, hb) == 0;
	if (!hb->started) {
		pthread_cond_destroy(&hb->cond);
		pthread_mutex_destroy(&hb->lock);
	}
}

void fl__heartbeat_stop(struct fl__heartbeat *hb)
{
	if (!hb->started)
		return;
	pthread_mutex_lock(&hb->lock);
	hb->stop = true;
	pthread_cond_broadcast(&hb->cond);
	pthread_mutex_unlock(&hb->lock);
	pthread_join(hb->thread, NULL);
	pthread_cond_destroy(&hb->cond);
	pthread_mutex_destroy(&hb->lock);
	hb->started = false;
}
