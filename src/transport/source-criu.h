/* SPDX-License-Identifier: MIT */
/*
 * The page source over a CRIU image set (faultline/source.h's contract):
 * one source region per lazy range of criu-lazy.h, in its order, so a
 * process's handoff regions are its ranges at their dump-time addresses.
 * Bytes in local pages-*.img files are handed out by reference into a
 * read-only mapping of the file; bytes only the dump's page server has
 * are fetched over it (criu-page-client.c) when `ps_addr` is set.
 */
#ifndef FL_SOURCE_CRIU_H
#define FL_SOURCE_CRIU_H

#include <faultline/source.h>

#include "criu-lazy.h"

struct fl_criu_source_opts {
	const char *images_dir;
	const char *ps_addr; /* NULL: local images only */
	int ps_port;
	int verbose;
};

int fl__criu_source_create(struct fl_source **out, const struct fl_criu_source_opts *o,
			   char *err, size_t errlen);

/* The restore has finished (CRIU's "restore finished" word): background
 * reads, held until now, start. Faults are served from the first. */
void fl__criu_source_start_background(struct fl_source *s);

/* The image set the source serves (the source's; valid until destroy). */
const struct criu_lazy *fl__criu_source_lazy(const struct fl_source *s);

/* Remote mode: end the page-server session (CLOSE, its status, close), as
 * `criu dump` expects once every page is in. 0 or -errno; a no-op
 * locally. */
int fl__criu_source_finish(struct fl_source *s, char *err, size_t errlen);

/* The first error the source met ("" if none), for the log. */
const char *fl__criu_source_error(const struct fl_source *s);

#endif
