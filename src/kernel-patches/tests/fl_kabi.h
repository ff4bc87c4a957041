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
#include <limits.h>
#include <libgen.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>

/* Everything the 6.1 headers lack, and what the series adds
 * (UFFD_FEATURE_EVENT_EXIT, UFFD_EVENT_EXIT, PAGE_IS_PINNED), comes from the
 * runtime's own header: one definition for guest tests and runtime alike. */
#include <faultline/linux-compat.h>

/* uffd_msg.arg.exit.pid: first 32 bits of the argument union */
static inline uint32_t fl_msg_exit_pid(const struct uffd_msg *m)
{
	uint32_t pid;

	memcpy(&pid, &m->arg, sizeof(pid));
	return pid;
}

/* uffd_msg.arg.exit.flags: the 32 bits after the pid */
static inline uint32_t fl_msg_exit_flags(const struct uffd_msg *m)
{
	uint32_t flags;

	memcpy(&flags, (const char *)&m->arg + sizeof(uint32_t), sizeof(flags));
	return flags;
}

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

/* ---- a kernel selftest built next to this program ---- */

/* Start the program `name` from this program's directory with argv (its
 * argv[0] is set here), stdout and stderr into the returned stream. No
 * shell in the guest: fork and exec with a pipe, not popen(). SKIP if it
 * is not there or cannot start. */
static inline FILE *fl_run_sibling(const char *name, char **argv, pid_t *pid)
{
	static char exe[PATH_MAX], bin[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int pfd[2];
	FILE *p;

	if (n < 0)
		FL_SKIP("readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	snprintf(bin, sizeof(bin), "%s/%s", dirname(exe), name);
	if (access(bin, X_OK))
		FL_SKIP("%s not built", bin);
	if (pipe(pfd))
		FL_SKIP("pipe: %s", strerror(errno));
	argv[0] = bin;
	*pid = fork();
	if (*pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		execv(bin, argv);
		_exit(127);
	}
	close(pfd[1]);
	p = fdopen(pfd[0], "r");
	if (*pid < 0 || !p)
		FL_SKIP("cannot run %s: %s", bin, strerror(errno));
	return p;
}

#endif /* FL_KABI_H */
