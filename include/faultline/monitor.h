/* SPDX-License-Identifier: MIT */
/*
 * faultline/monitor.h - the destination fault engine.
 *
 * A monitor serves the userfaultfds of one or more processes from a page
 * source: faults first, the rest streamed in the background; it follows
 * fork, mremap, MADV_DONTNEED, munmap and exit. One libevent loop, one
 * thread. It knows no sockets: processes come to it through
 * fl_monitor_adopt*(), from handoff servers (faultline/handoff.h) that the
 * caller runs on the monitor's loop, or from the caller itself.
 */
#ifndef FAULTLINE_MONITOR_H
#define FAULTLINE_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <faultline/fault-order.h>
#include <faultline/handoff.h>
#include <faultline/source.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_monitor;

struct fl_monitor_opts {
	int verbose;		   /* 0 quiet, 1 progress, 2 debug */
	bool keep_caps;		   /* don't drop capabilities when the loop starts */
	bool no_prefetch;	   /* serve faults only */
	/* Told each source page read on a fault, in order (to record a fault
	 * order: fl_fault_order_append with a FILE *, faultline/fault-order.h). */
	void (*on_fault_page)(void *arg, uint32_t region, uint64_t offset);
	void *on_fault_arg;
	/* Prefetch these pages first, in this order (copied at create): a
	 * recorded fault order (fl_fault_order_load). */
	const struct fl_page_ref *replay;
	size_t nreplay;
	unsigned bg_inflight;	   /* background reads in flight (default 4) */
	size_t bg_chunk;	   /* bytes per background read (default 2 MiB) */
	/* A fault's read that the source has not answered within this many
	 * ms ends as a failed read: the page is poisoned (SIGBUS for the
	 * thread, logged). 0: wait as long as the source says (the source's
	 * own deadline applies, e.g. a lost connection fails at once). */
	unsigned read_deadline_ms;
	/* Called on the loop when the process gets SIGUSR1 (NULL: SIGUSR1
	 * is left alone), e.g. fl_monitor_print_stats to stderr. */
	void (*on_sigusr1)(struct fl_monitor *m, void *arg);
	void *sigusr1_arg;
	bool exit_when_idle;	   /* exit once every process is gone (default
				      for the command; tests may adopt later) */
};

struct event_base;

int fl_monitor_create(struct fl_monitor **out, struct fl_source *source,
		      const struct fl_monitor_opts *opts, char *err, size_t errlen);

/* Serve a process: its userfaultfd (the monitor takes it over on success;
 * it stays the caller's on failure), its pid (0 if unknown) and its
 * regions, validated against the source. An fd without
 * UFFD_FEATURE_EVENT_FORK is refused: a child the process forks would read
 * zeros where it had data (see fl_monitor_adopt_handoff() to accept it). */
int fl_monitor_adopt(struct fl_monitor *m, int uffd, pid_t pid,
		     uint64_t features, const struct fl_handoff_region *r,
		     size_t n, char *err, size_t errlen);

/* The same for a handoff, as a handoff server produces it (the accept
 * function of fl_handoff_server_create() calls this on the monitor's
 * loop, or a caller builds one itself): on success the monitor takes
 * h->uffd and sets it to -1, and counts the handoff; on failure err says
 * why and the refusal is counted. An fd without EVENT_FORK is served only
 * with FL_HANDOFF_F_NO_FORK in h->flags. */
int fl_monitor_adopt_handoff(struct fl_monitor *m, struct fl_handoff *h, char *err,
			     size_t errlen);

/* Count a handoff refused before it reached the monitor (a malformed
 * message, a restorer that gave up): the statistics show every refusal.
 * For a handoff server's `refused` callback. */
void fl_monitor_count_refused_handoff(struct fl_monitor *m);

/* The monitor's event loop (libevent), for what the caller runs on it,
 * such as handoff servers (faultline/handoff.h): events there run on the
 * monitor's thread, between its own. Destroy them before the monitor. */
struct event_base *fl_monitor_event_base(struct fl_monitor *m);

/*
 * Surviving the monitor's death. A journal is a memfd that records every
 * process the monitor serves (its fd, pid and regions) and every
 * non-cooperative event it reads, in the order read, before the read()
 * returns. A keeper process holds it and shares the monitor's fd table
 * (clone(CLONE_FILES): the userfaultfds of fork children, which live only
 * in the monitor, outlive it there). A new monitor started by the keeper
 * on the same table calls fl_monitor_use_journal(..., resume = true) and
 * serves the same processes with the same page states: pages a process
 * dropped stay zero, children go on being served, every thread left
 * waiting is woken to fault again. `faultline monitor` does all this.
 */

/* A new journal (half_bytes per half, 0: 32 MiB; checkpoints keep it
 * there). Returns the fd, or -1 with the reason in err. */
int fl_monitor_journal_create(size_t half_bytes, char *err, size_t errlen);

/* Log into journal `fd`; with resume, first serve again every process it
 * names as live, with the fds named there (this process must hold them:
 * same fd table). Call before anything is adopted. */
int fl_monitor_use_journal(struct fl_monitor *m, int fd, bool resume, char *err,
			   size_t errlen);

/* The processes a journal names as live, for a keeper: which fds to keep
 * (every other stray of a dead monitor can be closed) and which pids to
 * end when no monitor can be started. *out is malloc'd. */
struct fl_journal_proc {
	int uffd;
	pid_t pid; /* 0: a fork child whose pid the kernel did not say */
};
int fl_monitor_journal_procs(int fd, struct fl_journal_proc **out, size_t *n, char *err,
			     size_t errlen);

/* Run until every process served is gone (after at least one came), or
 * fl_monitor_stop(). Set-up ends here: unless keep_caps, the calling
 * thread drops every capability first (sockets on the loop are bound by
 * then). Returns 0 or -errno. */
int fl_monitor_run(struct fl_monitor *m);
void fl_monitor_stop(struct fl_monitor *m);

/* The monitor's statistics, as plain numbers. */
struct fl_monitor_stats {
	double duration_s;
	/* Faults read, and how each was served. */
	uint64_t faults, faults_joined, faults_hurried, faults_zero, faults_new_memory,
		faults_spurious;
	/* Pages installed, by what brought them. */
	uint64_t pages_fault, pages_prefetched, pages_pushed, pages_moved, pages_zeroed,
		pages_existed;
	uint64_t bytes_read, bytes_read_again; /* from the source (again: hurrying faults) */
	uint64_t fork, remap, remove, unmap, exits, eagain; /* events; EAGAIN answers */
	/* The failure paths: timer retries, ranges woken after events,
	 * watchdog wakes, pages poisoned, processes killed, reads failed,
	 * cancelled, issued again. */
	uint64_t retries, wakes, idle_wakes, pages_poisoned, killed, reads_failed,
		reads_cancelled, reads_reissued;
	uint64_t handoffs, handoffs_refused;
	uint64_t latency_p50_ns, latency_p90_ns, latency_p99_ns, latency_max_ns;
	size_t threads; /* threads seen faulting: fl_monitor_thread_stats() */
	/* Resolves not even tried: the process's mm had just answered EAGAIN
	 * (an event in flight) and its backoff was running. */
	uint64_t eagain_waited;
};

void fl_monitor_get_stats(struct fl_monitor *m, struct fl_monitor_stats *out);

/* The same statistics as text, or as one line of JSON with the threads
 * that waited longest (the report layer, src/report/, prints them). */
void fl_monitor_print_stats(struct fl_monitor *m, FILE *out, bool json);

/* Faults served and their service latency percentiles (ns). */
void fl_monitor_fault_stats(struct fl_monitor *m, uint64_t *faults, uint64_t *p50_ns,
			    uint64_t *p99_ns);

/* The threads that waited longest on faults, most blocked first: fills
 * at most max entries, returns how many. */
struct fl_thread_stat {
	uint32_t tid;	     /* the faulting thread (UFFD_FEATURE_THREAD_ID) */
	uint64_t faults;     /* faults it waited on */
	uint64_t blocked_ns; /* total time it waited */
};
size_t fl_monitor_thread_stats(struct fl_monitor *m, struct fl_thread_stat *out, size_t max);

/* How many processes were ever adopted (safe from another thread). */
size_t fl_monitor_ever_served(const struct fl_monitor *m);

/* Pages still owed to the processes served (updated as the loop runs;
 * safe to read from another thread). */
uint64_t fl_monitor_owed_pages(const struct fl_monitor *m);

void fl_monitor_destroy(struct fl_monitor *m);

#ifdef __cplusplus
}
#endif

#endif
