// SPDX-License-Identifier: MIT
/* Seeded transport faults for tests (wire-inject.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "wire-inject.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool active;
static struct fl__wire_inject cfg;
static struct fl__wire_inject_counts counts;
static uint64_t state;

/* splitmix64: a full-period generator, good enough to pick faults. */
static uint64_t next(void)
{
	uint64_t z = (state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void fl__wire_inject_set(const struct fl__wire_inject *c)
{
	pthread_mutex_lock(&lock);
	if (c) { /* the counts stay readable after it is switched off */
		cfg = *c;
		state = c->seed;
		counts = (struct fl__wire_inject_counts){ 0 };
	}
	atomic_store(&active, c != NULL);
	pthread_mutex_unlock(&lock);
}

void fl__wire_inject_counts(struct fl__wire_inject_counts *out)
{
	pthread_mutex_lock(&lock);
	*out = counts;
	pthread_mutex_unlock(&lock);
}

enum fl__wire_fault fl__wire_inject_pick(uint64_t nth, size_t len, size_t *cut)
{
	enum fl__wire_fault f = FL_FAULT_NONE;
	unsigned delay_us = 0;
	uint64_t r;

	if (!atomic_load(&active))
		return FL_FAULT_NONE;
	pthread_mutex_lock(&lock);
	counts.frames++;
	if (nth < cfg.spare_first ||
	    (cfg.max_faults && counts.resets + counts.truncates + counts.stalls >= cfg.max_faults)) {
		pthread_mutex_unlock(&lock);
		return FL_FAULT_NONE;
	}
	r = next() % 10000;
	if (r < cfg.reset) {
		f = FL_FAULT_RESET;
		counts.resets++;
	} else if ((r -= cfg.reset) < cfg.truncate && len > 1) {
		f = FL_FAULT_TRUNCATE;
		*cut = 1 + (size_t)(next() % (len - 1));
		counts.truncates++;
	} else if ((r -= cfg.truncate) < cfg.stall) {
		f = FL_FAULT_STALL;
		counts.stalls++;
	} else if ((r -= cfg.stall) < cfg.delay && cfg.delay_max_us) {
		delay_us = (unsigned)(next() % cfg.delay_max_us) + 1;
		counts.delays++;
	}
	pthread_mutex_unlock(&lock);
	if (delay_us)
		nanosleep(&(struct timespec){ 0, (long)delay_us * 1000 }, NULL);
	return f;
}
