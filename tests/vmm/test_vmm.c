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

#define PG 4096UL
#define RAM (16UL << 20)

struct src {
	char *ram;
	pthread_t writer;
	atomic_bool stop, parked;
	bool postcopy_only;
	char to[64];
	int ret;
	char err[512];
};

static void *writer(void *arg)
{
	struct src *s = arg;
	unsigned seed = 1;

	while (!atomic_load(&s->stop)) {
		size_t p = (size_t)rand_r(&seed) % (RAM / PG);
		uint64_t *w = (uint64_t *)(s->ram + p * PG);

		w[0]++;
		w[PG / 8 - 1] = w[0] ^ p;
	}
	atomic_store(&s->parked, true);
	return NULL;
}

static int pause_cb(void *ctx, void **blob, size_t *len)
{
	struct src *s = ctx;

	atomic_store(&s->stop, true);
	pthread_join(s->writer, NULL);
	*blob = strdup("vcpu-state");
	*len = strlen("vcpu-state") + 1;
	return 0;
}

static void *source_thread(void *arg)
{
	struct src *s = arg;
	struct fl_vmm_ram ram = { .host = s->ram, .len = RAM, .guest_addr = 0, .name = "guest-ram" };
	struct fl_vmm_source_hooks h = { .pause = pause_cb, .ctx = s };
	struct fl_migrate_source_opts o = { .to = s->to, .postcopy_only = s->postcopy_only };
	struct fl_migrate_report rep;

	o.tls.plain = true;
	s->ret = fl_vmm_migrate(&ram, 1, &h, &o, &rep, s->err, sizeof(s->err));
	return NULL;
}

static void migrate(bool postcopy_only)
{
	struct src s = { .postcopy_only = postcopy_only };
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_vmm_ram ram = { .len = RAM, .name = "guest-ram" };
	const void *blob;
	size_t blob_len;
	pthread_t st;
	char err[512];
	int port = 0, lfd;

	if (fl_vmm_dest_check(err, sizeof(err)))
		fl_skip("%s", err);
	s.ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(s.ram != MAP_FAILED);
	for (size_t p = 0; p < RAM / PG; p += 3) /* a third of the pages start non-zero */
		memset(s.ram + p * PG, (int)(p % 251) + 1, PG);
	lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	assert_true(lfd >= 0);
	snprintf(s.to, sizeof(s.to), "127.0.0.1:%d", port);
	assert_int_equal(pthread_create(&s.writer, NULL, writer, &s), 0);
	usleep(100000);
	assert_int_equal(pthread_create(&st, NULL, source_thread, &s), 0);

	if (fl_receiver_accept(&r, lfd, &(struct fl_tls_config){ .plain = true }, 0, err,
			       sizeof(err)) ||
	    fl_receiver_wait_resume(r, &blob, &blob_len, err, sizeof(err)))
		fail_msg("receiver: %s", err);
	assert_string_equal(blob, "vcpu-state");
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
	pthread_join(st, NULL);
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
