/* SPDX-License-Identifier: MIT */
/* Handoff servers composed with a monitor (for `monitor` and `receive`). */
#ifndef FL_CLI_HANDOFFS_H
#define FL_CLI_HANDOFFS_H

#include <stddef.h>

#include <faultline/handoff.h>
#include <faultline/monitor.h>

/*
 * Listen on `path` for `proto` on the monitor's loop: every handoff that
 * arrives is adopted by the monitor (fl_monitor_adopt_handoff), every one
 * refused before it got there is counted in the monitor's statistics.
 * For FL_HANDOFF_FIRECRACKER the memory file's layout is the source's
 * regions laid end to end. listen_fd >= 0: a socket already listening
 * on `path` (fl_handoff_listen()). Destroy the server before the monitor.
 */
int cli_serve_handoffs(struct fl_handoff_server **out, struct fl_monitor *m,
		       const struct fl_source *src, const char *path,
		       enum fl_handoff_proto proto, int listen_fd, int verbose, char *err,
		       size_t errlen);

/* fl_monitor_opts.on_sigusr1 for the commands: the statistics, as text,
 * to stderr. */
void cli_stats_on_sigusr1(struct fl_monitor *m, void *arg);

#endif
