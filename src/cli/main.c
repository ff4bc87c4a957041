// SPDX-License-Identifier: MIT
/* The faultline command: dispatch to a subcommand. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "manuals.h" /* generated from doc/NAME.scd */

static int cmd_help(int argc, char **argv);

int cli_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int cli_parse_seconds(const char *what, const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 1e6) {
		fprintf(stderr, "faultline %s: '%s' is not a number of seconds (0 to 1e6)\n",
			what, s);
		return -1;
	}
	*out = v;
	return 0;
}

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
	{ "lazy-pages", cmd_lazy_pages, "serve `criu restore --lazy-pages` (a drop-in for criu's daemon)" },
	{ "certs", cmd_certs, "make a test CA and host certificates for TLS (--out DIR)" },
	{ "help", cmd_help, "the manual page of COMMAND (as `man faultline-COMMAND`)" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: faultline COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n'faultline COMMAND --help' gives a command's usage, 'faultline help COMMAND'\n"
		     "its manual page; 'faultline help faultline' and 'faultline help libfaultline'\n"
		     "are the command's and the library's.\n");
}

/* `faultline help [NAME]`: NAME is a command (migrate), a page
 * (faultline-migrate, faultline, libfaultline); the text is the man
 * page's, rendered from the same source at build time. */
static int cmd_help(int argc, char **argv)
{
	const size_t n = sizeof(manuals) / sizeof(manuals[0]);
	char page[128];

	if (argc < 2) {
		usage(stdout);
		return CLI_OK;
	}
	if (argc > 2) {
		fprintf(stderr, "usage: faultline help [COMMAND]\n");
		return CLI_USAGE;
	}
	snprintf(page, sizeof(page), "faultline-%s", argv[1]);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(manuals[i].page, argv[1]) || !strcmp(manuals[i].page, page)) {
			fputs(manuals[i].text, stdout);
			return CLI_OK;
		}
	fprintf(stderr, "faultline help: no manual page '%s'; there are:", argv[1]);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %s", manuals[i].page);
	fprintf(stderr, "\n");
	return CLI_USAGE;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
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
