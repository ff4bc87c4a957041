// SPDX-License-Identifier: MIT
/* The composition of handoff servers and a monitor: the only place where
 * the two meet, through the monitor's public calls. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "handoffs.h"

static int adopt(void *arg, struct fl_handoff *h, char *err, size_t errlen)
{
	return fl_monitor_adopt_handoff(arg, h, err, errlen);
}

static void refused(void *arg, pid_t peer, int status, const char *why)
{
	(void)peer;
	(void)status;
	(void)why; /* the server has logged it */
	fl_monitor_count_refused_handoff(arg);
}

int cli_serve_handoffs(struct fl_handoff_server **out, struct fl_monitor *m,
		       const struct fl_source *src, const char *path,
		       enum fl_handoff_proto proto, int listen_fd, int verbose, char *err,
		       size_t errlen)
{
	struct fl_handoff_server_opts o = { .verbose = verbose, .refused = refused,
					    .listen_fd_set = listen_fd >= 0, .listen_fd = listen_fd };
	struct fl_handoff_file_part *parts = NULL;
	int ret;

	if (proto == FL_HANDOFF_FIRECRACKER) {
		parts = calloc(src->nregions ? src->nregions : 1, sizeof(*parts));
		if (!parts) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		for (size_t i = 0; i < src->nregions; i++)
			parts[i] = (struct fl_handoff_file_part){ src->regions[i].len,
								  src->regions[i].page_size };
		o.file_parts = parts;
		o.nfile_parts = src->nregions;
		o.source_kind = src->kind;
	}
	ret = fl_handoff_server_create(out, fl_monitor_event_base(m), path, proto, &o, adopt, m,
				       err, errlen);
	free(parts);
	return ret;
}

void cli_stats_on_sigusr1(struct fl_monitor *m, void *arg)
{
	(void)arg;
	fl_monitor_print_stats(m, stderr, false);
}
