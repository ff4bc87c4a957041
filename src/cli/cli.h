/* SPDX-License-Identifier: MIT */
/* The subcommands of the faultline command. */
#ifndef FL_CLI_H
#define FL_CLI_H

/* Exit codes shared by every subcommand. */
enum {
	CLI_OK = 0,
	CLI_FAILED = 1, /* the work failed; a message says why */
	CLI_USAGE = 2,	/* bad command line */
};

int cmd_probe(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_receive(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_lazy_pages(int argc, char **argv);

#include <stddef.h>

/*
 * Background reads when a monitor serves from local files (a snapshot,
 * CRIU's images): such reads are done at once, so what a fault waits
 * behind is the piece the monitor is installing (about 0.5 GB/s into new
 * memory here). Measured here:
 * - bench's lazy restore, 1 and 4 GiB: fault p99 0.73-0.89 ms with
 *   512 KiB x 8 against 1.07-1.64 ms with 2 MiB x 4, fill 2.4-3.4 GB/s
 *   against 2.5-2.7;
 * - CRIU's images, 1 GiB: a program's 256 faults on memory CRIU never
 *   saw took 1.1-2.3 s behind 2 MiB pieces, 0.12-0.2 s behind 512 KiB
 *   ones (CRIU's daemon: 0.39 s); 256 KiB pieces were no faster.
 */
#define CLI_LOCAL_BG_CHUNK (512u << 10)
#define CLI_LOCAL_BG_INFLIGHT 8

/* Write all len bytes of buf to fd (retrying short writes and EINTR):
 * 0, or -1 with errno set. */
int cli_write_all(int fd, const void *buf, size_t len);

/* A number of seconds (>= 0, fractions allowed): 0, or -1 after saying
 * on stderr that s is not, for option `what` ("receive --reconnect-deadline"). */
int cli_parse_seconds(const char *what, const char *s, double *out);

#endif
