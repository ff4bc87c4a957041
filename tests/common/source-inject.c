// SPDX-License-Identifier: MIT
/* The fault-injecting page source (source-inject.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "source-inject.h"

enum ireq_state { IN_INNER, HELD, NEVER };

struct ireq {
	struct fl_source_req inner; /* what the wrapped source works on */
	struct fl_source_req *outer;
	enum ireq_state state;
	uint64_t due_ns;
	int fail;
	bool pushed; /* its pages went out unasked already */
};

struct rule {
	uint32_t region;
	uint64_t offset;
	unsigned delay_ms;
	int fail;
	bool never;
};

struct inject_source {
	struct fl_source base;
	struct fl_source *in;
	struct inject_opts o;
	uint64_t rng;
	struct ireq **live;
	size_t nlive, cap;
	struct rule rules[64];
	size_t nrules;
	uint64_t cancelled;
	int timer_fd; /* comes due with the earliest held completion */
};

static struct inject_source *is(struct fl_source *s)
{
	return (struct inject_source *)s;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t rnd(struct inject_source *m)
{
	/* xorshift64*: small, seeded, repeatable. */
	m->rng ^= m->rng >> 12;
	m->rng ^= m->rng << 25;
	m->rng ^= m->rng >> 27;
	return m->rng * 2685821657736338717ull;
}

static bool covers(const struct fl_source_req *r, const struct rule *u)
{
	return r->region == u->region && u->offset >= r->offset && u->offset < r->offset + r->len;
}

static int inj_submit(struct fl_source *s, struct fl_source_req *r)
{
	struct inject_source *m = is(s);
	struct ireq *q;
	int ret;

	if (m->nlive == m->cap) {
		size_t c = m->cap ? m->cap * 2 : 64;
		struct ireq **l = realloc(m->live, c * sizeof(*l));

		if (!l)
			return -ENOMEM;
		m->live = l;
		m->cap = c;
	}
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->outer = r;
	q->inner = (struct fl_source_req){ .region = r->region, .offset = r->offset,
					   .len = r->len, .urgent = r->urgent, .cookie = q };
	ret = fl_source_submit(m->in, &q->inner);
	if (ret) {
		free(q);
		return ret;
	}
	r->result = 0;
	r->data = NULL;
	r->unasked = false;
	r->priv = (uint64_t)(uintptr_t)q;
	m->live[m->nlive++] = q;
	return 0;
}

static int inj_flush(struct fl_source *s)
{
	return fl_source_flush(is(s)->in);
}

/* A copy of part of a completion, pushed as if nobody had asked. */
static void push_unasked(struct fl_source_req *from, uint64_t len, fl_source_done_fn done,
			 void *arg)
{
	struct fl_source_req *u = calloc(1, sizeof(*u));
	void *copy = aligned_alloc(4096, len);

	if (!u || !copy) {
		free(u);
		free(copy);
		return;
	}
	memcpy(copy, from->data, len);
	*u = (struct fl_source_req){ .region = from->region, .offset = from->offset, .len = len,
				     .data = copy, .unasked = true };
	done(u, arg);
}

/* The wrapped source finished a request: decide when (and how) it ends. */
static void inner_done(struct fl_source_req *req, void *arg)
{
	struct inject_source *m = arg;
	struct ireq *q = req->cookie;
	uint64_t delay = m->o.max_delay_us ? rnd(m) % (m->o.max_delay_us + 1) * 1000 : 0;

	q->state = HELD;
	for (size_t i = 0; i < m->nrules; i++) {
		if (!covers(req, &m->rules[i]))
			continue;
		delay += (uint64_t)m->rules[i].delay_ms * 1000000;
		if (m->rules[i].fail)
			q->fail = m->rules[i].fail;
		if (m->rules[i].never)
			q->state = NEVER;
	}
	q->due_ns = now_ns() + delay;
}

/* The timer for the earliest held completion (or off): event_fd is an
 * epoll set of it and the wrapped source's event_fd. */
static void arm(struct inject_source *m)
{
	uint64_t first = 0;
	struct itimerspec t = { 0 };

	for (size_t i = 0; i < m->nlive; i++)
		if (m->live[i]->state == HELD && (!first || m->live[i]->due_ns < first))
			first = m->live[i]->due_ns;
	if (first) {
		t.it_value.tv_sec = (time_t)(first / 1000000000ull);
		t.it_value.tv_nsec = (long)(first % 1000000000ull);
	}
	timerfd_settime(m->timer_fd, TFD_TIMER_ABSTIME, &t, NULL);
}

static int inj_reap(struct fl_source *s, fl_source_done_fn done, void *arg)
{
	struct inject_source *m = is(s);
	uint64_t v, now;
	size_t n = 0;
	struct ireq *due[256];
	size_t ndue = 0;

	(void)!read(m->timer_fd, &v, sizeof(v));
	fl_source_reap(m->in, inner_done, m);
	now = now_ns();
	for (size_t i = 0; i < m->nlive && ndue < 256;) {
		struct ireq *q = m->live[i];

		if (q->state == HELD && q->due_ns <= now) {
			due[ndue++] = q;
			m->live[i] = m->live[--m->nlive];
		} else {
			i++;
		}
	}
	/* Out of order: shuffle what is due. */
	for (size_t i = ndue; i > 1; i--) {
		size_t j = rnd(m) % i;
		struct ireq *t = due[i - 1];

		due[i - 1] = due[j];
		due[j] = t;
	}
	for (size_t k = 0; k < ndue; k++) {
		struct ireq *q = due[k];
		struct fl_source_req *r = q->outer;

		if (!q->fail && q->inner.result == 0 && !q->pushed) {
			uint64_t half = r->len / 2 / 4096 * 4096;

			if (m->o.split_permille && rnd(m) % 1000 < m->o.split_permille && half)
				push_unasked(&q->inner, half, done, arg);
			if (m->o.unasked_permille && rnd(m) % 1000 < m->o.unasked_permille) {
				push_unasked(&q->inner, q->inner.len, done, arg);
				if (m->o.hold_after_push_us) {
					/* The push alone installs them, for a while. */
					q->pushed = true;
					q->due_ns = now + m->o.hold_after_push_us * 1000ull;
					m->live[m->nlive++] = q;
					continue;
				}
			}
		}
		r->result = q->fail ? q->fail : q->inner.result;
		r->data = r->result ? NULL : q->inner.data;
		r->movable = false; /* copies may have been pushed from it */
		done(r, arg);
		n++;
	}
	arm(m);
	return (int)n;
}

static struct ireq *find(struct inject_source *m, struct fl_source_req *r, size_t *at)
{
	for (size_t i = 0; i < m->nlive; i++)
		if (m->live[i]->outer == r) {
			*at = i;
			return m->live[i];
		}
	return NULL;
}

static int inj_cancel(struct fl_source *s, struct fl_source_req *r)
{
	struct inject_source *m = is(s);
	size_t at;
	struct ireq *q = find(m, r, &at);

	if (!q)
		return -ENOENT;
	if (q->state == IN_INNER) {
		if (fl_source_cancel(m->in, &q->inner))
			return -EBUSY; /* cannot happen: we reap the inner ourselves */
	} else {
		fl_source_release(m->in, &q->inner);
	}
	m->live[at] = m->live[--m->nlive];
	free(q);
	m->cancelled++;
	return 0;
}

static void inj_release(struct fl_source *s, struct fl_source_req *r)
{
	struct inject_source *m = is(s);
	struct ireq *q;

	if (r->unasked) {
		free((void *)r->data);
		free(r);
		return;
	}
	q = (struct ireq *)(uintptr_t)r->priv;
	if (!q)
		return;
	fl_source_release(m->in, &q->inner);
	r->priv = 0;
	free(q);
}

static int64_t inj_zero_run(struct fl_source *s, uint32_t region, uint64_t offset, uint64_t max)
{
	return fl_source_zero_run(is(s)->in, region, offset, max);
}

static void inj_destroy(struct fl_source *s)
{
	struct inject_source *m = is(s);

	for (size_t i = 0; i < m->nlive; i++) {
		if (m->live[i]->state == IN_INNER)
			fl_source_cancel(m->in, &m->live[i]->inner);
		else
			fl_source_release(m->in, &m->live[i]->inner);
		free(m->live[i]);
	}
	free(m->live);
	fl_source_destroy(m->in);
	close(s->event_fd);
	close(m->timer_fd);
	free(m);
}

static const struct fl_source_ops inject_ops = {
	.submit = inj_submit,
	.flush = inj_flush,
	.reap = inj_reap,
	.cancel = inj_cancel,
	.release = inj_release,
	.zero_run = inj_zero_run,
	.destroy = inj_destroy,
};

int inject_source_create(struct fl_source **out, struct fl_source *inner,
			 const struct inject_opts *o)
{
	struct inject_source *m = calloc(1, sizeof(*m));
	struct epoll_event ev = { .events = EPOLLIN };

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->in = inner;
	m->o = *o;
	m->rng = o->seed ? o->seed : 1;
	m->base.ops = &inject_ops;
	m->base.kind = "inject";
	m->base.regions = inner->regions;
	m->base.nregions = inner->nregions;
	m->base.max_req = inner->max_req;
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	m->base.event_fd = epoll_create1(EPOLL_CLOEXEC);
	if (m->timer_fd < 0 || m->base.event_fd < 0 ||
	    epoll_ctl(m->base.event_fd, EPOLL_CTL_ADD, m->timer_fd, &ev) ||
	    epoll_ctl(m->base.event_fd, EPOLL_CTL_ADD, inner->event_fd, &ev)) {
		int ret = -errno;

		if (m->timer_fd >= 0)
			close(m->timer_fd);
		if (m->base.event_fd >= 0)
			close(m->base.event_fd);
		free(m);
		return ret;
	}
	*out = &m->base;
	return 0;
}

static void add_rule(struct fl_source *s, struct rule r)
{
	struct inject_source *m = is(s);

	if (m->nrules < sizeof(m->rules) / sizeof(m->rules[0]))
		m->rules[m->nrules++] = r;
}

void inject_delay_page(struct fl_source *s, uint32_t region, uint64_t offset, unsigned ms)
{
	add_rule(s, (struct rule){ .region = region, .offset = offset, .delay_ms = ms });
}

void inject_fail_page(struct fl_source *s, uint32_t region, uint64_t offset, int err)
{
	add_rule(s, (struct rule){ .region = region, .offset = offset, .fail = -err });
}

void inject_never_page(struct fl_source *s, uint32_t region, uint64_t offset)
{
	add_rule(s, (struct rule){ .region = region, .offset = offset, .never = true });
}

uint64_t inject_cancelled(struct fl_source *s)
{
	return is(s)->cancelled;
}

unsigned inject_outstanding(struct fl_source *s)
{
	return (unsigned)is(s)->nlive;
}
