// SPDX-License-Identifier: MIT
/*
 * How fast a `criu dump --lazy-pages` page server can hand out its pages,
 * apart from any restore: every lazy range of the image set fetched with
 * faultline's page-server client, WINDOW requests of CHUNK bytes in
 * flight, the bytes dropped. Prints MiB and seconds; ends the session with
 * CLOSE (the source tree then ends). For bench/criu.py.
 *   criu-drain IMGDIR ADDR PORT [CHUNK_KIB [WINDOW]]
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "transport/source-criu.h"

static size_t done_n;

static void done(struct fl_source_req *r, void *arg)
{
	struct fl_source *s = arg;

	if (r->result) {
		fprintf(stderr, "criu-drain: a read failed: %d\n", r->result);
		exit(1);
	}
	fl_source_release(s, r);
	done_n++;
}

int main(int argc, char **argv)
{
	struct fl_criu_source_opts o = { 0 };
	struct fl_source *s;
	struct fl_source_req *reqs;
	struct timespec t0, t1;
	uint64_t chunk, total = 0;
	size_t window, n = 0, cap = 1024, next = 0;
	char err[512];

	if (argc < 4) {
		fprintf(stderr, "usage: criu-drain IMGDIR ADDR PORT [CHUNK_KIB [WINDOW]]\n");
		return 2;
	}
	o.images_dir = argv[1];
	o.ps_addr = argv[2];
	o.ps_port = atoi(argv[3]);
	chunk = (argc > 4 ? strtoull(argv[4], NULL, 0) : 1024) << 10;
	window = argc > 5 ? strtoul(argv[5], NULL, 0) : 8;
	if (fl__criu_source_create(&s, &o, err, sizeof(err))) {
		fprintf(stderr, "criu-drain: %s\n", err);
		return 1;
	}
	fl__criu_source_start_background(s);
	reqs = malloc(cap * sizeof(*reqs));
	for (size_t i = 0; i < s->nregions; i++)
		for (uint64_t off = 0; off < s->regions[i].len; off += chunk) {
			if (n == cap)
				reqs = realloc(reqs, (cap *= 2) * sizeof(*reqs));
			reqs[n++] = (struct fl_source_req){
				.region = (uint32_t)i, .offset = off,
				.len = s->regions[i].len - off < chunk ? s->regions[i].len - off : chunk };
			total += reqs[n - 1].len;
		}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (done_n < n) {
		struct pollfd p = { .fd = s->event_fd, .events = POLLIN };

		while (next < n && next - done_n < window)
			fl_source_submit(s, &reqs[next++]);
		fl_source_flush(s);
		if (!fl_source_reap(s, done, s))
			poll(&p, 1, 1000);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (fl__criu_source_finish(s, err, sizeof(err)))
		fprintf(stderr, "criu-drain: %s\n", err);
	printf("%.1f %.6f\n", (double)total / (1 << 20),
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
	fl_source_destroy(s);
	free(reqs);
	return 0;
}
