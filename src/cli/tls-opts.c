// SPDX-License-Identifier: MIT
/*
 * The TLS options of migrate and receive (and the microvm example).
 * `--certs DIR` reads what `faultline certs --out DIR --hosts a,b` wrote:
 * DIR/ca.crt and one host's DIR/NAME.crt + DIR/NAME.key. NAME is
 * --cert-name, else the first of these that DIR has: the role's default
 * ("source" or "dest", the names `faultline certs` uses when not told
 * --hosts), this machine's host name (full, then up to the first dot),
 * the only NAME.crt in DIR besides ca.crt (a host given just its own).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls-opts.h"

/* One command line per process: the options live until tls_finish(). */
static struct {
	const char *dir, *name, *role;
	char name_buf[256];
	char paths[3][4096];
} certs;

bool tls_option(int c, const char *arg, struct fl_tls_config *t, const char *role)
{
	switch (c) {
	case 0x100: t->cert = arg; return true;
	case 0x101: t->key = arg; return true;
	case 0x102: t->ca = arg; return true;
	case 0x103: certs.dir = arg; certs.role = role; return true;
	case 0x104: t->plain = true; return true;
	case 0x105: t->plain = t->force_plain = true; return true;
	case 0x106: certs.name = arg; certs.role = role; return true;
	case 0x107: t->peer_name = arg; return true;
	}
	return false;
}

static bool has_cert(const char *name)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/%s.crt", certs.dir, name);
	return !access(p, F_OK);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The host certificates in DIR (NAME.crt, ca.crt aside), sorted and
 * comma-separated into list; returns how many (-errno if DIR cannot be
 * read), the only one's name in name_buf when there is one. */
static int list_certs(char *list, size_t len)
{
	DIR *d = opendir(certs.dir);
	char *names[64];
	struct dirent *e;
	size_t used = 0;
	int n = 0, shown = 0;

	list[0] = '\0';
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);

		if (l <= 4 || strcmp(e->d_name + l - 4, ".crt") || !strcmp(e->d_name, "ca.crt") ||
		    l - 4 >= sizeof(certs.name_buf))
			continue;
		if (shown < 64 && (names[shown] = strndup(e->d_name, l - 4)))
			shown++;
		n++;
	}
	closedir(d);
	qsort(names, (size_t)shown, sizeof(names[0]), by_name);
	for (int i = 0; i < shown; i++) {
		if (used < len)
			used += (size_t)snprintf(list + used, len - used, "%s%s", i ? ", " : "", names[i]);
		if (n == 1)
			snprintf(certs.name_buf, sizeof(certs.name_buf), "%s", names[i]);
		free(names[i]);
	}
	if (n > shown && used < len)
		snprintf(list + used, len - used, " and %d more", n - shown);
	return n == 1 && shown != 1 ? -ENOMEM : n;
}

/* NAME for --certs DIR without --cert-name, or NULL after saying why. */
static const char *default_name(const char *cmd)
{
	char host[256] = "", tried[1024], found[1024];
	int n;

	if (certs.role && has_cert(certs.role))
		return certs.role;
	snprintf(tried, sizeof(tried), "%s/%s.crt", certs.dir, certs.role ? certs.role : "?");
	if (!gethostname(host, sizeof(host) - 1) && host[0]) {
		char *dot;

		if (has_cert(host))
			return strcpy(certs.name_buf, host);
		snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried), ", %s/%s.crt",
			 certs.dir, host);
		dot = strchr(host, '.');
		if (dot && dot != host) {
			*dot = '\0';
			if (has_cert(host))
				return strcpy(certs.name_buf, host);
			snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried),
				 ", %s/%s.crt", certs.dir, host);
		}
	}
	n = list_certs(found, sizeof(found));
	if (n == 1)
		return certs.name_buf;
	if (n < 0)
		fprintf(stderr, "faultline %s: --certs %s: %s\n", cmd, certs.dir, strerror(-n));
	else if (n == 0)
		fprintf(stderr, "faultline %s: --certs %s holds no host certificate (NAME.crt); "
				"make them with `faultline certs --out %s --hosts NAME,...`\n",
			cmd, certs.dir, certs.dir);
	else
		fprintf(stderr, "faultline %s: --certs %s: no certificate for this host (looked "
				"for %s); it holds %s: choose one with --cert-name NAME\n",
			cmd, certs.dir, tried, found);
	return NULL;
}

bool tls_finish(struct fl_tls_config *t, const char *cmd)
{
	const char *name;

	if (t->plain)
		return true;
	if (certs.name && !certs.dir) {
		fprintf(stderr, "faultline %s: --cert-name %s names a certificate in --certs DIR; "
				"give DIR too\n", cmd, certs.name);
		return false;
	}
	if (certs.name && (strchr(certs.name, '/') || !certs.name[0])) {
		fprintf(stderr, "faultline %s: --cert-name '%s': a host name as given to "
				"`faultline certs --hosts`, not a path\n", cmd, certs.name);
		return false;
	}
	if (certs.dir) {
		/* --cert, --key and --ca given alone win over DIR's. */
		name = certs.name;
		if (!name && (!t->cert || !t->key) && !(name = default_name(cmd)))
			return false;
		if (name) {
			snprintf(certs.paths[0], sizeof(certs.paths[0]), "%s/%s.crt", certs.dir, name);
			snprintf(certs.paths[1], sizeof(certs.paths[1]), "%s/%s.key", certs.dir, name);
			if (!t->cert)
				t->cert = certs.paths[0];
			if (!t->key)
				t->key = certs.paths[1];
		}
		snprintf(certs.paths[2], sizeof(certs.paths[2]), "%s/ca.crt", certs.dir);
		if (!t->ca)
			t->ca = certs.paths[2];
	}
	if (!t->cert || !t->key || !t->ca) {
		fprintf(stderr, "faultline %s: TLS needs a certificate, its key and the CA "
				"(--certs DIR, or --cert/--key/--ca); make test ones with "
				"`faultline certs --out DIR`, or use --plain on loopback\n", cmd);
		return false;
	}
	for (const char *const *f = (const char *const[]){ t->cert, t->key, t->ca, NULL }; *f; f++)
		if (access(*f, R_OK)) {
			fprintf(stderr, "faultline %s: cannot read %s: %s%s\n", cmd, *f, strerror(errno),
				certs.dir ? " (--certs DIR reads DIR/ca.crt, DIR/NAME.crt and "
					    "DIR/NAME.key; see --cert-name)" : "");
			return false;
		}
	return true;
}
