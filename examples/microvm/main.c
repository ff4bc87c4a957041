// SPDX-License-Identifier: MIT
/*
 * microvm: a small KVM VMM whose guest keeps working on all of its RAM,
 * migrated post-copy to another host with faultline (include/faultline/vmm.h).
 *
 *   microvm run [--mem MiB] [--seconds N]
 *   microvm migrate --to HOST:PORT [TLS options] [--seconds N] [--postcopy-only]
 *   microvm receive --listen ADDR:PORT [TLS options] [--seconds N]
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <faultline/vmm.h>

#include "tls-opts.h"
#include "vm.h"
#include "../common/sha256-hex.h"

struct opts {
	size_t mem_mib;
	int vcpus;
	double seconds;
	const char *to, *listen, *sha_file;
	bool postcopy_only, hold, uffd_tracking;
	struct fl_tls_config tls;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Guest RAM: anonymous memory, 2 MiB aligned so that transparent huge
 * pages (where asked for) let KVM map it with 2 MiB EPT/NPT entries. */
static void *map_ram(size_t len, bool huge)
{
	size_t align = 2UL << 20;
	char *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), *a;

	if (p == MAP_FAILED) {
		fprintf(stderr, "microvm: cannot map %zu MiB of guest RAM: %s\n", len >> 20,
			strerror(errno));
		return NULL;
	}
	a = (char *)(((uintptr_t)p + align - 1) & ~(align - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + len, (size_t)(p + align - a));
	madvise(a, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return a;
}

/* Boot a fresh guest and wait until it has initialised every page. */
static int boot(struct vm *vm, size_t mib, int vcpus)
{
	char err[256];
	size_t len = mib << 20;
	void *ram = map_ram(len, true);

	if (!ram)
		return 1;
	if (vm_create(vm, ram, len, vcpus, err, sizeof(err)) ||
	    vm_boot_setup(vm, err, sizeof(err))) {
		fprintf(stderr, "microvm: %s\n", err);
		return 1;
	}
	if (vm_start(vm)) {
		fprintf(stderr, "microvm: cannot start the vCPU thread\n");
		return 1;
	}
	while (!atomic_load(&vm->ready)) {
		if (atomic_load(&vm->exit_reason))
			return 1;
		usleep(1000);
	}
	return 0;
}

static int report_verify(long r, const char *when)
{
	if (r == 0) {
		printf("microvm: the guest verified its memory %s: ok\n", when);
		return 0;
	}
	if (r < 0)
		fprintf(stderr, "microvm: the vCPU ended before verifying %s\n", when);
	else
		fprintf(stderr, "microvm: the guest found a MISMATCH at page %ld %s\n", r - 1,
			when);
	return 1;
}

static int cmd_run(const struct opts *o)
{
	struct vm vm;
	int ret;

	if (boot(&vm, o->mem_mib, o->vcpus))
		return 1;
	usleep((useconds_t)(o->seconds * 1e6));
	ret = report_verify(vm_verify(&vm), "after running");
	vm_stop(&vm);
	munmap(vm.ram, vm.ram_len);
	vm_destroy(&vm);
	return ret;
}


/* ------------------------------------------------------------- source */

struct source {
	struct vm *vm;
	const char *sha_file;
};

static int src_dirty_start(void *ctx)
{
	struct source *s = ctx;

	return vm_dirty_log_start(s->vm);
}

static int src_dirty_collect(void *ctx, uint32_t region, uint64_t *bitmap)
{
	struct source *s = ctx;

	(void)region; /* one memory slot, one region */
	return vm_dirty_log_collect(s->vm, bitmap);
}

/* The switch-over: stop the vCPU, serialize it and the serial port. */
static int src_pause(void *ctx, void **blob, size_t *len)
{
	struct source *s = ctx;
	struct vm_state *st = malloc(sizeof(*st));
	int ret;

	if (!st)
		return -ENOMEM;
	vm_stop(s->vm);
	ret = vm_save(s->vm, st);
	if (ret) {
		free(st);
		return ret;
	}
	printf("microvm: paused the vCPUs (vCPU 0 at rip %#llx) for the switch-over\n",
	       (unsigned long long)st->cpu[0].regs.rip);
	if (s->sha_file) { /* a test's check; it costs downtime */
		char sha[65];
		FILE *f = fopen(s->sha_file, "we");

		sha256_hex(s->vm->ram, s->vm->ram_len, sha);
		if (!f || fprintf(f, "%s\n", sha) < 0 || fclose(f)) {
			free(st);
			return -EIO;
		}
		printf("microvm: guest RAM sha256 at the pause %.16s...\n", sha);
	}
	*blob = st;
	*len = sizeof(*st);
	return 0;
}

static int cmd_migrate(struct opts *o)
{
	struct vm vm;
	struct source s = { .vm = &vm, .sha_file = o->sha_file };
	struct fl_vmm_source_hooks hooks = {
		.dirty_start = src_dirty_start, .dirty_collect = src_dirty_collect,
		.pause = src_pause, .ctx = &s,
	};
	struct fl_migrate_source_opts mo = {
		.to = o->to, .tls = o->tls, .postcopy_only = o->postcopy_only, .verbose = 1,
		.progress = stdout,
	};
	struct fl_migrate_report rep;
	struct fl_vmm_ram ram;
	char err[512];
	int ret;

	if (boot(&vm, o->mem_mib, o->vcpus))
		return 1;
	ram = (struct fl_vmm_ram){ .host = vm.ram, .len = vm.ram_len, .name = "guest-ram" };
	if (o->uffd_tracking) /* faultline's write-protect tracker instead */
		hooks.dirty_start = NULL, hooks.dirty_collect = NULL;
	usleep((useconds_t)(o->seconds * 1e6));
	printf("microvm: migrating to %s (%s, %s dirty tracking)\n", o->to,
	       o->postcopy_only ? "post-copy only" : "pre-copy then post-copy",
	       o->uffd_tracking ? "userfaultfd write-protect" : "KVM dirty log");
	ret = fl_vmm_migrate(&ram, 1, &hooks, &mo, &rep, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "microvm: migration failed: %s\n", err);
		/* Before the pause the guest is still ours and still running.
		 * After it, the destination may already run it: resuming here
		 * too would make two guests of one, so it stays paused. */
		if (vm.running)
			report_verify(vm_verify(&vm), "after the failed migration");
		else
			fprintf(stderr, "microvm: the guest was paused for the switch-over and "
					"stays paused here (it may be running at the destination)\n");
	} else {
		fl_migrate_report_print(&rep, stdout);
		printf("microvm: the guest runs at the destination now\n");
	}
	vm_destroy(&vm);
	munmap(vm.ram, vm.ram_len);
	return ret ? 1 : 0;
}

/* -------------------------------------------------------- destination */

static int compare_sha(const struct vm *vm, const char *file)
{
	char want[80] = "", got[65];
	FILE *f = fopen(file, "re");

	if (!f || !fgets(want, sizeof(want), f)) {
		fprintf(stderr, "microvm: cannot read the source's sha256 from %s\n", file);
		if (f)
			fclose(f);
		return 1;
	}
	fclose(f);
	want[strcspn(want, "\n")] = 0;
	sha256_hex(vm->ram, vm->ram_len, got);
	if (strcmp(want, got)) {
		fprintf(stderr, "microvm: guest RAM DIFFERS from the source's at the switch-over:\n"
				"  here   %s\n  source %s\n", got, want);
		return 1;
	}
	printf("microvm: guest RAM equals the source's at the switch-over (sha256 %.16s...)\n",
	       got);
	return 0;
}

static int cmd_receive(struct opts *o)
{
	struct fl_vmm_dest_opts dopts = { .verbose = 0 };
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_vmm_ram ram = { .name = "guest-ram" };
	struct vm vm = { .kvm = -1, .vmfd = -1 };
	const struct vm_state *st;
	const struct fl_region *g;
	const void *blob;
	size_t blob_len, n;
	char err[1024];
	double t_resume, t_run, t_done;
	int lfd, port, bad = 1, ret;
	uint64_t faults, p50, p99;

	/* Find out now, not after the source paused the guest. */
	if (vm_kvm_usable(err, sizeof(err)) || fl_vmm_dest_check(err, sizeof(err))) {
		fprintf(stderr, "microvm: %s\n", err);
		return 1;
	}
	lfd = fl_conn_listen(o->listen, &port, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "microvm: %s\n", err);
		return 1;
	}
	printf("microvm: listening on %s (%s)\n", o->listen,
	       o->tls.plain ? "plain TCP" : "TLS 1.3 with client certificates");
	if (fl_receiver_accept(&r, lfd, &o->tls, 1, err, sizeof(err)) ||
	    fl_receiver_wait_resume(r, &blob, &blob_len, err, sizeof(err))) {
		fprintf(stderr, "microvm: %s\n", err);
		goto out;
	}
	t_resume = now_s();
	g = fl_receiver_regions(r, &n);
	st = blob;
	if (n != 1 || blob_len != sizeof(struct vm_state) || st->nvcpus < 1 ||
	    st->nvcpus > GUEST_MAX_VCPUS) {
		fprintf(stderr, "microvm: the source is not a microvm (%zu regions, %zu-byte state)\n",
			n, blob_len);
		goto out;
	}
	/* Guest RAM, untouched: every page arrives through the monitor. No
	 * huge pages: pages are installed 4 KiB at a time. */
	ram.len = g[0].len;
	ram.host = map_ram(ram.len, false);
	if (!ram.host)
		goto out;
	if (fl_vmm_dest_start(&d, r, &ram, 1, &dopts, err, sizeof(err))) {
		fprintf(stderr, "microvm: %s\n", err);
		goto out;
	}
	if (vm_create(&vm, ram.host, ram.len, (int)st->nvcpus, err, sizeof(err)) ||
	    vm_restore(&vm, st, err, sizeof(err))) {
		fprintf(stderr, "microvm: %s\n", err);
		goto out;
	}
	if (o->hold) {
		/* Test mode: hold the vCPU until every page is here, and check
		 * RAM is the source's at the pause, byte for byte. */
		printf("microvm: holding the vCPUs until every page has arrived\n");
		if ((ret = fl_vmm_dest_wait_complete(d, 0))) {
			fprintf(stderr, "microvm: the migration did not complete: %s\n",
				strerror(-ret));
			goto out;
		}
		if (o->sha_file && compare_sha(&vm, o->sha_file))
			goto out;
	}
	if (vm_start(&vm)) {
		fprintf(stderr, "microvm: cannot start the vCPU threads\n");
		goto out;
	}
	t_run = now_s();
	printf("microvm: %d vCPU%s resumed %.1f ms after the device state arrived, %llu pages "
	       "still to come\n", vm.nvcpus, vm.nvcpus > 1 ? "s" : "", (t_run - t_resume) * 1e3,
	       (unsigned long long)fl_vmm_dest_owed(d));
	/* The guest checks all its RAM, which pulls in whatever is missing. */
	if (report_verify(vm_verify(&vm), "after the migration"))
		goto out;
	if ((ret = fl_vmm_dest_wait_complete(d, 0))) {
		fprintf(stderr, "microvm: the migration did not complete: %s\n", strerror(-ret));
		goto out;
	}
	t_done = now_s();
	printf("microvm: migration complete (every page here, the source let go), seen "
	       "%.2f s after the resume\n", t_done - t_run);
	usleep((useconds_t)(o->seconds * 1e6)); /* and it keeps running */
	if (report_verify(vm_verify(&vm), "after running on here"))
		goto out;
	vm_stop(&vm);
	fl_vmm_dest_fault_stats(d, &faults, &p50, &p99);
	printf("microvm: %llu guest faults served, p50 %.1f us, p99 %.1f us\n",
	       (unsigned long long)faults, (double)p50 / 1e3, (double)p99 / 1e3);
	fl_vmm_dest_print_stats(d, stdout, false);
	bad = 0;
out:
	vm_destroy(&vm);
	/* Only now may the monitor go: the vCPU no longer touches RAM. */
	fl_vmm_dest_destroy(d);
	if (ram.host)
		munmap(ram.host, ram.len);
	fl_receiver_destroy(r);
	if (lfd >= 0)
		close(lfd);
	return bad;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: microvm run [--mem MiB] [--vcpus N] [--seconds N]\n"
		"       microvm migrate --to HOST:PORT [TLS options] [--mem MiB] [--vcpus N] [--seconds N]\n"
		"                       [--postcopy-only] [--sha FILE]\n"
		"       microvm receive --listen ADDR:PORT [TLS options] [--seconds N]\n"
		"                       [--hold-until-complete --sha FILE]\n"
		"A KVM guest that walks all its RAM keeping per-page counters and a checksum,\n"
		"migrated post-copy with faultline. Its serial output is printed as \"guest: \".\n\n"
		"  --mem MiB        guest RAM (default 1024)\n"
		"  --vcpus N        1 or 2 (default 1; each spins on a host core)\n"
		"  --seconds N      run this long (before migrating / after resuming; default 2)\n"
		"  --postcopy-only  no pre-copy rounds: every page is owed at the switch-over\n"
		"  --track uffd     dirty tracking by faultline (userfaultfd write-protect)\n"
		"                   instead of KVM's dirty log\n"
		"  --sha FILE       (tests) the source writes the sha256 of guest RAM at the\n"
		"                   pause; with --hold-until-complete the destination holds its\n"
		"                   vCPU until every page arrived and compares\n"
		TLS_USAGE);
}

int main(int argc, char **argv)
{
	char kvm_err[256];
	static const struct option lo[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "to", required_argument, NULL, 't' },
		{ "listen", required_argument, NULL, 'l' },
		{ "postcopy-only", no_argument, NULL, 'P' },
		{ "sha", required_argument, NULL, 'S' },
		{ "hold-until-complete", no_argument, NULL, 'H' },
		{ "track", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		TLS_LONG_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .mem_mib = 1024, .vcpus = 1, .seconds = 2 };
	const char *cmd;
	int c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (tls_option(c, optarg, &o.tls, !strcmp(cmd, "receive") ? "dest" : "source"))
			continue;
		switch (c) {
		case 't': o.to = optarg; break;
		case 'l': o.listen = optarg; break;
		case 'P': o.postcopy_only = true; break;
		case 'S': o.sha_file = optarg; break;
		case 'H': o.hold = true; break;
		case 'T': o.uffd_tracking = !strcmp(optarg, "uffd"); break;
		case 'm': o.mem_mib = strtoul(optarg, NULL, 0); break;
		case 'c': o.vcpus = atoi(optarg); break;
		case 's': o.seconds = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!o.mem_mib || o.mem_mib % 2 || o.vcpus < 1 || o.vcpus > GUEST_MAX_VCPUS) {
		fprintf(stderr, "microvm: --mem takes an even number of MiB, --vcpus 1 or 2\n");
		return 2;
	}
	if ((!strcmp(cmd, "run") || !strcmp(cmd, "migrate")) &&
	    vm_kvm_usable(kvm_err, sizeof(kvm_err))) {
		fprintf(stderr, "microvm: %s\n", kvm_err);
		return 1;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(&o);
	if (!strcmp(cmd, "migrate") && o.to)
		return tls_finish(&o.tls, "microvm migrate") ? cmd_migrate(&o) : 2;
	if (!strcmp(cmd, "receive") && o.listen)
		return tls_finish(&o.tls, "microvm receive") ? cmd_receive(&o) : 2;
	usage(stderr);
	return 2;
}
