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

/* Write all len bytes of buf to fd (retrying short writes and EINTR):
 * 0, or -1 with errno set. */
int cli_write_all(int fd, const void *buf, size_t len);

/* A number of seconds (>= 0, fractions allowed): 0, or -1 after saying
 * on stderr that s is not, for option `what` ("receive --reconnect-deadline"). */
int cli_parse_seconds(const char *what, const char *s, double *out);

#endif
