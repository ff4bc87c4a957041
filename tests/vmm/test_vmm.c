// SPDX-License-Identifier: MIT
/*
 * faultline/vmm.h without KVM: "guest RAM" of this process migrated over
 * loopback to "guest RAM" of this process, a writer thread standing in
 * for the vCPUs. The destination's RAM must equal the source's at the
 * pause, byte for byte, read while pages are still arriving (faults served
 * by the in-process monitor), with faultline's own dirty tracking.
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
#define RAM (16UL << 20)

/* Migrate s's RAM (len bytes, its writer running) to RAM of our own and
 * compare the two, at the pause while pages still arrive, and at the end. */
static void migrate(struct ram_source *s, size_t len)
{
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_vmm_ram ram = { .len = len, .name = "guest-ram" };
	const void *blob;
	size_t blob_len;
	char err[512];
	int port = 0, lfd;

	if (fl_vmm_dest_check(err, sizeof(err)))
		fl_skip("%s", err);
	lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	assert_true(lfd >= 0);
	ram_source_start(s, len);
	usleep(100000);
	ram_source_migrate(s, port);

	if (fl_receiver_accept_opts(&r, lfd, &(struct fl_tls_config){ .plain = true },
				    &(struct fl_receiver_opts){ .rejoin_s = s->o.rejoin_s }, err,
				    sizeof(err)) ||
	    fl_receiver_wait_resume(r, &blob, &blob_len, err, sizeof(err)))
		fail_msg("receiver: %s", err);
	assert_string_equal(blob, RAM_SOURCE_STATE);
	ram.host = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(ram.host != MAP_FAILED);
	if (fl_vmm_dest_start(&d, r, &ram, 1, NULL, err, sizeof(err)))
		fail_msg("fl_vmm_dest_start: %s", err);
	/* Read everything now, while pages are still on their way: the
	 * source is paused, so its RAM is what ours must be. */
	for (size_t p = 0; p < len / PG; p++)
		if (memcmp((char *)ram.host + p * PG, s->ram + p * PG, PG))
			fail_msg("page %zu differs from the source's at the pause", p);
	assert_int_equal(fl_vmm_dest_wait_complete(d, 0), 0);
	assert_int_equal(fl_vmm_dest_owed(d), 0);
	fl_vmm_dest_destroy(d);
	ram_source_join(s);
	if (s->ret)
		fail_msg("fl_vmm_migrate: %s", s->err);
	assert_memory_equal(ram.host, s->ram, len);
	fl_receiver_destroy(r);
	close(lfd);
}

static void test_vmm_precopy_then_postcopy_ram_equal_at_pause(const struct fl_case *c)
{
	struct ram_source s = { 0 };

	(void)c;
	migrate(&s, RAM);
}

static void test_vmm_postcopy_only_ram_equal_at_pause(const struct fl_case *c)
{
	struct ram_source s = { .o.postcopy_only = true };

	(void)c;
	migrate(&s, RAM);
}

/*
 * A link too slow for the program: every frame waits 0-100 ms, so a round
 * of 64 MiB takes a minute, while the writer writes all of RAM again in
 * well under a second. The round is cut short once its forecast says it
 * would not pay, and what it did not send is owed with what was written:
 * RAM still equal.
 */
static void test_vmm_round_that_would_not_pay_is_cut_short_ram_equal(const struct fl_case *c)
{
	struct fl__wire_inject cfg = { .seed = 7, .delay = 10000, .delay_max_us = 100000,
				       .spare_first = 2 };
	struct ram_source s = { 0 };

	(void)c;
	fl__wire_inject_set(&cfg);
	migrate(&s, 64UL << 20);
	fl__wire_inject_set(NULL);
	printf("# %u rounds, %.1f MiB pre-copied of 64; %s\n", s.rep.rounds,
	       (double)s.rep.bytes_precopy / (1 << 20), s.rep.switch_reason);
	assert_int_equal(s.rep.rounds, 1);
	assert_non_null(strstr(s.rep.switch_reason, "round 1 would not pay"));
	assert_true(s.rep.bytes_precopy < (64UL << 20));
	assert_true(s.rep.pages_owed > 0);
}

/* The same, the connections also reset now and then (seeded): a round cut
 * short, and then broken, owes what the destination lacks of it; rejoined
 * each time, RAM equal. */
static void test_vmm_cut_round_broken_and_rejoined_ram_equal(const struct fl_case *c)
{
	long base = fl_env_long("FL_SEED", 1);
	struct fl__wire_inject_counts k = { 0 };

	(void)c;
	for (long i = 0; i < 4; i++) {
		struct fl__wire_inject cfg = { .seed = (uint64_t)(base + i), .delay = 10000,
					       .delay_max_us = 100000, .reset = 300,
					       .spare_first = 2 };
		struct ram_source s = { .o.rejoin_s = 20 };

		fl__wire_inject_set(&cfg);
		migrate(&s, 32UL << 20);
		fl__wire_inject_counts(&k);
		fl__wire_inject_set(NULL);
		printf("# seed %ld: %u rounds, %u reconnects, %.1f MiB pre-copied of 32; %s\n",
		       base + i, s.rep.rounds, s.rep.reconnects,
		       (double)s.rep.bytes_precopy / (1 << 20), s.rep.switch_reason);
		munmap(s.ram, 32UL << 20);
	}
}

static void test_vmm_migrate_requires_pause(const struct fl_case *c)
{
	struct fl_vmm_ram ram = { .host = (void *)4096, .len = 4096 };
	struct fl_vmm_source_hooks h = { 0 };
	struct fl_migrate_source_opts o = { .to = "127.0.0.1:1" };
	struct fl_migrate_report rep;
	char err[256] = "";

	(void)c;
	assert_int_equal(fl_vmm_migrate(&ram, 1, &h, &o, &rep, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "pause"));
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_vmm_precopy_then_postcopy_ram_equal_at_pause);
	FL_ADD(test_vmm_postcopy_only_ram_equal_at_pause);
	FL_ADD(test_vmm_round_that_would_not_pay_is_cut_short_ram_equal)->timeout = 120;
	FL_ADD(test_vmm_cut_round_broken_and_rejoined_ram_equal)->timeout = 300;
	FL_ADD(test_vmm_migrate_requires_pause);
	return fl_run_cases(cases, n, argc, argv);
}
