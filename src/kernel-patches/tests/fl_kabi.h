/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel interface bits the guest tests need that the build host's
 * /usr/include/linux (6.1) lacks, plus what the patch series adds.
 * Every definition is guarded so newer system headers win.
 */
#ifndef FL_KABI_H
#define FL_KABI_H

#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>

/* ---- userfaultfd (6.1 lacks WP_ASYNC, 6.3+) ---- */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* ---- added by patch 1 of the series ---- */
#ifndef UFFD_FEATURE_EVENT_EXIT
#define UFFD_FEATURE_EVENT_EXIT (1 << 17)
#endif
#ifndef UFFD_EVENT_EXIT
#define UFFD_EVENT_EXIT 0x17
#endif
/* uffd_msg.arg.exit.pid: first 32 bits of the argument union */
static inline uint32_t fl_msg_exit_pid(const struct uffd_msg *m)
{
	uint32_t pid;

	memcpy(&pid, &m->arg, sizeof(pid));
	return pid;
}

/* ---- PAGEMAP_SCAN (6.7+) ---- */
#ifndef PAGEMAP_SCAN
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

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
#ifndef PAGE_IS_WPALLOWED
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)
#endif
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif
/* ---- added by patch 2 of the series ((1 << 8) is PAGE_IS_GUARD, 6.14+) ---- */
#ifndef PAGE_IS_PINNED
#define PAGE_IS_PINNED (1 << 9)
#endif

/* ---- result line parsed by run.sh from the serial console ---- */
static const char *fl_test_name = "?";

static inline void fl_result(const char *verdict, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* one write, so lines of tests running at once do not mix */
	dprintf(1, "FAULTLINE-RESULT %s %s %s\n", fl_test_name, verdict, buf);
}

#define FL_PASS(...) do { fl_result("PASS", __VA_ARGS__); exit(0); } while (0)
#define FL_FAIL(...) do { fl_result("FAIL", __VA_ARGS__); exit(1); } while (0)
#define FL_SKIP(...) do { fl_result("SKIP", __VA_ARGS__); exit(2); } while (0)
#define FL_CHECK(cond, ...) do { if (!(cond)) FL_FAIL(__VA_ARGS__); } while (0)

static inline int fl_uffd_open(int flags)
{
	return (int)syscall(__NR_userfaultfd, flags);
}

#endif /* FL_KABI_H */
