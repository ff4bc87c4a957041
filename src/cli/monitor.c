// SPDX-License-Identifier: MIT
/* `faultline monitor`: serve restored processes lazily from a snapshot, or
 * a Firecracker microVM from its memory file. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <faultline/monitor.h>
#include <faultline/snapshot.h>
#include <faultline/source-rawfile.h>

#include "cli.h"
#include "handoffs.h"

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
		"  -v, --verbose         progress; twice for debug\n"
		"  -q, --quiet           errors only\n"
		"Statistics are printed at the end and on SIGUSR1.\n");
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
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct fl_monitor_opts o = { .verbose = 1, .exit_when_idle = true };
	const char *dir = NULL, *json = NULL, *memfile = NULL, *sock = NULL, *fc_sock = NULL;
	const char *record = NULL, *replay = NULL;
	struct fl_page_ref *order = NULL;
	FILE *rec = NULL;
	bool huge = false;
	struct fl_snapshot *snap = NULL;
	struct fl_source *src = NULL;
	struct fl_monitor *m = NULL;
	struct fl_handoff_server *srv = NULL, *fc_srv = NULL;
	char err[512] = "";
	int c, ret;

	o.on_sigusr1 = cli_stats_on_sigusr1; /* statistics on SIGUSR1 */
	while ((c = getopt_long(argc, argv, "s:S:F:m:Hnr:R:j:kvqh", opts, NULL)) != -1) {
		switch (c) {
		case 's': dir = optarg; break;
		case 'S': sock = optarg; break;
		case 'F': fc_sock = optarg; break;
		case 'm': memfile = optarg; break;
		case 'H': huge = true; break;
		case 'n': o.no_prefetch = true; break;
		case 'r': record = optarg; break;
		case 'R': replay = optarg; break;
		case 'j': json = optarg; break;
		case 'k': o.keep_caps = true; break;
		case 'v': o.verbose++; break;
		case 'q': o.verbose = 0; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (optind < argc || (!sock && !fc_sock) || !dir == !memfile || (memfile && !fc_sock)) {
		fprintf(stderr, "faultline monitor: give --snapshot DIR and --socket PATH, or "
			"--firecracker-socket PATH with --memory-file FILE (or --snapshot DIR)\n");
		usage(stderr);
		return CLI_USAGE;
	}
	if (memfile) {
		ret = open_memory_file(memfile, huge, &src, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "faultline monitor: %s\n", err);
			return CLI_FAILED;
		}
	} else {
		ret = fl_snapshot_open(dir, &snap, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "faultline monitor: %s\n", err);
			return CLI_FAILED;
		}
		ret = fl_source_snapshot_create(&src, snap, NULL);
		if (ret) {
			fprintf(stderr, "faultline monitor: cannot read %s with io_uring: %s\n", dir,
				strerror(-ret));
			fl_snapshot_close(snap);
			return CLI_FAILED;
		}
	}
	if (replay &&
	    (ret = fl_fault_order_load(replay, src->regions, src->nregions, &order, &o.nreplay,
				       err, sizeof(err)))) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		goto out;
	}
	o.replay = order;
	if (record) {
		rec = fopen(record, "we");
		if (!rec) {
			fprintf(stderr, "faultline monitor: cannot write fault record %s: %s\n",
				record, strerror(errno));
			ret = -errno;
			goto out;
		}
		o.on_fault_page = fl_fault_order_append;
		o.on_fault_arg = rec;
	}
	/* The monitor, then the sockets on its loop: both before it drops its
	 * capabilities, which fl_monitor_run() does first. */
	ret = fl_monitor_create(&m, src, &o, err, sizeof(err));
	if (!ret && sock)
		ret = cli_serve_handoffs(&srv, m, src, sock, FL_HANDOFF_FAULTLINE, o.verbose, err,
					 sizeof(err));
	if (!ret && fc_sock)
		ret = cli_serve_handoffs(&fc_srv, m, src, fc_sock, FL_HANDOFF_FIRECRACKER,
					 o.verbose, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		goto out;
	}
	if (o.verbose && snap && sock)
		fprintf(stderr, "monitor: serving %s (%zu regions, %.1f MiB of data) on %s\n",
			dir, src->nregions, (double)fl_snapshot_data_bytes(snap) / (1 << 20), sock);
	if (o.verbose && fc_sock) {
		uint64_t bytes = 0;

		for (size_t i = 0; i < src->nregions; i++)
			bytes += src->regions[i].len;
		fprintf(stderr, "monitor: serving Firecracker from %s (%.1f MiB) on %s\n",
			memfile ? memfile : dir, (double)bytes / (1 << 20), fc_sock);
	}
	ret = fl_monitor_run(m);
	fl_monitor_print_stats(m, stdout, false);
	if (json) {
		FILE *f = fopen(json, "we");

		if (f) {
			fl_monitor_print_stats(m, f, true);
			fclose(f);
		} else {
			fprintf(stderr, "faultline monitor: cannot write %s: %s\n", json,
				strerror(errno));
		}
	}
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
