// SPDX-License-Identifier: MIT
/* The source side of the in-process VMM tests (ram-source.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../common/runner.h"
#include "ram-source.h"

#define PG 4096UL

static void *writer(void *arg)
{
	struct ram_source *s = arg;
	unsigned seed = s->seed;

	while (!atomic_load(&s->stop)) {
		size_t p = (size_t)rand_r(&seed) % (s->len / PG);
		uint64_t *w = (uint64_t *)(s->ram + p * PG);

		w[0]++;
		w[PG / 8 - 1] = w[0] ^ p;
		if (s->gentle && (w[0] & 63) == 0)
			usleep(50);
	}
	return NULL;
}

static int pause_cb(void *ctx, void **blob, size_t *len)
{
	struct ram_source *s = ctx;

	atomic_store(&s->stop, true);
	pthread_join(s->writer, NULL);
	*blob = strdup(RAM_SOURCE_STATE);
	*len = strlen(RAM_SOURCE_STATE) + 1;
	return 0;
}

static void *migrate_thread(void *arg)
{
	struct ram_source *s = arg;
	struct fl_vmm_ram ram = { .host = s->ram, .len = s->len, .guest_addr = 0,
				  .name = "guest-ram" };
	struct fl_vmm_source_hooks h = { .pause = pause_cb, .ctx = s };

	s->ret = fl_vmm_migrate(&ram, 1, &h, &s->o, &s->rep, s->err, sizeof(s->err));
	return NULL;
}

void ram_source_start(struct ram_source *s, size_t len)
{
	s->len = len;
	s->ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(s->ram != MAP_FAILED);
	for (size_t p = 0; p < len / PG; p += 3) /* a third of the pages start non-zero */
		memset(s->ram + p * PG, (int)((p + s->seed) % 251) + 1, PG);
	assert_int_equal(pthread_create(&s->writer, NULL, writer, s), 0);
}

void ram_source_migrate(struct ram_source *s, int port)
{
	snprintf(s->to, sizeof(s->to), "127.0.0.1:%d", port);
	s->o.to = s->to;
	s->o.tls.plain = true;
	assert_int_equal(pthread_create(&s->thread, NULL, migrate_thread, s), 0);
}

void ram_source_join(struct ram_source *s)
{
	pthread_join(s->thread, NULL);
}
