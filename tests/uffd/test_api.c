// SPDX-License-Identifier: MIT
/* Opening, the API handshake, the name tables and the privilege check. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "runner.h"
#include "toucher.h"

static void assert_fd_flags(int fd)
{
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
}

static void test_open_by_syscall_and_device_is_nonblocking_cloexec(const struct fl_case *c)
{
	static const unsigned variants[] = {
		0, FL_UFFD_VIA_SYSCALL, FL_UFFD_USER_MODE_ONLY,
		FL_UFFD_VIA_DEVICE, FL_UFFD_VIA_DEVICE | FL_UFFD_USER_MODE_ONLY,
	};

	(void)c;
	if (access("/dev/userfaultfd", R_OK | W_OK))
		fl_skip("/dev/userfaultfd is absent or not accessible here");
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		int fd = fl_uffd_open(variants[i]);

		assert_fd_flags(fd);
		close(fd);
	}
	assert_int_equal(fl_uffd_open(FL_UFFD_VIA_DEVICE | FL_UFFD_VIA_SYSCALL), -EINVAL);
}

static void test_handshake_enables_what_was_asked(const struct fl_case *c)
{
	uint64_t offered = 0, missing = 0;
	struct fl_uffd u;
	struct uffdio_api again = { .api = UFFD_API };

	(void)c;
	assert_int_equal(fl_uffd_probe(0, &offered, NULL), 0);
	assert_int_equal(fl_uffd_create(&u, 0, UFFD_FEATURE_THREAD_ID, 0, NULL), 0);
	assert_int_equal(u.features, UFFD_FEATURE_THREAD_ID & offered);
	assert_int_equal(u.kernel_features, offered);
	assert_true(u.ioctls & FL_UFFD_IOCTL_BIT(_UFFDIO_REGISTER));
	assert_true(fl_uffd_has(&u, UFFD_FEATURE_THREAD_ID) ==
		    !!(offered & UFFD_FEATURE_THREAD_ID));
	/* The kernel takes UFFDIO_API once per fd. */
	assert_int_equal(ioctl(u.fd, UFFDIO_API, &again), -1);
	assert_int_equal(errno, EINVAL);
	fl_uffd_close(&u);
	assert_int_equal(u.fd, -1);
	fl_uffd_close(NULL);
	/* Needing a bit no kernel has: refused, and told which. */
	assert_int_equal(fl_uffd_create(&u, 0, 0, 1ULL << 62, &missing), -EOPNOTSUPP);
	assert_int_equal(missing, 1ULL << 62);
	assert_int_equal(u.fd, -1);
	/* Wanting it is fine: we get the rest. */
	assert_int_equal(fl_uffd_create(&u, 0, (1ULL << 62) | UFFD_FEATURE_THREAD_ID, 0,
					NULL), 0);
	assert_false(u.features & (1ULL << 62));
	fl_uffd_close(&u);
}

static void test_every_offered_feature_has_a_name(const struct fl_case *c)
{
	uint64_t offered = 0, seen = 0;

	(void)c;
	assert_int_equal(fl_uffd_probe(0, &offered, NULL), 0);
	for (size_t i = 0; i < fl_uffd_feature_count; i++) {
		uint64_t b = fl_uffd_feature_names[i].bit;

		assert_int_equal(b & (b - 1), 0); /* one bit */
		assert_false(seen & b);		  /* once */
		seen |= b;
		assert_string_equal(fl_uffd_feature_name(b), fl_uffd_feature_names[i].name);
	}
	/* Bits the kernel offers beyond our table would be unnamed: the
	 * table must be extended when kernels grow (a patched kernel's bits
	 * are named by the kernel-patches work). */
	if (offered & ~seen)
		fl_skip("kernel offers feature bits 0x%llx this build does not name",
			(unsigned long long)(offered & ~seen));
	assert_null(fl_uffd_feature_name(1ULL << 63));
	assert_string_equal(fl_uffd_ioctl_name(FL_UFFD_IOCTL_BIT(_UFFDIO_COPY)), "UFFDIO_COPY");
	assert_string_equal(fl_uffd_ioctl_name(FL_UFFD_IOCTL_BIT(_UFFDIO_MOVE)), "UFFDIO_MOVE");
}

struct reader {
	int pipe_rd;
	char *buf;
	ssize_t ret;
	int err;
};

static void *read_into(void *arg)
{
	struct reader *r = arg;

	r->ret = read(r->pipe_rd, r->buf, 4096);
	r->err = errno;
	return NULL;
}

/* A fault raised inside the kernel (read() writing into registered memory):
 * a user-mode-only fd refuses it (EFAULT to the program); a full fd gets it
 * as an event, and the read completes once it is resolved. */
static void test_user_mode_only_fd_refuses_kernel_faults(const struct fl_case *c)
{
	for (int user_only = 1; user_only >= 0; user_only--) {
		struct fl_uffd u;
		struct reader r = { 0 };
		int p[2];
		pthread_t th;
		char zero[4096] = { 0 };
		char *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		(void)c;
		assert_int_equal(fl_uffd_create(&u, user_only ? FL_UFFD_USER_MODE_ONLY : 0,
						0, 0, NULL), 0);
		assert_int_equal(fl_uffd_register(u.fd, (uint64_t)(uintptr_t)mem, 4096,
						  UFFDIO_REGISTER_MODE_MISSING, NULL), 0);
		assert_int_equal(pipe(p), 0);
		assert_int_equal(write(p[1], "kernel-fault", 12), 12);
		r.pipe_rd = p[0];
		r.buf = mem;
		assert_int_equal(pthread_create(&th, NULL, read_into, &r), 0);
		if (user_only) {
			pthread_join(th, NULL);
			assert_int_equal(r.ret, -1);
			assert_int_equal(r.err, EFAULT);
			assert_false(event_pending(u.fd, 0));
		} else {
			wait_fault(u.fd, (uint64_t)(uintptr_t)mem, FL_FAULT_WRITE);
			assert_int_equal(fl_uffd_copy(u.fd, (uint64_t)(uintptr_t)mem, zero,
						      4096, 4096, 0, NULL), 0);
			pthread_join(th, NULL);
			assert_int_equal(r.ret, 12);
			assert_memory_equal(mem, "kernel-fault", 12);
		}
		close(p[0]);
		close(p[1]);
		fl_uffd_close(&u);
		munmap(mem, 4096);
	}
}

/* Without CAP_SYS_PTRACE (and with vm.unprivileged_userfaultfd=0) the
 * syscall only gives user-mode-only fds; /dev/userfaultfd still gives a
 * full one, and the privilege check says exactly that. */
static void test_privilege_check_without_cap_sys_ptrace(const struct fl_case *c)
{
	struct fl_uffd_privilege p;
	cap_value_t ptrace = CAP_SYS_PTRACE;
	cap_t caps;
	int fd;

	(void)c;
	fl_uffd_privilege_check(&p);
	if (!p.cap_sys_ptrace)
		fl_skip("needs CAP_SYS_PTRACE to start with (run as root)");
	if (p.unprivileged_sysctl != 0)
		fl_skip("vm.unprivileged_userfaultfd is %d, not 0", p.unprivileged_sysctl);
	assert_true(p.kernel_faults);
	assert_true(p.event_fork);
	caps = cap_get_proc();
	assert_non_null(caps);
	assert_int_equal(cap_set_flag(caps, CAP_EFFECTIVE, 1, &ptrace, CAP_CLEAR), 0);
	assert_int_equal(cap_set_proc(caps), 0);
	cap_free(caps);
	fl_uffd_privilege_check(&p);
	assert_false(p.cap_sys_ptrace);
	assert_false(p.event_fork);
	assert_int_equal(p.kernel_faults, p.dev_userfaultfd_rw);
	assert_true(p.user_faults);
	assert_int_equal(fl_uffd_open(FL_UFFD_VIA_SYSCALL), -EPERM);
	fd = fl_uffd_open(FL_UFFD_VIA_SYSCALL | FL_UFFD_USER_MODE_ONLY);
	assert_fd_flags(fd);
	close(fd);
	fd = fl_uffd_open(0); /* falls back to the device */
	if (p.dev_userfaultfd_rw) {
		assert_fd_flags(fd);
		close(fd);
	} else {
		assert_int_equal(fd, -EPERM);
	}
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_open_by_syscall_and_device_is_nonblocking_cloexec);
	FL_ADD(test_handshake_enables_what_was_asked);
	FL_ADD(test_every_offered_feature_has_a_name);
	FL_ADD(test_user_mode_only_fd_refuses_kernel_faults);
	FL_ADD(test_privilege_check_without_cap_sys_ptrace);
	return fl_run_cases(cases, n, argc, argv);
}
