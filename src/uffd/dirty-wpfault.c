// SPDX-License-Identifier: MIT
/*
 * Dirty tracking for kernels without WP_ASYNC/PAGEMAP_SCAN: synchronous
 * write-protect faults, served by a handler thread.
 *
 * The range is registered MISSING|WP. A WP fault marks the page dirty and
 * un-protects it; a missing fault (a page never touched, or emptied by
 * MADV_DONTNEED: both lose the protection) marks it dirty and maps zeros.
 * A page emptied by MADV_DONTNEED and not touched since raises no fault at
 * all, yet its contents changed (to zeros): collect finds those by reading
 * /proc/self/pagemap, as pages present at the last collect and absent now.
 * Collect takes the bits first and re-protects after, both under the
 * lock the handler holds for "mark + un-protect": a write that lands between
 * taking and protecting is inside a page this collect reports (the caller
 * copies it afterwards); a write after the protect faults and is recorded
 * for the next collect. Slow (a context switch per first write of a page)
 * but it never misses a write.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dirty-internal.h"
#include "util/thread-cpu.h"

static void mark(struct fl_dirty *d, uint64_t addr)
{
	size_t page = (addr - d->start) / FL_PAGE;

	fl__bitmap_set_atomic(d->live, page);
}

/* Zeros for missing faults. UFFDIO_ZEROPAGE is not used: over a uffd-wp
 * marker (left by write-protecting an empty entry) it answers EEXIST
 * although nothing is mapped, and the faulting thread would spin. */
static const char zeros[FL_PAGE] __attribute__((aligned(4096)));

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PAGEMAP_CHUNK 512

/* One bit per page: mapped (present or swapped) right now. */
static int read_present(struct fl_dirty *d, uint64_t *present)
{
	uint64_t entries[PAGEMAP_CHUNK];

	memset(present, 0, fl__bitmap_words(d->pages) * sizeof(uint64_t));
	for (size_t i = 0; i < d->pages; i += PAGEMAP_CHUNK) {
		size_t n = d->pages - i < PAGEMAP_CHUNK ? d->pages - i : PAGEMAP_CHUNK;
		off_t off = (off_t)((d->start / FL_PAGE + i) * sizeof(uint64_t));
		ssize_t got = pread(d->pagemap_fd, entries, n * sizeof(uint64_t), off);

		if (got != (ssize_t)(n * sizeof(uint64_t)))
			return got < 0 ? -errno : -EIO;
		for (size_t j = 0; j < n; j++)
			if (entries[j] & (PM_PRESENT | PM_SWAP))
				fl__bitmap_set(present, i + j);
	}
	return 0;
}

static int serve(struct fl_dirty *d, const struct fl_uffd_event *ev)
{
	uint64_t page = ev->fault.address & ~(FL_PAGE - 1);
	int ret;

	if (ev->kind != FL_EVENT_PAGEFAULT)
		return 0;
	pthread_mutex_lock(&d->lock);
	mark(d, page);
	if (ev->fault.flags & FL_FAULT_WP)
		ret = fl_uffd_writeprotect(d->uffd.fd, page, FL_PAGE, false, 0);
	else
		ret = fl_uffd_copy(d->uffd.fd, page, zeros, FL_PAGE, FL_PAGE, 0, NULL);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static void *handler(void *arg)
{
	struct fl_dirty *d = arg;
	struct fl_uffd_event ev[32];

	fl__thread_name("fl-dirty-wp");

	for (;;) {
		struct pollfd p[2] = { { d->uffd.fd, POLLIN, 0 },
				       { d->stop_fd, POLLIN, 0 } };
		int n;

		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			d->thread_err = -errno;
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		n = fl_uffd_read_events(d->uffd.fd, ev, 32);
		if (n < 0) {
			d->thread_err = n;
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			int ret = serve(d, &ev[i]);

			if (ret < 0 && ret != -EAGAIN && !d->thread_err)
				d->thread_err = ret;
		}
	}
}

int fl__dirty_wpfault_start(struct fl_dirty *d)
{
	size_t words = fl__bitmap_words(d->pages);
	int ret;

	d->live = calloc(words, sizeof(uint64_t));
	d->present = calloc(words, sizeof(uint64_t));
	d->scratch = calloc(words, sizeof(uint64_t));
	if (!d->live || !d->present || !d->scratch)
		return -ENOMEM;
	d->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (d->pagemap_fd < 0)
		return -errno;
	/* Empty entries are left unprotected on purpose: MISSING mode catches
	 * the first touch of those. */
	ret = fl_uffd_create(&d->uffd, 0, 0, UFFD_FEATURE_PAGEFAULT_FLAG_WP, NULL);
	if (ret < 0)
		return ret;
	ret = fl_uffd_register(d->uffd.fd, d->start, d->len,
			       UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
			       NULL);
	if (ret < 0)
		return ret;
	ret = fl_uffd_writeprotect(d->uffd.fd, d->start, d->len, true, 0);
	if (ret < 0)
		return ret;
	ret = read_present(d, d->present);
	if (ret < 0)
		return ret;
	d->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (d->stop_fd < 0)
		return -errno;
	ret = -pthread_create(&d->thread, NULL, handler, d);
	if (ret < 0)
		return ret;
	d->thread_started = true;
	return 0;
}

int fl__dirty_wpfault_collect(struct fl_dirty *d, uint64_t *bitmap,
			     size_t *ndirty)
{
	size_t count = 0;
	int ret = 0;

	if (d->thread_err)
		return d->thread_err;
	pthread_mutex_lock(&d->lock);
	for (size_t w = 0; w < fl__bitmap_words(d->pages); w++)
		bitmap[w] = atomic_exchange(&d->live[w], 0);
	/* Re-protect each dirty run, one ioctl per run. */
	for (size_t i = 0; i < d->pages && ret == 0;) {
		size_t j = i;

		if (!fl__bitmap_test(bitmap, i)) {
			i++;
			continue;
		}
		while (j < d->pages && fl__bitmap_test(bitmap, j))
			j++;
		ret = fl_uffd_writeprotect(d->uffd.fd, d->start + i * FL_PAGE,
					   (j - i) * FL_PAGE, true, 0);
		i = j;
	}
	/* Pages emptied since the last look: present then, absent now. */
	if (ret == 0)
		ret = read_present(d, d->scratch);
	if (ret == 0) {
		for (size_t w = 0; w < fl__bitmap_words(d->pages); w++) {
			bitmap[w] |= d->present[w] & ~d->scratch[w];
			d->present[w] = d->scratch[w];
			count += (size_t)__builtin_popcountll(bitmap[w]);
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (ndirty)
		*ndirty = count;
	return ret;
}

void fl__dirty_wpfault_stop(struct fl_dirty *d)
{
	if (d->thread_started) {
		uint64_t one = 1;

		if (write(d->stop_fd, &one, sizeof(one)) == sizeof(one))
			pthread_join(d->thread, NULL);
		d->thread_started = false;
	}
	if (d->stop_fd >= 0)
		close(d->stop_fd);
	d->stop_fd = -1;
}
