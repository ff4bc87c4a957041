// SPDX-License-Identifier: MIT
/*
 * Migrations that survive their transport: guest-RAM-like memory of this
 * process migrated over loopback (as in test_vmm) while seeded faults hit
 * every frame either side sends (src/transport/wire-inject.h: resets,
 * frames cut short, delays, a connection gone silent). Both ends rejoin;
 * every run must end with the destination's RAM equal to the source's at
 * the pause, byte for byte, read while pages are still arriving.
 *
 * Knobs: FL_SOAK_RUNS (default 100 migrations), FL_SEED (the first seed).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <faultline/vmm.h>

#include "../common/runner.h"
#include "ram-source.h"
#include "wire-inject.h"

#define PG 4096UL
#define RAM (4UL << 20)
#define REJOIN_S 15.0

/* One migration under cfg's faults; the reconnects it survived. */
static unsigned migrate(const struct fl__wire_inject *cfg, bool postcopy_only, bool read_early)
{
	struct ram_source s = { .seed = (unsigned)cfg->seed, .gentle = true,
				.o = { .postcopy_only = postcopy_only, .rejoin_s = REJOIN_S,
				       .max_rounds = 3 } };
	struct fl_receiver_opts ro = { .rejoin_s = REJOIN_S };
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_vmm_ram ram = { .len = RAM, .name = "guest-ram" };
	const void *blob;
	size_t blob_len;
	char err[512];
	int port = 0, lfd, ret;
	unsigned reconnects;

	lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	assert_true(lfd >= 0);
	ram_source_start(&s, RAM);
	fl__wire_inject_set(cfg);
	ram_source_migrate(&s, port);

	if (fl_receiver_accept_opts(&r, lfd, &(struct fl_tls_config){ .plain = true }, &ro, err,
				    sizeof(err)) ||
	    fl_receiver_wait_resume(r, &blob, &blob_len, err, sizeof(err)))
		fail_msg("seed %llu: receiver: %s", (unsigned long long)cfg->seed, err);
	assert_string_equal(blob, RAM_SOURCE_STATE);
	ram.host = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(ram.host != MAP_FAILED);
	if (fl_vmm_dest_start(&d, r, &ram, 1, NULL, err, sizeof(err)))
		fail_msg("fl_vmm_dest_start: %s", err);
	/* Read everything now, while pages are still on their way (and
	 * connections break): the source is paused, so its RAM is ours. */
	for (size_t p = 0; read_early && p < RAM / PG; p++)
		if (memcmp((char *)ram.host + p * PG, s.ram + p * PG, PG))
			fail_msg("seed %llu: page %zu differs from the source's at the pause",
				 (unsigned long long)cfg->seed, p);
	if ((ret = fl_vmm_dest_wait_complete(d, 0)))
		fail_msg("seed %llu: waiting for every page: %s", (unsigned long long)cfg->seed,
			 strerror(-ret));
	assert_int_equal(fl_vmm_dest_owed(d), 0);
	/* The receiver stays until the source is through: a DONE lost in a
	 * break is sent again to the source that rejoins for it. */
	ram_source_join(&s);
	fl__wire_inject_set(NULL);
	if (s.ret)
		fail_msg("seed %llu: fl_vmm_migrate: %s", (unsigned long long)cfg->seed, s.err);
	assert_memory_equal(ram.host, s.ram, RAM);
	reconnects = fl_receiver_reconnects(r);
	if (reconnects != s.rep.reconnects)
		printf("# seed %llu: the destination counted %u reconnects, the source %u\n",
		       (unsigned long long)cfg->seed, reconnects, s.rep.reconnects);
	fl_vmm_dest_destroy(d);
	fl_receiver_destroy(r);
	close(lfd);
	munmap(ram.host, RAM);
	munmap(s.ram, RAM);
	return s.rep.reconnects;
}

static void test_soak_seeded_resets_truncations_and_delays(const struct fl_case *c)
{
	long runs = fl_env_long("FL_SOAK_RUNS", 100), base = fl_env_long("FL_SEED", 1);
	struct fl__wire_inject_counts total = { 0 };
	unsigned reconnects = 0;
	char err[256];

	(void)c;
	if (fl_vmm_dest_check(err, sizeof(err)))
		fl_skip("%s", err);
	for (long i = 0; i < runs; i++) {
		struct fl__wire_inject cfg = { .seed = (uint64_t)(base + i), .reset = 60,
					       .truncate = 60, .delay = 300, .delay_max_us = 3000,
					       .spare_first = 2 };
		struct fl__wire_inject_counts k;

		unsigned rc = migrate(&cfg, i % 2, true);

		reconnects += rc;
		fl__wire_inject_counts(&k);
		if (getenv("FL_VERBOSE"))
			printf("# seed %llu: %u reconnects, %llu frames\n",
			       (unsigned long long)cfg.seed, rc, (unsigned long long)k.frames);
		total.frames += k.frames;
		total.resets += k.resets;
		total.truncates += k.truncates;
		total.delays += k.delays;
	}
	printf("# %ld migrations, all equal: %llu frames, %llu resets, %llu cut short, %llu "
	       "delayed; %u reconnects\n", runs, (unsigned long long)total.frames,
	       (unsigned long long)total.resets, (unsigned long long)total.truncates,
	       (unsigned long long)total.delays, reconnects);
	/* The faults must have hit, or this proved nothing. */
	assert_true(total.resets + total.truncates > 0);
	assert_true(reconnects > 0);
}

static void test_a_connection_gone_silent_is_noticed_and_rejoined(const struct fl_case *c)
{
	long base = fl_env_long("FL_SEED", 1);
	char err[256];

	(void)c;
	if (fl_vmm_dest_check(err, sizeof(err)))
		fl_skip("%s", err);
	/* One connection stops delivering, for good. A silent control
	 * connection is noticed by the heartbeat (6 s) and rejoined; a silent
	 * urgent one is covered by the background push. Either way the
	 * migration completes; seeds are tried until one silenced a
	 * connection whose loss had to be noticed. */
	for (long i = 0; i < 8; i++) {
		struct fl__wire_inject cfg = { .seed = (uint64_t)(base + i), .stall = 150,
					       .spare_first = 2, .max_faults = 1 };
		struct fl__wire_inject_counts k;
		/* Nothing read until every page is in: it all comes on the
		 * control connection, and a stall there must be noticed. */
		unsigned reconnects = migrate(&cfg, true, false);

		fl__wire_inject_counts(&k);
		printf("# seed %llu: %llu frames, %llu stalls, %u reconnects\n",
		       (unsigned long long)cfg.seed, (unsigned long long)k.frames,
		       (unsigned long long)k.stalls, reconnects);
		if (k.stalls && reconnects)
			return;
	}
	fail_msg("no seed silenced a connection that had to be rejoined");
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	/* Minutes, not the runner's default minute: 100 migrations, and
	 * silences of 6 s each. */
	FL_ADD(test_soak_seeded_resets_truncations_and_delays)->timeout = 600;
	FL_ADD(test_a_connection_gone_silent_is_noticed_and_rejoined)->timeout = 300;
	return fl_run_cases(cases, n, argc, argv);
}
