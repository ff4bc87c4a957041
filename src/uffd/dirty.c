// SPDX-License-Identifier: MIT
/*
 * Dirty tracking with UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (Linux 6.7+).
 *
 * With WP_ASYNC a write to a write-protected page clears the protection in
 * the page table without sending a message; PAGEMAP_SCAN then reports pages
 * whose protection is gone (PAGE_IS_WRITTEN) and, with PM_SCAN_WP_MATCHING,
 * protects them again in the same page-table walk, so no write can slip in
 * between "report" and "re-protect". A hole (never touched, or emptied by
 * MADV_DONTNEED) carries no protection marker and so reads as written: its
 * content did change, to zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dirty-internal.h"

#define SCAN_VEC 1024 /* regions per PAGEMAP_SCAN call */

static int scan_once(struct fl_dirty *d, uint64_t from, uint64_t *walk_end,
		     long *nregions)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = from,
		.end = d->start + d->len,
		.vec = (uint64_t)(uintptr_t)d->vec,
		.vec_len = d->vec_len,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	/* With kernel patch 2 a possibly-pinned page is never re-protected,
	 * so it reads PAGE_IS_WRITTEN while pinned and once after: nothing to
	 * ask for here. */
	long n = ioctl(d->pagemap_fd, PAGEMAP_SCAN, &arg);

	if (n < 0)
		return -errno;
	*walk_end = arg.walk_end;
	*nregions = n;
	return 0;
}

/*
 * One full pass: report written pages into `bitmap` (if not NULL) and
 * re-protect them. The kernel may hand back a stale walk_end when a call
 * fills many regions, so "walk_end == end" is not a safe stop: the scan is
 * finished unless the output array came back full.
 */
static int scan_range(struct fl_dirty *d, uint64_t *bitmap, size_t *ndirty)
{
	uint64_t from = d->start, end = d->start + d->len, walk_end = 0;
	size_t count = 0;

	for (;;) {
		long n;
		int ret = scan_once(d, from, &walk_end, &n);

		if (ret < 0)
			return ret;
		for (long i = 0; i < n; i++) {
			const struct page_region *r = &d->vec[i];
			size_t first = (r->start - d->start) / FL_PAGE;
			size_t pages = (r->end - r->start) / FL_PAGE;

			if (bitmap)
				fl__bitmap_set_range(bitmap, first, pages);
			count += pages;
		}
		if ((size_t)n < d->vec_len || walk_end >= end || walk_end <= from)
			break;
		from = walk_end;
	}
	if (ndirty)
		*ndirty = count;
	return 0;
}

static int scan_start(struct fl_dirty *d)
{
	int ret;

	ret = fl_uffd_create(&d->uffd, 0, UFFD_FEATURE_WP_UNPOPULATED,
			     UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_PAGEFAULT_FLAG_WP,
			     NULL);
	if (ret == -EPERM)
		ret = fl_uffd_create(&d->uffd, FL_UFFD_USER_MODE_ONLY,
				     UFFD_FEATURE_WP_UNPOPULATED,
				     UFFD_FEATURE_WP_ASYNC |
					     UFFD_FEATURE_PAGEFAULT_FLAG_WP,
				     NULL);
	if (ret < 0)
		return ret;
	d->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (d->pagemap_fd < 0)
		return -errno;
	d->vec_len = SCAN_VEC;
	d->vec = calloc(d->vec_len, sizeof(*d->vec));
	if (!d->vec)
		return -ENOMEM;
	ret = fl_uffd_register(d->uffd.fd, d->start, d->len,
			       UFFDIO_REGISTER_MODE_WP, NULL);
	if (ret < 0)
		return ret;
	ret = fl_uffd_writeprotect(d->uffd.fd, d->start, d->len, true, 0);
	if (ret < 0)
		return ret;
	/* The first scan reports every page, touched or not: protect and
	 * discard, so the session starts clean. */
	return scan_range(d, NULL, NULL);
}

bool fl_dirty_scan_supported(void)
{
	uint64_t features = 0;
	struct pm_scan_arg arg = { .size = sizeof(arg) };
	int fd, ok;

	if (fl_uffd_probe(0, &features, NULL) < 0 &&
	    fl_uffd_probe(FL_UFFD_USER_MODE_ONLY, &features, NULL) < 0)
		return false;
	if (!(features & UFFD_FEATURE_WP_ASYNC))
		return false;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	/* An empty range is valid and answers 0 where the ioctl exists. */
	ok = ioctl(fd, PAGEMAP_SCAN, &arg) >= 0;
	close(fd);
	return ok;
}

bool fl_dirty_pinned_supported(void)
{
	struct fl_uffd_series s;

	/* a behaviour, not a bit: only the series' fdinfo line proves it */
	return fl_dirty_scan_supported() && fl_uffd_series_probe(&s) == 0 &&
	       s.wp_async_pinned;
}

int fl_dirty_always(struct fl_dirty *d, void *addr, size_t len)
{
	uint64_t a = (uint64_t)(uintptr_t)addr;

	if (a < d->start || len > d->len || a - d->start > d->len - len ||
	    (a | len) & (FL_PAGE - 1))
		return -EINVAL;
	if (!d->always) {
		d->always = calloc(fl__bitmap_words(d->pages), sizeof(uint64_t));
		if (!d->always)
			return -ENOMEM;
	}
	fl__bitmap_set_range(d->always, (a - d->start) / FL_PAGE, len / FL_PAGE);
	return 0;
}

int fl_dirty_create(struct fl_dirty **out, void *addr, size_t len,
		    enum fl_dirty_method method)
{
	uint64_t start = (uint64_t)(uintptr_t)addr;
	struct fl_dirty *d;
	int ret;

	*out = NULL;
	if (!len || (start | len) & (FL_PAGE - 1))
		return -EINVAL;
	if (method == FL_DIRTY_AUTO)
		method = fl_dirty_scan_supported() ? FL_DIRTY_PAGEMAP_SCAN
						   : FL_DIRTY_WP_FAULTS;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->method = method;
	d->start = start;
	d->len = len;
	d->pages = len / FL_PAGE;
	d->pagemap_fd = -1;
	d->stop_fd = -1;
	d->uffd.fd = -1;
	pthread_mutex_init(&d->lock, NULL);
	ret = method == FL_DIRTY_PAGEMAP_SCAN ? scan_start(d)
					      : fl__dirty_wpfault_start(d);
	if (ret < 0) {
		fl_dirty_destroy(d);
		return ret;
	}
	*out = d;
	return 0;
}

int fl_dirty_collect(struct fl_dirty *d, uint64_t *bitmap, size_t *ndirty)
{
	size_t n = 0;
	int ret;

	memset(bitmap, 0, fl__bitmap_words(d->pages) * sizeof(uint64_t));
	if (d->method == FL_DIRTY_PAGEMAP_SCAN)
		ret = scan_range(d, bitmap, NULL);
	else
		ret = fl__dirty_wpfault_collect(d, bitmap, NULL);
	for (size_t w = 0; w < fl__bitmap_words(d->pages); w++) {
		if (d->always)
			bitmap[w] |= d->always[w];
		n += (size_t)__builtin_popcountll(bitmap[w]);
	}
	if (ndirty)
		*ndirty = n;
	return ret;
}

enum fl_dirty_method fl_dirty_method_used(const struct fl_dirty *d)
{
	return d->method;
}

size_t fl_dirty_pages(const struct fl_dirty *d)
{
	return d->pages;
}

void fl_dirty_destroy(struct fl_dirty *d)
{
	if (!d)
		return;
	if (d->method == FL_DIRTY_WP_FAULTS)
		fl__dirty_wpfault_stop(d);
	if (d->uffd.fd >= 0) {
		/* Unregistering also drops every protection marker. */
		fl_uffd_unregister(d->uffd.fd, d->start, d->len);
		fl_uffd_close(&d->uffd);
	}
	if (d->pagemap_fd >= 0)
		close(d->pagemap_fd);
	free(d->vec);
	free((void *)d->live);
	free(d->present);
	free(d->always);
	free(d->scratch);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
