/* SPDX-License-Identifier: MIT */
/*
 * faultline/migrate.h - post-copy live migration between two hosts.
 *
 * Source: a page server serves the memory of a running program (regions
 * of this process, the VMM case, or another process by pid) over the two
 * connections of faultline/wire.h: pre-copy rounds while the program runs
 * (with write-protect dirty tracking where the memory is ours), then the
 * switch-over (pause the program, send the list of pages still owed and an
 * opaque device-state blob), then post-copy: urgent page requests served
 * on their own connection while the rest is pushed in the background,
 * until the destination says it has every page.
 *
 * Destination: a receiver accepts the two connections, keeps pre-copied
 * pages in a staging area, and is the page source (faultline/source.h) of
 * a monitor that serves the restored program's faults.
 */
#ifndef FAULTLINE_MIGRATE_H
#define FAULTLINE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <faultline/monitor.h>
#include <faultline/source.h>
#include <faultline/wire.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------------- source */

/* How the page server reaches the program's memory. */
struct fl_migrate_memory {
	/* Read len bytes of a region into buf (the program may be running). */
	int (*read)(void *ctx, uint32_t region, uint64_t offset, void *buf, size_t len);
	/* Start dirty tracking; NULL when it is impossible: then there is no
	 * pre-copy, every page is owed at switch-over (post-copy only). */
	int (*dirty_start)(void *ctx);
	/* Pages of a region written since the last call (or since start):
	 * one bit per page, cleared first by the caller. */
	int (*dirty_collect)(void *ctx, uint32_t region, uint64_t *bitmap);
	/* Pause the program for the switch-over (SIGSTOP, the cgroup freezer,
	 * or a VMM stopping its vCPUs); may hand back an opaque device-state
	 * blob (malloc'd, freed by the server) to resume with. */
	int (*pause)(void *ctx, void **blob, size_t *blob_len);
	void *ctx;
};

struct fl_migrate_source_opts {
	const char *to;		  /* "host:port" of the destination */
	struct fl_tls_config tls;
	unsigned max_rounds;	  /* pre-copy rounds at most (default 8) */
	double target_downtime_s; /* stop pre-copy when the dirty set would
				     cross the wire in this long (default 0.05) */
	bool postcopy_only;	  /* skip pre-copy even if tracking works */
	double postcopy_after_s;  /* switch to post-copy once pre-copy has
				     run this long, mid-round too (0: no
				     limit) */
	/* After a break, reconnect (with backoff) and carry on for at most
	 * this long (0: a break fails the migration). The paused program's
	 * memory is kept until the destination has every page. */
	double rejoin_s;
	int verbose;		  /* 0 quiet, 1 progress lines */
	FILE *progress;		  /* where progress goes (default stderr) */
};

/* Threads reported in DONE's statistics: values [0] faults, [1] fault
 * latency p50 ns, [2] p99 ns, then (tid, blocked ns, faults) triples. */
#define FL_MIGRATE_THREADS_MAX ((FL_WIRE_STATS_MAX - 3) / 3)

/* What a migration cost, for the final report. */
#define FL_MIGRATE_CPU_MAX 6

/* CPU seconds (user + system) one thread spent, under its name. */
struct fl_thread_cpu {
	char name[16];
	double cpu_s;
};

struct fl_migrate_report {
	double total_s, precopy_s, downtime_s, postcopy_s;
	unsigned rounds;
	/* Why pre-copy ended when it did ("" when there was none). */
	char switch_reason[192];
	uint64_t bytes_precopy, bytes_postcopy, zero_bytes;
	uint64_t pages_owed, requests_served, pages_pushed;
	uint64_t pages_resent; /* urgent copies of pages still queued behind
				  the background stream */
	unsigned reconnects;	       /* breaks survived by rejoining */
	/* RESUME went out: the program may be running at the destination,
	 * so after a failure it must not be resumed here too. */
	bool dest_resumed;
	uint64_t dest_faults;	       /* from the destination's statistics */
	double dest_p50_us, dest_p99_us; /* fault latency there */
	/* The destination's threads that waited longest on faults. */
	struct fl_thread_stat dest_threads[FL_MIGRATE_THREADS_MAX];
	size_t dest_nthreads;
	/* CPU seconds this side spent, per thread of the migration: the
	 * caller's (from the call on: pre-copy reads and sends, the
	 * switch-over, the post-copy stream) and each one it started. */
	struct fl_thread_cpu cpu[FL_MIGRATE_CPU_MAX];
	size_t ncpu;
};

/* Run a whole migration of `regions` (blocking). */
int fl_migrate_source(const struct fl_region *regions, size_t n,
		      const struct fl_migrate_memory *mem,
		      const struct fl_migrate_source_opts *opts,
		      struct fl_migrate_report *report, char *err, size_t errlen);

void fl_migrate_report_print(const struct fl_migrate_report *r, FILE *out);

/* ---------------------------------------------------------- destination */

struct fl_receiver;

struct fl_receiver_opts {
	int verbose; /* progress lines on stderr */
	/* When a connection breaks (a reset, a silent source, a bad frame),
	 * wait this long for the source to come back and carry on where it
	 * left (it reconnects to listen_fd, which the receiver keeps a dup
	 * of); 0: fail at once what can no longer arrive. */
	double rejoin_s;
};

/* Accept the source's two connections on listen_fd and read its hello and
 * region table (blocking). The tls strings must outlive the receiver. */
int fl_receiver_accept_opts(struct fl_receiver **out, int listen_fd,
			    const struct fl_tls_config *tls, const struct fl_receiver_opts *o,
			    char *err, size_t errlen);
/* The same, without rejoining. */
int fl_receiver_accept(struct fl_receiver **out, int listen_fd,
		       const struct fl_tls_config *tls, int verbose, char *err,
		       size_t errlen);

/* How many times the source came back after a break. */
unsigned fl_receiver_reconnects(const struct fl_receiver *r);
/* Bytes of staging handed back to the kernel so far: pages every process
 * has, whose copy here nobody needs any more (counted at each release: a
 * page two reads covered counts twice). */
uint64_t fl_receiver_staging_released(const struct fl_receiver *r);
/* Why the migration failed (what can no longer arrive fails with it), or
 * NULL while it has not. */
const char *fl_receiver_error(struct fl_receiver *r);

const struct fl_region *fl_receiver_regions(const struct fl_receiver *r, size_t *n);

/* Receive pre-copy rounds until the source resumes us (blocking). The
 * device-state blob, if any, is handed back (owned by the receiver). */
int fl_receiver_wait_resume(struct fl_receiver *r, const void **blob,
			    size_t *blob_len, char *err, size_t errlen);

/* The page source over what was received and what is still owed: pages
 * present locally complete at once; owed ones are requested on the urgent
 * connection (faults) or awaited from the background push. Valid until
 * fl_receiver_destroy(). */
struct fl_source *fl_receiver_source(struct fl_receiver *r);

/* Pages still owed by the source (0 when every page has arrived). */
uint64_t fl_receiver_owed(const struct fl_receiver *r);

/* Tell the source we have everything (sends DONE with our statistics:
 * values[0] = faults, [1] = fault p50 ns, [2] = fault p99 ns). */
int fl_receiver_finish(struct fl_receiver *r, const uint64_t *stats, size_t n);


void fl_receiver_destroy(struct fl_receiver *r);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_MIGRATE_H */
