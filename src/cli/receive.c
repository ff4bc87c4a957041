// SPDX-License-Identifier: MIT
/*
 * `faultline receive`: the destination of a migration. Accepts the source,
 * keeps pre-copied pages, and at the switch-over starts the program's
 * restorer (--exec), which maps its regions and hands its userfaultfd to
 * the monitor running here; faults are served from what arrived or
 * fetched urgently from the source, the rest streams in.
 *
 * The restorer gets, in its environment:
 *   FAULTLINE_SOCKET   where to hand over (fl_restore_handoff)
 *   FAULTLINE_REGIONS  "INDEX:START:LEN:PAGESIZE:NAME;..." (hex numbers)
 *   FAULTLINE_DEVICE_STATE  a file with the source's device-state blob
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline/migrate.h>
#include <faultline/monitor.h>
#include <faultline/vmm.h>

#include "cli.h"
#include "launcher.h"
#include "handoffs.h"
#include "tls-opts.h"
#include "util/thread-cpu.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline receive --listen ADDR:PORT --exec COMMAND [options]\n"
		"Receive a migrating program: pre-copied pages are kept, then at the\n"
		"switch-over COMMAND (the restorer, run with /bin/sh -c) is started; it maps\n"
		"the regions listed in $FAULTLINE_REGIONS and hands its userfaultfd to\n"
		"$FAULTLINE_SOCKET. Exits with the restorer's status.\n\n"
		"  --listen ADDR:PORT   where the source connects (e.g. 0.0.0.0:7700)\n"
		"  --exec COMMAND       the restorer\n"
		"  --stats-json FILE    the monitor's statistics as JSON\n"
		"  --reconnect-deadline SECONDS\n"
		"                       after a break, wait this long for the source to\n"
		"                       reconnect and carry on (default 60; 0: a break fails\n"
		"                       what has not arrived)\n"
		"  --keep-caps          keep capabilities (debugging; by default every one is\n"
		"                       dropped once listening, before any thread starts)\n"
		"  --user NAME          who to become then (default: nobody, when started as\n"
		"                       root and the kernel has UFFD_FEATURE_POISON; root: stay)\n"
		TLS_USAGE
		"  -v, --verbose        progress (default), twice for debug; -q quiet\n");
}

static char *regions_env(const struct fl_region *g, size_t n)
{
	size_t cap = 64 + n * (3 * 20 + FL_REGION_NAME_MAX + 8), len = 0;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	s[0] = 0;
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%zu:%llx:%llx:%x:%s;", i,
					(unsigned long long)g[i].start,
					(unsigned long long)g[i].len, g[i].page_size, g[i].name);
	return s;
}

/* A process's statm line ("" if gone), and its resident bytes. */
static uint64_t statm_of(pid_t pid, char *line, size_t len)
{
	char path[64];
	unsigned long long size, res = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	line[0] = 0;
	f = fopen(path, "re");
	if (f) {
		if (!fgets(line, (int)len, f) || sscanf(line, "%llu %llu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Resident bytes of a process and all its descendants (the restorer may
 * be a shell running the program, and the program may fork). A child that
 * shares its parent's memory (vfork, or a sanitizer's tracer made with
 * CLONE_VM) shows the very same statm line: it is not counted twice. This
 * process may have dropped to an unprivileged user, so no kcmp(). */
static uint64_t rss_tree(pid_t pid, const char *parent_line, int depth)
{
	char line[256], path[64];
	uint64_t sum = statm_of(pid, line, sizeof(line));
	DIR *d;
	struct dirent *e;

	if (parent_line && line[0] && !strcmp(line, parent_line))
		sum = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (depth > 16 || !(d = opendir(path)))
		return sum;
	while ((e = readdir(d))) {
		char cpath[400];
		FILE *f;
		int c;

		if (e->d_name[0] == '.')
			continue;
		snprintf(cpath, sizeof(cpath), "%s/%s/children", path, e->d_name);
		f = fopen(cpath, "re");
		while (f && fscanf(f, "%d", &c) == 1)
			sum += rss_tree(c, line, depth + 1);
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

/* The restorer, through the launcher forked at start-up (it kept the
 * privileges we dropped): with FAULTLINE_SOCKET, _REGIONS and
 * _DEVICE_STATE set. */
static pid_t spawn(struct launcher *l, const char *cmd, const char *sock, const char *regions,
		   const char *state)
{
	const char *names[3] = { "FAULTLINE_SOCKET", "FAULTLINE_REGIONS", "FAULTLINE_DEVICE_STATE" };
	const char *values[3] = { sock, regions ? regions : "", state };
	char *extra[4] = { NULL };
	size_t k = 0;
	pid_t pid = -ENOMEM;

	for (size_t i = 0; i < 3; i++) {
		if (!values[i])
			continue;
		/* asprintf leaves the pointer undefined when it fails */
		if (asprintf(&extra[k], "%s=%s", names[i], values[i]) < 0) {
			extra[k] = NULL;
			goto out;
		}
		k++;
	}
	pid = launcher_exec(l, cmd, extra);
out:
	for (size_t i = 0; i < k; i++)
		free(extra[i]);
	return pid;
}

/*
 * Who to be once set up: nothing of root is needed then (the restorer
 * is started by the launcher forked before), so root becomes nobody, but
 * only where a page that cannot arrive ends as SIGBUS by UFFDIO_POISON:
 * without it the monitor kills the process, which nobody may not do to
 * root's. NULL: stay.
 */
static const char *who_to_become(const char *asked, int verbose)
{
	uint64_t features = 0, ioctls = 0;

	if (asked)
		return strcmp(asked, "root") ? asked : NULL;
	if (geteuid() != 0 || !getpwnam("nobody"))
		return NULL;
	if (fl_uffd_probe(0, &features, &ioctls) || !(features & UFFD_FEATURE_POISON)) {
		if (verbose)
			fprintf(stderr, "receive: staying root (without capabilities): this kernel "
				"has no UFFD_FEATURE_POISON\n");
		return NULL;
	}
	return "nobody";
}

int cmd_receive(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "exec", required_argument, NULL, 'e' },
		{ "stats-json", required_argument, NULL, 'j' },
		{ "reconnect-deadline", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "keep-caps", no_argument, NULL, 'k' },
		{ "user", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		TLS_LONG_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct fl_tls_config tls = { 0 };
	struct fl_monitor_opts mo = { .exit_when_idle = true };
	struct fl_receiver_opts ro = { .rejoin_s = 60 };
	const char *listen_at = NULL, *cmd = NULL, *json = NULL, *user = NULL;
	FILE *json_out = NULL;
	char err[512] = "", sock[108], state[128] = "", *regions = NULL;
	struct rusage child_ru = { 0 };
	uint64_t peak_both = 0; /* this process and the restorer, together */
	char dir[] = "/tmp/faultline-receive-XXXXXX";
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_handoff_server *srv = NULL;
	struct launcher launch = { .pid = -1, .fd = -1 };
	bool keep_caps = false;
	const void *blob = NULL;
	size_t blob_len = 0, n;
	int c, lfd, port = 0, status = 0, verbose = 1, ret = CLI_FAILED;
	bool done = false;
	pid_t child;

	mo.on_sigusr1 = cli_stats_on_sigusr1; /* statistics on SIGUSR1 */

	while ((c = getopt_long(argc, argv, "l:e:j:vqkh", opts, NULL)) != -1) {
		if (tls_option(c, optarg, &tls, "dest"))
			continue;
		switch (c) {
		case 'l': listen_at = optarg; break;
		case 'e': cmd = optarg; break;
		case 'j': json = optarg; break;
		case 'r':
			if (cli_parse_seconds("receive --reconnect-deadline", optarg, &ro.rejoin_s))
				return CLI_USAGE;
			break;
		case 'v': verbose++; break;
		case 'q': verbose = 0; break;
		case 'k': keep_caps = true; break;
		case 'u': user = optarg; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (!listen_at || !cmd || optind < argc) {
		fprintf(stderr, "faultline receive: --listen and --exec are required\n");
		usage(stderr);
		return CLI_USAGE;
	}
	if (!tls_finish(&tls, "receive"))
		return CLI_USAGE;
	lfd = fl_conn_listen(listen_at, &port, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "faultline receive: %s\n", err);
		return CLI_FAILED;
	}
	/* Still one thread: fork the restorer's launcher now, with our
	 * privileges, then give up every privilege before any thread starts
	 * (the receiver's network threads parse bytes from the network). */
	if ((ret = launcher_start(&launch)) < 0) {
		fprintf(stderr, "faultline receive: cannot fork the restorer's launcher: %s\n",
			strerror(-ret));
		close(lfd);
		return CLI_FAILED;
	}
	ret = CLI_FAILED;
	/* What we will need and could not get later: the certificate and
	 * key, the statistics file. */
	if (fl_conn_tls_load(&tls, true, err, sizeof(err))) {
		fprintf(stderr, "faultline receive: %s\n", err);
		goto out;
	}
	if (json && !(json_out = fopen(json, "we"))) {
		fprintf(stderr, "faultline receive: cannot write %s: %s\n", json, strerror(errno));
		goto out;
	}
	user = who_to_become(user, verbose);
	if (!keep_caps && fl_privileges_drop_to(user, err, sizeof(err))) {
		fprintf(stderr, "faultline receive: %s\n", err);
		goto out;
	}
	if (verbose)
		fprintf(stderr, "receive: listening on %s (port %d), %s%s\n", listen_at, port,
			tls.plain ? "plain TCP" : "TLS 1.3 with client certificates, ours ",
			tls.plain ? "" : tls.cert);
	ro.verbose = verbose;
	if (fl_receiver_accept_opts(&r, lfd, &tls, &ro, err, sizeof(err)) ||
	    fl_receiver_wait_resume(r, &blob, &blob_len, err, sizeof(err))) {
		fprintf(stderr, "faultline receive: %s\n", err);
		goto out;
	}
	close(lfd);
	lfd = -1;
	{
		const struct fl_region *g = fl_receiver_regions(r, &n);

		regions = regions_env(g, n);
	}
	/* A private directory (0700, unpredictable name) for the handoff
	 * socket and the device state: nothing another user made can be
	 * followed or read there. */
	if (!mkdtemp(dir)) {
		fprintf(stderr, "faultline receive: cannot create a private directory %s: %s\n",
			dir, strerror(errno));
		dir[0] = 0;
		goto out;
	}
	snprintf(sock, sizeof(sock), "%s/handoff.sock", dir);
	if (blob_len) {
		int fd;

		snprintf(state, sizeof(state), "%s/device-state", dir);
		fd = open(state, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 || cli_write_all(fd, blob, blob_len)) {
			fprintf(stderr, "faultline receive: cannot write the device state to %s: %s\n",
				state, strerror(errno));
			if (fd >= 0)
				close(fd);
			goto out;
		}
		close(fd);
	}
	mo.verbose = verbose;
	/* The destination composition a VMM uses (src/vmm/dest.c), with the
	 * restorer handing its memory over a socket instead. */
	if (fl_vmm_dest_serve(&d, r, &mo, err, sizeof(err)) ||
	    cli_serve_handoffs(&srv, fl_vmm_dest_monitor(d), fl_receiver_source(r), sock,
			       FL_HANDOFF_FAULTLINE, -1, verbose, err, sizeof(err))) {
		fprintf(stderr, "faultline receive: %s\n", err);
		goto out;
	}
	if (verbose)
		fprintf(stderr, "receive: switch-over: starting the restorer: %s\n", cmd);
	child = spawn(&launch, cmd, sock, regions, state[0] ? state : NULL);
	if (child < 0) {
		fprintf(stderr, "faultline receive: cannot start the restorer: %s\n",
			strerror(-child));
		goto out;
	}
	if (fl_vmm_dest_run(d, err, sizeof(err))) {
		fprintf(stderr, "faultline receive: %s\n", err);
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		goto out;
	}
	/* The source keeps the memory until we have every page (the watcher
	 * tells it as soon as that is true); a program may run on for ever. */
	for (;;) {
		pid_t w = wait4(child, &status, WNOHANG, &child_ru);
		/* Sampled while pages move: once all are in, what the program
		 * does is its own (and a sanitizer's leak check at its exit
		 * shares its memory with a tracer whose statm line may not
		 * match it exactly, so it would be counted twice). */
		uint64_t both = w == child || done ? 0 : rss_tree(getpid(), NULL, -1);

		if (both > peak_both)
			peak_both = both;

		if (!done && fl_vmm_dest_owed(d) == 0) {
			done = true;
			if (verbose)
				fprintf(stderr, "receive: every page has arrived; the source may let go\n");
		}
		if (w == child)
			break;
		usleep(10000);
	}
	/* Its processes may outlive it (forks): the monitor ends by itself
	 * when they are gone. If nothing was ever handed over, stop it. */
	while (!fl_vmm_dest_monitor_done(d) &&
	       fl_monitor_ever_served(fl_vmm_dest_monitor(d)))
		usleep(10000);
	if (verbose) {
		/* Before the threads end: CPU seconds of each of ours. */
		struct fl_thread_cpu t[16];
		size_t nt = fl__threads_cpu("", t, 16);
		double all;

		fprintf(stderr, "receive: CPU seconds here, per thread:");
		all = fl__thread_cpu_print(stderr, t, nt);
		fprintf(stderr, "; %.2f in all\n", all);
	}
	fl_vmm_dest_stop(d);
	fl_vmm_dest_finish(d); /* if the watcher had not yet */
	if (verbose)
		fl_vmm_dest_print_stats(d, stderr, false);
	if (verbose) {
		/* The destination's peak: both processes sampled together (what
		 * the machine held), and each one's own peak. */
		struct rusage self_ru;
		const struct fl_region *g;
		size_t ng;
		uint64_t ram = 0;

		getrusage(RUSAGE_SELF, &self_ru);
		g = fl_receiver_regions(r, &ng);
		for (size_t i = 0; g && i < ng; i++)
			ram += g[i].len;
		fprintf(stderr, "receive: peak memory: %.1f MiB here and the restorer together "
			"(sampled every 10 ms while pages arrived; each alone at its peak: %.1f MiB here, %.1f MiB the "
			"restorer), for %.1f MiB of RAM migrated; %.1f MiB of staging handed back "
			"as pages went in\n", (double)peak_both / 1048576,
			(double)self_ru.ru_maxrss / 1024, (double)child_ru.ru_maxrss / 1024,
			(double)ram / 1048576, (double)fl_receiver_staging_released(r) / 1048576);
	}
	if (json_out)
		fl_vmm_dest_print_stats(d, json_out, true);
	ret = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (verbose)
		fprintf(stderr, "receive: the restorer %s %d\n",
			WIFEXITED(status) ? "exited with" : "died of signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	if (verbose && fl_receiver_reconnects(r))
		fprintf(stderr, "receive: the source reconnected %u times\n",
			fl_receiver_reconnects(r));
	if (fl_receiver_error(r) && fl_vmm_dest_owed(d)) {
		/* Said last, where it is seen: what was lost and why. */
		fprintf(stderr, "faultline receive: the migration failed: %s (%llu pages never "
			"arrived; the program got SIGBUS for any it touched)\n", fl_receiver_error(r),
			(unsigned long long)fl_vmm_dest_owed(d));
		if (!ret)
			ret = CLI_FAILED;
	}
out:
	if (json_out)
		fclose(json_out);
	launcher_cancel(&launch); /* if it was never used */
	if (lfd >= 0)
		close(lfd);
	if (d)
		fl_vmm_dest_stop(d);
	fl_handoff_server_destroy(srv); /* on the monitor's loop: after it stopped */
	fl_vmm_dest_destroy(d);
	fl_receiver_destroy(r);
	if (state[0])
		unlink(state);
	if (dir[0] && dir[strlen(dir) - 1] != 'X') {
		unlink(sock);
		rmdir(dir);
	}
	free(regions);
	return ret;
}
