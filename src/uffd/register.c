// SPDX-License-Identifier: MIT
/* Registering ranges with a userfaultfd. */
#include <errno.h>
#include <sys/ioctl.h>

#include <faultline/uffd.h>

int fl_uffd_register(int fd, uint64_t addr, uint64_t len, uint64_t modes,
		     uint64_t *ioctls)
{
	struct uffdio_register reg = {
		.range = { .start = addr, .len = len },
		.mode = modes,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

int fl_uffd_unregister(int fd, uint64_t addr, uint64_t len)
{
	struct uffdio_range range = { .start = addr, .len = len };

	return ioctl(fd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}
