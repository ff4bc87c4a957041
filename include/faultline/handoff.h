/* SPDX-License-Identifier: MIT */
/*
 * faultline/handoff.h - a process hands its userfaultfd over to a monitor.
 *
 * Two sides. The restorer (the restored program itself, a VMM, or a
 * container restorer) maps its regions, creates a userfaultfd, registers
 * them and sends the fd with its region list over a unix socket
 * (SCM_RIGHTS). It keeps its own copy of the fd open: if the monitor dies,
 * the program's next missing page blocks instead of silently reading
 * zeros, and a new monitor can be handed the same fd.
 *
 * The server side listens on a unix socket, on a libevent loop the caller
 * supplies, reads each connection without blocking and with a deadline,
 * and turns every protocol it speaks (faultline's own, below, and
 * Firecracker's JSON region list) into the same plain struct fl_handoff,
 * which it gives to the caller's accept function (a monitor's
 * fl_monitor_adopt_handoff(), typically). It knows no page state and no
 * page source.
 */
#ifndef FAULTLINE_HANDOFF_H
#define FAULTLINE_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <faultline/uffd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_HANDOFF_MAGIC 0x4f484c46u /* "FLHO" */
/*
 * Version 1. The header's last field was `reserved` (always sent as 0) and
 * is now `flags`: the layout is unchanged, a sender that knows no flags
 * sends 0, which asks for the strict default, so the version stays 1. A
 * monitor refuses bits it does not know (FL_HANDOFF_WIRE_FLAGS).
 */
#define FL_HANDOFF_VERSION 1
#define FL_HANDOFF_MAX_REGIONS 4096

/*
 * Flags of a handoff (struct fl_handoff_hdr on the wire, struct fl_handoff
 * for the monitor).
 *
 * FL_HANDOFF_F_NO_FORK: the sender knows its userfaultfd may lack
 * UFFD_FEATURE_EVENT_FORK and accepts that children the process forks are
 * not served: their copies of the registered regions are no longer
 * registered, so a page still missing at the fork reads as zeros there.
 * Without this flag a monitor refuses an fd lacking EVENT_FORK.
 *
 * FL_HANDOFF_F_FEATURES_ASSUMED: `features` were not reported by the
 * sender but follow from its protocol (Firecracker opens its fd with
 * exactly UFFD_FEATURE_EVENT_REMOVE and has done UFFDIO_API, which cannot
 * be asked again). Set by the server only, never sent on the wire.
 */
#define FL_HANDOFF_F_NO_FORK (1u << 0)
#define FL_HANDOFF_F_FEATURES_ASSUMED (1u << 1)
#define FL_HANDOFF_WIRE_FLAGS FL_HANDOFF_F_NO_FORK /* what a header may carry */

/* One registered range and where its pages come from. */
struct fl_handoff_region {
	uint64_t addr;		/* in the restored process, page aligned */
	uint64_t len;		/* bytes */
	uint64_t source_offset; /* byte offset into the source region */
	uint32_t source_region; /* index into the page source's regions */
	uint32_t page_size;
};

/* On the wire, after the header (host byte order: same machine). */
struct fl_handoff_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t nregions;
	uint64_t features; /* what the userfaultfd was opened with */
	int32_t pid;	   /* the process owning the memory; 0 = the sender */
	uint32_t flags;	   /* FL_HANDOFF_F_* within FL_HANDOFF_WIRE_FLAGS */
};

/* The monitor's answer: status 0 or -errno, then msglen bytes of text. */
struct fl_handoff_ack {
	int32_t status;
	uint32_t msglen;
};

/* ------------------------------------------------------------ restorer */

/*
 * What a restorer accepts when the kernel will not give it everything.
 * Both default to no: the handoff fails with a message naming the cause
 * and the fix rather than serve the process less well without saying so.
 */
struct fl_restore_opts {
	/* The kernel refused UFFD_FEATURE_EVENT_FORK (it needs CAP_SYS_PTRACE):
	 * go on without it, and tell the monitor so (FL_HANDOFF_F_NO_FORK).
	 * Children the process forks then read zeros for pages not yet
	 * fetched: only for programs that never fork with restored memory. */
	bool allow_no_fork;
	/* The kernel refused a userfaultfd that handles faults raised inside
	 * the kernel (it needs CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1
	 * or access to /dev/userfaultfd): fall back to UFFD_USER_MODE_ONLY.
	 * A missing page touched by the kernel on the program's behalf (KVM,
	 * O_DIRECT, process_vm_readv, io_uring, a read() into it) then fails
	 * with EFAULT instead of being served. Implies nothing about fork:
	 * such an fd never has EVENT_FORK, so allow_no_fork is needed too. */
	bool allow_user_mode_only;
};

/*
 * Restorer side, one call: create a userfaultfd (following fork, mremap,
 * MADV_DONTNEED, munmap and exit, with UFFD_FEATURE_POISON wherever the
 * kernel has it, so pages that can never be read become SIGBUS), register
 * every region MISSING, connect to the monitor at `socket_path`, hand over
 * the fd and the regions, and wait for the monitor's answer. On success
 * `u` holds the restorer's own copy of the fd: keep it open for the life
 * of the process.
 *
 * Strict: fails (-EPERM, with the cause and the fix in err) when the
 * kernel refuses EVENT_FORK or a kernel-fault-capable fd; see
 * fl_restore_handoff_opts() to accept less.
 */
int fl_restore_handoff(const char *socket_path,
		       const struct fl_handoff_region *regions, size_t n,
		       struct fl_uffd *u, char *err, size_t errlen);

/* The same, accepting what `o` allows (NULL: nothing, as above). */
int fl_restore_handoff_opts(const char *socket_path,
			    const struct fl_handoff_region *regions, size_t n,
			    const struct fl_restore_opts *o, struct fl_uffd *u,
			    char *err, size_t errlen);

/* The same over an already connected socket, for an existing fd, with no
 * flags: a monitor refuses the fd if it lacks EVENT_FORK. */
int fl_handoff_send(int sock, const struct fl_uffd *u, pid_t pid,
		    const struct fl_handoff_region *regions, size_t n,
		    char *err, size_t errlen);

/* ...with flags (FL_HANDOFF_WIRE_FLAGS only), e.g. FL_HANDOFF_F_NO_FORK
 * for a process that never forks. */
int fl_handoff_send_flags(int sock, const struct fl_uffd *u, pid_t pid, uint32_t flags,
			  const struct fl_handoff_region *regions, size_t n,
			  char *err, size_t errlen);

/* ------------------------------------------------------------- server */

enum fl_handoff_proto {
	/* faultline's own: struct fl_handoff_hdr and a region table, the fd
	 * attached to the header, answered with struct fl_handoff_ack. */
	FL_HANDOFF_FAULTLINE,
	/* Firecracker's page-fault handler protocol (its "Uffd" memory
	 * backend): one JSON array of regions naming offsets in the VM's
	 * memory file, the fd attached; never answered on success
	 * (Firecracker does not read the socket), a refusal is written back
	 * as one line of text for a person debugging with socat. */
	FL_HANDOFF_FIRECRACKER,
	/* CRIU's lazy-pages socket (`criu restore --lazy-pages`): one
	 * connection, one record per restored process (a pid and its fd),
	 * regions from CRIU's images; never answered (CRIU reads nothing).
	 * Served by `faultline lazy-pages`, not by fl_handoff_server_create(). */
	FL_HANDOFF_CRIU,
};

/* What one connection handed over, the same for every protocol. */
struct fl_handoff {
	enum fl_handoff_proto proto;
	int uffd;	   /* the userfaultfd; set to -1 by whoever takes it */
	pid_t pid;	   /* the process owning the memory (0: unknown) */
	pid_t peer;	   /* the process that connected (SO_PEERCRED; 0: unknown) */
	uint64_t features; /* what the fd was opened with (see FEATURES_ASSUMED) */
	uint32_t flags;	   /* FL_HANDOFF_F_* */
	unsigned nfds;	   /* fds that came attached (only the first is kept) */
	struct fl_handoff_region *regions; /* in the page source's terms */
	size_t nregions;
};

/* Close the fd if still held, free the regions; the struct itself is the
 * caller's (it is left empty: uffd -1, no regions). Tolerates NULL. */
void fl_handoff_free(struct fl_handoff *h);

/*
 * Firecracker's regions name byte offsets in one memory file; the server
 * maps them onto the page source's regions, which, laid end to end in
 * their order, must be that file. One part per source region: a raw
 * memory file served as one region is one part.
 */
struct fl_handoff_file_part {
	uint64_t len;	    /* bytes */
	uint32_t page_size; /* bytes */
};

struct fl_handoff_server_opts {
	int verbose; /* 0: refusals only, 1: each handoff taken too */
	/* FL_HANDOFF_FIRECRACKER only (required there): the memory file as
	 * the source lays it out, and what to call the source in messages
	 * (its kind, e.g. "memory-file" or "snapshot"). Copied. */
	const struct fl_handoff_file_part *file_parts;
	size_t nfile_parts;
	const char *source_kind;
	/* Called for each connection refused or abandoned before a complete
	 * handoff reached `accept` (malformed, timed out, disconnected, no
	 * fd), e.g. to count it in a monitor's statistics; refusals by
	 * accept itself are accept's to count. `arg` is accept's. May be
	 * NULL. */
	void (*refused)(void *arg, pid_t peer, int status, const char *why);
	/* Serve this listening socket (fl_handoff_listen() on `path`) instead
	 * of binding `path` anew: a monitor taking over from one that died
	 * keeps the connections already queued. Used when listen_fd_set. */
	bool listen_fd_set;
	int listen_fd;
};

/* Bind and listen on a unix socket at `path` (a stale socket file there
 * is replaced), mode 0600: the fd, or -errno with the reason in err. */
int fl_handoff_listen(const char *path, char *err, size_t errlen);

/*
 * Take or refuse one handoff. Return 0 when taken: whoever keeps the fd
 * sets h->uffd to -1 (fl_monitor_adopt_handoff() does); the server then
 * frees what is left. Or return -errno with the reason in err: the server
 * closes the fd, logs the reason and sends it back to the restorer.
 * Runs on the server's event loop.
 */
typedef int (*fl_handoff_accept_fn)(void *arg, struct fl_handoff *h, char *err, size_t errlen);

struct fl_handoff_server;
struct event_base;

/*
 * Listen on the unix stream socket `path` (a stale socket there is
 * replaced; mode 0600: only this user may hand over memory) and serve
 * `proto` on `base`, which must outlive the server. opts may be NULL
 * (quiet, no refusal callback; not for FL_HANDOFF_FIRECRACKER). Creating
 * the socket may need privilege over its directory: do it before dropping
 * capabilities (a monitor drops them when its loop starts).
 */
int fl_handoff_server_create(struct fl_handoff_server **out, struct event_base *base,
			     const char *path, enum fl_handoff_proto proto,
			     const struct fl_handoff_server_opts *opts,
			     fl_handoff_accept_fn accept, void *arg,
			     char *err, size_t errlen);

/* Close every connection still being read (their fds too), stop
 * listening and remove the socket file. Tolerates NULL. Call it before
 * the event base goes away. */
void fl_handoff_server_destroy(struct fl_handoff_server *s);

#ifdef __cplusplus
}
#endif

#endif
