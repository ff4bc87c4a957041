// SPDX-License-Identifier: MIT
/*
 * linux-compat.h: our definitions match the kernel ABI, and headers that
 * already define a name win (here a stand-in "newer header" defines
 * UFFD_FEATURE_MOVE and struct uffdio_move before ours is included).
 */
#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/userfaultfd.h>

/* What a newer <linux/userfaultfd.h> would bring. */
#define UFFD_FEATURE_MOVE (1 << 16)
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
	__u64 dst, src, len, mode;
	__s64 move;
};
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)

#include <faultline/linux-compat.h>

#include "runner.h"

/* The ABI, checked at compile time (values from include/uapi/linux). */
_Static_assert(sizeof(struct uffdio_move) == 40, "uffdio_move is 40 bytes");
_Static_assert(sizeof(struct uffdio_poison) == 32, "uffdio_poison is 32 bytes");
_Static_assert(sizeof(struct page_region) == 24, "page_region is 24 bytes");
_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg is 96 bytes");
_Static_assert(UFFDIO_MOVE == 0xc028aa05, "UFFDIO_MOVE number");
_Static_assert(UFFDIO_POISON == 0xc020aa08, "UFFDIO_POISON number");
_Static_assert(PAGEMAP_SCAN == 0xc0606610, "PAGEMAP_SCAN number");
_Static_assert(UFFD_FEATURE_WP_UNPOPULATED == 1 << 13, "WP_UNPOPULATED bit");
_Static_assert(UFFD_FEATURE_POISON == 1 << 14, "POISON bit");
_Static_assert(UFFD_FEATURE_WP_ASYNC == 1 << 15, "WP_ASYNC bit");
_Static_assert(UFFD_FEATURE_MOVE == 1 << 16, "MOVE bit");
_Static_assert(PAGE_IS_WRITTEN == 1 << 1, "PAGE_IS_WRITTEN bit");

static void test_compat_definitions_match_the_kernel_abi(const struct fl_case *c)
{
	(void)c;
	/* Compiling this file is the test; this case makes it count. */
	assert_int_equal(UFFDIO_CONTINUE_MODE_WP, 2);
	assert_int_equal(PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, 3);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	fl_case_add(&cases, &n, test_compat_definitions_match_the_kernel_abi, NULL,
		    NULL, "test_compat_definitions_match_the_kernel_abi");
	return fl_run_cases(cases, n, argc, argv);
}
