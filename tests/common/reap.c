// SPDX-License-Identifier: MIT
#include <poll.h>
#include <string.h>

#include "reap.h"
#include "runner.h"

void collect(struct fl_source_req *req, void *arg)
{
	struct reaped *r = arg;

	assert_true(r->n < (int)(sizeof(r->order) / sizeof(r->order[0])));
	r->order[r->n++] = req;
	if (req->result == 0) {
		assert_non_null(req->data);
		if (req->cookie)
			memcpy(req->cookie, req->data, req->len);
	}
	fl_source_release(r->src, req);
}

void reap_all(struct fl_source *src, struct reaped *r, int want)
{
	r->src = src;
	while (r->n < want) {
		struct pollfd p = { .fd = src->event_fd, .events = POLLIN };
		int got = fl_source_reap(src, collect, r);

		assert_true(got >= 0);
		if (r->n < want && !got)
			assert_int_equal(poll(&p, 1, 10000), 1);
	}
}
