// SPDX-License-Identifier: MIT
/*
 * `faultline lazy-pages`: a drop-in for `criu lazy-pages`. It takes CRIU's
 * command line for the daemon, listens on WORKDIR/lazy-pages.socket for
 * `criu restore --lazy-pages`, adopts each restored process's userfaultfd
 * into a monitor and serves it from the image set (or the dump's page
 * server), faults first. It exits once every lazy page is in (or every
 * process is gone), closing the page-server session as `criu dump`
 * expects.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faultline/monitor.h>

#include "cli.h"
#include "handoff/criu.h"
#include "handoffs.h"
#include "transport/source-criu.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline lazy-pages -D DIR [-W DIR] [--page-server --address A --port P]\n"
		"                            [-d] [--pidfile FILE] [-o FILE] [-v]\n"
		"Serve `criu restore --lazy-pages` as `criu lazy-pages` does, with the same\n"
		"options: restored processes' missing pages come from the image set, or from\n"
		"the source's `criu dump --lazy-pages` page server; faults first, the rest\n"
		"streamed once the restore has finished. Exits when every lazy page is in.\n\n"
		"  -D, --images-dir DIR  the dump's images (pstree.img, mm-*, pagemap-*, pages-*)\n"
		"  -W, --work-dir DIR    where lazy-pages.socket is (default: the images dir);\n"
		"                        give criu restore the same one\n"
		"      --page-server     fetch lazy pages from the dump's page server\n"
		"      --address ADDR    its address (default 127.0.0.1)\n"
		"      --port PORT       its port (default 27)\n"
		"  -d, --daemon          return once the socket listens, serve in the background\n"
		"      --pidfile FILE    write the serving process's pid to FILE\n"
		"  -o, --log-file FILE   log here (relative to the work dir) instead of stderr\n"
		"  -v[N], --verbosity[=N]  more progress (as criu's -v; -v4 or more: debug)\n"
		"      --stats-json FILE also write the final statistics as JSON\n"
		"      --tls             refused: CRIU's TLS page-server connection is not supported\n"
		"      --no-prefetch     serve faults only, no background stream (faultline's own\n"
		"                        option: the daemon then lives as long as the processes)\n"
		"Statistics are printed at the end and on SIGUSR1.\n");
}

struct lazy {
	struct fl_monitor *m;
	struct fl_source *src;
	struct criu_handoff *ho;
	struct event *tick;
	bool finished, failed;
	int verbose;
};

static int regions_of(void *arg, int32_t pid, struct fl_handoff *h, char *err, size_t errlen)
{
	struct lazy *z = arg;
	const struct criu_lazy *l = fl__criu_source_lazy(z->src);
	size_t first, n = fl__criu_lazy_ranges_of(l, pid, &first);

	for (size_t i = 0; i < l->npids; i++)
		if (l->pids[i] == pid)
			goto known;
	snprintf(err, errlen, "pid %d is not in pstree.img", pid);
	return -ESRCH;
known:
	if (!n)
		return 0;
	h->regions = calloc(n, sizeof(*h->regions));
	if (!h->regions) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct criu_range *g = &l->ranges[first + i];

		h->regions[i] = (struct fl_handoff_region){ .addr = g->vaddr, .len = g->len,
							    .source_region = (uint32_t)(first + i),
							    .page_size = 4096 };
	}
	h->nregions = n;
	return 0;
}

static int accept_one(void *arg, struct fl_handoff *h, char *err, size_t errlen)
{
	struct lazy *z = arg;

	return fl_monitor_adopt_handoff(z->m, h, err, errlen);
}

static void finished(void *arg)
{
	struct lazy *z = arg;

	z->finished = true;
	fl__criu_source_start_background(z->src);
}

static void failed(void *arg, const char *why)
{
	struct lazy *z = arg;

	(void)why; /* logged by the handoff */
	z->failed = true;
	/* What was adopted is still served; with no restore finished the
	 * tree never runs, and its processes' exits end the monitor. */
	fl__criu_source_start_background(z->src);
}

/* Done when the restore has finished and nothing is owed any more. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct lazy *z = arg;

	(void)fd;
	(void)what;
	if ((z->finished || z->failed) && fl_monitor_owed_pages(z->m) == 0) {
		if (z->verbose && !z->failed)
			fprintf(stderr, "lazy-pages: every lazy page is in\n");
		fl_monitor_stop(z->m);
	}
}

/* -d: the parent returns once the child listens (criu restore may start
 * then), with the child's verdict. */
static int daemonize(int *ready_fd)
{
	int p[2];
	pid_t pid;
	char c = 1;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			c = 1;
		_exit(c ? CLI_FAILED : CLI_OK);
	}
	close(p[0]);
	setsid();
	*ready_fd = p[1];
	return 0;
}

static int redirect_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	dup2(fd, STDERR_FILENO);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	setvbuf(stderr, NULL, _IOLBF, 0);
	return 0;
}

/* Once the images are read, before the page server's reader thread (it
 * parses bytes from the network): ending a process that cannot get its
 * pages is all that needs a privilege later (CAP_KILL, which the monitor
 * keeps too). */
static int drop_privileges(void *arg, char *err, size_t errlen)
{
	static const int keep[] = { CAP_KILL };

	(void)arg;
	return fl_privileges_keep(keep, 1, err, errlen);
}

int cmd_lazy_pages(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "images-dir", required_argument, NULL, 'D' },
		{ "work-dir", required_argument, NULL, 'W' },
		{ "page-server", no_argument, NULL, 'P' },
		{ "address", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "pidfile", required_argument, NULL, 'f' },
		{ "log-file", required_argument, NULL, 'o' },
		{ "verbosity", optional_argument, NULL, 'v' },
		{ "stats-json", required_argument, NULL, 'j' },
		{ "no-prefetch", no_argument, NULL, 'n' },
		{ "tls", no_argument, NULL, 'T' },
		{ "tls-cacert", required_argument, NULL, 'T' },
		{ "tls-cacrl", required_argument, NULL, 'T' },
		{ "tls-cert", required_argument, NULL, 'T' },
		{ "tls-key", required_argument, NULL, 'T' },
		{ "tls-no-cn-verify", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *images = NULL, *work = NULL, *addr = "127.0.0.1", *pidfile = NULL;
	const char *logfile = NULL, *json = NULL;
	char images_abs[PATH_MAX], pidfile_abs[PATH_MAX], err[1024] = "";
	bool page_server = false, daemon = false;
	int port = 27, c, ret, ready_fd = -1, verbose = 1;
	struct fl_monitor_opts o = { .exit_when_idle = true };
	struct fl_criu_source_opts so = { 0 };
	struct criu_handoff_ops ops = { regions_of, accept_one, finished, failed };
	struct lazy z = { 0 };

	o.on_sigusr1 = cli_stats_on_sigusr1;
	while ((c = getopt_long(argc, argv, "D:W:do:v::h", opts, NULL)) != -1) {
		switch (c) {
		case 'D': images = optarg; break;
		case 'W': work = optarg; break;
		case 'P': page_server = true; break;
		case 'a': addr = optarg; break;
		case 'p':
			port = atoi(optarg);
			if (port <= 0 || port > 65535) {
				fprintf(stderr, "faultline lazy-pages: --port %s is not a TCP port\n",
					optarg);
				return CLI_USAGE;
			}
			break;
		case 'd': daemon = true; break;
		case 'f': pidfile = optarg; break;
		case 'o': logfile = optarg; break;
		case 'v':
			/* criu: -v alone adds one level, -vN sets it (4: debug) */
			if (!optarg)
				verbose++;
			else if (optarg[0] == 'v')
				verbose += 1 + (int)strspn(optarg, "v");
			else
				verbose = atoi(optarg) >= 4 ? 2 : 1;
			break;
		case 'j': json = optarg; break;
		case 'n': o.no_prefetch = true; break;
		case 'T':
			fprintf(stderr, "faultline lazy-pages: CRIU's TLS for the page server (--tls and "
				"its certificate options) is not supported: run criu dump and this "
				"without it, over a network you trust\n");
			return CLI_USAGE;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind < argc || !images) {
		fprintf(stderr, "faultline lazy-pages: give the images dir (-D DIR)\n");
		usage(stderr);
		return CLI_USAGE;
	}
	if (!realpath(images, images_abs)) {
		fprintf(stderr, "faultline lazy-pages: images dir %s: %s\n", images,
			strerror(errno));
		return CLI_FAILED;
	}
	/* The pid file is where the caller said, from where it said it. */
	if (pidfile && pidfile[0] != '/') {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(pidfile_abs, sizeof(pidfile_abs), "%s/%s", cwd, pidfile) >=
			    (int)sizeof(pidfile_abs)) {
			fprintf(stderr, "faultline lazy-pages: pidfile %s: path too long\n", pidfile);
			return CLI_FAILED;
		}
		pidfile = pidfile_abs;
	}
	/* As criu does: everything else relative happens in the work dir
	 * (the log file too). */
	if (chdir(work ? work : images_abs)) {
		fprintf(stderr, "faultline lazy-pages: work dir %s: %s\n", work ? work : images_abs,
			strerror(errno));
		return CLI_FAILED;
	}
	o.verbose = verbose > 2 ? 2 : verbose;
	z.verbose = o.verbose;
	if (daemon && (ret = daemonize(&ready_fd))) {
		fprintf(stderr, "faultline lazy-pages: daemonizing: %s\n", strerror(-ret));
		return CLI_FAILED;
	}
	if (logfile && (ret = redirect_log(logfile))) {
		fprintf(stderr, "faultline lazy-pages: log file %s: %s\n", logfile, strerror(-ret));
		goto out;
	}
	if (page_server) {
		/* The page server answers one GET at a time, in order, at most
		 * 256 pages (one of its pipes) per reply: a fault's GET waits
		 * behind every background byte asked before it. Two reads of
		 * 2 MiB in flight: at most 4 MiB ahead of a fault (CRIU's own
		 * daemon allows up to 4 MiB too), and measured here (1 GiB,
		 * loaded machine) no slower than 4 or 8 reads of 1 MiB. */
		o.bg_chunk = 2u << 20;
		o.bg_inflight = 2;
	} else {
		o.bg_chunk = CLI_LOCAL_BG_CHUNK;
		o.bg_inflight = CLI_LOCAL_BG_INFLIGHT;
	}
	so.images_read = drop_privileges;
	so.images_dir = images_abs;
	so.ps_addr = page_server ? addr : NULL;
	so.ps_port = port;
	so.verbose = o.verbose;
	ret = fl__criu_source_create(&z.src, &so, err, sizeof(err));
	if (!ret)
		ret = fl_monitor_create(&z.m, z.src, &o, err, sizeof(err));
	if (!ret)
		ret = fl__criu_handoff_create(&z.ho, fl_monitor_event_base(z.m), CRIU_LAZY_SOCKET,
					      fl__criu_source_lazy(z.src)->npids, o.verbose, &ops, &z,
					      err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline lazy-pages: %s\n", err);
		goto out;
	}
	{
		struct timeval every = { 0, 20 * 1000 };

		z.tick = event_new(fl_monitor_event_base(z.m), -1, EV_PERSIST, on_tick, &z);
		if (!z.tick) {
			ret = -ENOMEM;
			goto out;
		}
		event_add(z.tick, &every);
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "we");

		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f)) {
			fprintf(stderr, "faultline lazy-pages: pidfile %s: %s\n", pidfile,
				strerror(errno));
			ret = -EIO;
			goto out;
		}
	}
	if (o.verbose) {
		const struct criu_lazy *l = fl__criu_source_lazy(z.src);

		fprintf(stderr, "lazy-pages: %zu processes, %.1f MiB lazy in %zu ranges, from %s; "
			"listening on %s/%s\n", l->npids, (double)l->lazy_bytes / (1 << 20),
			l->nranges, page_server ? "the page server" : images_abs,
			work ? work : images_abs, CRIU_LAZY_SOCKET);
	}
	if (ready_fd >= 0) {
		char ok = 0;
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			if (!logfile) {
				dup2(null, STDOUT_FILENO);
				dup2(null, STDERR_FILENO);
			}
			close(null);
		}
		(void)!write(ready_fd, &ok, 1);
		close(ready_fd);
		ready_fd = -1;
	}
	ret = fl_monitor_run(z.m);
	if (z.failed)
		fprintf(stderr, "lazy-pages: done: the restore failed\n");
	else if (!z.finished)
		fprintf(stderr, "lazy-pages: stopped before criu restore had finished\n");
	else if (fl_monitor_owed_pages(z.m))
		fprintf(stderr, "lazy-pages: done, with %llu pages still owed to live processes\n",
			(unsigned long long)fl_monitor_owed_pages(z.m));
	else
		fprintf(stderr, "lazy-pages: done: every lazy page is in, or its process gone\n");
	{
		int r2 = fl__criu_source_finish(z.src, err, sizeof(err));

		if (r2) {
			fprintf(stderr, "lazy-pages: %s\n", err);
			ret = ret ? ret : r2;
		}
	}
	fl_monitor_print_stats(z.m, stdout, false);
	if (json) {
		FILE *f = fopen(json, "we");

		if (f) {
			fl_monitor_print_stats(z.m, f, true);
			fclose(f);
		}
	}
	if (z.failed)
		ret = ret ? ret : -EPROTO;
out:
	if (ready_fd >= 0) {
		char bad = 1;

		(void)!write(ready_fd, &bad, 1);
		close(ready_fd);
	}
	if (z.tick)
		event_free(z.tick);
	fl__criu_handoff_destroy(z.ho);
	fl_monitor_destroy(z.m);
	fl_source_destroy(z.src);
	return ret ? CLI_FAILED : CLI_OK;
}
