// SPDX-License-Identifier: MIT
/*
 * lazy-workload-source: the program whose memory is snapshotted. Fills N MiB
 * with known data, writes "address length sha256 pid" to the state file,
 * then waits for `faultline snapshot --pid`. Built without sanitizers: its
 * address space is what gets captured.
 */
#include <getopt.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "workload-data.h"

static int do_run(size_t mib, const char *state)
{
	size_t len = mib << 20;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char sha[65], tmp[4096];
	FILE *f;

	if (mem == MAP_FAILED) {
		perror("lazy-workload: mmap");
		return 1;
	}
	for (size_t i = 0; i < len / PG; i++)
		page_data(i, (uint64_t *)(mem + i * PG));
	sha256_hex(mem, len, sha);
	snprintf(tmp, sizeof(tmp), "%s.tmp", state);
	f = fopen(tmp, "we");
	if (!f || fprintf(f, "%p %zu %s %d\n", (void *)mem, len, sha, getpid()) < 0 ||
	    fclose(f) || rename(tmp, state)) {
		perror("lazy-workload: writing the state file");
		return 1;
	}
	printf("workload: pid %d, %zu MiB at %p, sha256 %.16s...; waiting to be snapshotted\n",
	       getpid(), mib, (void *)mem, sha);
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' }, { "state", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state = NULL;
	size_t mib = 256;
	int c;

	while ((c = getopt_long(argc, argv, "m:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mib = strtoul(optarg, NULL, 0); break;
		case 't': state = optarg; break;
		default: return 2;
		}
	}
	if (!state || mib < 8) {
		fprintf(stderr, "usage: lazy-workload-source --mib N (>= 8) --state FILE\n");
		return 2;
	}
	return do_run(mib, state);
}
