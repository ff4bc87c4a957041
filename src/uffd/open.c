// SPDX-License-Identifier: MIT
/* Opening a userfaultfd: the syscall, or /dev/userfaultfd (Linux 6.1+). */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <faultline/uffd.h>

#define DEV_USERFAULTFD "/dev/userfaultfd"

static int open_syscall(int kflags)
{
	int fd = (int)syscall(SYS_userfaultfd, kflags);

	return fd < 0 ? -errno : fd;
}

/*
 * The device hands out a userfaultfd to anyone who may open it, whatever
 * vm.unprivileged_userfaultfd says: that is how an administrator grants
 * kernel-mode fault handling to one group without CAP_SYS_PTRACE.
 */
static int open_device(int kflags)
{
	int dev = open(DEV_USERFAULTFD, O_RDWR | O_CLOEXEC);
	int fd, err;

	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, kflags);
	err = errno;
	close(dev);
	return fd < 0 ? -err : fd;
}

int fl_uffd_open(unsigned flags)
{
	int kflags = O_CLOEXEC | O_NONBLOCK;
	int fd;

	if ((flags & FL_UFFD_VIA_SYSCALL) && (flags & FL_UFFD_VIA_DEVICE))
		return -EINVAL;
	if (flags & FL_UFFD_USER_MODE_ONLY)
		kflags |= UFFD_USER_MODE_ONLY;
	if (flags & FL_UFFD_VIA_DEVICE)
		return open_device(kflags);
	fd = open_syscall(kflags);
	if (fd >= 0 || (flags & FL_UFFD_VIA_SYSCALL))
		return fd;
	/* EPERM: not allowed by sysctl/capability; ENOSYS: syscall filtered
	 * (seccomp) or absent. The device may still let us in. */
	if (fd == -EPERM || fd == -ENOSYS) {
		int dfd = open_device(kflags);

		if (dfd >= 0)
			return dfd;
	}
	return fd;
}
