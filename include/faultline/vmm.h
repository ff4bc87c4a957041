/* SPDX-License-Identifier: MIT */
/*
 * faultline/vmm.h - post-copy live migration for a VMM, in a few calls.
 *
 * A VMM's guest RAM is memory of the VMM process: one or more host
 * mappings, each a region on the wire. This header wraps the source
 * (faultline/migrate.h) and destination (receiver + monitor) APIs for that
 * case:
 *
 *   source       fl_vmm_migrate(): reads RAM with memcpy, tracks dirty
 *                pages with the VMM's own log (KVM_GET_DIRTY_LOG) or with
 *                faultline's userfaultfd write-protect tracker, calls the
 *                VMM's pause() at the switch-over for the device state.
 *
 *   destination  fl_vmm_dest_check() before listening, then
 *                fl_receiver_accept() + fl_receiver_wait_resume() (the
 *                device state), map RAM, fl_vmm_dest_start(), set up the
 *                vCPUs over that RAM and run them AT ONCE; faults are
 *                served by a monitor thread in this process.
 *                fl_vmm_dest_wait_complete() returns when every page is in
 *                (the source has been told it may let go),
 *                fl_vmm_dest_destroy() ends the monitor.
 *
 * Why kernel-mode faults: a vCPU's first access to a missing guest page
 * is an EPT/NPT violation that KVM resolves with get_user_pages() on the
 * VMM's mapping, inside the kernel. A userfaultfd opened with
 * UFFD_USER_MODE_ONLY does not handle such faults (KVM_RUN would fail with
 * EFAULT), so fl_vmm_dest_start() opens one without it, which needs
 * CAP_SYS_PTRACE, or vm.unprivileged_userfaultfd=1, or read-write access
 * to /dev/userfaultfd; its error says which is missing.
 */
#ifndef FAULTLINE_VMM_H
#define FAULTLINE_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <faultline/migrate.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One mapping of guest RAM in the VMM (region i on the wire). */
struct fl_vmm_ram {
	void *host;	     /* the VMM's mapping, page aligned */
	size_t len;	     /* bytes, a multiple of 4 KiB */
	uint64_t guest_addr; /* guest-physical address (sent as the region's start) */
	const char *name;    /* e.g. "guest-ram" (up to FL_REGION_NAME_MAX - 1) */
};

/* ---------------------------------------------------------------- source */

struct fl_vmm_source_hooks {
	/*
	 * Dirty tracking by the VMM, e.g. KVM_MEM_LOG_DIRTY_PAGES switched on
	 * in dirty_start and KVM_GET_DIRTY_LOG in dirty_collect (one bit per
	 * 4 KiB page of ram[region], bit i of word i/64; the bitmap is
	 * cleared by the caller). dirty_start must begin an EMPTY log:
	 * pre-copy round 1 sends every page anyway, and each collect returns
	 * what was written since the one before. Writes the VMM makes itself
	 * (not through the vCPUs) must be added by the VMM.
	 *
	 * Both NULL: faultline tracks the RAM with userfaultfd write-protect
	 * (fl_dirty_*, faultline/uffd.h), which sees writes by the VMM's
	 * threads and, through the MMU notifiers, by the vCPUs too.
	 */
	int (*dirty_start)(void *ctx);
	int (*dirty_collect)(void *ctx, uint32_t region, uint64_t *bitmap);
	/*
	 * Stop the vCPUs (they must not write guest RAM after this returns)
	 * and hand back the device state to resume with: a malloc'd blob,
	 * freed by faultline. Required.
	 */
	int (*pause)(void *ctx, void **blob, size_t *blob_len);
	void *ctx;
};

/*
 * Migrate the guest RAM `ram[0..n)` to opts->to (blocking): pre-copy
 * rounds while the guest runs (unless opts->postcopy_only), pause, then
 * post-copy until the destination has every page. On return the guest
 * lives at the destination; the caller frees its RAM. Returns 0 or -errno
 * with err saying why.
 */
int fl_vmm_migrate(const struct fl_vmm_ram *ram, size_t n,
		   const struct fl_vmm_source_hooks *hooks,
		   const struct fl_migrate_source_opts *opts,
		   struct fl_migrate_report *report, char *err, size_t errlen);

/* ----------------------------------------------------------- destination */

struct fl_vmm_dest_opts {
	int verbose;	  /* the monitor's progress lines on stderr */
	bool no_prefetch; /* serve faults only (the source still pushes) */
};

struct fl_vmm_dest;

/*
 * Can this process serve guest RAM (a userfaultfd that handles kernel
 * faults)? Call it before accepting a migration, so a destination that
 * cannot take the guest says so before the source pauses it. 0, or
 * -EPERM with err naming what is missing and how to grant it.
 */
int fl_vmm_dest_check(char *err, size_t errlen);

/*
 * After fl_receiver_wait_resume(): serve the guest RAM that the VMM has
 * mapped at ram[i].host (anonymous private memory, untouched, region i of
 * the receiver, same length). Creates a userfaultfd that handles faults
 * raised inside the kernel, registers every mapping for missing pages,
 * and starts a monitor thread serving them from the receiver. Returns
 * as soon as the RAM is safe to hand to KVM: run the vCPUs at once.
 *
 * From here until fl_vmm_dest_wait_complete() returns, a page of RAM the
 * guest or the VMM touches may block for a network round trip, and
 * MADV_DONTNEED, munmap or mremap of the RAM are followed (as the
 * program's own), never turned into zeros by the monitor. Guest RAM is
 * marked MADV_DONTFORK: a child the VMM forks does not inherit it (the
 * userfaultfd does not follow fork; QEMU marks its RAM the same way).
 *
 * `r` stays the caller's and must outlive the fl_vmm_dest.
 *
 * The monitor's event loop registers SIGINT and SIGTERM (stop serving)
 * for the whole process while it runs (SIGUSR1 only when asked, with
 * fl_monitor_opts.on_sigusr1): a VMM that needs those signals must block
 * them in its other threads or
 * not rely on its own handlers until fl_vmm_dest_destroy(). A stopped
 * monitor leaves missing pages blocking (our fd stays open), never zeros.
 *
 * To serve from a separate monitor process instead (`faultline receive
 * --exec VMM`), the VMM maps RAM and calls fl_restore_handoff()
 * (faultline/handoff.h) with the regions of $FAULTLINE_REGIONS. That
 * call refuses, naming the fix, when it may not have a userfaultfd that
 * serves KVM's faults; never pass allow_user_mode_only from a VMM (KVM_RUN
 * would fail with EFAULT on the first missing page). fl_vmm_dest_check()
 * asks the same question before anything is mapped.
 */
int fl_vmm_dest_start(struct fl_vmm_dest **out, struct fl_receiver *r,
		      const struct fl_vmm_ram *ram, size_t n,
		      const struct fl_vmm_dest_opts *opts, char *err, size_t errlen);

/*
 * The composition under fl_vmm_dest_start(), for a destination whose
 * program hands its memory over itself (`faultline receive` runs it with a
 * handoff server on the monitor's loop): serve() creates a monitor over
 * the receiver, not yet running; attach what adopts processes to
 * fl_vmm_dest_monitor() (fl_monitor_adopt_handoff, a handoff server on
 * fl_monitor_event_base()); run() starts the monitor's thread and the
 * watcher that tells the source it may let go once every page arrived.
 */
int fl_vmm_dest_serve(struct fl_vmm_dest **out, struct fl_receiver *r,
		      const struct fl_monitor_opts *mo, char *err, size_t errlen);
struct fl_monitor *fl_vmm_dest_monitor(struct fl_vmm_dest *d);
int fl_vmm_dest_run(struct fl_vmm_dest *d, char *err, size_t errlen);
/* The monitor's loop has ended (every process it served is gone). */
bool fl_vmm_dest_monitor_done(const struct fl_vmm_dest *d);
/* Tell the source it may let go, with the monitor's fault statistics, if
 * not done yet (the watcher does it once every page arrived). Returns 0 or
 * the connection's error. */
int fl_vmm_dest_finish(struct fl_vmm_dest *d);
/* Stop the monitor and the watcher and wait for their threads; then
 * whatever runs on the monitor's loop may be destroyed, before
 * fl_vmm_dest_destroy(). */
void fl_vmm_dest_stop(struct fl_vmm_dest *d);

/* Pages still to arrive from the source (safe from any thread). */
uint64_t fl_vmm_dest_owed(const struct fl_vmm_dest *d);

/*
 * Wait until every page has arrived from the source and is installed in
 * guest RAM, or timeout_s passes (<= 0: no limit). When every page has
 * arrived the source is told it may let go (fl_receiver_finish, with the
 * fault statistics); this happens by itself in the background as soon as
 * it is true, whether or not anyone waits. "Installed" is checked with
 * mincore() over the RAM, so a return of 0 means the userfaultfd may be
 * closed safely. With no_prefetch only the arrival is waited for (pages
 * the guest never touches are never installed). Returns 0, -ETIMEDOUT,
 * or the monitor's or the connection's error.
 */
int fl_vmm_dest_wait_complete(struct fl_vmm_dest *d, double timeout_s);

/* The monitor's statistics: faults, their service latency, pages copied,
 * prefetched, bytes (text, or JSON). */
void fl_vmm_dest_print_stats(struct fl_vmm_dest *d, FILE *out, bool json);
/* Faults served and their latency percentiles in ns (any argument may
 * be NULL). */
void fl_vmm_dest_fault_stats(struct fl_vmm_dest *d, uint64_t *faults, uint64_t *p50_ns,
			     uint64_t *p99_ns);

/*
 * Stop the monitor and close the userfaultfd. Call it after
 * fl_vmm_dest_wait_complete() returned 0, or after the VMM stopped using
 * the RAM: closing the last userfaultfd of a range makes its missing
 * pages read as zeros. Tolerates NULL.
 */
void fl_vmm_dest_destroy(struct fl_vmm_dest *d);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_VMM_H */
