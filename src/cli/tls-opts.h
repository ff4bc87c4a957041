/* SPDX-License-Identifier: MIT */
/* The TLS options shared by migrate and receive. */
#ifndef FL_CLI_TLS_OPTS_H
#define FL_CLI_TLS_OPTS_H

#include <getopt.h>
#include <stdbool.h>

#include <faultline/wire.h>

#define TLS_LONG_OPTIONS                                        \
	{ "cert", required_argument, NULL, 0x100 },             \
	{ "key", required_argument, NULL, 0x101 },              \
	{ "ca", required_argument, NULL, 0x102 },               \
	{ "certs", required_argument, NULL, 0x103 },            \
	{ "cert-name", required_argument, NULL, 0x106 },        \
	{ "peer-name", required_argument, NULL, 0x107 },        \
	{ "plain", no_argument, NULL, 0x104 },                  \
	{ "force-plain", no_argument, NULL, 0x105 }

#define TLS_USAGE                                                                        \
	"  --certs DIR          what `faultline certs --out DIR` made: reads DIR/ca.crt,\n" \
	"                       DIR/NAME.crt and DIR/NAME.key\n"                            \
	"  --cert-name NAME     which host's certificate in DIR; default: the first DIR\n"  \
	"                       has of source (migrate) or dest (receive), this host's\n"   \
	"                       name, or the only NAME.crt besides ca.crt\n"                \
	"  --cert F --key F --ca F   or each file given alone (wins over DIR's)\n"          \
	"  --peer-name NAME     the peer's certificate must be for NAME (a host name or\n" \
	"                       address); its role is always checked (a source's for\n"   \
	"                       receive, a destination's for migrate)\n"                  \
	"  --plain              plain TCP instead of TLS (loopback only)\n"                 \
	"  --force-plain        plain TCP to another host (unauthenticated!)\n"

/* Handle one TLS option; returns true if c was one. `role` names the
 * default certificate in --certs DIR ("source" or "dest"). */
bool tls_option(int c, const char *arg, struct fl_tls_config *t, const char *role);
/* After parsing: find the files of --certs DIR, check each can be read;
 * prints the reason (naming the file) and returns false. */
bool tls_finish(struct fl_tls_config *t, const char *cmd);

#endif
