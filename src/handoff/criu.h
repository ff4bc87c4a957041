/* SPDX-License-Identifier: MIT */
/*
 * CRIU's lazy-pages socket, the daemon's side: `criu restore
 * --lazy-pages` connects once to WORKDIR/lazy-pages.socket and sends one
 * record per process of pstree.img (an int32 pid, then one byte carrying
 * the process's userfaultfd by SCM_RIGHTS; a zombie is a negative pid and
 * no fd), then the word 0x52535446 once the tree is restored and about to
 * run (../shared/criu/README.md, "The lazy-pages protocol").
 *
 * Each record becomes a struct fl_handoff (proto FL_HANDOFF_CRIU): the fd
 * as CRIU set it up (UFFDIO_API done, the kernel's subset of EVENT_FORK,
 * REMAP, REMOVE and UNMAP, so FL_HANDOFF_F_FEATURES_ASSUMED), the process's
 * pid as this host sees it (the sender's SCM_CREDENTIALS: the pid in the
 * images is the one inside the restored pid namespace), and the regions
 * the caller's regions() gives for the image pid. It then goes to the
 * caller's accept function, on the caller's libevent loop.
 */
#ifndef FL_HANDOFF_CRIU_H
#define FL_HANDOFF_CRIU_H

#include <stddef.h>
#include <stdint.h>

#include <faultline/handoff.h>

#define CRIU_LAZY_SOCKET "lazy-pages.socket"
#define CRIU_RESTORE_FINISHED 0x52535446u

struct event_base;
struct criu_handoff;

struct criu_handoff_ops {
	/* The lazy regions of image pid `pid`, into h->regions (malloc'd,
	 * the server frees them) and h->nregions; 0 or -errno with err. */
	int (*regions)(void *arg, int32_t pid, struct fl_handoff *h, char *err, size_t errlen);
	/* Take or refuse the handoff (fl_handoff_accept_fn's contract). */
	fl_handoff_accept_fn accept;
	/* Every record is in and the tree runs: start background transfer. */
	void (*finished)(void *arg);
	/* The restore broke off (EOF or garbage before the finished word):
	 * why is logged. */
	void (*failed)(void *arg, const char *why);
};

/*
 * Listen on `path` (a stale socket is replaced) for one `criu restore`
 * connection carrying `nprocs` records. Create it before criu restore
 * starts: criu gives up at once on ENOENT or ECONNREFUSED.
 */
int fl__criu_handoff_create(struct criu_handoff **out, struct event_base *base,
			    const char *path, size_t nprocs, int verbose,
			    const struct criu_handoff_ops *ops, void *arg, char *err,
			    size_t errlen);
void fl__criu_handoff_destroy(struct criu_handoff *s);

#endif
