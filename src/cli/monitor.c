// SPDX-License-Identifier: MIT
/* `faultline monitor`: serve restored processes lazily from a snapshot, or
 * a Firecracker microVM from its memory file. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faultline/monitor.h>
#include <faultline/snapshot.h>
#include <faultline/source-rawfile.h>

#include "cli.h"
#include "handoffs.h"
#include "keeper.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline monitor --snapshot DIR --socket PATH [options]\n"
		"       faultline monitor --firecracker-socket PATH --memory-file FILE [options]\n"
		"Serve the memory of restored processes from a snapshot: each missing page\n"
		"a process touches is read and installed at once, the rest streams in the\n"
		"background. Restorers hand over their userfaultfd on PATH\n"
		"(fl_restore_handoff()). Exits when every process served is gone.\n\n"
		"  --snapshot DIR        the snapshot to serve (faultline snapshot)\n"
		"  --socket PATH         where restorers connect\n\n"
		"Firecracker mode: a page-fault handler for Firecracker's snapshot restore\n"
		"(\"mem_backend\": {\"backend_type\": \"Uffd\", \"backend_path\": PATH}).\n"
		"Firecracker connects to PATH and sends its guest memory regions as JSON with\n"
		"its userfaultfd; faults are served from the memory file (region bytes at\n"
		"their \"offset\"; holes as zero pages). Balloon inflation (MADV_DONTNEED)\n"
		"makes those pages zero pages from then on. Several VMs restored from the\n"
		"same memory file may connect; the monitor exits when they are all gone.\n"
		"  --firecracker-socket PATH  where Firecracker connects\n"
		"  --memory-file FILE    Firecracker's memory snapshot file (snapshot/create\n"
		"                        \"mem_file_path\"), served as one region from offset 0;\n"
		"                        --snapshot DIR also works when its regions, laid end\n"
		"                        to end, are the memory file and no Firecracker region\n"
		"                        spans two of them\n"
		"  --huge-pages          guest memory is backed by 2 MiB huge pages\n"
		"                        (Firecracker's \"huge_pages\": \"2M\")\n"
		"Assumes Firecracker opened the userfaultfd with UFFD_FEATURE_EVENT_REMOVE\n"
		"only (it does; the features cannot be asked again).\n\n"
		"  --no-prefetch         serve faults only, no background stream\n"
		"  --record-faults FILE  write each fault's page, to replay later\n"
		"  --replay-faults FILE  prefetch the pages of a recorded order first\n"
		"  --stats-json FILE     also write the final statistics as JSON\n"
		"  --keep-caps           don't drop capabilities after set-up\n"
		"  --no-keeper           run the monitor alone: if it dies, the processes it\n"
		"                        served lose it (fork children then read zeros)\n"
		"  -v, --verbose         progress; twice for debug\n"
		"  -q, --quiet           errors only\n"
		"Statistics are printed at the end and on SIGUSR1.\n\n"
		"A keeper process runs the monitor and outlives it: a monitor that dies (of\n"
		"a signal) is replaced by one that serves the same processes, fork children\n"
		"included, with the same page states, from the keeper's journal. Signals\n"
		"sent to the keeper go to the monitor.\n");
}

/* The memory file as one region from offset 0: Firecracker's regions name
 * their own offsets in it (the handoff server maps them onto the source's
 * regions laid end to end: here just this one). Its length is the file's,
 * rounded down to whole pages: a region reaching past it is refused when
 * Firecracker connects, naming the sizes. */
static int open_memory_file(const char *path, bool huge, struct fl_source **src, char *err,
			    size_t errlen)
{
	struct fl_region r = { .page_size = huge ? 2u << 20 : 4096u,
			       .prot = 3 /* PROT_READ | PROT_WRITE */ };
	uint64_t off = 0;
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "cannot open memory file %s: %s", path, strerror(errno));
		return -errno;
	}
	r.len = (uint64_t)st.st_size & ~(uint64_t)(r.page_size - 1);
	if (!r.len) {
		snprintf(err, errlen, "memory file %s holds less than one %u-byte page (%llu bytes)",
			 path, r.page_size, (unsigned long long)st.st_size);
		return -EINVAL;
	}
	snprintf(r.name, sizeof(r.name), "memory-file");
	return fl_source_rawfile_create(src, path, &r, &off, 1, err, errlen);
}

/* What the command line asked, for the keeper's monitors. */
struct mon_args {
	const char *dir, *json, *memfile, *sock, *fc_sock, *record, *replay;
	bool huge;
	struct fl_monitor_opts o;
	int journal_fd, listen_fd, fc_listen_fd; /* -1: none (no keeper) */
};

static int open_source(const struct mon_args *a, struct fl_snapshot **snap,
		       struct fl_source **src)
{
	char err[512] = "";
	int ret;

	if (a->memfile) {
		ret = open_memory_file(a->memfile, a->huge, src, err, sizeof(err));
		if (ret)
			fprintf(stderr, "faultline monitor: %s\n", err);
		return ret;
	}
	ret = fl_snapshot_open(a->dir, snap, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		return ret;
	}
	ret = fl_source_snapshot_create(src, *snap, NULL);
	if (ret)
		fprintf(stderr, "faultline monitor: cannot read %s with io_uring: %s\n", a->dir,
			strerror(-ret));
	return ret;
}

static void write_json(struct fl_monitor *m, const char *json)
{
	FILE *f = fopen(json, "we");

	if (f) {
		fl_monitor_print_stats(m, f, true);
		fclose(f);
	} else {
		fprintf(stderr, "faultline monitor: cannot write %s: %s\n", json, strerror(errno));
	}
}

/* One monitor, from set-up to exit: the first (restarts 0) or one that
 * takes over from a monitor that died (the keeper's). */
static int serve(void *arg, unsigned restarts)
{
	struct mon_args *a = arg;
	struct fl_monitor_opts o = a->o;
	struct fl_page_ref *order = NULL;
	struct fl_snapshot *snap = NULL;
	struct fl_source *src = NULL;
	struct fl_monitor *m = NULL;
	struct fl_handoff_server *srv = NULL, *fc_srv = NULL;
	const char *dir = a->dir;
	char err[512] = "";
	FILE *rec = NULL;
	int ret;

	if (restarts) {
		int keep[2] = { a->listen_fd, a->fc_listen_fd };

		ret = cli_keeper_close_strays(a->journal_fd, keep, 2, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "faultline monitor: %s\n", err);
			return CLI_FAILED;
		}
	}
	ret = open_source(a, &snap, &src);
	if (ret)
		goto out;
	if (a->replay &&
	    (ret = fl_fault_order_load(a->replay, src->regions, src->nregions, &order,
				       &o.nreplay, err, sizeof(err)))) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		goto out;
	}
	o.replay = order;
	if (a->record) {
		rec = fopen(a->record, restarts ? "ae" : "we");
		if (!rec) {
			fprintf(stderr, "faultline monitor: cannot write fault record %s: %s\n",
				a->record, strerror(errno));
			ret = -errno;
			goto out;
		}
		o.on_fault_page = fl_fault_order_append;
		o.on_fault_arg = rec;
	}
	/* The monitor, then the sockets on its loop: both before it drops its
	 * capabilities, which fl_monitor_run() does first. */
	ret = fl_monitor_create(&m, src, &o, err, sizeof(err));
	if (!ret) {
		/* Its SIGUSR1 handler is in: one the keeper forwarded meanwhile
		 * (held blocked since the clone) is delivered now. SIGUSR2,
		 * which the monitor has no use for, stays blocked. */
		sigset_t held;

		sigemptyset(&held);
		sigaddset(&held, SIGUSR1);
		sigprocmask(SIG_UNBLOCK, &held, NULL);
	}
	if (!ret && a->journal_fd >= 0)
		ret = fl_monitor_use_journal(m, a->journal_fd, restarts > 0, err, sizeof(err));
	if (!ret && a->sock)
		ret = cli_serve_handoffs(&srv, m, src, a->sock, FL_HANDOFF_FAULTLINE, a->listen_fd,
					 o.verbose, err, sizeof(err));
	if (!ret && a->fc_sock)
		ret = cli_serve_handoffs(&fc_srv, m, src, a->fc_sock, FL_HANDOFF_FIRECRACKER,
					 a->fc_listen_fd, o.verbose, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		goto out;
	}
	if (o.verbose && snap && a->sock && !restarts)
		fprintf(stderr, "monitor: serving %s (%zu regions, %.1f MiB of data) on %s\n",
			dir, src->nregions, (double)fl_snapshot_data_bytes(snap) / (1 << 20), a->sock);
	if (o.verbose && a->fc_sock && !restarts) {
		uint64_t bytes = 0;

		for (size_t i = 0; i < src->nregions; i++)
			bytes += src->regions[i].len;
		fprintf(stderr, "monitor: serving Firecracker from %s (%.1f MiB) on %s\n",
			a->memfile ? a->memfile : dir, (double)bytes / (1 << 20), a->fc_sock);
	}
	ret = fl_monitor_run(m);
	fl_monitor_print_stats(m, stdout, false);
	if (a->json)
		write_json(m, a->json);
out:
	fl_handoff_server_destroy(srv);
	fl_handoff_server_destroy(fc_srv);
	fl_monitor_destroy(m);
	fl_source_destroy(src);
	fl_snapshot_close(snap);
	if (rec)
		fclose(rec);
	free(order);
	return ret ? CLI_FAILED : CLI_OK;
}

/* The keeper (keeper.c) and what outlives every monitor it starts: the
 * journal and the listening sockets, made here after the keeper's own
 * capabilities are gone. */
static int keep(struct mon_args *a)
{
	static const int kill_only[] = { CAP_KILL };
	struct cli_keeper k = { .body = serve, .arg = a, .verbose = a->o.verbose };
	const char *env = getenv("FAULTLINE_JOURNAL_BYTES");
	char err[512] = "";
	int ret;

	cli_keeper_signals(); /* before the sockets exist */
	if (!a->o.keep_caps && fl_privileges_keep(kill_only, 1, err, sizeof(err)))
		fprintf(stderr, "faultline monitor: could not drop privileges: %s\n", err);
	a->journal_fd = fl_monitor_journal_create(env ? strtoull(env, NULL, 0) : 0, err,
						  sizeof(err));
	if (a->journal_fd < 0) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		return CLI_FAILED;
	}
	if (a->sock && (a->listen_fd = fl_handoff_listen(a->sock, err, sizeof(err))) < 0) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		return CLI_FAILED;
	}
	if (a->fc_sock &&
	    (a->fc_listen_fd = fl_handoff_listen(a->fc_sock, err, sizeof(err))) < 0) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		return CLI_FAILED;
	}
	k.journal_fd = a->journal_fd;
	ret = cli_keeper_run(&k);
	if (ret != CLI_OK) { /* a monitor that exits cleanly removes them itself */
		if (a->sock)
			unlink(a->sock);
		if (a->fc_sock)
			unlink(a->fc_sock);
	}
	return ret;
}

int cmd_monitor(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "snapshot", required_argument, NULL, 's' },
		{ "socket", required_argument, NULL, 'S' },
		{ "firecracker-socket", required_argument, NULL, 'F' },
		{ "memory-file", required_argument, NULL, 'm' },
		{ "huge-pages", no_argument, NULL, 'H' },
		{ "no-prefetch", no_argument, NULL, 'n' },
		{ "record-faults", required_argument, NULL, 'r' },
		{ "replay-faults", required_argument, NULL, 'R' },
		{ "stats-json", required_argument, NULL, 'j' },
		{ "keep-caps", no_argument, NULL, 'k' },
		{ "no-keeper", no_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mon_args a = { .o = { .verbose = 1, .exit_when_idle = true },
			      .journal_fd = -1, .listen_fd = -1, .fc_listen_fd = -1 };
	bool keeper = true;
	int c;

	a.o.on_sigusr1 = cli_stats_on_sigusr1; /* statistics on SIGUSR1 */
	a.o.bg_chunk = CLI_LOCAL_BG_CHUNK;
	a.o.bg_inflight = CLI_LOCAL_BG_INFLIGHT;
	while ((c = getopt_long(argc, argv, "s:S:F:m:Hnr:R:j:kKvqh", opts, NULL)) != -1) {
		switch (c) {
		case 's': a.dir = optarg; break;
		case 'S': a.sock = optarg; break;
		case 'F': a.fc_sock = optarg; break;
		case 'm': a.memfile = optarg; break;
		case 'H': a.huge = true; break;
		case 'n': a.o.no_prefetch = true; break;
		case 'r': a.record = optarg; break;
		case 'R': a.replay = optarg; break;
		case 'j': a.json = optarg; break;
		case 'k': a.o.keep_caps = true; break;
		case 'K': keeper = false; break;
		case 'v': a.o.verbose++; break;
		case 'q': a.o.verbose = 0; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind < argc || (!a.sock && !a.fc_sock) || !a.dir == !a.memfile ||
	    (a.memfile && !a.fc_sock)) {
		fprintf(stderr, "faultline monitor: give --snapshot DIR and --socket PATH, or "
			"--firecracker-socket PATH with --memory-file FILE (or --snapshot DIR)\n");
		usage(stderr);
		return CLI_USAGE;
	}
	return keeper ? keep(&a) : serve(&a, 0);
}
