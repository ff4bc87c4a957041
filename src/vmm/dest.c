// SPDX-License-Identifier: MIT
/*
 * The destination side of a VMM's migration: guest RAM of this process
 * served by an in-process monitor thread from the receiver.
 *
 * Two threads run here besides the VMM's: the monitor's event loop, and a
 * small watcher that tells the source it may let go as soon as every page
 * has arrived (the source keeps the guest's memory until then, so this
 * should not wait for anyone to ask), with the monitor's statistics.
 *
 * The same composition, without the in-process RAM, is what
 * `faultline receive` runs (fl_vmm_dest_serve/_run): its restorer hands
 * its userfaultfd over a handoff server on the monitor's loop instead.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <faultline/monitor.h>
#include <faultline/uffd.h>
#include <faultline/vmm.h>
#include <faultline/wire.h>

#include "util/clock.h"
#include "util/thread-cpu.h"

struct fl_vmm_dest {
	struct fl_receiver *r;
	struct fl_monitor *m;
	struct fl_uffd u;	/* our own copy of the fd: see destroy */
	struct fl_vmm_ram *ram;
	size_t n;
	bool prefetch;
	bool finish_sent;	/* guarded by finish_lock */
	pthread_mutex_t finish_lock;
	pthread_t mon_thread, watch_thread;
	bool mon_started, watch_started;
	atomic_bool mon_done, finished, stopping;
	atomic_int mon_ret, finish_ret;
};

static void *monitor_thread(void *arg)
{
	struct fl_vmm_dest *d = arg;

	fl__thread_name("fl-monitor");

	atomic_store(&d->mon_ret, fl_monitor_run(d->m));
	atomic_store(&d->mon_done, true);
	return NULL;
}

/* Tell the source it may let go, once, with the monitor's statistics as
 * plain numbers (faults, p50, p99, then tid, blocked ns, faults for the
 * most blocked threads: WIRE.md's STATS). */
int fl_vmm_dest_finish(struct fl_vmm_dest *d)
{
	uint64_t v[FL_WIRE_STATS_MAX];
	struct fl_thread_stat t[FL_MIGRATE_THREADS_MAX];
	size_t n;
	int ret = 0;

	pthread_mutex_lock(&d->finish_lock);
	if (d->finish_sent) {
		pthread_mutex_unlock(&d->finish_lock);
		return atomic_load(&d->finish_ret);
	}
	n = fl_monitor_thread_stats(d->m, t, FL_MIGRATE_THREADS_MAX);
	fl_monitor_fault_stats(d->m, &v[0], &v[1], &v[2]);
	for (size_t i = 0; i < n; i++) {
		v[3 + 3 * i] = t[i].tid;
		v[4 + 3 * i] = t[i].blocked_ns;
		v[5 + 3 * i] = t[i].faults;
	}
	ret = fl_receiver_finish(d->r, v, 3 + 3 * n);
	atomic_store(&d->finish_ret, ret);
	d->finish_sent = true;
	pthread_mutex_unlock(&d->finish_lock);
	return ret;
}

static void *watch_thread(void *arg)
{
	struct fl_vmm_dest *d = arg;

	fl__thread_name("fl-watch");
	while (!atomic_load(&d->stopping) && !atomic_load(&d->mon_done)) {
		if (fl_receiver_owed(d->r) == 0) {
			fl_vmm_dest_finish(d);
			atomic_store(&d->finished, true);
			return NULL;
		}
		usleep(5000);
	}
	return NULL;
}

/* Faults raised inside the kernel (KVM's get_user_pages) need a
 * userfaultfd opened without UFFD_USER_MODE_ONLY; say what is missing. */
static int no_kernel_faults(char *err, size_t errlen)
{
	struct fl_uffd_privilege p;

	fl_uffd_privilege_check(&p);
	snprintf(err, errlen,
		 "cannot create a userfaultfd that handles faults raised in the kernel, which "
		 "KVM's accesses to guest RAM are: this process has no CAP_SYS_PTRACE, "
		 "vm.unprivileged_userfaultfd is %d (not 1) and /dev/userfaultfd is %s. Fix one: "
		 "run with CAP_SYS_PTRACE, `sysctl vm.unprivileged_userfaultfd=1`, or give this "
		 "user read-write access to /dev/userfaultfd",
		 p.unprivileged_sysctl, !p.dev_userfaultfd ? "absent" :
		 p.dev_userfaultfd_rw ? "usable (yet the open failed)" : "not ours to open");
	return -EPERM;
}

int fl_vmm_dest_check(char *err, size_t errlen)
{
	struct fl_uffd u = { .fd = -1 };
	int ret = fl_uffd_create(&u, 0 /* not USER_MODE_ONLY */, 0, 0, NULL);

	fl_uffd_close(&u);
	if (ret == -EPERM)
		return no_kernel_faults(err, errlen);
	if (ret)
		snprintf(err, errlen, "creating a userfaultfd: %s", strerror(-ret));
	return ret;
}

int fl_vmm_dest_serve(struct fl_vmm_dest **out, struct fl_receiver *r,
		      const struct fl_monitor_opts *mo, char *err, size_t errlen)
{
	struct fl_vmm_dest *d = calloc(1, sizeof(*d));
	int ret;

	*out = NULL;
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d->r = r;
	d->u.fd = -1;
	d->prefetch = !mo->no_prefetch;
	pthread_mutex_init(&d->finish_lock, NULL);
	ret = fl_monitor_create(&d->m, fl_receiver_source(r), mo, err, errlen);
	if (ret) {
		fl_vmm_dest_destroy(d);
		return ret;
	}
	*out = d;
	return 0;
}

struct fl_monitor *fl_vmm_dest_monitor(struct fl_vmm_dest *d)
{
	return d->m;
}

int fl_vmm_dest_run(struct fl_vmm_dest *d, char *err, size_t errlen)
{
	int ret;

	if ((ret = -pthread_create(&d->mon_thread, NULL, monitor_thread, d))) {
		snprintf(err, errlen, "starting the monitor thread: %s", strerror(-ret));
		return ret;
	}
	d->mon_started = true;
	if ((ret = -pthread_create(&d->watch_thread, NULL, watch_thread, d))) {
		snprintf(err, errlen, "starting the watcher thread: %s", strerror(-ret));
		return ret;
	}
	d->watch_started = true;
	return 0;
}

bool fl_vmm_dest_monitor_done(const struct fl_vmm_dest *d)
{
	return atomic_load(&d->mon_done);
}

/* Register guest RAM on our own userfaultfd and hand a duplicate to the
 * monitor. */
static int adopt_ram(struct fl_vmm_dest *d, const struct fl_vmm_ram *ram, size_t n,
		     char *err, size_t errlen)
{
	/* Follow what the VMM itself may do to its RAM. No EVENT_FORK: guest
	 * RAM is MADV_DONTFORK (below), so a child the VMM forks gets none
	 * of it, served or not. */
	uint64_t want = UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
			UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON;
	struct fl_handoff_region *hr = calloc(n, sizeof(*hr));
	int ret, fd;

	d->ram = malloc(n * sizeof(*ram));
	if (!d->ram || !hr) {
		free(hr);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(d->ram, ram, n * sizeof(*ram));
	d->n = n;
	ret = fl_uffd_create(&d->u, 0 /* not USER_MODE_ONLY */, want, 0, NULL);
	if (ret == -EPERM) {
		ret = no_kernel_faults(err, errlen);
		goto out;
	}
	if (ret) {
		snprintf(err, errlen, "creating a userfaultfd: %s", strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (madvise(ram[i].host, ram[i].len, MADV_DONTFORK)) {
			ret = -errno;
			snprintf(err, errlen, "MADV_DONTFORK on guest RAM %zu at %p: %s", i,
				 ram[i].host, strerror(errno));
			goto out;
		}
		ret = fl_uffd_register(d->u.fd, (uintptr_t)ram[i].host, ram[i].len,
				       UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret) {
			snprintf(err, errlen, "registering guest RAM %zu at %p: %s", i,
				 ram[i].host, strerror(-ret));
			goto out;
		}
		hr[i] = (struct fl_handoff_region){
			.addr = (uintptr_t)ram[i].host, .len = ram[i].len, .source_offset = 0,
			.source_region = (uint32_t)i, .page_size = 4096,
		};
	}
	/* The monitor owns a duplicate; ours stays open until destroy, so if
	 * the monitor failed, a missing page would block, never read zeros. */
	fd = dup(d->u.fd);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "dup: %s", strerror(errno));
		goto out;
	}
	{
		/* No EVENT_FORK was asked for (see `want`): say it is meant. */
		struct fl_handoff h = { .uffd = fd, .pid = getpid(), .features = d->u.features,
					.flags = FL_HANDOFF_F_NO_FORK, .regions = hr,
					.nregions = n };

		ret = fl_monitor_adopt_handoff(d->m, &h, err, errlen);
	}
	if (ret)
		close(fd);
out:
	free(hr);
	return ret;
}

int fl_vmm_dest_start(struct fl_vmm_dest **out, struct fl_receiver *r,
		      const struct fl_vmm_ram *ram, size_t n,
		      const struct fl_vmm_dest_opts *opts, char *err, size_t errlen)
{
	/* In this process the monitor must leave our capabilities alone. */
	struct fl_monitor_opts mo = { .keep_caps = true };
	const struct fl_region *g;
	struct fl_vmm_dest *d;
	size_t ng;
	int ret;

	*out = NULL;
	g = fl_receiver_regions(r, &ng);
	if (ng != n) {
		snprintf(err, errlen, "the source sent %zu regions of guest RAM, the VMM mapped %zu",
			 ng, n);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if (g[i].len != ram[i].len || g[i].page_size != 4096 ||
		    (uintptr_t)ram[i].host % 4096) {
			snprintf(err, errlen, "guest RAM %zu: the source's is %llu bytes of %u-byte "
				 "pages, the VMM mapped %zu bytes at %p", i,
				 (unsigned long long)g[i].len, g[i].page_size, ram[i].len,
				 ram[i].host);
			return -EINVAL;
		}
	mo.verbose = opts ? opts->verbose : 0;
	mo.no_prefetch = opts && opts->no_prefetch;
	ret = fl_vmm_dest_serve(&d, r, &mo, err, errlen);
	if (ret)
		return ret;
	ret = adopt_ram(d, ram, n, err, errlen);
	if (!ret)
		ret = fl_vmm_dest_run(d, err, errlen);
	if (ret) {
		fl_vmm_dest_destroy(d);
		return ret;
	}
	*out = d;
	return 0;
}

uint64_t fl_vmm_dest_owed(const struct fl_vmm_dest *d)
{
	return fl_receiver_owed(d->r);
}

/*
 * Is every page of guest RAM mapped? The monitor's owed count is only
 * refreshed as its loop runs (it reads 0 before the first pass), so the
 * last word is the page tables': mincore() says which pages are present
 * (UFFDIO_ZEROPAGE's zero page counts). Closing the userfaultfd after a
 * yes cannot turn a page into zeros.
 */
static bool all_present(const struct fl_vmm_dest *d)
{
	for (size_t i = 0; i < d->n; i++) {
		size_t pages = d->ram[i].len / 4096;
		unsigned char *v = malloc(pages);
		bool ok = v && !mincore(d->ram[i].host, d->ram[i].len, v);

		for (size_t p = 0; ok && p < pages; p++)
			ok = v[p] & 1;
		free(v);
		if (!ok)
			return false;
	}
	return true;
}

int fl_vmm_dest_wait_complete(struct fl_vmm_dest *d, double timeout_s)
{
	double end = fl__now_s() + timeout_s;

	for (;;) {
		if (atomic_load(&d->finished) &&
		    (!d->prefetch || (fl_monitor_owed_pages(d->m) == 0 && all_present(d))))
			return atomic_load(&d->finish_ret);
		if (atomic_load(&d->mon_done))
			return atomic_load(&d->mon_ret) ? atomic_load(&d->mon_ret) : -EPIPE;
		if (timeout_s > 0 && fl__now_s() > end)
			return -ETIMEDOUT;
		usleep(2000);
	}
}

void fl_vmm_dest_print_stats(struct fl_vmm_dest *d, FILE *out, bool json)
{
	fl_monitor_print_stats(d->m, out, json);
}

void fl_vmm_dest_fault_stats(struct fl_vmm_dest *d, uint64_t *faults, uint64_t *p50_ns,
			     uint64_t *p99_ns)
{
	uint64_t f, a, b;

	fl_monitor_fault_stats(d->m, &f, &a, &b);
	if (faults)
		*faults = f;
	if (p50_ns)
		*p50_ns = a;
	if (p99_ns)
		*p99_ns = b;
}

void fl_vmm_dest_stop(struct fl_vmm_dest *d)
{
	atomic_store(&d->stopping, true);
	if (d->watch_started)
		pthread_join(d->watch_thread, NULL);
	if (d->mon_started) {
		fl_monitor_stop(d->m);
		pthread_join(d->mon_thread, NULL);
	}
	d->watch_started = d->mon_started = false;
}

void fl_vmm_dest_destroy(struct fl_vmm_dest *d)
{
	if (!d)
		return;
	fl_vmm_dest_stop(d);
	fl_monitor_destroy(d->m);
	pthread_mutex_destroy(&d->finish_lock);
	fl_uffd_close(&d->u);
	free(d->ram);
	free(d);
}
