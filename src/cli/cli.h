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

#endif
