// SPDX-License-Identifier: MIT
/*
 * A process to snapshot: fills 8 MiB with the test pattern (some zero pages
 * written, some never touched), writes the address as 16 hex digits and a
 * newline to stdout, then waits to be killed. Built without sanitizers, so
 * the sanitizer build snapshots an ordinary process, not an ASan shadow.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pattern.h"

int main(void)
{
	unsigned char *m = mmap(NULL, CHILD_PAGES * 4096, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return 1;
	for (uint64_t p = 0; p < CHILD_PAGES; p++)
		if (!child_zero(p) || p % 2)
			snaptest_fill(m + p * 4096, 4096, p, 5, child_zero(p));
	printf("%016llx\n", (unsigned long long)(uintptr_t)m);
	fflush(stdout);
	for (;;)
		pause();
}
