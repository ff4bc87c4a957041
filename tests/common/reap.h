/* SPDX-License-Identifier: MIT */
/* Collecting a page source's completions in the order they come. */
#ifndef FL_TEST_REAP_H
#define FL_TEST_REAP_H

#include <faultline/source.h>

struct reaped {
	struct fl_source_req *order[4096];
	int n;
	struct fl_source *src; /* set by reap_all */
};

/* A fl_source_done_fn appending to the struct reaped at arg; a request
 * that succeeded and has a cookie gets its bytes copied to the cookie,
 * then is released to the source. */
void collect(struct fl_source_req *req, void *arg);
/* Reap until `want` requests are done, waiting on event_fd between. */
void reap_all(struct fl_source *src, struct reaped *r, int want);

#endif
