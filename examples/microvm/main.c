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
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vm.h"

struct opts {
	size_t mem_mib;
	double seconds;
};

static inline double now_s(void)
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
static int boot(struct vm *vm, size_t mib)
{
	char err[256];
	size_t len = mib << 20;
	void *ram = map_ram(len, true);

	if (!ram)
		return 1;
	if (vm_create(vm, ram, len, err, sizeof(err)) ||
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

	if (boot(&vm, o->mem_mib))
		return 1;
	usleep((useconds_t)(o->seconds * 1e6));
	ret = report_verify(vm_verify(&vm), "after running");
	vm_stop(&vm);
	munmap(vm.ram, vm.ram_len);
	vm_destroy(&vm);
	return ret;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: microvm run [--mem MiB] [--seconds N]\n"
		"       microvm migrate --to HOST:PORT [TLS options] [--mem MiB] [--seconds N]\n"
		"                       [--postcopy-only] [--sha FILE]\n"
		"       microvm receive --listen ADDR:PORT [TLS options] [--seconds N]\n"
		"                       [--hold-until-complete --sha FILE]\n"
		"A KVM guest that walks all its RAM keeping per-page counters and a checksum,\n"
		"migrated post-copy with faultline. Its serial output is printed as \"guest: \".\n\n"
		"  --mem MiB        guest RAM (default 1024)\n"
		"  --seconds N      run this long (before migrating / after resuming; default 2)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .mem_mib = 1024, .seconds = 2 };
	const char *cmd;
	int c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o.mem_mib = strtoul(optarg, NULL, 0); break;
		case 's': o.seconds = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(cmd, "run"))
		return cmd_run(&o);
	usage(stderr);
	return 2;
}
