// SPDX-License-Identifier: MIT
/*
 * Who may handle which faults. The kernel's rules (fs/userfaultfd.c):
 * a userfaultfd created without UFFD_USER_MODE_ONLY (needed for faults
 * raised inside the kernel: KVM, O_DIRECT, process_vm_readv, io_uring)
 * requires CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1; one opened via
 * /dev/userfaultfd needs only access to that device. EVENT_FORK always
 * requires CAP_SYS_PTRACE.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <unistd.h>

#include <faultline/uffd.h>

static int read_sysctl(const char *path)
{
	FILE *f = fopen(path, "re");
	int v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static bool has_effective(cap_value_t cap)
{
	cap_t caps = cap_get_proc();
	cap_flag_value_t v = CAP_CLEAR;

	if (!caps)
		return false;
	if (cap_get_flag(caps, cap, CAP_EFFECTIVE, &v) < 0)
		v = CAP_CLEAR;
	cap_free(caps);
	return v == CAP_SET;
}

int fl_uffd_privilege_check(struct fl_uffd_privilege *p)
{
	memset(p, 0, sizeof(*p));
	p->cap_sys_ptrace = has_effective(CAP_SYS_PTRACE);
	p->unprivileged_sysctl = read_sysctl("/proc/sys/vm/unprivileged_userfaultfd");
	p->dev_userfaultfd = access("/dev/userfaultfd", F_OK) == 0;
	p->dev_userfaultfd_rw = access("/dev/userfaultfd", R_OK | W_OK) == 0;
	p->kernel_faults = p->cap_sys_ptrace || p->unprivileged_sysctl == 1 ||
			   p->dev_userfaultfd_rw;
	/* unprivileged_userfaultfd=0 still allows user-mode-only fds. */
	p->user_faults = p->kernel_faults || p->unprivileged_sysctl >= 0;
	p->event_fork = p->cap_sys_ptrace;
	return 0;
}

void fl_uffd_privilege_explain(const struct fl_uffd_privilege *p, FILE *out)
{
	fprintf(out, "  CAP_SYS_PTRACE (effective):   %s\n",
		p->cap_sys_ptrace ? "yes" : "no");
	if (p->unprivileged_sysctl < 0)
		fprintf(out, "  vm.unprivileged_userfaultfd:  unknown (no /proc/sys/vm/unprivileged_userfaultfd)\n");
	else
		fprintf(out, "  vm.unprivileged_userfaultfd:  %d\n", p->unprivileged_sysctl);
	fprintf(out, "  /dev/userfaultfd:             %s\n",
		!p->dev_userfaultfd ? "absent" :
		p->dev_userfaultfd_rw ? "present, read-write for us" :
		"present, no access for us");
	if (p->kernel_faults) {
		fprintf(out, "  => may handle faults raised in the kernel (KVM, O_DIRECT, io_uring) via %s\n",
			p->cap_sys_ptrace ? "CAP_SYS_PTRACE" :
			p->unprivileged_sysctl == 1 ? "vm.unprivileged_userfaultfd=1" :
			"/dev/userfaultfd");
	} else {
		fprintf(out, "  => user-mode faults only: a VM or a program doing O_DIRECT into lazily\n"
			     "     restored memory would get EFAULT. Fix one of: run with CAP_SYS_PTRACE\n"
			     "     (setcap cap_sys_ptrace+ep faultline), grant rw on /dev/userfaultfd\n"
			     "     (e.g. a udev rule giving a group access), or sysctl\n"
			     "     vm.unprivileged_userfaultfd=1.\n");
	}
	if (!p->event_fork)
		fprintf(out, "  => cannot follow fork() (UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE)\n");
}
