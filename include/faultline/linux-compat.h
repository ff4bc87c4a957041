/* SPDX-License-Identifier: MIT */
/*
 * Kernel ABI that faultline uses but that Linux 6.1 system headers (Debian
 * 12) do not define yet. Every definition is guarded so that newer headers
 * win: when /usr/include/linux catches up, these lines turn into no-ops.
 *
 * Values are the kernel's uapi values (include/uapi/linux/userfaultfd.h and
 * include/uapi/linux/fs.h); they are ABI and never change.
 */
#ifndef FAULTLINE_LINUX_COMPAT_H
#define FAULTLINE_LINUX_COMPAT_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>

/* ---- userfaultfd features added after 6.1 ---- */
#ifndef UFFD_FEATURE_WP_UNPOPULATED /* 6.4: WP also protects empty PTEs */
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON /* 6.6: UFFDIO_POISON */
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC /* 6.7: writes clear WP without a message */
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE /* 6.8: UFFDIO_MOVE */
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef UFFDIO_CONTINUE_MODE_WP /* 6.4 */
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* ---- UFFDIO_MOVE (6.8) ---- */
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	__s64 move; /* bytes moved, or a negative errno */
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

/* ---- UFFDIO_POISON (6.6) ---- */
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated; /* bytes poisoned, or a negative errno */
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

/* ---- PAGEMAP_SCAN ioctl on /proc/PID/pagemap (6.7) ---- */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)  /* write-protect the pages reported */
#define PM_SCAN_CHECK_WPASYNC (1 << 1) /* fail unless the range is WP_ASYNC */

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* ---- added by faultline's kernel patch series (src/kernel-patches/) ----
 * Not upstream: detected at run time, with a fallback where absent. */
#ifndef UFFD_FEATURE_EVENT_EXIT /* a non-blocking exit event with the pid */
#define UFFD_FEATURE_EVENT_EXIT (1 << 17)
#endif
#ifndef UFFD_EVENT_EXIT
#define UFFD_EVENT_EXIT 0x17
#endif
#ifndef UFFD_EXIT_FLAG_EXEC /* UFFD_EVENT_EXIT: left by execve() */
#define UFFD_EXIT_FLAG_EXEC (1 << 0)
#endif
/* Patch 2 adds no uapi (pinned pages stay writable under WP_ASYNC) and
 * patch 3 fills uffd_msg.arg.fork's second 32 bits with the child's pid:
 * both are proven through fdinfo, see src/uffd/series.c. */

#endif /* FAULTLINE_LINUX_COMPAT_H */
