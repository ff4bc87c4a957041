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

#define PG 4096UL
#define RAM (16UL << 20)

static void migrate(bool postcopy_only)
{
	struct ram_source s = { .o.postcopy_only = postcopy_only, .seed = 0 };
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_vmm_ram ram = { .len = RAM, .name = "guest-ram" };
	const void *blob;
	size_t blob_len;
	char err[512];
	int port = 0, lfd;

	if (fl_vmm_dest_check(err, sizeof(err)))
		fl_skip("%s", err);
	lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	assert_true(lfd >= 0);
	ram_source_start(&s, RAM);
	usleep(100000);
	ram_source_migrate(&s, port);

	if (fl_receiver_accept(&r, lfd, &(struct fl_tls_config){ .plain = true }, 0, err,
			       sizeof(err)) ||
	    fl_receiver_wait_resume(r, &blob, &blob_len, err, sizeof(err)))
		fail_msg("receiver: %s", err);
	assert_string_equal(blob, RAM_SOURCE_STATE);
	ram.host = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(ram.host != MAP_FAILED);
	if (fl_vmm_dest_start(&d, r, &ram, 1, NULL, err, sizeof(err)))
		fail_msg("fl_vmm_dest_start: %s", err);
	/* Read everything now, while pages are still on their way: the
	 * source is paused, so its RAM is what ours must be. */
	for (size_t p = 0; p < RAM / PG; p++)
		if (memcmp((char *)ram.host + p * PG, s.ram + p * PG, PG))
			fail_msg("page %zu differs from the source's at the pause", p);
	assert_int_equal(fl_vmm_dest_wait_complete(d, 0), 0);
	assert_int_equal(fl_vmm_dest_owed(d), 0);
	fl_vmm_dest_destroy(d);
	ram_source_join(&s);
	if (s.ret)
		fail_msg("fl_vmm_migrate: %s", s.err);
	assert_memory_equal(ram.host, s.ram, RAM);
	fl_receiver_destroy(r);
	close(lfd);
}

static void test_vmm_precopy_then_postcopy_ram_equal_at_pause(const struct fl_case *c)
{
	(void)c;
	migrate(false);
}

static void test_vmm_postcopy_only_ram_equal_at_pause(const struct fl_case *c)
{
	(void)c;
	migrate(true);
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
	FL_ADD(test_vmm_migrate_requires_pause);
	return fl_run_cases(cases, n, argc, argv);
}
