// SPDX-License-Identifier: MIT
/*
 * `faultline migrate --pid PID --to HOST:PORT`: move a running process's
 * memory to a `faultline receive` on another host, post-copy.
 *
 * Another process's memory cannot be write-protect tracked from here (its
 * userfaultfd would have to be created inside it) and this kernel has no
 * soft-dirty bits, so a process given by pid is migrated post-copy only:
 * it is stopped at once (SIGSTOP), the destination resumes its restorer,
 * and every page is served on demand or pushed. Programs that link
 * libfaultline and call fl_migrate_source() (the VMM case) get pre-copy.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/migrate.h>

#include "cli.h"
#include "tls-opts.h"
#include "util/procfs.h"

struct target {
	pid_t pid;
	struct fl_region *regions;
	size_t n;
};

/* Private writable mappings, as `faultline snapshot` captures them. */
static int read_maps(struct target *t, char *err, size_t errlen)
{
	char path[64], line[4096];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", t->pid);
	f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "no process with pid %d (%s)", t->pid, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		char perms[8], name[FL_REGION_NAME_MAX] = "";
		struct fl_region *r;

		if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %63[^\n]", &a, &b, perms, name) < 3)
			continue;
		if (perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p' ||
		    !strcmp(name, "[vvar]") || !strcmp(name, "[vdso]") ||
		    !strcmp(name, "[vsyscall]") || !strncmp(name, "[vvar", 5))
			continue;
		r = realloc(t->regions, (t->n + 1) * sizeof(*r));
		if (!r) {
			fclose(f);
			return -ENOMEM;
		}
		t->regions = r;
		r = &t->regions[t->n++];
		memset(r, 0, sizeof(*r));
		r->start = a;
		r->len = b - a;
		r->page_size = 4096;
		r->prot = 3;
		snprintf(r->name, sizeof(r->name), "%s", name[0] ? name : "[anon]");
	}
	fclose(f);
	return 0;
}

static int pid_read(void *ctx, uint32_t region, uint64_t offset, void *buf, size_t len)
{
	struct target *t = ctx;
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)(t->regions[region].start + offset), len };
	ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);

	if (n == (ssize_t)len)
		return 0;
	/* A page the process never backed (past the end of a file): zeros. */
	if (n >= 0 || errno == EFAULT) {
		memset((char *)buf + (n > 0 ? n : 0), 0, len - (size_t)(n > 0 ? n : 0));
		return 0;
	}
	return -errno;
}

static int pid_pause(void *ctx, void **blob, size_t *len)
{
	struct target *t = ctx;
	char path[64], state = 0;

	*blob = NULL;
	*len = 0;
	if (kill(t->pid, SIGSTOP))
		return -errno;
	/* Wait until it is really stopped before serving its pages. */
	snprintf(path, sizeof(path), "/proc/%d/stat", t->pid);
	for (int i = 0; i < 1000 && state != 'T'; i++) {
		char buf[512];
		const char *p = fl__proc_stat(path, buf, sizeof(buf), NULL, 0);

		if (!p)
			return -ESRCH;
		state = p[0];
		if (state != 'T')
			usleep(1000);
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline migrate --pid PID --to HOST:PORT [options]\n"
		"Migrate a running process's memory to `faultline receive` on HOST:PORT,\n"
		"post-copy: the process is stopped, its restorer resumes on the destination\n"
		"at once, and its pages follow on demand and in the background. When the\n"
		"destination has every page the process here is killed (--keep: left\n"
		"stopped).\n\n"
		"  --pid PID            the process\n"
		"  --to HOST:PORT       the destination\n"
		"  --keep               don't kill the source process afterwards\n"
		"  --reconnect-deadline SECONDS\n"
		"                       after a break, reconnect and carry on for this long\n"
		"                       (default 60; 0: a break fails the migration)\n"
		TLS_USAGE
		"  -q, --quiet          no progress\n");
}

int cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "to", required_argument, NULL, 't' },
		{ "keep", no_argument, NULL, 'k' },
		{ "reconnect-deadline", required_argument, NULL, 'r' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		TLS_LONG_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct fl_migrate_source_opts o = { .verbose = 1, .postcopy_only = true, .rejoin_s = 60 };
	struct fl_migrate_memory mem = { .read = pid_read, .pause = pid_pause };
	struct fl_migrate_report rep;
	struct target t = { 0 };
	char err[512] = "";
	bool keep = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "p:t:kqh", opts, NULL)) != -1) {
		if (tls_option(c, optarg, &o.tls, "source"))
			continue;
		switch (c) {
		case 'p': t.pid = atoi(optarg); break;
		case 't': o.to = optarg; break;
		case 'k': keep = true; break;
		case 'r':
			if (cli_parse_seconds("migrate --reconnect-deadline", optarg, &o.rejoin_s))
				return CLI_USAGE;
			break;
		case 'q': o.verbose = 0; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (t.pid <= 0 || !o.to || optind < argc) {
		fprintf(stderr, "faultline migrate: --pid and --to are required\n");
		usage(stderr);
		return CLI_USAGE;
	}
	if (!tls_finish(&o.tls, "migrate"))
		return CLI_USAGE;
	if (read_maps(&t, err, sizeof(err))) {
		fprintf(stderr, "faultline migrate: %s\n", err);
		return CLI_FAILED;
	}
	mem.ctx = &t;
	/* Before any thread reads the network: keep what reading the
	 * process's memory and stopping it need, nothing else (and the
	 * certificate and key read now). */
	{
		static const int keep[] = { CAP_SYS_PTRACE, CAP_KILL };

		if (fl_conn_tls_load(&o.tls, false, err, sizeof(err)) ||
		    fl_privileges_keep(keep, 2, err, sizeof(err))) {
			fprintf(stderr, "faultline migrate: %s\n", err);
			free(t.regions);
			return CLI_FAILED;
		}
	}
	if (o.verbose)
		fprintf(stderr, "migrate: pid %d, %zu regions, %s%s; post-copy only (another "
				"process's memory cannot be dirty-tracked from here)\n", t.pid, t.n,
			o.tls.plain ? "plain TCP" : "TLS with certificate ",
			o.tls.plain ? "" : o.tls.cert);
	ret = fl_migrate_source(t.regions, t.n, &mem, &o, &rep, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline migrate: %s\n", err);
		if (!rep.dest_resumed)
			kill(t.pid, SIGCONT); /* it has not moved: let it run on here */
		else /* never two copies running */
			fprintf(stderr, "faultline migrate: pid %d stays stopped: the destination "
				"may be running it\n", t.pid);
		free(t.regions);
		return CLI_FAILED;
	}
	fl_migrate_report_print(&rep, stdout);
	if (!keep)
		kill(t.pid, SIGKILL);
	free(t.regions);
	return CLI_OK;
}
