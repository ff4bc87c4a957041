// SPDX-License-Identifier: MIT
/* `faultline monitor`: serve restored processes lazily from a snapshot. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/monitor.h>
#include <faultline/snapshot.h>

#include "cli.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline monitor --snapshot DIR --socket PATH [options]\n"
		"Serve the memory of restored processes from a snapshot: each missing page\n"
		"a process touches is read and installed at once, the rest streams in the\n"
		"background. Restorers hand over their userfaultfd on PATH\n"
		"(fl_restore_handoff()). Exits when every process served is gone.\n\n"
		"  --snapshot DIR        the snapshot to serve (faultline snapshot)\n"
		"  --socket PATH         where restorers connect\n"
		"  --no-prefetch         serve faults only, no background stream\n"
		"  --record-faults FILE  write each fault's page, to replay later\n"
		"  --replay-faults FILE  prefetch the pages of a recorded order first\n"
		"  --stats-json FILE     also write the final statistics as JSON\n"
		"  --keep-caps           don't drop capabilities after set-up\n"
		"  -v, --verbose         progress; twice for debug\n"
		"  -q, --quiet           errors only\n"
		"Statistics are printed at the end and on SIGUSR1.\n");
}

int cmd_monitor(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "snapshot", required_argument, NULL, 's' },
		{ "socket", required_argument, NULL, 'S' },
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
	const char *dir = NULL, *json = NULL;
	struct fl_snapshot *snap = NULL;
	struct fl_source *src = NULL;
	struct fl_monitor *m = NULL;
	char err[512] = "";
	int c, ret;

	while ((c = getopt_long(argc, argv, "s:S:nr:R:j:kvqh", opts, NULL)) != -1) {
		switch (c) {
		case 's': dir = optarg; break;
		case 'S': o.socket_path = optarg; break;
		case 'n': o.no_prefetch = true; break;
		case 'r': o.record_faults = optarg; break;
		case 'R': o.replay_faults = optarg; break;
		case 'j': json = optarg; break;
		case 'k': o.keep_caps = true; break;
		case 'v': o.verbose++; break;
		case 'q': o.verbose = 0; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_USAGE;
		}
	}
	if (!dir || !o.socket_path || optind < argc) {
		fprintf(stderr, "faultline monitor: --snapshot DIR and --socket PATH are required\n");
		usage(stderr);
		return CLI_USAGE;
	}
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
	ret = fl_monitor_create(&m, src, &o, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline monitor: %s\n", err);
		goto out;
	}
	if (o.verbose)
		fprintf(stderr, "monitor: serving %s (%zu regions, %.1f MiB of data) on %s\n",
			dir, src->nregions, (double)fl_snapshot_data_bytes(snap) / (1 << 20),
			o.socket_path);
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
	fl_monitor_destroy(m);
	fl_source_destroy(src);
	fl_snapshot_close(snap);
	return ret ? CLI_FAILED : CLI_OK;
}
