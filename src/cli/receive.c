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
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline/migrate.h>
#include <faultline/monitor.h>
#include <faultline/vmm.h>

#include "cli.h"
#include "handoffs.h"
#include "tls-opts.h"

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

/* The program's environment plus the three FAULTLINE_ variables, built
 * before fork(): the receiver has threads, so the child may only exec. */
static pid_t spawn(const char *cmd, const char *sock, const char *regions,
		   const char *state)
{
	static const char *const names[] = { "FAULTLINE_SOCKET=", "FAULTLINE_REGIONS=",
					      "FAULTLINE_DEVICE_STATE=" };
	const char *vals[] = { sock, regions, state };
	char *const argv[] = { "sh", "-c", (char *)cmd, NULL };
	size_t n = 0, k = 0;
	char **env;
	pid_t pid = -1;

	while (environ[n])
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (!env)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "FAULTLINE_", 10))
			env[k++] = environ[i];
	for (size_t i = 0; i < 3; i++) {
		char *v;

		if (!vals[i])
			continue;
		if (asprintf(&v, "%s%s", names[i], vals[i]) < 0)
			goto out;
		env[k++] = v;
	}
	pid = fork();
	if (pid == 0) {
		execve("/bin/sh", argv, env);
		_exit(127);
	}
out:
	for (size_t i = 0; i < k; i++)
		if (!strncmp(env[i], "FAULTLINE_", 10))
			free(env[i]);
	free(env);
	return pid;
}

int cmd_receive(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "exec", required_argument, NULL, 'e' },
		{ "stats-json", required_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		TLS_LONG_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct fl_tls_config tls = { 0 };
	struct fl_monitor_opts mo = { .exit_when_idle = true };
	const char *listen_at = NULL, *cmd = NULL, *json = NULL;
	char err[512] = "", sock[108], state[128] = "", *regions = NULL;
	struct fl_receiver *r = NULL;
	struct fl_vmm_dest *d = NULL;
	struct fl_handoff_server *srv = NULL;
	const void *blob = NULL;
	size_t blob_len = 0, n;
	int c, lfd, port = 0, status = 0, verbose = 1, ret = CLI_FAILED;
	bool done = false;
	pid_t child;

	while ((c = getopt_long(argc, argv, "l:e:j:vqh", opts, NULL)) != -1) {
		if (tls_option(c, optarg, &tls, "dest"))
			continue;
		switch (c) {
		case 'l': listen_at = optarg; break;
		case 'e': cmd = optarg; break;
		case 'j': json = optarg; break;
		case 'v': verbose++; break;
		case 'q': verbose = 0; break;
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
	if (verbose)
		fprintf(stderr, "receive: listening on %s (port %d), %s%s\n", listen_at, port,
			tls.plain ? "plain TCP" : "TLS 1.3 with client certificates, ours ",
			tls.plain ? "" : tls.cert);
	if (fl_receiver_accept(&r, lfd, &tls, verbose, err, sizeof(err)) ||
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
	snprintf(sock, sizeof(sock), "/tmp/faultline-receive-%d.sock", getpid());
	if (blob_len) {
		FILE *f;

		snprintf(state, sizeof(state), "/tmp/faultline-device-state-%d", getpid());
		f = fopen(state, "we");
		if (!f || fwrite(blob, 1, blob_len, f) != blob_len) {
			fprintf(stderr, "faultline receive: cannot write %s\n", state);
			if (f)
				fclose(f);
			goto out;
		}
		fclose(f);
	}
	mo.verbose = verbose;
	/* The destination composition a VMM uses (src/vmm/dest.c), with the
	 * restorer handing its memory over a socket instead. */
	if (fl_vmm_dest_serve(&d, r, &mo, err, sizeof(err)) ||
	    cli_serve_handoffs(&srv, fl_vmm_dest_monitor(d), fl_receiver_source(r), sock,
			       FL_HANDOFF_FAULTLINE, verbose, err, sizeof(err))) {
		fprintf(stderr, "faultline receive: %s\n", err);
		goto out;
	}
	if (verbose)
		fprintf(stderr, "receive: switch-over: starting the restorer: %s\n", cmd);
	child = spawn(cmd, sock, regions, state[0] ? state : NULL);
	if (child < 0) {
		fprintf(stderr, "faultline receive: cannot start the restorer: %s\n",
			strerror(errno));
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
		pid_t w = waitpid(child, &status, WNOHANG);

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
	fl_vmm_dest_stop(d);
	fl_vmm_dest_finish(d); /* if the watcher had not yet */
	if (verbose)
		fl_vmm_dest_print_stats(d, stderr, false);
	if (json) {
		FILE *f = fopen(json, "we");

		if (f) {
			fl_vmm_dest_print_stats(d, f, true);
			fclose(f);
		}
	}
	ret = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (verbose)
		fprintf(stderr, "receive: the restorer %s %d\n",
			WIFEXITED(status) ? "exited with" : "died of signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
out:
	if (lfd >= 0)
		close(lfd);
	if (d)
		fl_vmm_dest_stop(d);
	fl_handoff_server_destroy(srv); /* on the monitor's loop: after it stopped */
	fl_vmm_dest_destroy(d);
	fl_receiver_destroy(r);
	if (state[0])
		unlink(state);
	free(regions);
	return ret;
}
