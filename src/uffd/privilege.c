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
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
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

/*
 * Capabilities, the bounding set, the ambient set and no_new_privs are all
 * per thread: a thread created before this call keeps what it had, one
 * created after inherits the empty sets. So callers drop before starting
 * any thread (and a process that must exec a privileged program later
 * forks the launcher for it first).
 */
/* Become user: groups first (setgroups and setresgid need the right we
 * lose with the uid), then the uid, for real, effective and saved. */
static int become(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		snprintf(err, errlen, "no user named %s%s%s", user, errno ? ": " : "",
			 errno ? strerror(errno) : "");
		return -ENOENT;
	}
	if (setgroups(0, NULL) || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid)) {
		int e = errno;

		snprintf(err, errlen, "becoming user %s (uid %u): %s", user, (unsigned)pw->pw_uid,
			 strerror(e));
		return -e;
	}
	return 0;
}

/* The steps of every drop: ambient first (needs nothing), then the
 * bounding set (needs CAP_SETPCAP, which we still have if we had any),
 * the user (needs CAP_SETUID and CAP_SETGID), no_new_privs, then what
 * stays of the thread's own sets: keep[0..n) where held, nothing else. */
static int drop(const char *user, const int *keep, size_t n, char *err, size_t errlen)
{
	cap_t now, left;
	int ret = 0;

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) {
		ret = -errno;
		snprintf(err, errlen, "clearing the ambient capabilities: %s", strerror(errno));
		return ret;
	}
	for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++)
		if (CAP_IS_SUPPORTED(c) && cap_get_bound(c) == 1 && cap_drop_bound(c)) {
			ret = -errno;
			snprintf(err, errlen, "dropping capability %d from the bounding set: %s "
				 "(needs CAP_SETPCAP)", (int)c, strerror(errno));
			return ret;
		}
	if (user && (ret = become(user, err, errlen)))
		return ret;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		ret = -errno;
		snprintf(err, errlen, "setting no_new_privs: %s", strerror(errno));
		return ret;
	}
	now = cap_get_proc();
	left = cap_init();
	for (size_t i = 0; now && left && i < n; i++) {
		cap_value_t c = keep[i];
		cap_flag_value_t v = CAP_CLEAR;

		if (cap_get_flag(now, c, CAP_PERMITTED, &v) == 0 && v == CAP_SET) {
			cap_set_flag(left, CAP_PERMITTED, 1, &c, CAP_SET);
			cap_set_flag(left, CAP_EFFECTIVE, 1, &c, CAP_SET);
		}
	}
	if (!now || !left || cap_set_proc(left)) {
		ret = -errno;
		snprintf(err, errlen, "dropping the capabilities: %s", strerror(errno));
	}
	if (now)
		cap_free(now);
	if (left)
		cap_free(left);
	return ret;
}

int fl_privileges_drop_to(const char *user, char *err, size_t errlen)
{
	return drop(user, NULL, 0, err, errlen);
}

int fl_privileges_keep(const int *keep, size_t n, char *err, size_t errlen)
{
	return drop(NULL, keep, n, err, errlen);
}

int fl_privileges_drop(char *err, size_t errlen)
{
	return fl_privileges_drop_to(NULL, err, errlen);
}
