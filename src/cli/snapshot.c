// SPDX-License-Identifier: MIT
/*
 * `faultline snapshot`: take a snapshot of a running process, or verify
 * one.
 *
 *   faultline snapshot --pid PID -o DIR [--leave-stopped | --kill] [--force]
 *   faultline snapshot --verify DIR
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline/snapshot.h>

#include "cli.h"
#include "process-stop.h"
#include "util/clock.h"

#define MiB (1024.0 * 1024.0)

static void usage(FILE *out)
{
	fprintf(out,
		"usage: faultline snapshot --pid PID -o DIR [--leave-stopped | --kill] [--force]\n"
		"       faultline snapshot --verify DIR\n"
		"\n"
		"Stop process PID, write its private writable memory (anonymous, heap,\n"
		"stack, private writable file mappings) to the snapshot directory DIR,\n"
		"then resume it (default), leave it stopped (--leave-stopped) or kill it\n"
		"(--kill). --force replaces a snapshot already in DIR.\n"
		"--verify checks every page of a snapshot against its checksum.\n"
		"Needs ptrace access to PID: the same user (and kernel.yama.ptrace_scope\n"
		"allowing it), or root / CAP_SYS_PTRACE.\n");
}

/* On a terminal: one line rewritten in place; otherwise a line every
 * 256 MiB so logs show the work is moving. */
struct progress {
	const char *verb;
	bool tty;
	uint64_t next;
	bool printed;
};

static void show_progress(uint64_t done, uint64_t total, void *arg)
{
	struct progress *p = arg;

	if (p->tty) {
		fprintf(stderr, "\r%s: %.0f / %.0f MiB", p->verb, done / MiB, total / MiB);
		p->printed = true;
	} else if (done >= p->next && done < total) {
		fprintf(stderr, "%s: %.0f / %.0f MiB\n", p->verb, done / MiB, total / MiB);
		p->next = done + (256ull << 20);
	}
}

static void end_progress(struct progress *p)
{
	if (p->printed)
		fprintf(stderr, "\n");
}

static int verify(const char *dir)
{
	struct progress pr = { "verifying", isatty(2), 256ull << 20, false };
	struct fl_snapshot *s;
	char err[1024] = "";
	uint64_t bad = 0, total = 0;
	const struct fl_region *g;
	size_t n;
	int ret;

	ret = fl_snapshot_open(dir, &s, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline snapshot: %s\n", err);
		return CLI_FAILED;
	}
	g = fl_snapshot_regions(s, &n);
	for (size_t i = 0; i < n; i++)
		total += g[i].len;
	ret = fl_snapshot_verify(s, &bad, show_progress, &pr, err, sizeof(err));
	end_progress(&pr);
	if (ret == -EBADMSG) {
		fprintf(stderr, "faultline snapshot: %s\n", err);
		printf("snapshot %s: %llu of %llu pages FAIL their checksums\n", dir,
		       (unsigned long long)bad, (unsigned long long)(total / FL_SNAPSHOT_BLOCK));
	} else if (ret) {
		fprintf(stderr, "faultline snapshot: %s\n", err);
	} else {
		printf("snapshot %s: %zu regions, %.1f MiB (%.1f MiB data), from %s: every page matches its checksum\n",
		       dir, n, total / MiB, fl_snapshot_data_bytes(s) / MiB, fl_snapshot_origin(s));
	}
	fl_snapshot_close(s);
	return ret ? CLI_FAILED : CLI_OK;
}

static int take(pid_t pid, const char *dir, enum stop_end end, unsigned flags)
{
	static const char *ended[] = { "resumed", "left stopped", "killed" };
	struct progress pr = { "writing", isatty(2), 256ull << 20, false };
	struct fl_snapshot_pid_opts opts = { .flags = flags, .progress = show_progress, .arg = &pr };
	struct fl_snapshot_pid_stats st;
	struct stopped stopped;
	char err[1024] = "";
	double t_stop;
	int ret, rel;

	ret = process_stop(pid, &stopped, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "faultline snapshot: %s\n", err);
		return CLI_FAILED;
	}
	t_stop = fl__now_s();
	ret = fl_snapshot_write_pid(dir, pid, &opts, &st, err, sizeof(err));
	end_progress(&pr);
	/* A failed snapshot never kills the process: it is resumed or left
	 * stopped, as asked, and the error says why. */
	rel = process_release(&stopped, ret && end == STOP_KILL ? STOP_RESUME : end);
	if (ret) {
		fprintf(stderr, "faultline snapshot: %s\n", err);
		if (end == STOP_KILL)
			fprintf(stderr, "faultline snapshot: pid %d was resumed, not killed\n", (int)pid);
		return CLI_FAILED;
	}
	if (rel)
		fprintf(stderr, "faultline snapshot: pid %d could not be %s: %s\n", (int)pid,
			ended[end], strerror(-rel));
	printf("snapshot of pid %d in %s: %zu regions, %.1f MiB of memory, %.1f MiB written, "
	       "%.1f MiB zero pages as holes, %zu mappings not captured; stopped %.3f s; %s\n",
	       (int)pid, dir, st.regions, st.bytes / MiB, st.data_bytes / MiB,
	       (st.bytes - st.data_bytes) / MiB, st.skipped, fl__now_s() - t_stop, ended[end]);
	return rel ? CLI_FAILED : CLI_OK;
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "output", required_argument, NULL, 'o' },
		{ "leave-stopped", no_argument, NULL, 's' },
		{ "kill", no_argument, NULL, 'k' },
		{ "force", no_argument, NULL, 'f' },
		{ "verify", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL, *check = NULL;
	enum stop_end end = STOP_RESUME;
	unsigned flags = 0;
	long pid = 0;
	int c, ends = 0;
	char *e;

	while ((c = getopt_long(argc, argv, "p:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			errno = 0;
			pid = strtol(optarg, &e, 10);
			if (errno || *e || pid <= 0 || pid > 0x3fffffff) {
				fprintf(stderr, "faultline snapshot: --pid '%s' is not a process id\n", optarg);
				return CLI_USAGE;
			}
			break;
		case 'o':
			out = optarg;
			break;
		case 's':
			end = STOP_LEAVE_STOPPED;
			ends++;
			break;
		case 'k':
			end = STOP_KILL;
			ends++;
			break;
		case 'f':
			flags |= FL_SNAPSHOT_REPLACE;
			break;
		case 'v':
			check = optarg;
			break;
		case 'h':
			usage(stdout);
			return CLI_OK;
		default:
			usage(stderr);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "faultline snapshot: unexpected argument '%s'\n", argv[optind]);
		return CLI_USAGE;
	}
	if (check) {
		if (pid || out || ends || flags) {
			fprintf(stderr, "faultline snapshot: --verify takes no other option\n");
			return CLI_USAGE;
		}
		return verify(check);
	}
	if (!pid || !out || ends > 1) {
		fprintf(stderr, "faultline snapshot: %s\n\n",
			ends > 1 ? "--leave-stopped and --kill exclude each other"
				 : "--pid PID and -o DIR are both needed");
		usage(stderr);
		return CLI_USAGE;
	}
	return take((pid_t)pid, out, end, flags);
}
