// SPDX-License-Identifier: MIT
/*
 * The source of a migration: pre-copy rounds, the switch-over, then
 * post-copy service until the destination has every page.
 *
 * Threads after the switch-over: the main thread pushes owed pages in the
 * background on the control connection, answering the destination's
 * background requests first; a second thread answers urgent requests
 * (faults) on the urgent connection, so a fault's page never queues behind
 * a background frame; a third reads the control connection (background
 * requests, statistics, done). A page is sent once after the switch-over:
 * `pushed` is claimed under a lock by whichever thread sends it first.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <faultline/migrate.h>

#include "page-server-internal.h"
#include "util/thread-cpu.h"
#include "util/bitmap.h"
#include "util/clock.h"

#define CHUNK (1u << 20) /* bytes read and sent at a time */

static void progress_start(struct server *s, const char *what, uint64_t total)
{
	snprintf(s->pg.what, sizeof(s->pg.what), "%s", what);
	s->pg.total = total;
	s->pg.done = 0;
	s->pg.t0 = s->pg.last = fl__now_s();
}

/* At most one line a second: how far, how fast, how long still. */
static void progress_show(struct server *s)
{
	double t = fl__now_s(), rate;

	if (!s->o->verbose || t - s->pg.last < 1.0 || !s->pg.total)
		return;
	s->pg.last = t;
	rate = (double)s->pg.done / (t - s->pg.t0);
	fprintf(s->out, "migrate: %s: %.0f of %.0f MiB (%.0f%%) at %.0f MB/s, ETA %.1f s\n",
		s->pg.what, (double)s->pg.done / (1 << 20), (double)s->pg.total / (1 << 20),
		100.0 * (double)s->pg.done / (double)s->pg.total, rate / 1e6,
		(double)(s->pg.total - (s->pg.done < s->pg.total ? s->pg.done : s->pg.total)) /
			(rate + 1.0));
	fflush(s->out);
}

static void set_failed(struct server *s, const char *why)
{
	pthread_mutex_lock(&s->lock);
	if (!s->failed && !s->done) {
		s->failed = true;
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", why);
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* A connection broke: with a rejoin deadline the main thread stops the
 * others and rejoins the destination; without one the migration fails. */
static void set_broken(struct server *s, const char *why)
{
	pthread_mutex_lock(&s->lock);
	if (!s->failed && !s->done) {
		if (s->o->rejoin_s > 0 && !s->broken) {
			s->broken = true;
			snprintf(s->broke, sizeof(s->broke), "%s", why);
		} else if (s->o->rejoin_s <= 0) {
			s->failed = true;
			snprintf(s->errmsg, sizeof(s->errmsg), "%s", why);
		}
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static bool is_zero(const char *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

/*
 * Read pages [first, first+n) of a region and send them: runs of zero
 * pages as ZERO ranges, the rest as PAGES frames. Returns bytes of data
 * sent, or -errno.
 */
static int64_t send_run(struct server *s, struct fl_conn *c, char *buf, uint32_t region,
			size_t first, size_t n, unsigned flags, uint64_t *zero_bytes)
{
	struct srv_region *g = &s->rg[region];
	size_t psz = g->g->page_size;
	int64_t data = 0;

	while (n) {
		size_t k = n * psz > CHUNK ? CHUNK / psz : n, i = 0;
		uint64_t off = first * psz;
		int ret = s->mem->read(s->mem->ctx, region, off, buf, k * psz);

		if (ret) {
			/* Not the connection: rejoining would not help. */
			char why[96];

			snprintf(why, sizeof(why), "reading the program's memory failed: %s",
				 strerror(-ret));
			set_failed(s, why);
			return ret;
		}
		while (i < k) {
			size_t j = i;
			bool zero = is_zero(buf + i * psz, psz);

			while (j < k && is_zero(buf + j * psz, psz) == zero)
				j++;
			if (zero) {
				ret = fl_conn_send_zero(c, region, off + i * psz, (j - i) * psz, flags);
				*zero_bytes += (j - i) * psz;
			} else {
				ret = fl_conn_send_pages(c, region, off + i * psz, buf + i * psz,
							 (uint32_t)((j - i) * psz), flags);
				data += (int64_t)((j - i) * psz);
			}
			if (ret)
				return ret;
			i = j;
		}
		first += k;
		n -= k;
	}
	return data;
}

static size_t popcount(const uint64_t *bm, size_t pages)
{
	size_t n = 0;

	for (size_t w = 0; w < fl__bitmap_words(pages); w++)
		n += (size_t)__builtin_popcountll(bm[w]);
	return n;
}

/* What the program wrote since the last collect, added to rw.written;
 * *n: the pages written since the round began. */
static int collect_written(struct server *s, size_t *n)
{
	*n = 0;
	for (size_t i = 0; i < s->n; i++) {
		size_t words = fl__bitmap_words(s->rg[i].pages);
		int ret;

		memset(s->rw.scratch, 0, words * 8);
		if ((ret = s->mem->dirty_collect(s->mem->ctx, (uint32_t)i, s->rw.scratch)))
			return ret;
		for (size_t w = 0; w < words; w++)
			s->rw.written[i][w] |= s->rw.scratch[w];
		*n += popcount(s->rw.written[i], s->rg[i].pages);
	}
	return 0;
}

/*
 * A few times a second while a round is sent: sample what the program
 * has written since the round began and decide whether the round is worth
 * finishing. It is not when, by its end (at the rate it is sent), the
 * program will have written again more than 80 % as many pages as the
 * round sends: they are owed again, so most of the round is sent in vain,
 * and post-copy sends each page once (the same bar another_round() sets
 * between rounds). Nor when --postcopy-after has passed. Returns 1 to cut
 * the round at (region, at), the reason in the report; 0 to go on.
 */
static int round_watch(struct server *s, uint32_t region, size_t at)
{
	double now = fl__now_s(), t = now - s->rw.t0, rate, left_s, pred, mib;
	size_t written;
	int ret;

	if (!fl__forecast_due(&s->rw.fc, t))
		return 0;
	if ((ret = collect_written(s, &written))) {
		set_failed(s, "collecting the pages written during the round failed");
		return ret;
	}
	fl__forecast_add(&s->rw.fc, t, written);
	if (s->o->postcopy_after_s > 0 && now - s->rw.precopy_t0 >= s->o->postcopy_after_s) {
		snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason),
			 "pre-copy ran %.1f s (--postcopy-after %.1f), in round %u",
			 now - s->rw.precopy_t0, s->o->postcopy_after_s, s->round);
		goto cut;
	}
	if (t < 1.0 || !s->rw.sent || s->rw.sent >= s->rw.pages)
		return 0;
	rate = (double)s->rw.sent / t;
	left_s = (double)(s->rw.pages - s->rw.sent) / rate;
	pred = fl__forecast_dirtied(&s->rw.fc, t + left_s);
	if (left_s < 0.5 || pred <= 0.8 * (double)s->rw.pages)
		return 0;
	mib = (double)s->pg.total / (double)s->rw.pages / (1 << 20); /* a page's */
	snprintf(s->rep->switch_reason, sizeof(s->rep->switch_reason),
		 "round %u would not pay: in %.1f s it sent %.0f of %.0f MiB while the program "
		 "wrote %.0f MiB, and by its end (%.1f s on) about %.0f MiB would be written "
		 "again", s->round, t, (double)s->rw.sent * mib, (double)s->rw.pages * mib,
		 (double)written * mib, left_s, pred * mib);
cut:
	s->rw.cut = true;
	s->rw.cut_region = region;
	s->rw.cut_page = at;
	return 1;
}

/* Send every page whose bit is set (bitmap NULL: all pages). */
static int64_t send_bitmap(struct server *s, uint32_t region, const uint64_t *bm,
			   uint64_t *zero_bytes)
{
	struct srv_region *g = &s->rg[region];
	int64_t total = 0;

	for (size_t p = 0; p < g->pages;) {
		size_t q = p;
		int64_t ret;

		if (bm && !fl__bitmap_test(bm, p)) {
			p++;
			continue;
		}
		while (q < g->pages && (!bm || fl__bitmap_test(bm, q)) && q - p < CHUNK / g->g->page_size)
			q++;
		/* Marked before: a send that fails half-way may have sent some. */
		for (size_t k = p; k < q; k++)
			g->sent_round[k] = (uint16_t)s->round;
		ret = send_run(s, s->ctl, s->buf, region, p, q - p, 0, zero_bytes);
		if (ret < 0)
			return ret;
		total += ret;
		s->pg.done += (q - p) * g->g->page_size;
		s->rw.sent += q - p;
		progress_show(s);
		p = q;
		if (s->rw.written && (ret = round_watch(s, region, p)) != 0)
			return ret < 0 ? ret : total;
	}
	return total;
}

/*
 * Whether another pre-copy round is worth it. A round sends the dirty set
 * (D pages) at the link rate; meanwhile the program dirties pages at its
 * own rate, so the next round leaves about rate * (D * page / link) pages
 * dirty (at most every page there is). Another round pays only if that is
 * clearly smaller than D: when the program dirties memory about as fast
 * as the link moves it, every round resends almost everything and
 * post-copy (each page once) is the better deal. Fills why when not.
 */
static bool another_round(const struct server *s, unsigned round, size_t dirty, size_t prev,
			  double round_s, double link_bps, double elapsed_s, char *why, size_t len)
{
	unsigned max = s->o->max_rounds ? s->o->max_rounds : 8;
	double target = s->o->target_downtime_s > 0 ? s->o->target_downtime_s : 0.05;
	double send_s = (double)dirty * 4096.0 / (link_bps + 1.0);
	double rate = (double)dirty / (round_s + 1e-9); /* pages dirtied per second */
	double next = rate * send_s;
	size_t all = 0;

	for (size_t i = 0; i < s->n; i++)
		all += s->rg[i].pages;
	if (next > (double)all)
		next = (double)all;
	if (send_s <= target) {
		snprintf(why, len, "the dirty set (%.1f MiB) crosses the link in %.1f ms, within "
			 "the downtime target (%.0f ms)", (double)dirty * 4096 / (1 << 20),
			 send_s * 1e3, target * 1e3);
		return false;
	}
	if (round >= max) {
		snprintf(why, len, "round limit reached (%u, --max-rounds)", max);
		return false;
	}
	if (s->o->postcopy_after_s > 0 && elapsed_s >= s->o->postcopy_after_s) {
		snprintf(why, len, "pre-copy ran %.1f s (--postcopy-after %.1f)", elapsed_s,
			 s->o->postcopy_after_s);
		return false;
	}
	if (dirty >= prev) {
		snprintf(why, len, "the dirty set stopped shrinking (%zu pages after %zu)", dirty,
			 prev);
		return false;
	}
	if (next > 0.8 * (double)dirty) {
		snprintf(why, len, "another round would not converge: the program dirties "
			 "%.0f MB/s against a link of %.0f MB/s, so resending %.1f MiB would leave "
			 "about %.1f MiB dirty again", rate * 4096 / 1e6, link_bps / 1e6,
			 (double)dirty * 4096 / (1 << 20), next * 4096 / (1 << 20));
		return false;
	}
	return true;
}

static bool may_rejoin(struct server *s)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = s->o->rejoin_s > 0 && !s->failed && !s->done;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* One pre-copy round: its begin (unless the destination saw it already),
 * the pages of todo, its end. Bytes of data sent go to *bytes. */
static int send_round(struct server *s, unsigned round, uint64_t **todo, bool begin,
		      uint64_t *bytes)
{
	struct fl_ctl m = { .type = FL_CTL_ROUND };
	int ret;

	m.round.round = round;
	for (size_t i = 0; i < s->n; i++)
		m.round.dirty_pages += popcount(todo[i], s->rg[i].pages);
	if (begin && (ret = fl_conn_send_ctl(s->ctl, &m)))
		return ret;
	for (size_t i = 0; i < s->n && !s->rw.cut; i++) {
		int64_t sent = send_bitmap(s, (uint32_t)i, todo[i], &s->rep->zero_bytes);

		if (sent < 0)
			return (int)sent;
		*bytes += (uint64_t)sent;
	}
	m.round.end = true;
	return fl_conn_send_ctl(s->ctl, &m);
}

/*
 * What a destination that rejoins at round r = st->round (the last it saw
 * begin; 0: none) may lack or hold stale, ORed into out: every page last
 * sent in a later round (their frames came after a begin it never saw),
 * and those last sent in round r that it did not get since r began. Pages
 * last sent before r it has: their frames came before r's begin, on the
 * same connection.
 */
static void resend_set(const struct server *s, const struct standing *st, size_t i,
		       uint64_t *out)
{
	const struct srv_region *g = &s->rg[i];

	for (size_t p = 0; p < g->pages; p++)
		if (g->sent_round[p] > st->round ||
		    (g->sent_round[p] && g->sent_round[p] == st->round &&
		     !fl__bitmap_test(st->have[i], p)))
			fl__bitmap_set(out, p);
}

/*
 * A round cut short by a break: rejoin, then send what the destination
 * lacks: the round's pages it did not get since the round began (and the
 * round's end), or, when it never saw this round begin, the whole round
 * from its begin, with whatever of earlier rounds was lost in flight.
 */
static int round_rejoined(struct server *s, unsigned round, uint64_t **todo, uint64_t *bytes,
			  int ret)
{
	char err[320];

	while (ret && !s->failed && may_rejoin(s)) {
		struct standing st = { 0 };
		char why[128];
		bool same;

		snprintf(why, sizeof(why), "pre-copy round %u: %s", round, strerror(-ret));
		ret = fl__srv_rejoin(s, why, &st, err, sizeof(err));
		if (ret) {
			set_failed(s, err);
			return ret;
		}
		same = st.phase == FL_REJOIN_PRECOPY && st.round == round;
		for (size_t i = 0; i < s->n; i++) {
			for (size_t w = 0; same && w < fl__bitmap_words(s->rg[i].pages); w++)
				todo[i][w] &= ~st.have[i][w];
			resend_set(s, &st, i, todo[i]);
		}
		fl__standing_free(&st);
		/* Cut short before the break: todo is now what the destination
		 * lacks of the round, wherever it lies; all of it is owed. */
		if (s->rw.cut) {
			s->rw.cut_region = 0;
			s->rw.cut_page = 0;
		}
		ret = send_round(s, round, todo, !same, bytes);
	}
	return ret;
}

/* What a round cut short left unsent: its list from the cut on, added
 * to what was written during it. */
static void owe_rest(struct server *s, uint64_t **todo)
{
	for (uint32_t i = s->rw.cut_region; i < s->n; i++)
		for (size_t p = i == s->rw.cut_region ? s->rw.cut_page : 0; p < s->rg[i].pages; p++)
			if (fl__bitmap_test(todo[i], p))
				fl__bitmap_set(s->rw.written[i], p);
}

static int rounds(struct server *s, uint64_t **dirty, double t0)
{
	struct fl_migrate_report *rep = s->rep;
	size_t prev = SIZE_MAX, all = 0;
	int ret;

	for (size_t i = 0; i < s->n; i++)
		all += s->rg[i].pages;
	/* Round 1 sends every page; each later one what the previous left
	 * dirty. dirty[] is the round's list until it ends. */
	for (size_t i = 0; i < s->n; i++)
		fl__bitmap_set_range(dirty[i], 0, s->rg[i].pages);
	for (unsigned round = 1;; round++) {
		size_t pages = 0;
		double rt = fl__now_s(), bw, round_s;
		uint64_t bytes = 0, total = 0;
		char what[32];

		s->rw.pages = 0;
		for (size_t i = 0; i < s->n; i++) {
			size_t k = popcount(dirty[i], s->rg[i].pages);

			total += (uint64_t)k * s->rg[i].g->page_size;
			s->rw.pages += k;
			memset(s->rw.written[i], 0, fl__bitmap_words(s->rg[i].pages) * 8);
		}
		snprintf(what, sizeof(what), "round %u", round);
		progress_start(s, what, total);
		s->round = round < UINT16_MAX ? round : UINT16_MAX;
		s->rw.t0 = rt;
		s->rw.sent = 0;
		s->rw.cut = false;
		fl__forecast_start(&s->rw.fc, all, 0.25);
		ret = send_round(s, round, dirty, true, &bytes);
		if (ret)
			ret = round_rejoined(s, round, dirty, &bytes, ret);
		if (ret)
			return ret;
		rep->rounds = round;
		rep->bytes_precopy += bytes;
		round_s = fl__now_s() - rt;
		bw = (double)bytes / (round_s + 1e-9);
		/* What was written meanwhile (and, cut short, what it did not
		 * send) is the next round, or owed. */
		if ((ret = collect_written(s, &pages)))
			return ret;
		if (s->rw.cut) {
			owe_rest(s, dirty);
			pages = 0;
		}
		for (size_t i = 0; i < s->n; i++) {
			uint64_t *t = dirty[i];

			dirty[i] = s->rw.written[i];
			s->rw.written[i] = t;
			pages += s->rw.cut ? popcount(dirty[i], s->rg[i].pages) : 0;
		}
		if (s->o->verbose)
			fprintf(s->out, "migrate: round %u %s %.1f MiB at %.0f MB/s; %zu pages "
				"%s (%.1f s elapsed)\n", round, s->rw.cut ? "cut short after" : "sent",
				(double)bytes / (1 << 20), bw / 1e6, pages,
				s->rw.cut ? "owed" : "dirtied meanwhile", fl__now_s() - t0);
		if (s->rw.cut || !another_round(s, round, pages, prev, round_s, bw, fl__now_s() - t0,
						rep->switch_reason, sizeof(rep->switch_reason)))
			break;
		prev = pages;
	}
	if (s->o->verbose)
		fprintf(s->out, "migrate: switching to post-copy: %s\n", rep->switch_reason);
	return 0;
}

/* Pre-copy: rounds, each watched while it runs (round_watch). */
static int precopy(struct server *s, uint64_t **dirty, double t0)
{
	size_t words = 1;
	int ret = -ENOMEM;

	for (size_t i = 0; i < s->n; i++)
		if (fl__bitmap_words(s->rg[i].pages) > words)
			words = fl__bitmap_words(s->rg[i].pages);
	s->rw.precopy_t0 = t0;
	s->rw.written = calloc(s->n ? s->n : 1, sizeof(*s->rw.written));
	s->rw.scratch = calloc(words, 8);
	for (size_t i = 0; s->rw.written && i < s->n; i++)
		if (!(s->rw.written[i] = calloc(fl__bitmap_words(s->rg[i].pages) + 1, 8)))
			goto out;
	if (s->rw.written && s->rw.scratch && !(ret = s->mem->dirty_start(s->mem->ctx)))
		ret = rounds(s, dirty, t0);
out:
	for (size_t i = 0; s->rw.written && i < s->n; i++)
		free(s->rw.written[i]);
	free(s->rw.written);
	free(s->rw.scratch);
	s->rw.written = NULL;
	s->rw.scratch = NULL;
	return ret;
}

/* The switch-over's messages: what is owed, then RESUME with the device
 * state (kept until the end: a break may need them sent again). */
static int send_switch_over(struct server *s, const void *blob, size_t blob_len)
{
	struct fl_ctl m;
	int ret;

	for (size_t i = 0; i < s->n; i++) {
		struct srv_region *g = &s->rg[i];

		m = (struct fl_ctl){ .type = FL_CTL_OWED };
		m.owed.region = (uint32_t)i;
		m.owed.first_page = 0;
		m.owed.npages = g->pages;
		/* On little-endian hosts the words are the wire's bytes: bit i of
		 * byte i/8 is page i. */
		m.owed.bitmap = (uint8_t *)g->owed;
		if ((ret = fl_conn_send_ctl(s->ctl, &m)))
			return ret;
	}
	m = (struct fl_ctl){ .type = FL_CTL_RESUME };
	m.resume.blob = (void *)blob;
	m.resume.len = blob_len;
	return fl_conn_send_ctl(s->ctl, &m);
}

/* Rejoined after the switch-over: a destination that never got RESUME
 * gets the switch-over again; one that runs the program says what it has,
 * and the rest of what is owed is sent (again) from the start. */
static int apply_standing(struct server *s, struct standing *st, const void *blob,
			  size_t blob_len)
{
	if (st->phase == FL_REJOIN_PRECOPY) {
		/* Pre-copy pages lost in flight with the switch-over are owed. */
		for (size_t i = 0; i < s->n; i++)
			resend_set(s, st, i, s->rg[i].owed);
		return send_switch_over(s, blob, blob_len);
	}
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		size_t words = fl__bitmap_words(s->rg[i].pages);

		for (size_t w = 0; w < words; w++)
			s->rg[i].owed[w] &= ~st->have[i][w];
		memset(s->rg[i].pushed, 0, words * 8);
	}
	s->nbg = 0; /* the destination asks again for what it still wants */
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/*
 * Once the switch-over went out (whole or in part): rejoin, and bring the
 * destination up to date. A switch-over sent again that breaks too is
 * rejoined again. 0, or -errno with err saying why (the deadline passed,
 * or the destination refused us).
 */
static int rejoin_switched(struct server *s, const char *why, const void *blob,
			   size_t blob_len, char *err, size_t errlen)
{
	for (;;) {
		struct standing st = { 0 };
		int ret = fl__srv_rejoin(s, why, &st, err, errlen);

		if (ret)
			return ret;
		ret = apply_standing(s, &st, blob, blob_len);
		fl__standing_free(&st);
		if (!ret)
			return 0;
		why = "sending the switch-over again failed";
	}
}

/* Claim the owed, not yet pushed pages of [first, first+n) under the lock;
 * returns the first claimable run inside it. */
static bool claim(struct server *s, uint32_t region, size_t *first, size_t *n)
{
	struct srv_region *g = &s->rg[region];
	size_t p = *first, end = *first + *n, q;

	pthread_mutex_lock(&s->lock);
	while (p < end && (!fl__bitmap_test(g->owed, p) || fl__bitmap_test(g->pushed, p)))
		p++;
	q = p;
	while (q < end && fl__bitmap_test(g->owed, q) && !fl__bitmap_test(g->pushed, q)) {
		fl__bitmap_set(g->pushed, q);
		q++;
	}
	s->claimed += (q - p) * g->g->page_size;
	pthread_mutex_unlock(&s->lock);
	*first = p;
	*n = q - p;
	return q > p;
}

/* Under the lock: of [first, first+n), the first run of owed pages that
 * the background push already took. */
static bool pushed_run(struct server *s, uint32_t region, size_t *first, size_t *n)
{
	struct srv_region *g = &s->rg[region];
	size_t p = *first, end = *first + *n, q;

	while (p < end && !(fl__bitmap_test(g->owed, p) && fl__bitmap_test(g->pushed, p)))
		p++;
	q = p;
	while (q < end && fl__bitmap_test(g->owed, q) && fl__bitmap_test(g->pushed, q))
		q++;
	*first = p;
	*n = q - p;
	return q > p;
}

/* Answer a request: send its owed pages not sent yet, on connection c.
 * An urgent request also gets the owed pages the background push already
 * took: the destination asks only for pages it lacks, so those are still
 * in the socket queue behind megabytes of background frames. The source
 * is paused, so both copies hold the same bytes. */
static int serve(struct server *s, struct fl_conn *c, char *buf, const struct fl_ctl *m,
		 unsigned flags, uint64_t *bytes)
{
	struct srv_region *g;
	size_t first, end;

	if (m->request.region >= s->n)
		return -EPROTO;
	g = &s->rg[m->request.region];
	first = m->request.offset / g->g->page_size;
	end = (m->request.offset + m->request.len) / g->g->page_size;
	for (size_t p = first; (flags & FL_WIRE_URGENT) && p < end;) {
		size_t n = end - p;
		int64_t sent;
		bool found;

		pthread_mutex_lock(&s->lock);
		found = pushed_run(s, m->request.region, &p, &n);
		pthread_mutex_unlock(&s->lock);
		if (!found)
			break;
		sent = send_run(s, c, buf, m->request.region, p, n, flags, &s->rep->zero_bytes);
		if (sent < 0)
			return (int)sent;
		*bytes += (uint64_t)sent;
		pthread_mutex_lock(&s->lock);
		s->rep->pages_resent += n;
		pthread_mutex_unlock(&s->lock);
		p += n;
	}
	while (first < end) {
		size_t p = first, n = end - first;
		int64_t sent;

		if (!claim(s, m->request.region, &p, &n))
			break;
		sent = send_run(s, c, buf, m->request.region, p, n, flags, &s->rep->zero_bytes);
		if (sent < 0)
			return (int)sent;
		*bytes += (uint64_t)sent;
		first = p + n;
	}
	/* Pages asked for that we believe the destination holds: it asks
	 * only for what it lacks, so our bookkeeping slipped. A fault must
	 * not wait for ever on that; the program is paused, these bytes are
	 * its bytes. */
	for (size_t p = m->request.offset / g->g->page_size; p < end;) {
		size_t q = p;
		int64_t sent;

		while (q < end && !fl__bitmap_test(g->owed, q))
			q++;
		if (q == p) {
			p++;
			continue;
		}
		if (s->o->verbose && !s->unowed_said)
			fprintf(s->out, "migrate: the destination asked for pages %zu-%zu of region "
				"%u, which it was not owed; sent anyway\n", p, q - 1,
				m->request.region);
		s->unowed_said = true;
		sent = send_run(s, c, buf, m->request.region, p, q - p, flags, &s->rep->zero_bytes);
		if (sent < 0)
			return (int)sent;
		*bytes += (uint64_t)sent;
		p = q;
	}
	return 0;
}

static void *urgent_loop(void *arg)
{
	struct server *s = arg;
	char err[256];

	for (;;) {
		struct fl_wire_hdr h;
		struct fl_ctl m;
		uint64_t bytes = 0;
		int ret = fl_conn_recv(s->urg, &h, &m, NULL, NULL, err, sizeof(err));

		if (ret) {
			set_broken(s, ret == -ECONNRESET ? "the destination closed the urgent "
				   "connection" : err);
			return NULL;
		}
		if (h.kind != FL_WIRE_CONTROL)
			continue;
		if (m.type == FL_CTL_REQUEST) {
			ret = serve(s, s->urg, s->ubuf, &m, FL_WIRE_URGENT, &bytes);
			pthread_mutex_lock(&s->lock);
			if (m.request.region < s->n) { /* the push goes on from here */
				s->hint_set = true;
				s->hint_region = m.request.region;
				s->hint_page = (m.request.offset + m.request.len) /
					       s->rg[m.request.region].g->page_size;
			}
			s->rep->requests_served++;
			s->rep->bytes_postcopy += bytes;
			pthread_mutex_unlock(&s->lock);
			if (ret)
				set_broken(s, "answering an urgent request failed");
		}
		fl_ctl_free(&m);
	}
}

static void *control_loop(void *arg)
{
	struct server *s = arg;
	char err[256];

	/* The destination pings every second: silence means it is gone. */
	fl_conn_set_idle_timeout(s->ctl, FL_WIRE_SILENCE_S);
	for (;;) {
		struct fl_wire_hdr h;
		struct fl_ctl m;
		int ret = fl_conn_recv(s->ctl, &h, &m, NULL, NULL, err, sizeof(err));

		if (ret == -ETIMEDOUT) {
			snprintf(err, sizeof(err), "the destination went silent: nothing on the "
				 "control connection for %d s", FL_WIRE_SILENCE_S);
			set_broken(s, err);
			return NULL;
		}
		if (ret) {
			set_broken(s, ret == -ECONNRESET ? "the destination closed the connection" : err);
			return NULL;
		}
		if (h.kind != FL_WIRE_CONTROL)
			continue;
		pthread_mutex_lock(&s->lock);
		if (m.type == FL_CTL_REQUEST) {
			if (s->nbg == s->cap_bg) {
				size_t c = s->cap_bg ? 2 * s->cap_bg : 64;
				struct bg_req *b = realloc(s->bg, c * sizeof(*b));

				if (b) {
					s->bg = b;
					s->cap_bg = c;
				}
			}
			if (s->nbg < s->cap_bg)
				s->bg[s->nbg++] = (struct bg_req){ m.request.region, m.request.offset,
								   m.request.len };
		} else if (m.type == FL_CTL_STATS && m.stats.n >= 3) {
			s->rep->dest_faults = m.stats.values[0];
			s->rep->dest_p50_us = (double)m.stats.values[1] / 1000.0;
			s->rep->dest_p99_us = (double)m.stats.values[2] / 1000.0;
			s->rep->dest_nthreads = 0;
			for (size_t i = 3; i + 3 <= m.stats.n &&
			     s->rep->dest_nthreads < FL_MIGRATE_THREADS_MAX; i += 3)
				s->rep->dest_threads[s->rep->dest_nthreads++] =
					(struct fl_thread_stat){ (uint32_t)m.stats.values[i],
								 m.stats.values[i + 2],
								 m.stats.values[i + 1] };
		} else if (m.type == FL_CTL_DONE) {
			s->done = true;
		} else if (m.type == FL_CTL_ERROR) {
			snprintf(s->errmsg, sizeof(s->errmsg), "destination: %s", m.error.message);
			s->failed = true;
		}
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		fl_ctl_free(&m);
		if (s->done)
			return NULL;
	}
}

/* Add a thread's CPU seconds to the report under its name. */
static void note_cpu(struct server *s, const char *name, double cpu_s)
{
	pthread_mutex_lock(&s->lock);
	fl__thread_cpu_add(s->rep->cpu, &s->rep->ncpu, FL_MIGRATE_CPU_MAX, name, cpu_s);
	pthread_mutex_unlock(&s->lock);
}

/* The fault replies' thread (one per connection incarnation). */
static void *urgent_thread(void *arg)
{
	void *ret;

	fl__thread_name("fl-src-urgent");
	ret = urgent_loop(arg);
	note_cpu(arg, "urgent replies", fl__thread_cpu_s());
	return ret;
}

/* The control connection's reader (requests, pings, DONE). */
static void *control_thread(void *arg)
{
	void *ret;

	fl__thread_name("fl-src-control");
	ret = control_loop(arg);
	note_cpu(arg, "control", fl__thread_cpu_s());
	return ret;
}

/* Under the lock: take the newest background request, if any. */
static bool pop_bg(struct server *s, struct fl_ctl *m)
{
	if (!s->nbg)
		return false;
	s->nbg--;
	*m = (struct fl_ctl){ .type = FL_CTL_REQUEST };
	m->request.region = s->bg[s->nbg].region;
	m->request.offset = s->bg[s->nbg].offset;
	m->request.len = s->bg[s->nbg].len;
	return true;
}

/*
 * Post-copy: push what is owed, background requests first, from where the
 * destination last faulted on (a program goes on near where it faulted:
 * QEMU's post-copy jumps the same way), round the regions until a whole
 * lap finds nothing left to send.
 */
static int push_owed(struct server *s)
{
	uint64_t bytes = 0;
	size_t i = 0, p = 0, idle = 0, all = 0;

	for (size_t k = 0; k < s->n; k++)
		all += s->rg[k].pages;
	while (idle < all) {
		struct srv_region *g;
		struct fl_ctl m;
		size_t first, n, window;
		bool have_bg;
		int64_t sent;

		pthread_mutex_lock(&s->lock);
		have_bg = pop_bg(s, &m);
		if (s->failed || s->broken) {
			pthread_mutex_unlock(&s->lock);
			return -ECONNRESET;
		}
		if (s->hint_set) {
			i = s->hint_region;
			p = s->hint_page;
			s->hint_set = false;
			idle = 0;
		}
		s->pg.done = s->claimed; /* pushed, requested or faulted */
		pthread_mutex_unlock(&s->lock);
		progress_show(s);
		if (have_bg) {
			if (serve(s, s->ctl, s->buf, &m, 0, &bytes))
				return -ECONNRESET;
			continue;
		}
		if (p >= s->rg[i].pages) {
			i = (i + 1) % s->n;
			p = 0;
			continue;
		}
		g = &s->rg[i];
		first = p;
		n = g->pages - p;
		if (n > CHUNK / g->g->page_size)
			n = CHUNK / g->g->page_size;
		window = n;
		if (!claim(s, (uint32_t)i, &first, &n)) {
			p += window; /* nothing owed here, or already sent */
			idle += window;
			continue;
		}
		idle = 0;
		sent = send_run(s, s->ctl, s->buf, (uint32_t)i, first, n, 0, &s->rep->zero_bytes);
		if (sent < 0)
			return (int)sent;
		bytes += (uint64_t)sent;
		s->rep->pages_pushed += n;
		p = first + n;
	}
	pthread_mutex_lock(&s->lock);
	s->rep->bytes_postcopy += bytes;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Answer background requests until done, failed or broken. */
static void serve_until_end(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	while (!s->done && !s->failed && !s->broken) {
		/* Background requests can still come for pages an urgent
		 * reply is carrying; answer what arrives until done. */
		struct fl_ctl q;

		while (!s->failed && !s->broken && pop_bg(s, &q)) {
			uint64_t bytes = 0;

			pthread_mutex_unlock(&s->lock);
			if (serve(s, s->ctl, s->buf, &q, 0, &bytes))
				set_broken(s, "answering a background request failed");
			pthread_mutex_lock(&s->lock);
			s->rep->bytes_postcopy += bytes;
		}
		if (!s->done && !s->failed && !s->broken)
			pthread_cond_wait(&s->cond, &s->lock);
	}
	pthread_mutex_unlock(&s->lock);
}

/*
 * Post-copy: urgent and control threads, the owed pages pushed; after a
 * break, the threads stopped, the destination rejoined and the rest sent.
 */
static int postcopy(struct server *s, const void *blob, size_t blob_len, char *err,
		    size_t errlen)
{
	for (;;) {
		pthread_t ut, ct;
		bool ut_started = pthread_create(&ut, NULL, urgent_thread, s) == 0;
		bool ct_started = pthread_create(&ct, NULL, control_thread, s) == 0;
		char why[300];
		int ret;

		if (!ut_started || !ct_started)
			set_failed(s, "cannot start the post-copy threads");
		if (push_owed(s))
			set_broken(s, "sending the owed pages failed");
		serve_until_end(s);
		fl_conn_shutdown(s->ctl);
		fl_conn_shutdown(s->urg);
		if (ut_started)
			pthread_join(ut, NULL);
		if (ct_started)
			pthread_join(ct, NULL);
		pthread_mutex_lock(&s->lock);
		if (s->done || s->failed) {
			ret = s->done ? 0 : -ECONNRESET;
			if (ret)
				snprintf(err, errlen, "post-copy: %s", s->errmsg);
			pthread_mutex_unlock(&s->lock);
			return ret;
		}
		snprintf(why, sizeof(why), "post-copy: %s", s->broke);
		pthread_mutex_unlock(&s->lock);
		if ((ret = rejoin_switched(s, why, blob, blob_len, err, errlen)))
			return ret;
		pthread_mutex_lock(&s->lock);
		s->broken = false;
		s->broke[0] = 0;
		pthread_mutex_unlock(&s->lock);
	}
}

int fl_migrate_source(const struct fl_region *regions, size_t n,
		      const struct fl_migrate_memory *mem,
		      const struct fl_migrate_source_opts *opts,
		      struct fl_migrate_report *report, char *err, size_t errlen)
{
	struct server s = { .o = opts, .mem = mem, .n = n, .rep = report, .regions = regions };
	uint64_t **dirty = NULL;
	struct fl_ctl m = { .type = FL_CTL_REGIONS };
	double t0 = fl__now_s(), t_pause, t_resume, cpu0 = fl__thread_cpu_s();
	void *blob = NULL;
	size_t blob_len = 0;
	uint64_t owed = 0;
	int ret;

	memset(report, 0, sizeof(*report));
	s.out = opts->progress ? opts->progress : stderr;
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	note_cpu(&s, "caller", 0); /* first in the list */
	s.rg = calloc(n, sizeof(*s.rg));
	dirty = calloc(n, sizeof(*dirty));
	s.buf = aligned_alloc(4096, CHUNK);
	s.ubuf = aligned_alloc(4096, CHUNK);
	ret = (!s.rg || !dirty || !s.buf || !s.ubuf) ? -ENOMEM : 0;
	for (size_t i = 0; !ret && i < n; i++) {
		size_t words = fl__bitmap_words(regions[i].len / regions[i].page_size);

		s.rg[i].g = &regions[i];
		s.rg[i].pages = regions[i].len / regions[i].page_size;
		s.rg[i].owed = calloc(words, 8);
		s.rg[i].pushed = calloc(words, 8);
		s.rg[i].sent_round = calloc(s.rg[i].pages ? s.rg[i].pages : 1, sizeof(uint16_t));
		dirty[i] = calloc(words, 8);
		if (!s.rg[i].owed || !s.rg[i].pushed || !s.rg[i].sent_round || !dirty[i])
			ret = -ENOMEM;
	}
	if (ret) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (getrandom(s.session, sizeof(s.session), 0) != sizeof(s.session))
		memset(s.session, 0x5a, sizeof(s.session));
	/* Only a destination may pull the program's memory. */
	s.tls = opts->tls;
	if (!s.tls.peer_role)
		s.tls.peer_role = "dest";
	if ((ret = fl__srv_open(&s, false, NULL, err, errlen)))
		goto out;
	/* "Still here", from connection to the end: the destination gives
	 * us up after FL_WIRE_SILENCE_S without a frame. */
	fl__heartbeat_start(&s.hb, s.ctl);
	m.regions.regions = (struct fl_region *)regions;
	m.regions.n = n;
	if ((ret = fl_conn_send_ctl(s.ctl, &m))) {
		snprintf(err, errlen, "sending the region table: %s", strerror(-ret));
		goto out;
	}
	if (opts->verbose)
		fprintf(s.out, "migrate: connected to %s (%s), %zu regions%s\n", fl_conn_peer(s.ctl),
			fl_conn_is_tls(s.ctl) ? "TLS 1.3" : "plain TCP", n,
			opts->rejoin_s > 0 ? "; a break is rejoined" : "");

	/* Pre-copy, where the memory can be tracked. */
	if (mem->dirty_start && !opts->postcopy_only) {
		ret = precopy(&s, dirty, t0);
		if (ret) {
			snprintf(err, errlen, "pre-copy failed: %s", s.failed ? s.errmsg : strerror(-ret));
			goto out;
		}
	}
	report->precopy_s = fl__now_s() - t0;

	/* Switch-over: pause, the last dirty set is what is owed. */
	t_pause = fl__now_s();
	ret = mem->pause ? mem->pause(mem->ctx, &blob, &blob_len) : 0;
	if (ret) {
		snprintf(err, errlen, "pausing the program failed: %s", strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t words = fl__bitmap_words(s.rg[i].pages);

		if (report->rounds) {
			/* Owed: what the last round left dirty (not sent), and
			 * what was written between that and the pause. */
			memcpy(s.rg[i].owed, dirty[i], words * 8);
			memset(dirty[i], 0, words * 8);
			if ((ret = mem->dirty_collect(mem->ctx, (uint32_t)i, dirty[i])))
				goto out;
			for (size_t w = 0; w < words; w++)
				s.rg[i].owed[w] |= dirty[i][w];
		} else {
			fl__bitmap_set_range(s.rg[i].owed, 0, s.rg[i].pages);
		}
		report->pages_owed += popcount(s.rg[i].owed, s.rg[i].pages);
		owed += popcount(s.rg[i].owed, s.rg[i].pages) * (uint64_t)regions[i].page_size;
	}
	report->dest_resumed = true; /* from the first byte of it on */
	ret = send_switch_over(&s, blob, blob_len);
	if (ret && may_rejoin(&s)) {
		char why[128];

		snprintf(why, sizeof(why), "switch-over: %s", strerror(-ret));
		if ((ret = rejoin_switched(&s, why, blob, blob_len, err, errlen)))
			goto out; /* err says why */
	}
	if (ret) {
		snprintf(err, errlen, "switch-over failed: %s", strerror(-ret));
		goto out;
	}
	t_resume = fl__now_s();
	report->downtime_s = t_resume - t_pause;
	if (opts->verbose)
		fprintf(s.out, "migrate: switch-over: paused, %llu pages owed, destination resumed "
			"(%.1f ms)\n", (unsigned long long)report->pages_owed,
			report->downtime_s * 1e3);

	/* Post-copy. */
	progress_start(&s, "post-copy", owed);
	ret = postcopy(&s, blob, blob_len, err, errlen);
	report->postcopy_s = fl__now_s() - t_resume;
out:
	report->total_s = fl__now_s() - t0;
	fl__heartbeat_stop(&s.hb);
	note_cpu(&s, "caller", fl__thread_cpu_s() - cpu0);
	fl_conn_close(s.ctl);
	fl_conn_close(s.urg);
	for (size_t i = 0; s.rg && i < n; i++) {
		free(s.rg[i].owed);
		free(s.rg[i].pushed);
		free(s.rg[i].sent_round);
		if (dirty)
			free(dirty[i]);
	}
	free(blob);
	free(s.rg);
	free(dirty);
	free(s.buf);
	free(s.ubuf);
	free(s.bg);
	pthread_mutex_destroy(&s.lock);
	pthread_cond_destroy(&s.cond);
	return ret;
}
