/* SPDX-License-Identifier: MIT */
/* The monitor's state, shared by its files (not part of the API). */
#ifndef FL_MONITOR_INTERNAL_H
#define FL_MONITOR_INTERNAL_H

#include <errno.h>
#include <event2/event.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <faultline/monitor.h>

#include "journal.h"
#include "pagestate.h"
#include "stats.h"

/* One registered range of one process. */
struct mregion {
	uint64_t start, len;	/* where it is now (REMAP moves it) */
	uint32_t page;		/* page size */
	uint32_t src_region;	/* the source region it comes from */
	uint64_t src_offset;	/* source offset of `start` */
	struct pagestate ps;
	size_t cursor;		/* next page for background prefetch */
	bool no_move;		/* UFFDIO_MOVE refused here (not anonymous) */
};

/* A served process (one userfaultfd, one mm). */
struct mproc {
	struct fl_monitor *mon;
	int uffd, pidfd;
	pid_t pid; /* 0 for a fork child (the FORK event carries no pid) */
	uint64_t features;
	uint32_t hflags;	       /* FL_HANDOFF_F_* it came with */
	char label[96];
	struct mregion *regions; /* sorted by start, non-overlapping */
	size_t nregions;
	struct event *uffd_ev, *pidfd_ev;
	bool dead;	       /* gone; freed at the end of the callback */
	bool doomed;	       /* owes pages that can never come, POISON refused */
	bool same_mm;	       /* its memory is this process's (UFFDIO_MOVE) */
	uint32_t last_tid;     /* a thread seen faulting (for a pid) */
	struct pfault *pending; /* faults waiting (EAGAIN, or no request free) */
	size_t npending, cap_pending;
	struct pfault *joined;	/* faults waiting on a read in flight */
	size_t njoined, cap_joined;
	struct mproc *next;
	size_t rr_region;      /* background: region being streamed */
	/* The kernel refuses every resolve in this mm (EAGAIN) while one of
	 * its events is in flight: no resolve is tried before again_ns, a
	 * backoff of again_us that grows while refusals go on. */
	uint64_t again_ns;
	uint32_t again_us;
	unsigned helper_runs; /* runs the install helper holds (install-helper.c) */
	_Atomic uint64_t helper_gen; /* bumped, under the hold, by each event */
};

struct pfault {
	uint64_t addr, t_read;
	uint32_t tid;
};

/* A read of source pages, for every process that owes them. */
struct mreq {
	struct fl_source_req req; /* first: the source hands it back */
	uint64_t t_fault;  /* ns when the fault was read (urgent only) */
	uint64_t t_submit; /* ns when submitted (the deadline counts from it) */
	uint32_t tid;
	bool urgent_slot;  /* from the urgent pool */
	bool busy;	   /* the source's, or held (deferred) */
	bool cancelled;	   /* withdrawn; its completion only releases */
	bool deferred;	   /* completed, waiting on the retry queue */
	bool counted;	   /* bytes_read already counted */
	bool hurry;	   /* a one-page read hurrying one already in flight */
	bool offloaded;	   /* completed, its installs with the helper */
	bool inline_only;  /* the helper could not finish it: the monitor does */
	struct mreq *next; /* free list / deferred list */
};

struct fl_monitor {
	struct event_base *base;
	struct fl_source *src;
	struct fl_monitor_opts opts;
	struct mproc *procs;
	size_t nprocs, ever;
	struct event *src_ev, *pump_ev, *sig_ev, *int_ev, *usr1_ev, *probe_ev, *stop_ev;
	int stop_fd;
	struct mreq *free_urgent, *free_bg, *reqs, *deferred;
	size_t nreqs;
	unsigned bg_inflight, urgent_inflight;
	char *zeros; /* a zero page of the largest size, for hugetlb */
	struct event *retry_ev;
	unsigned retry_ms; /* the retry timer's backoff */
	bool retry_armed;
	bool check_unwanted; /* ranges or processes went: cancel idle reads */
	unsigned probe_ticks;
	struct stats stats;
	uint64_t *replay; /* (src_region << 48 | page) list */
	size_t nreplay, replay_pos;
	bool stopping;
	_Atomic uint64_t owed; /* pages owed, summed at the end of each pump */
	bool fork_pid; /* the kernel proved UFFD_EVENT_FORK names the child */
	struct journal *journal; /* for a monitor started after us (journal.c) */
	bool replaying;	 /* rebuilding from it: touch no fd, log nothing */
	struct helper *helper; /* the pushed stream's second installer, or NULL */
};

/* Whether a page in state s is still owed (to be installed). */
static inline bool fl__owed(enum page_state s)
{
	return s == PS_MISSING || s == PS_REQUESTED;
}

/* proc.c */
struct mproc *fl__proc_new(struct fl_monitor *m, int uffd, pid_t pid, uint64_t features);
/* Watch `pid` with a pidfd: its exit kills `p` (monitor.c). */
void fl__mon_watch_pid(struct mproc *p, pid_t pid);
void fl__proc_kill(struct mproc *p, const char *why);
void fl__procs_reap(struct fl_monitor *m);
struct mregion *fl__proc_find(struct mproc *p, uint64_t addr);
/* Where a source page lives in this process now, or NULL. */
struct mregion *fl__proc_find_src(struct mproc *p, uint32_t src_region,
			      uint64_t src_off, uint64_t *addr);
/* The pages of r that hold source range [offset, offset+len) of
 * src_region: [*page, *page + *n). False when r holds none of it. */
bool fl__region_src_overlap(const struct mregion *r, uint32_t src_region, uint64_t offset,
			    uint64_t len, size_t *page, size_t *n);
/* What the non-cooperative events do to p's regions and page states. */
void fl__proc_fork(struct mproc *parent, int ufd, pid_t pid);
void fl__proc_remap(struct mproc *p, uint64_t from, uint64_t to, uint64_t len);
void fl__proc_remove(struct mproc *p, uint64_t start, uint64_t end);
void fl__proc_unmap(struct mproc *p, uint64_t start, uint64_t end);

/* monitor.c: serve a process (a handoff, or a journal's record). */
int fl__mon_adopt(struct fl_monitor *m, int uffd, pid_t pid, uint64_t features,
		  uint32_t flags, const struct fl_handoff_region *regions, size_t n,
		  char *err, size_t errlen);
/* Start watching p's fds on the loop (after a replay). */
void fl__mon_watch(struct mproc *p);

/* events.c */
/* One non-cooperative event: applied to p's regions and page states. */
void fl__events_apply(struct mproc *p, const struct fl_uffd_event *e);
struct event *fl__events_watch(struct mproc *p);
bool fl__proc_done(const struct mproc *p);
/* Pages p still owes, over all its regions. */
uint64_t fl__proc_owed(const struct mproc *p);

/* fetch.c */
/* Done with a completion: released to the source (its own, if unasked). */
void fl__fetch_finish(struct fl_monitor *m, struct fl_source_req *req);
/* The helper is done with req's installs (again: some could not go in):
 * released, or queued for the monitor's own retry. */
void fl__fetch_offload_done(struct fl_monitor *m, struct fl_source_req *req, bool again);
/* Faults that joined a read of [addr, addr+len) are served now. */
void fl__joined_served(struct mproc *p, uint64_t addr, uint64_t len);
void fl__fetch_fault(struct mproc *p, uint64_t addr, uint32_t tid, uint64_t t_read);
void fl__fetch_source_ready(struct fl_monitor *m);
void fl__fetch_completed(struct fl_source_req *req, void *arg);
bool fl__fetch_retry_deferred(struct fl_monitor *m);
bool fl__fetch_retry_faults(struct mproc *p);
void fl__fetch_cancel_unwanted(struct fl_monitor *m);
void fl__fetch_check_deadlines(struct fl_monitor *m);
void fl__fetch_cancel_all(struct fl_monitor *m);
void fl__fetch_doom(struct mproc *p, const char *why);
void fl__fetch_pump(struct fl_monitor *m);
void fl__fetch_kick(struct fl_monitor *m);
int fl__fetch_pool_init(struct fl_monitor *m);
void fl__fetch_pool_free(struct fl_monitor *m);
int fl__fetch_zero(struct mproc *p, struct mregion *r, size_t page, size_t n);

/* The EAGAIN gate of p (fetch.c): false while p's backoff runs; what a
 * resolve answered (ret) moves it. */
bool fl__gate_open(struct mproc *p);
void fl__gate_answer(struct mproc *p, int ret);

/* retry.c: the one retry queue's driver. */
void fl__retry_arm(struct fl_monitor *m);
void fl__retry_drain(struct fl_monitor *m);
int fl__retry_init(struct fl_monitor *m);

/* install-helper.c: a second thread installs the source's pushed pages. */
int fl__helper_init(struct fl_monitor *m);
void fl__helper_free(struct fl_monitor *m);
/* Take req's installs (async: applied and released later); false: not. */
bool fl__helper_offload(struct fl_monitor *m, struct fl_source_req *req);
/* The monitor's thread, around reading a userfaultfd and applying its
 * events, and around closing one: no helper install runs meanwhile, and
 * after a change (fl__helper_changed) none planned before it runs. */
/* A fault on a page a planned run holds: that page and up to 15 owed
 * ones after it installed from the run's bytes, already here (1); no
 * run has it, or nothing went in (0: the usual way); -EAGAIN. */
int fl__helper_fault(struct mproc *p, struct mregion *r, size_t page);
void fl__helper_hold(struct fl_monitor *m);
void fl__helper_changed(struct mproc *p);
void fl__helper_unhold(struct fl_monitor *m);

/* policy.c */
bool fl__policy_next(struct fl_monitor *m, struct mproc **pp, struct mregion **rp,
		 size_t *page, size_t *n);
void fl__policy_on_fault(struct fl_monitor *m, struct mproc *p, struct mregion *r,
		     size_t page);
int fl__policy_set_replay(struct fl_monitor *m, const struct fl_page_ref *list, size_t n,
			  char *err, size_t errlen);

void fl__mon_log(struct fl_monitor *m, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
