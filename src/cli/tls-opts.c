// SPDX-License-Identifier: MIT
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tls-opts.h"

static char paths[3][4096];

bool tls_option(int c, const char *arg, struct fl_tls_config *t, const char *role)
{
	switch (c) {
	case 0x100: t->cert = arg; return true;
	case 0x101: t->key = arg; return true;
	case 0x102: t->ca = arg; return true;
	case 0x103:
		snprintf(paths[0], sizeof(paths[0]), "%s/%s.crt", arg, role);
		snprintf(paths[1], sizeof(paths[1]), "%s/%s.key", arg, role);
		snprintf(paths[2], sizeof(paths[2]), "%s/ca.crt", arg);
		t->cert = paths[0];
		t->key = paths[1];
		t->ca = paths[2];
		return true;
	case 0x104: t->plain = true; return true;
	case 0x105: t->plain = t->force_plain = true; return true;
	}
	return false;
}

bool tls_finish(struct fl_tls_config *t, const char *cmd)
{
	if (t->plain)
		return true;
	if (!t->cert || !t->key || !t->ca) {
		fprintf(stderr, "faultline %s: TLS needs a certificate, its key and the CA "
				"(--certs DIR, or --cert/--key/--ca); make test ones with "
				"`faultline certs --out DIR`, or use --plain on loopback\n", cmd);
		return false;
	}
	for (const char *const *f = (const char *const[]){ t->cert, t->key, t->ca, NULL }; *f; f++)
		if (access(*f, R_OK)) {
			fprintf(stderr, "faultline %s: cannot read %s\n", cmd, *f);
			return false;
		}
	return true;
}
