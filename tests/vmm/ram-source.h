/* SPDX-License-Identifier: MIT */
/*
 * The source side of the in-process VMM tests: "guest RAM" of this
 * process, a writer thread standing in for the vCPUs (stopped by the
 * pause, which hands back a device state), and fl_vmm_migrate() run in a
 * thread of its own.
 */
#ifndef FL_TESTS_RAM_SOURCE_H
#define FL_TESTS_RAM_SOURCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <faultline/vmm.h>

#define RAM_SOURCE_STATE "vcpu-state" /* the device state the pause hands back */

struct ram_source {
	char *ram;
	size_t len;
	unsigned seed;	 /* the writer's */
	bool gentle;	 /* the writer pauses now and then (a program, not a benchmark) */
	struct fl_migrate_source_opts o; /* o.to is set by ram_source_migrate */
	char to[64];
	pthread_t writer, thread;
	atomic_bool stop;
	int ret;
	struct fl_migrate_report rep;
	char err[512];
};

/* Map len bytes, a third of the pages non-zero, and start the writer. */
void ram_source_start(struct ram_source *s, size_t len);
/* Migrate to 127.0.0.1:port in a thread (plain TCP). */
void ram_source_migrate(struct ram_source *s, int port);
/* Wait for the migration; s->ret, s->err, s->rep say how it went. */
void ram_source_join(struct ram_source *s);

#endif
