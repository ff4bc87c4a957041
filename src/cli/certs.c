// SPDX-License-Identifier: MIT
/*
 * `faultline certs`: a private test CA and a certificate per host for the
 * migration wire's mutual TLS.
 *
 *   faultline certs --out DIR [--hosts a,b] [--days N]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/wire.h>

#include "cli.h"

#define MAX_HOSTS 64

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline certs --out DIR [--hosts a,b] [--days N]\n"
		"\n"
		"Make a CA (DIR/ca.crt, DIR/ca.key) and, signed by it, a certificate and\n"
		"key per host (DIR/HOST.crt, DIR/HOST.key; default hosts: source,dest),\n"
		"valid N days (default 365), good for both ends of a TLS connection.\n"
		"A host may say its role, NAME/source or NAME/dest (hosts named source\n"
		"and dest get theirs, others both): receive accepts only a source's\n"
		"certificate, migrate only a destination's.\n"
		"Give each host its own .crt and .key and everyone ca.crt; keep ca.key\n"
		"off the hosts. Keys are Ed25519, written 0600.\n");
}

int cmd_certs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "hosts", required_argument, NULL, 'H' },
		{ "days", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out = NULL, *hosts[MAX_HOSTS] = { "source", "dest" };
	char *list = NULL, *save, *tok, *end, err[1024] = "";
	size_t n = 2;
	long days = 365;
	int c, ret;

	while ((c = getopt_long(argc, argv, "o:H:d:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'H':
			free(list);
			list = strdup(optarg);
			n = 0;
			for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (n == MAX_HOSTS) {
					fprintf(stderr, "faultline certs: more than %d hosts\n", MAX_HOSTS);
					free(list);
					return CLI_USAGE;
				}
				hosts[n++] = tok;
			}
			break;
		case 'd':
			days = strtol(optarg, &end, 10);
			if (*end || days <= 0 || days > 36500) {
				fprintf(stderr, "faultline certs: --days '%s': a number of days from 1 to 36500\n", optarg);
				free(list);
				return CLI_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			free(list);
			return CLI_OK;
		default:
			usage(stderr);
			free(list);
			return CLI_USAGE;
		}
	}
	if (!out || optind != argc || !n) {
		usage(stderr);
		free(list);
		return CLI_USAGE;
	}
	ret = fl_certs_make(out, hosts, n, (int)days, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline certs: %s\n", err);
		free(list);
		return CLI_FAILED;
	}
	printf("%s/ca.crt  the CA: give it to every host\n", out);
	printf("%s/ca.key  the CA's key: keep it off the hosts\n", out);
	for (size_t i = 0; i < n; i++)
		printf("%s/%s.crt %s/%s.key  for %s\n", out, hosts[i], out, hosts[i], hosts[i]);
	free(list);
	return CLI_OK;
}
