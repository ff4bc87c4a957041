// SPDX-License-Identifier: MIT
/* The faultline command: dispatch to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "probe", cmd_probe, "what this kernel and process can do (--json)" },
	{ "snapshot", cmd_snapshot, "snapshot a process's memory (--pid PID -o DIR), or --verify DIR" },
	{ "monitor", cmd_monitor, "serve restored processes lazily from a snapshot" },
	{ "migrate", cmd_migrate, "migrate a process post-copy to a `faultline receive`" },
	{ "receive", cmd_receive, "receive a migration and run the program's restorer" },
	{ "certs", cmd_certs, "make a test CA and host certificates for TLS (--out DIR)" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: faultline COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n'faultline COMMAND --help' describes one command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("faultline %s\n", FAULTLINE_VERSION);
		return CLI_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "faultline: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return CLI_USAGE;
}
