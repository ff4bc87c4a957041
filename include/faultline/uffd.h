/* SPDX-License-Identifier: MIT */
/*
 * faultline/uffd.h - a small, complete interface over Linux userfaultfd.
 *
 * Conventions: functions return 0 (or a count) on success and a negative
 * errno value on failure; errno itself is never the channel. Addresses are
 * plain uint64_t as in the kernel ABI, so a monitor can resolve faults in
 * another process's address space without casting.
 */
#ifndef FAULTLINE_UFFD_H
#define FAULTLINE_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <faultline/linux-compat.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ open */

/* Flags for fl_uffd_open(). */
#define FL_UFFD_USER_MODE_ONLY (1u << 0) /* faults raised in the kernel are not ours */
#define FL_UFFD_VIA_SYSCALL (1u << 1)	 /* only try userfaultfd(2) */
#define FL_UFFD_VIA_DEVICE (1u << 2)	 /* only try /dev/userfaultfd */

/*
 * Open a userfaultfd, non-blocking and close-on-exec. Without a VIA flag it
 * tries the syscall first and falls back to /dev/userfaultfd
 * (USERFAULTFD_IOC_NEW), which works for users who may open that device but
 * lack CAP_SYS_PTRACE. Returns the fd or a negative errno.
 */
int fl_uffd_open(unsigned flags);

/* --------------------------------------------------------- API handshake */

/*
 * An initialized userfaultfd and what was agreed on it. The kernel lets
 * UFFDIO_API be called once per fd and reports every feature it has, not the
 * ones enabled for this fd, so `features` is our own record of what we asked
 * for and got.
 */
struct fl_uffd {
	int fd;
	uint64_t features;	  /* enabled on this fd */
	uint64_t kernel_features; /* everything the kernel offers */
	uint64_t ioctls;	  /* fd-level ioctls (bit n = _UFFDIO_ number n) */
	unsigned open_flags;
};

/*
 * What the kernel offers: open a throwaway fd, handshake with no features,
 * read the answer. Either output may be NULL. UFFD_FEATURE_EVENT_EXIT is
 * only reported when the kernel proves it is faultline's exit event
 * (fl_uffd_series), never on the bit alone.
 */
int fl_uffd_probe(unsigned open_flags, uint64_t *features, uint64_t *ioctls);

/*
 * The two-step handshake: probe the kernel, then open the real fd asking for
 * `want & offered`. Fails with -EOPNOTSUPP if a bit in `need` is not offered
 * (`*missing`, if not NULL, gets those bits). `need` is implicitly part of
 * `want`.
 */
int fl_uffd_create(struct fl_uffd *u, unsigned open_flags, uint64_t want,
		   uint64_t need, uint64_t *missing);

/* Take over an fd that is already initialized (a FORK event's fd, or one
 * handed over a socket) whose features the caller knows. */
void fl_uffd_adopt(struct fl_uffd *u, int fd, uint64_t features);

/* Close the fd (if open) and reset the struct. Tolerates NULL. */
void fl_uffd_close(struct fl_uffd *u);

static inline bool fl_uffd_has(const struct fl_uffd *u, uint64_t feature)
{
	return (u->features & feature) == feature;
}

/* One named bit: a feature or an ioctl. */
struct fl_uffd_bit_name {
	uint64_t bit;
	const char *name;  /* the kernel's name, e.g. "UFFD_FEATURE_WP_ASYNC" */
	const char *since; /* first Linux release that had it */
	const char *what;  /* one line for people */
};

/* Every feature bit the kernel defines, in bit order. */
extern const struct fl_uffd_bit_name fl_uffd_feature_names[];
extern const size_t fl_uffd_feature_count;
/* Every ioctl, as the bit (1 << _UFFDIO_x) used in the ioctls masks. */
extern const struct fl_uffd_bit_name fl_uffd_ioctl_names[];
extern const size_t fl_uffd_ioctl_count;

/* Name of one feature / ioctl bit, or NULL if unknown. */
const char *fl_uffd_feature_name(uint64_t bit);
const char *fl_uffd_ioctl_name(uint64_t bit);

/* Bit for a _UFFDIO_x number, as used in the ioctls masks. */
#define FL_UFFD_IOCTL_BIT(nr) ((uint64_t)1 << (nr))

/* -------------------------------------------------------------- register */

/* Register modes: the kernel's UFFDIO_REGISTER_MODE_{MISSING,WP,MINOR}. */

/*
 * Register [addr, addr+len) for `modes`. On success `*ioctls` (if not NULL)
 * gets the range ioctls the kernel allows on it (it depends on the memory
 * type: no ZEROPAGE on hugetlb, no CONTINUE on anonymous memory...).
 */
int fl_uffd_register(int fd, uint64_t addr, uint64_t len, uint64_t modes,
		     uint64_t *ioctls);
int fl_uffd_unregister(int fd, uint64_t addr, uint64_t len);

/* --------------------------------------------------------------- resolve */

/*
 * The resolve contract, the same for every operation below:
 *
 *   0        the whole range is resolved. Pages that were already present
 *            (the kernel's EEXIST, a race with another resolver) count as
 *            resolved: `res->existed` says how many bytes, and they are
 *            woken unless DONTWAKE was asked.
 *   -EAGAIN  the address space is changing (a fork, mremap, MADV_DONTNEED
 *            or munmap event is pending). Read and apply the pending events,
 *            then retry from `addr + res->done + res->existed`.
 *   -ESRCH   the process owning the memory has exited.
 *   -ENOENT  the range is not (or no longer) registered / mapped, or MOVE
 *            found a hole in the source.
 *   -EINVAL  bad alignment, or the operation is not valid on this range.
 *   other    -ENOMEM, -EFAULT (bad source buffer), -EPERM...
 *
 * Partial progress reported by the kernel (the `copy`/`zeropage`/`mapped`/
 * `move`/`updated` fields) is continued here, never dropped: a caller sees
 * either the whole range done or an error with `res` telling how far it got.
 * `res` may be NULL.
 */
struct fl_resolve {
	uint64_t done;	  /* bytes installed by this call */
	uint64_t existed; /* bytes found already present (EEXIST) */
	unsigned calls;	  /* ioctls issued (for statistics) */
};

/* Mode bits shared by the operations (mapped to each ioctl's own bits). */
#define FL_RESOLVE_DONTWAKE (1u << 0) /* don't wake faulting threads */
#define FL_RESOLVE_WP (1u << 1)	      /* install write-protected */
#define FL_RESOLVE_ALLOW_SRC_HOLES (1u << 2) /* MOVE only */

/* Copy `len` bytes from our `src` into the registered range at `dst`.
 * `page_size` is the range's page size (4096, or 2 MiB for hugetlb). */
int fl_uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len,
		 uint64_t page_size, unsigned mode, struct fl_resolve *res);
/* Map zero pages (not hugetlb). */
int fl_uffd_zeropage(int fd, uint64_t dst, uint64_t len, uint64_t page_size,
		     unsigned mode, struct fl_resolve *res);
/* Map the page cache pages already there (MINOR faults: shmem, hugetlbfs). */
int fl_uffd_continue(int fd, uint64_t dst, uint64_t len, uint64_t page_size,
		     unsigned mode, struct fl_resolve *res);
/* Move pages from `src` to `dst` in the registered process's own address
 * space (anonymous private memory only; the source must be exclusive). */
int fl_uffd_move(int fd, uint64_t dst, uint64_t src, uint64_t len,
		 uint64_t page_size, unsigned mode, struct fl_resolve *res);
/* Mark pages poisoned: a later access gets SIGBUS. */
int fl_uffd_poison(int fd, uint64_t dst, uint64_t len, uint64_t page_size,
		   unsigned mode, struct fl_resolve *res);
/* Write-protect (protect=true) or un-protect a range; un-protecting wakes
 * threads blocked in a WP fault unless DONTWAKE. */
int fl_uffd_writeprotect(int fd, uint64_t addr, uint64_t len, bool protect,
			 unsigned mode);
/* Wake threads waiting on a range (after DONTWAKE resolves). */
int fl_uffd_wake(int fd, uint64_t addr, uint64_t len);

/* ---------------------------------------------------------------- events */

enum fl_uffd_event_kind {
	FL_EVENT_PAGEFAULT = 1,
	FL_EVENT_FORK,
	FL_EVENT_REMAP,
	FL_EVENT_REMOVE,
	FL_EVENT_UNMAP,
	FL_EVENT_EXIT,	  /* the mm's last user went away (patched kernels) */
	FL_EVENT_UNKNOWN, /* a message type this build does not know */
};

#define FL_FAULT_WRITE (1u << 0) /* the access was a write */
#define FL_FAULT_WP (1u << 1)	 /* a write-protect fault */
#define FL_FAULT_MINOR (1u << 2) /* a minor fault (page cache had the page) */

/* One decoded userfaultfd message. */
struct fl_uffd_event {
	enum fl_uffd_event_kind kind;
	union {
		struct {
			uint64_t address; /* as reported (page aligned unless EXACT_ADDRESS) */
			unsigned flags;	  /* FL_FAULT_* */
			uint32_t tid;	  /* with UFFD_FEATURE_THREAD_ID, else 0 */
		} fault;
		struct {
			int ufd;     /* the child's userfaultfd, now in our fd table */
			int32_t pid; /* the child (kernel patch 3), 0 if not told;
				      * trust it only with fl_uffd_series.fork_pid */
		} fork;
		struct {
			uint64_t from, to, len;
		} remap;
		struct {
			uint64_t start, end; /* REMOVE and UNMAP */
		} range;
		struct {
			int32_t pid; /* in the reader's pid namespace, 0 if unknown */
			bool exec;   /* left by execve(): the process lives on */
		} exit;
		struct {
			uint8_t type; /* the raw event number */
		} unknown;
	};
};

/*
 * Read up to `max` messages with one read() and decode them in order.
 * Returns how many (0 when none are pending on a non-blocking fd) or a
 * negative errno. A FORK message puts a new fd in our table: the caller owns
 * it from here on.
 */
int fl_uffd_read_events(int fd, struct fl_uffd_event *ev, size_t max);

/* Decode one raw message (used by fl_uffd_read_events; public for tests and
 * for callers that read the fd themselves). */
void fl_uffd_decode(const struct uffd_msg *msg, struct fl_uffd_event *ev);

const char *fl_uffd_event_name(enum fl_uffd_event_kind kind);

/* ------------------------------------------------------- dirty tracking */

/*
 * Dirty tracking for pre-copy rounds over one range of this process.
 *
 * Preferred method (6.7+): register WP with UFFD_FEATURE_WP_ASYNC, so writes
 * clear the protection without a message, then collect written pages and
 * re-protect them atomically with the PAGEMAP_SCAN ioctl. Fallback: a
 * synchronous WP handler thread that records each first write in the bitmap
 * and un-protects the page.
 */
enum fl_dirty_method {
	FL_DIRTY_AUTO = 0,
	FL_DIRTY_PAGEMAP_SCAN, /* WP_ASYNC + PAGEMAP_SCAN */
	FL_DIRTY_WP_FAULTS,    /* synchronous WP faults, handler thread */
};

struct fl_dirty;

/*
 * Start tracking [addr, addr+len) (page aligned). From the moment this
 * returns, every write to the range is reported by the next collect.
 */
int fl_dirty_create(struct fl_dirty **out, void *addr, size_t len,
		    enum fl_dirty_method method);

/*
 * Collect the pages written since the last collect (or since create) and
 * re-protect them. `bitmap` has one bit per page of the range (bit i of
 * word i/64 is page i), is cleared first and then filled. `*ndirty` (may be
 * NULL) gets the number of dirty pages.
 */
int fl_dirty_collect(struct fl_dirty *d, uint64_t *bitmap, size_t *ndirty);

enum fl_dirty_method fl_dirty_method_used(const struct fl_dirty *d);
size_t fl_dirty_pages(const struct fl_dirty *d);
void fl_dirty_destroy(struct fl_dirty *d);

/* True if the kernel supports PAGEMAP_SCAN with WP_ASYNC on this range type. */
bool fl_dirty_scan_supported(void);

/*
 * Pages written through a DMA pin (O_DIRECT, io_uring fixed buffers, vhost,
 * VFIO) never fault, so write-protection cannot see those writes. A kernel
 * with faultline's patch 2 (proven by fdinfo, see fl_uffd_series) never
 * write-protects a possibly-pinned page on a WP_ASYNC range, so the
 * PAGEMAP_SCAN method reports it at every collect while it is pinned and
 * once after. Elsewhere (and with the fault-based fallback) the caller
 * declares the ranges it pins with fl_dirty_always(), and they are reported
 * dirty at every collect.
 */
bool fl_dirty_pinned_supported(void);
int fl_dirty_always(struct fl_dirty *d, void *addr, size_t len);

/* ------------------------------------------- faultline's kernel series */

/*
 * What of src/kernel-patches this kernel has, from the lines the series adds
 * to a userfaultfd's fdinfo; never from a feature bit alone, which other
 * series in flight reuse. See src/uffd/series.c.
 */
struct fl_uffd_series {
	bool exit_event;      /* patch 1: UFFD_FEATURE_EVENT_EXIT is the exit event */
	bool wp_async_pinned; /* patch 2: WP_ASYNC leaves pinned pages writable */
	bool fork_pid;	      /* patch 3: UFFD_EVENT_FORK carries the child's pid */
	char exit_proof[96];  /* the fdinfo line found for patch 1, or "" */
};

/* Read the proof from the fdinfo of `fd`, a userfaultfd. */
int fl_uffd_series_read(int fd, struct fl_uffd_series *s);
/* The same on a throwaway userfaultfd. */
int fl_uffd_series_probe(struct fl_uffd_series *s);

/* ------------------------------------------------------------ privilege */

struct fl_uffd_privilege {
	bool cap_sys_ptrace;	   /* effective CAP_SYS_PTRACE */
	int unprivileged_sysctl;   /* vm.unprivileged_userfaultfd, -1 if unknown */
	bool dev_userfaultfd;	   /* /dev/userfaultfd exists */
	bool dev_userfaultfd_rw;   /* ...and we may open it read-write */
	bool kernel_faults;	   /* => may handle faults raised in the kernel */
	bool user_faults;	   /* => may at least handle user-mode faults */
	bool event_fork;	   /* => may use UFFD_FEATURE_EVENT_FORK */
};

/* Find out, with libcap and the sysctl, what this process may do. */
int fl_uffd_privilege_check(struct fl_uffd_privilege *p);

/* Write a human explanation (what works, what is missing, how to fix it). */
void fl_uffd_privilege_explain(const struct fl_uffd_privilege *p, FILE *out);

/* Give up, for the calling thread and every thread or child it creates
 * afterwards, every capability (effective, permitted, inheritable), the
 * whole bounding set and the ambient set, and set no_new_privs, so no
 * execve() can regain any. Call it once set-up is over and before any
 * other thread starts. 0, or -errno with err saying which step failed. */
int fl_privileges_drop(char *err, size_t errlen);
/* The same, and become `user` (its uid, its primary group, no
 * supplementary groups) on the way, while the right to is still held:
 * for a process that needs nothing of root once set up. user NULL: stay
 * who we are (fl_privileges_drop). */
int fl_privileges_drop_to(const char *user, char *err, size_t errlen);
/* The same, but keep the capabilities of keep[0..n) (CAP_* numbers of
 * <linux/capability.h>) effective and permitted, those this thread
 * holds: for a process that still needs a few, e.g. CAP_SYS_PTRACE to
 * read another process's memory and CAP_KILL to stop it. The bounding
 * set is emptied all the same (no execve() gains anything). */
int fl_privileges_keep(const int *keep, size_t n, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_UFFD_H */
