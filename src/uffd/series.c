// SPDX-License-Identifier: MIT
/*
 * Proof that the kernel carries faultline's patch series (src/kernel-patches).
 *
 * A feature bit alone proves nothing while a feature is not upstream: other
 * series in flight use (1 << 17) for other userfaultfd features, so a kernel
 * carrying one of them would offer "UFFD_FEATURE_EVENT_EXIT" and mean
 * something else. The series therefore states what it adds in the fdinfo of
 * every userfaultfd, next to the existing "API:" line:
 *
 *   exit_event:	17:20000	patch 1: event code : feature bit, hex
 *   wp_async_pinned:	1		patch 2: WP_ASYNC never write-protects a
 *					possibly DMA-pinned page
 *   fork_pid:	1			patch 3: UFFD_EVENT_FORK carries the pid
 *
 * No upstream kernel prints these lines, and "exit_event" names the bit it
 * uses: faultline enables a series feature only when its line is there and,
 * for the exit event, names the same code and bit as this build.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <faultline/uffd.h>

int fl_uffd_series_read(int fd, struct fl_uffd_series *s)
{
	char path[64], line[256];
	FILE *f;

	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned code;
		uint64_t bit;
		int v;

		if (sscanf(line, "exit_event: %x:%" SCNx64, &code, &bit) == 2) {
			s->exit_event = code == UFFD_EVENT_EXIT && bit == UFFD_FEATURE_EVENT_EXIT;
			snprintf(s->exit_proof, sizeof(s->exit_proof),
				 "fdinfo 'exit_event: %x:%" PRIx64 "'%s", code, bit,
				 s->exit_event ? "" : " (not this build's code and bit)");
		} else if (sscanf(line, "wp_async_pinned: %d", &v) == 1) {
			s->wp_async_pinned = v == 1;
		} else if (sscanf(line, "fork_pid: %d", &v) == 1) {
			s->fork_pid = v == 1;
		}
	}
	fclose(f);
	return 0;
}

int fl_uffd_series_probe(struct fl_uffd_series *s)
{
	int fd = fl_uffd_open(FL_UFFD_USER_MODE_ONLY), ret;

	memset(s, 0, sizeof(*s));
	if (fd < 0)
		fd = fl_uffd_open(0);
	if (fd < 0)
		return fd;
	ret = fl_uffd_series_read(fd, s);
	close(fd);
	return ret;
}
