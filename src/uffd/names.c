// SPDX-License-Identifier: MIT
/* The names of every userfaultfd feature bit and ioctl, for probe output. */
#include <faultline/uffd.h>

#define F(bit, since, what) { bit, #bit, since, what }

const struct fl_uffd_bit_name fl_uffd_feature_names[] = {
	F(UFFD_FEATURE_PAGEFAULT_FLAG_WP, "4.3", "WP flag in fault messages"),
	F(UFFD_FEATURE_EVENT_FORK, "4.11", "follow fork(): child's uffd delivered"),
	F(UFFD_FEATURE_EVENT_REMAP, "4.11", "follow mremap()"),
	F(UFFD_FEATURE_EVENT_REMOVE, "4.11", "MADV_DONTNEED/REMOVE reported"),
	F(UFFD_FEATURE_MISSING_HUGETLBFS, "4.11", "missing faults on hugetlbfs"),
	F(UFFD_FEATURE_MISSING_SHMEM, "4.11", "missing faults on shmem"),
	F(UFFD_FEATURE_EVENT_UNMAP, "4.11", "munmap() reported"),
	F(UFFD_FEATURE_SIGBUS, "4.14", "SIGBUS instead of fault messages"),
	F(UFFD_FEATURE_THREAD_ID, "4.14", "faulting thread id in messages"),
	F(UFFD_FEATURE_MINOR_HUGETLBFS, "5.13", "minor faults on hugetlbfs"),
	F(UFFD_FEATURE_MINOR_SHMEM, "5.14", "minor faults on shmem"),
	F(UFFD_FEATURE_EXACT_ADDRESS, "5.18", "unmasked fault addresses"),
	F(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "5.19", "write-protect shmem and hugetlbfs"),
	F(UFFD_FEATURE_WP_UNPOPULATED, "6.4", "write-protect empty entries too"),
	F(UFFD_FEATURE_POISON, "6.6", "UFFDIO_POISON"),
	F(UFFD_FEATURE_WP_ASYNC, "6.7", "asynchronous write-protect (dirty tracking)"),
	F(UFFD_FEATURE_MOVE, "6.8", "UFFDIO_MOVE"),
	F(UFFD_FEATURE_EVENT_EXIT, "patch", "exit event with pid (faultline kernel patch 1)"),
};
const size_t fl_uffd_feature_count =
	sizeof(fl_uffd_feature_names) / sizeof(fl_uffd_feature_names[0]);

#define I(nr, name, since, what) { FL_UFFD_IOCTL_BIT(nr), name, since, what }

const struct fl_uffd_bit_name fl_uffd_ioctl_names[] = {
	I(_UFFDIO_REGISTER, "UFFDIO_REGISTER", "4.3", "register a range"),
	I(_UFFDIO_UNREGISTER, "UFFDIO_UNREGISTER", "4.3", "unregister a range"),
	I(_UFFDIO_WAKE, "UFFDIO_WAKE", "4.3", "wake faulting threads"),
	I(_UFFDIO_COPY, "UFFDIO_COPY", "4.3", "install pages by copying"),
	I(_UFFDIO_ZEROPAGE, "UFFDIO_ZEROPAGE", "4.3", "install zero pages"),
	I(_UFFDIO_MOVE, "UFFDIO_MOVE", "6.8", "move pages into place"),
	I(_UFFDIO_WRITEPROTECT, "UFFDIO_WRITEPROTECT", "5.7", "(un)protect a range"),
	I(_UFFDIO_CONTINUE, "UFFDIO_CONTINUE", "5.13", "map existing page cache"),
	I(_UFFDIO_POISON, "UFFDIO_POISON", "6.6", "poison pages (SIGBUS)"),
	I(_UFFDIO_API, "UFFDIO_API", "4.3", "handshake"),
};
const size_t fl_uffd_ioctl_count =
	sizeof(fl_uffd_ioctl_names) / sizeof(fl_uffd_ioctl_names[0]);

static const char *lookup(const struct fl_uffd_bit_name *t, size_t n,
			  uint64_t bit)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].bit == bit)
			return t[i].name;
	return NULL;
}

const char *fl_uffd_feature_name(uint64_t bit)
{
	return lookup(fl_uffd_feature_names, fl_uffd_feature_count, bit);
}

const char *fl_uffd_ioctl_name(uint64_t bit)
{
	return lookup(fl_uffd_ioctl_names, fl_uffd_ioctl_count, bit);
}
