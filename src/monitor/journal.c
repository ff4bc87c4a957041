// SPDX-License-Identifier: MIT
/*
 * The journal: a memfd shared with a keeper process (faultline monitor's)
 * that outlives this monitor, holding what a new monitor needs to go on
 * exactly where this one stopped. The keeper also shares our table of
 * file descriptors (clone(CLONE_FILES)), so every userfaultfd we hold,
 * a fork child's included, stays open when we die; the journal says which
 * process each one is and what it did to its memory.
 *
 * Kept: each process adopted (its fd, pid and regions), every
 * non-cooperative event in the order read, each process dropped. Not
 * kept: which pages are installed. A new monitor starts every page that
 * no event removed as owed; installing one that is there already answers
 * EEXIST, and is counted present. What must never be lost are the
 * REMOVEs (a dropped page must stay zero) and the FORKs (a child's fd is
 * only ours): both are in the journal before the read() that took them
 * returns, because the read goes into the journal's inbox, in the shared
 * mapping. Faults in the inbox are not kept: the new monitor wakes every
 * waiting thread, which faults again.
 *
 * Layout: a header page (with the inbox), then two halves. Records are
 * appended to the active half and published by advancing its length, so
 * a record cut short by our death was never there. When the active half
 * is full, a checkpoint of the live state (processes, regions, removed
 * runs) is written into the other half, which then becomes the active
 * one in one store. Replay reads the active half from the start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "monitor-internal.h"

#define J_MAGIC 0x31766e726a6c6600ULL /* "\0fljrnv1" */
#define J_HDR 4096
#define J_RESERVE (2 * JOURNAL_INBOX * sizeof(struct jrec))

enum { J_ADOPT = 1, J_MSG, J_ZERO, J_GONE };

struct jhdr {
	uint64_t magic;
	uint64_t half;		     /* bytes of each half */
	_Atomic uint32_t active;     /* the half replayed */
	_Atomic int32_t inbox_fd;    /* the fd read into the inbox, -1 none */
	_Atomic uint64_t len[2];     /* bytes of records in each half */
	_Atomic uint64_t inbox_base; /* len[active] when the inbox was armed */
	_Atomic uint32_t broken;     /* a record was lost: no resume */
	uint32_t pad;
	struct uffd_msg inbox[JOURNAL_INBOX];
};

struct jrec {
	uint32_t type, size; /* size: bytes, this header included, 8-aligned */
	int32_t fd, pid;
	union {
		struct {
			uint64_t features;
			uint32_t flags, n; /* n struct fl_handoff_region follow */
		} adopt;
		struct uffd_msg msg;
		struct {
			uint64_t start, end;
		} zero;
	};
};

struct journal {
	int fd;
	struct jhdr *h;
	char *half[2];
	size_t inbox_logged; /* inbox messages already looked at */
	bool inbox_armed;
};

_Static_assert(sizeof(struct jhdr) <= J_HDR, "journal header fits its page");

/* A journal's size: the header page and two halves; sparse until used. */
int fl_monitor_journal_create(size_t half_bytes, char *err, size_t errlen)
{
	size_t half = half_bytes ? (half_bytes + 4095) & ~(size_t)4095 : 32u << 20;
	int fd = memfd_create("faultline-journal", 0);
	struct jhdr *h;

	if (half < (1u << 20))
		half = 1u << 20;
	if (fd < 0 || ftruncate(fd, J_HDR + 2 * (off_t)half) < 0) {
		snprintf(err, errlen, "cannot create the monitor's journal (a memfd): %s",
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	h = mmap(NULL, J_HDR, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		snprintf(err, errlen, "cannot map the monitor's journal: %s", strerror(errno));
		close(fd);
		return -1;
	}
	h->half = half;
	h->inbox_fd = -1;
	atomic_store_explicit((_Atomic uint64_t *)&h->magic, J_MAGIC, memory_order_release);
	munmap(h, J_HDR);
	return fd;
}

static int map(int fd, bool writable, struct journal *j, char *err, size_t errlen)
{
	struct stat st;
	struct jhdr *h;
	void *all;

	j->fd = fd;
	if (fstat(fd, &st) < 0 || st.st_size < J_HDR) {
		snprintf(err, errlen, "fd %d is not a monitor journal", fd);
		return -EINVAL;
	}
	all = mmap(NULL, (size_t)st.st_size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
		   fd, 0);
	if (all == MAP_FAILED) {
		snprintf(err, errlen, "cannot map the monitor's journal: %s", strerror(errno));
		return -errno;
	}
	h = all;
	if (h->magic != J_MAGIC || (uint64_t)st.st_size != J_HDR + 2 * h->half) {
		snprintf(err, errlen, "fd %d is not a monitor journal (bad magic or size)", fd);
		munmap(all, (size_t)st.st_size);
		return -EINVAL;
	}
	j->h = h;
	j->half[0] = (char *)all + J_HDR;
	j->half[1] = j->half[0] + h->half;
	return 0;
}

static void unmap(struct journal *j)
{
	if (j->h)
		munmap(j->h, J_HDR + 2 * j->h->half);
	j->h = NULL;
}

int fl__journal_attach(struct fl_monitor *m, int fd, char *err, size_t errlen)
{
	struct journal *j = calloc(1, sizeof(*j));
	int ret;

	if (!j)
		return -ENOMEM;
	ret = map(fd, true, j, err, errlen);
	if (ret) {
		free(j);
		return ret;
	}
	m->journal = j;
	return 0;
}

void fl__journal_detach(struct fl_monitor *m)
{
	if (!m->journal)
		return;
	unmap(m->journal);
	free(m->journal);
	m->journal = NULL;
}

/* ----------------------------------------------------------- appending */

static size_t rec_size(size_t payload)
{
	return (offsetof(struct jrec, adopt) + payload + 7) & ~(size_t)7;
}

/* Append one record to half `which` (not published until its length is). */
static bool put(struct journal *j, unsigned which, const struct jrec *r, const void *tail,
		size_t tail_len, size_t limit)
{
	uint64_t len = atomic_load_explicit(&j->h->len[which], memory_order_relaxed);
	char *at = j->half[which] + len;

	if (len + r->size > limit)
		return false;
	memcpy(at, r, r->size - tail_len);
	if (tail_len)
		memcpy(at + r->size - tail_len, tail, tail_len);
	atomic_store_explicit(&j->h->len[which], len + r->size, memory_order_release);
	return true;
}

static void adopt_rec(struct jrec *r, const struct mproc *p, size_t n)
{
	memset(r, 0, sizeof(*r));
	r->type = J_ADOPT;
	r->fd = p->uffd;
	r->pid = p->pid;
	r->adopt.features = p->features;
	r->adopt.flags = p->hflags;
	r->adopt.n = (uint32_t)n;
	r->size = (uint32_t)rec_size(sizeof(r->adopt) + n * sizeof(struct fl_handoff_region));
}

static struct fl_handoff_region *regions_of(const struct mproc *p)
{
	struct fl_handoff_region *hr = calloc(p->nregions ? p->nregions : 1, sizeof(*hr));

	for (size_t i = 0; hr && i < p->nregions; i++)
		hr[i] = (struct fl_handoff_region){ .addr = p->regions[i].start,
						    .len = p->regions[i].len,
						    .page_size = p->regions[i].page,
						    .source_region = p->regions[i].src_region,
						    .source_offset = p->regions[i].src_offset };
	return hr;
}

static bool put_proc(struct journal *j, unsigned which, const struct mproc *p, size_t limit)
{
	struct fl_handoff_region *hr = regions_of(p);
	struct jrec r;
	bool ok;

	if (!hr)
		return false;
	adopt_rec(&r, p, p->nregions);
	ok = put(j, which, &r, hr, p->nregions * sizeof(*hr), limit);
	free(hr);
	return ok;
}

/* The live state as a fresh log in the other half, then that half is the
 * journal. The inbox is empty whenever this runs. */
static bool checkpoint(struct fl_monitor *m)
{
	struct journal *j = m->journal;
	unsigned old = atomic_load(&j->h->active), nw = !old;
	size_t limit = j->h->half - J_RESERVE;

	atomic_store(&j->h->len[nw], 0);
	for (struct mproc *p = m->procs; p; p = p->next) {
		if (p->dead)
			continue;
		if (!put_proc(j, nw, p, limit))
			return false;
		for (size_t i = 0; i < p->nregions; i++) {
			const struct mregion *g = &p->regions[i];

			for (size_t pg = fl__ps_find(&g->ps, 0, PS_ZERO); pg < g->ps.pages;) {
				size_t run = fl__ps_run(&g->ps, pg, PS_ZERO, g->ps.pages - pg);
				struct jrec r = { .type = J_ZERO, .size = (uint32_t)rec_size(16),
						  .fd = p->uffd, .pid = p->pid };

				r.zero.start = g->start + pg * g->page;
				r.zero.end = r.zero.start + run * g->page;
				if (!put(j, nw, &r, NULL, 0, limit))
					return false;
				pg = fl__ps_find(&g->ps, pg + run, PS_ZERO);
			}
		}
	}
	atomic_store_explicit(&j->h->active, nw, memory_order_release);
	atomic_store(&j->h->len[old], 0);
	fallocate(j->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  J_HDR + (off_t)old * (off_t)j->h->half, (off_t)j->h->half);
	fl__mon_log(m, 2, "journal: checkpoint written, %llu bytes",
		    (unsigned long long)atomic_load(&j->h->len[nw]));
	return true;
}

static void broken(struct fl_monitor *m, const char *what)
{
	if (atomic_exchange(&m->journal->h->broken, 1))
		return;
	fl__mon_log(m, 0, "journal full (%s): a monitor started after this one could not "
		    "resume; serving goes on", what);
}

/* Append to the active half; a checkpoint first if it is full and the
 * inbox is not in the middle of a batch. */
static void append(struct fl_monitor *m, const struct jrec *r, const void *tail, size_t tlen)
{
	struct journal *j = m->journal;
	size_t limit = j->h->half - (j->inbox_armed ? 0 : J_RESERVE);

	if (m->replaying || atomic_load(&j->h->broken))
		return;
	if (put(j, atomic_load(&j->h->active), r, tail, tlen, limit))
		return;
	if (j->inbox_armed || !checkpoint(m) ||
	    !put(j, atomic_load(&j->h->active), r, tail, tlen, limit))
		broken(m, "no room for a record");
}

void fl__journal_adopted(struct mproc *p)
{
	struct fl_monitor *m = p->mon;
	struct fl_handoff_region *hr;
	struct jrec r;

	if (!m->journal || m->replaying)
		return;
	hr = regions_of(p);
	if (!hr) {
		broken(m, "out of memory");
		return;
	}
	adopt_rec(&r, p, p->nregions);
	append(m, &r, hr, p->nregions * sizeof(*hr));
	free(hr);
}

void fl__journal_gone(struct mproc *p)
{
	struct jrec r = { .type = J_GONE, .size = (uint32_t)rec_size(0), .fd = p->uffd,
			  .pid = p->pid };

	if (p->mon->journal && p->uffd >= 0)
		append(p->mon, &r, NULL, 0);
}

struct uffd_msg *fl__journal_inbox(struct mproc *p)
{
	struct fl_monitor *m = p->mon;
	struct journal *j = m->journal;
	unsigned a;

	if (!j || atomic_load(&j->h->broken))
		return NULL;
	a = atomic_load(&j->h->active);
	/* room for the whole batch and what it may drop, or a checkpoint now */
	if (atomic_load(&j->h->len[a]) + J_RESERVE > j->h->half - J_RESERVE && !checkpoint(m)) {
		broken(m, "the checkpoint does not fit");
		return NULL;
	}
	a = atomic_load(&j->h->active);
	atomic_store(&j->h->inbox_base, atomic_load(&j->h->len[a]));
	atomic_store_explicit(&j->h->inbox_fd, p->uffd, memory_order_release);
	j->inbox_armed = true;
	j->inbox_logged = 0;
	return j->h->inbox;
}

static struct jrec msg_rec(int fd, const struct uffd_msg *msg)
{
	struct jrec r = { .type = J_MSG, .size = (uint32_t)rec_size(sizeof(*msg)), .fd = fd };

	r.msg = *msg;
	return r;
}

void fl__journal_inbox_read(struct fl_monitor *m, size_t n)
{
	struct journal *j = m->journal;
	int fd = atomic_load(&j->h->inbox_fd);

	for (size_t i = j->inbox_logged; i < n; i++)
		if (j->h->inbox[i].event != UFFD_EVENT_PAGEFAULT) {
			struct jrec r = msg_rec(fd, &j->h->inbox[i]);

			append(m, &r, NULL, 0);
		}
	j->inbox_logged = n;
}

void fl__journal_inbox_done(struct fl_monitor *m)
{
	struct journal *j = m->journal;

	atomic_store_explicit(&j->h->inbox_fd, -1, memory_order_release);
	memset(j->h->inbox, 0, sizeof(j->h->inbox));
	j->inbox_armed = false;
}

/* ------------------------------------------------------------- reading */

/* Visit each record of the active half. */
static int walk(const struct journal *j, int (*fn)(void *arg, const struct jrec *r),
		void *arg, size_t *count)
{
	unsigned a = atomic_load(&j->h->active);
	uint64_t len = atomic_load_explicit(&j->h->len[a], memory_order_acquire), off = 0;

	while (off < len) {
		const struct jrec *r = (const struct jrec *)(j->half[a] + off);
		int ret;

		if (r->size < rec_size(0) || r->size % 8 || r->size > len - off)
			return -EBADMSG;
		ret = fn(arg, r);
		if (ret)
			return ret;
		off += r->size;
		if (count)
			(*count)++;
	}
	return 0;
}

/* The inbox of a monitor that died in the middle of a batch: the messages
 * its read() took (the inbox was zeroed before it) whose events are not
 * logged yet. */
static size_t inbox_pending(const struct journal *j, size_t *skip)
{
	unsigned a = atomic_load(&j->h->active);
	uint64_t off = atomic_load(&j->h->inbox_base), len = atomic_load(&j->h->len[a]);
	size_t n = 0;

	*skip = 0;
	if (atomic_load(&j->h->inbox_fd) < 0)
		return 0;
	while (n < JOURNAL_INBOX && j->h->inbox[n].event)
		n++;
	while (off < len) { /* events of this batch logged before it died */
		const struct jrec *r = (const struct jrec *)(j->half[a] + off);

		if (r->size < rec_size(0) || r->size > len - off)
			break;
		*skip += r->type == J_MSG;
		off += r->size;
	}
	return n;
}

static struct mproc *find(struct fl_monitor *m, int fd)
{
	for (struct mproc *p = m->procs; p; p = p->next)
		if (!p->dead && p->uffd == fd)
			return p;
	return NULL;
}

static int replay_one(void *arg, const struct jrec *r)
{
	struct fl_monitor *m = arg;
	struct mproc *p = r->type == J_ADOPT ? NULL : find(m, r->fd);
	struct fl_uffd_event ev;
	char err[256];

	switch (r->type) {
	case J_ADOPT:
		if (r->adopt.n > FL_HANDOFF_MAX_REGIONS ||
		    r->size < rec_size(sizeof(r->adopt) +
				       r->adopt.n * sizeof(struct fl_handoff_region)))
			return -EBADMSG;
		if (find(m, r->fd)) /* a checkpoint's, or a stale one: the last wins */
			fl__proc_kill(find(m, r->fd), "replaced");
		if (fl__mon_adopt(m, r->fd, r->pid, r->adopt.features, r->adopt.flags,
				  (const struct fl_handoff_region *)(&r->adopt + 1), r->adopt.n,
				  err, sizeof(err)))
			fl__mon_log(m, 0, "journal: fd %d (pid %d) not served again: %s", r->fd,
				    r->pid, err);
		break;
	case J_MSG:
		if (!p)
			break;
		fl_uffd_decode(&r->msg, &ev);
		if (ev.kind != FL_EVENT_PAGEFAULT)
			fl__events_apply(p, &ev);
		break;
	case J_ZERO:
		if (p)
			fl__proc_remove(p, r->zero.start, r->zero.end);
		break;
	case J_GONE:
		if (p)
			fl__proc_kill(p, "gone before the restart");
		break;
	default:
		return -EBADMSG;
	}
	return 0;
}

int fl__journal_replay(struct fl_monitor *m, size_t *nrecords, char *err, size_t errlen)
{
	struct journal *j = m->journal;
	size_t skip, n = inbox_pending(j, &skip);
	int fd = atomic_load(&j->h->inbox_fd), ret;

	if (atomic_load(&j->h->broken)) {
		snprintf(err, errlen, "the journal lost a record when it was full: the state "
			 "of the processes served cannot be rebuilt");
		return -ENOSPC;
	}
	/* Finish the dead monitor's batch: log the events it had not. */
	j->inbox_armed = true;
	for (size_t i = 0; i < n; i++)
		if (j->h->inbox[i].event != UFFD_EVENT_PAGEFAULT && !(skip && skip--)) {
			struct jrec r = msg_rec(fd, &j->h->inbox[i]);

			append(m, &r, NULL, 0);
		}
	fl__journal_inbox_done(m);
	m->replaying = true;
	*nrecords = 0;
	ret = walk(j, replay_one, m, nrecords);
	fl__procs_reap(m);
	m->replaying = false;
	if (ret) {
		snprintf(err, errlen, "the journal is damaged: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* ------------------------------------------------ for the keeper */

struct listing {
	struct fl_journal_proc *v;
	size_t n, cap;
};

static void list_drop(struct listing *l, int fd)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].uffd == fd)
			l->v[i--] = l->v[--l->n];
}

static int list_add(struct listing *l, int fd, pid_t pid)
{
	list_drop(l, fd);
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct fl_journal_proc *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct fl_journal_proc){ fd, pid };
	return 0;
}

static int list_msg(struct listing *l, int fd, const struct uffd_msg *msg)
{
	struct fl_uffd_event ev;

	fl_uffd_decode(msg, &ev);
	if (ev.kind == FL_EVENT_FORK)
		return list_add(l, ev.fork.ufd, 0);
	if (ev.kind == FL_EVENT_EXIT)
		list_drop(l, fd);
	return 0;
}

static int list_one(void *arg, const struct jrec *r)
{
	struct listing *l = arg;

	if (r->type == J_ADOPT)
		return list_add(l, r->fd, r->pid);
	if (r->type == J_GONE)
		list_drop(l, r->fd);
	if (r->type == J_MSG)
		return list_msg(l, r->fd, &r->msg);
	return 0;
}

int fl_monitor_journal_procs(int fd, struct fl_journal_proc **out, size_t *n, char *err,
			     size_t errlen)
{
	struct journal j = { 0 };
	struct listing l = { 0 };
	size_t skip, pending;
	int ret = map(fd, false, &j, err, errlen);

	*out = NULL;
	*n = 0;
	if (ret)
		return ret;
	ret = walk(&j, list_one, &l, NULL);
	pending = inbox_pending(&j, &skip);
	for (size_t i = 0; !ret && i < pending; i++) /* a FORK read just before death */
		ret = list_msg(&l, atomic_load(&j.h->inbox_fd), &j.h->inbox[i]);
	unmap(&j);
	if (ret) {
		free(l.v);
		snprintf(err, errlen, "the journal is damaged: %s", strerror(-ret));
		return ret;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}
