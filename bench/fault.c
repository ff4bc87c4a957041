// SPDX-License-Identifier: MIT
/*
 * Fault round trip: a thread touches a missing page; a handler thread reads
 * the message and resolves it with UFFDIO_COPY, which wakes the thread. The
 * faulting thread times its own access. Measured with both threads on one
 * core and on two, because waking a thread on another core costs here.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "bench.h"

struct rtt {
	struct fl_uffd u;
	char *mem;
	int n;
	double *us;
	int cpu_fault, cpu_handler;
	atomic_bool stop;
};

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *handler(void *arg)
{
	struct rtt *r = arg;
	static char page[4096] __attribute__((aligned(4096)));
	struct fl_uffd_event ev[16];

	pin(r->cpu_handler);
	while (!atomic_load(&r->stop)) {
		struct pollfd p = { .fd = r->u.fd, .events = POLLIN };
		int n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = fl_uffd_read_events(r->u.fd, ev, 16);
		for (int i = 0; i < n; i++)
			if (ev[i].kind == FL_EVENT_PAGEFAULT)
				fl_uffd_copy(r->u.fd, ev[i].fault.address & ~4095ULL,
					     page, 4096, 4096, 0, NULL);
	}
	return NULL;
}

static void *faulter(void *arg)
{
	struct rtt *r = arg;

	pin(r->cpu_fault);
	for (int i = 0; i < r->n; i++) {
		volatile char *p = r->mem + (size_t)i * 4096;
		uint64_t t0 = now_ns();

		(void)*p;
		r->us[i] = (double)(now_ns() - t0) / 1000.0;
	}
	return NULL;
}

static int run(struct rtt *r)
{
	size_t len = (size_t)r->n * 4096;
	pthread_t h, f;

	if (fl_uffd_create(&r->u, 0, 0, 0, NULL))
		return -1;
	r->mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(r->mem, len, MADV_NOHUGEPAGE);
	if (fl_uffd_register(r->u.fd, (uint64_t)(uintptr_t)r->mem, len,
			     UFFDIO_REGISTER_MODE_MISSING, NULL))
		return -1;
	pthread_create(&h, NULL, handler, r);
	pthread_create(&f, NULL, faulter, r);
	pthread_join(f, NULL);
	atomic_store(&r->stop, true);
	pthread_join(h, NULL);
	fl_uffd_close(&r->u);
	munmap(r->mem, len);
	return 0;
}

void bench_fault_latency(struct table *t, const struct bench_opts *o)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	for (int across = 0; across < 2; across++) {
		struct rtt r = { .n = o->faults };
		struct row *row = table_add(t, across ? "fault round trip, across cores"
						      : "fault round trip, same core", "4 KiB");

		if (across && cpus < 2) {
			snprintf(row->note, sizeof(row->note), "one CPU only");
			continue;
		}
		r.cpu_fault = 0;
		r.cpu_handler = across ? 1 : 0;
		r.us = calloc((size_t)r.n, sizeof(double));
		if (!r.us || run(&r)) {
			snprintf(row->note, sizeof(row->note), "userfaultfd unavailable");
			free(r.us);
			continue;
		}
		row->p50_us = percentile(r.us, (size_t)r.n, 50);
		row->p99_us = percentile(r.us, (size_t)r.n, 99);
		snprintf(row->note, sizeof(row->note), "fault, read, COPY, wake (%d faults)",
			 r.n);
		free(r.us);
	}
}
