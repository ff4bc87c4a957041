// SPDX-License-Identifier: MIT
/*
 * Resolving faults: COPY, ZEROPAGE, CONTINUE, MOVE, POISON, WRITEPROTECT and
 * WAKE, all behind one return contract (see faultline/uffd.h).
 *
 * How the kernel reports progress (fs/userfaultfd.c, mm/userfaultfd.c): each
 * filling ioctl writes the bytes it handled, or a negative errno, into its
 * progress field (copy, zeropage, mapped, move, updated). If it stopped part
 * way, the ioctl fails with EAGAIN while the field is positive; the real
 * reason shows on the next call, which starts at the page that stopped it.
 * An EAGAIN with a negative field means mmap_changing was set: a
 * non-cooperative event is queued and must be read before anything resolves.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include <faultline/uffd.h>

/* One ioctl of a filling operation: returns 0 or -errno, and the kernel's
 * progress field in *progress. */
typedef int (*fill_fn)(int fd, uint64_t dst, uint64_t src, uint64_t len,
		       unsigned mode, int64_t *progress);

static int call(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

static int fill_copy(int fd, uint64_t dst, uint64_t src, uint64_t len,
		     unsigned mode, int64_t *progress)
{
	struct uffdio_copy c = { .dst = dst, .src = src, .len = len };
	int ret;

	if (mode & FL_RESOLVE_DONTWAKE)
		c.mode |= UFFDIO_COPY_MODE_DONTWAKE;
	if (mode & FL_RESOLVE_WP)
		c.mode |= UFFDIO_COPY_MODE_WP;
	ret = call(fd, UFFDIO_COPY, &c);
	*progress = c.copy;
	return ret;
}

static int fill_zeropage(int fd, uint64_t dst, uint64_t src, uint64_t len,
			 unsigned mode, int64_t *progress)
{
	struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };
	int ret;

	(void)src;
	if (mode & FL_RESOLVE_DONTWAKE)
		z.mode |= UFFDIO_ZEROPAGE_MODE_DONTWAKE;
	if (mode & FL_RESOLVE_WP)
		return -EINVAL; /* the kernel has no WP mode for zeropage */
	ret = call(fd, UFFDIO_ZEROPAGE, &z);
	*progress = z.zeropage;
	return ret;
}

static int fill_continue(int fd, uint64_t dst, uint64_t src, uint64_t len,
			 unsigned mode, int64_t *progress)
{
	struct uffdio_continue c = { .range = { .start = dst, .len = len } };
	int ret;

	(void)src;
	if (mode & FL_RESOLVE_DONTWAKE)
		c.mode |= UFFDIO_CONTINUE_MODE_DONTWAKE;
	if (mode & FL_RESOLVE_WP)
		c.mode |= UFFDIO_CONTINUE_MODE_WP;
	ret = call(fd, UFFDIO_CONTINUE, &c);
	*progress = c.mapped;
	return ret;
}

static int fill_move(int fd, uint64_t dst, uint64_t src, uint64_t len,
		     unsigned mode, int64_t *progress)
{
	struct uffdio_move m = { .dst = dst, .src = src, .len = len };
	int ret;

	if (mode & FL_RESOLVE_DONTWAKE)
		m.mode |= UFFDIO_MOVE_MODE_DONTWAKE;
	if (mode & FL_RESOLVE_ALLOW_SRC_HOLES)
		m.mode |= UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
	if (mode & FL_RESOLVE_WP)
		return -EINVAL;
	ret = call(fd, UFFDIO_MOVE, &m);
	*progress = m.move;
	return ret;
}

static int fill_poison(int fd, uint64_t dst, uint64_t src, uint64_t len,
		       unsigned mode, int64_t *progress)
{
	struct uffdio_poison p = { .range = { .start = dst, .len = len } };
	int ret;

	(void)src;
	if (mode & FL_RESOLVE_DONTWAKE)
		p.mode |= UFFDIO_POISON_MODE_DONTWAKE;
	if (mode & FL_RESOLVE_WP)
		return -EINVAL;
	ret = call(fd, UFFDIO_POISON, &p);
	*progress = p.updated;
	return ret;
}

int fl_uffd_wake(int fd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { .start = addr, .len = len };

	return call(fd, UFFDIO_WAKE, &r);
}

/*
 * Pages found present (EEXIST) were installed by someone else, who may have
 * used DONTWAKE; a thread that faulted on them must not sleep forever, so we
 * wake them, one call per contiguous run.
 */
struct wake_run {
	uint64_t start, len;
};

static void wake_flush(int fd, struct wake_run *w, unsigned mode)
{
	if (w->len && !(mode & FL_RESOLVE_DONTWAKE))
		fl_uffd_wake(fd, w->start, w->len);
	w->len = 0;
}

static void wake_add(int fd, struct wake_run *w, uint64_t addr, uint64_t len,
		     unsigned mode)
{
	if (w->len && w->start + w->len != addr)
		wake_flush(fd, w, mode);
	if (!w->len)
		w->start = addr;
	w->len += len;
}

static int fill(fill_fn fn, int fd, uint64_t dst, uint64_t src, uint64_t len,
		uint64_t page_size, unsigned mode, struct fl_resolve *res)
{
	struct fl_resolve local;
	struct wake_run wake = { 0, 0 };
	uint64_t off = 0;
	int ret = 0;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (!page_size || (page_size & (page_size - 1)) || !len ||
	    (dst | len) & (page_size - 1))
		return -EINVAL;
	while (off < len) {
		int64_t progress = 0;

		ret = fn(fd, dst + off, src ? src + off : 0, len - off, mode,
			 &progress);
		res->calls++;
		if (progress > 0) {
			/* Some (or all) of it done: continue after it. */
			wake_flush(fd, &wake, mode);
			res->done += (uint64_t)progress;
			off += (uint64_t)progress;
			ret = 0;
			continue;
		}
		if (ret == -EEXIST) {
			/* The first page is already there: skip exactly it. */
			wake_add(fd, &wake, dst + off, page_size, mode);
			res->existed += page_size;
			off += page_size;
			ret = 0;
			continue;
		}
		if (ret == 0) /* a zero-length answer: cannot progress */
			ret = -EIO;
		break;
	}
	wake_flush(fd, &wake, mode);
	return ret;
}

int fl_uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len,
		 uint64_t page_size, unsigned mode, struct fl_resolve *res)
{
	if (!src)
		return -EFAULT;
	return fill(fill_copy, fd, dst, (uint64_t)(uintptr_t)src, len,
		    page_size, mode, res);
}

int fl_uffd_zeropage(int fd, uint64_t dst, uint64_t len, uint64_t page_size,
		     unsigned mode, struct fl_resolve *res)
{
	return fill(fill_zeropage, fd, dst, 0, len, page_size, mode, res);
}

int fl_uffd_continue(int fd, uint64_t dst, uint64_t len, uint64_t page_size,
		     unsigned mode, struct fl_resolve *res)
{
	return fill(fill_continue, fd, dst, 0, len, page_size, mode, res);
}

int fl_uffd_move(int fd, uint64_t dst, uint64_t src, uint64_t len,
		 uint64_t page_size, unsigned mode, struct fl_resolve *res)
{
	if (!src || (src & (page_size - 1)))
		return -EINVAL;
	return fill(fill_move, fd, dst, src, len, page_size, mode, res);
}

int fl_uffd_poison(int fd, uint64_t dst, uint64_t len, uint64_t page_size,
		   unsigned mode, struct fl_resolve *res)
{
	return fill(fill_poison, fd, dst, 0, len, page_size, mode, res);
}

int fl_uffd_writeprotect(int fd, uint64_t addr, uint64_t len, bool protect,
			 unsigned mode)
{
	struct uffdio_writeprotect wp = { .range = { .start = addr, .len = len } };

	if (protect)
		wp.mode |= UFFDIO_WRITEPROTECT_MODE_WP;
	if (mode & FL_RESOLVE_DONTWAKE)
		wp.mode |= UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
	return call(fd, UFFDIO_WRITEPROTECT, &wp);
}
