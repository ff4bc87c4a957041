// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the test initramfs: mount what the tests need, run every test
 * named on the kernel command line (fltests=a,b,c) or the built-in list,
 * each with a time limit, then reboot (QEMU runs with -no-reboot, so this
 * ends the VM). run.sh parses the FAULTLINE-RESULT lines from the console.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* per-test limit in seconds; fltimeout= on the command line overrides */
static int test_timeout = 30;
/* per-program limit of the project's uffd suite (flsuitetimeout=) */
static int suite_timeout = 120;
/* test_dirty's stress length: 1 s keeps it short under TCG; a longer one
 * (fldirtyseconds=) hunts for rare misses */
static char dirty_seconds[32] = "FL_DIRTY_SECONDS=1";
/* only the suite cases whose names hold this (flsuitefilter=), or all */
static char *suite_filter;

#define SUITE_PREFIX "uffd_suite_"

static const char *const default_tests[] = {
	"exit_event", "uffd_selftest", "pinned_scan", "fork_pid", "pagemap_selftest",
	"wp_racewrite",
	SUITE_PREFIX "test_resolve", SUITE_PREFIX "test_contract",
	SUITE_PREFIX "test_events", SUITE_PREFIX "test_dirty",
	SUITE_PREFIX "test_api", SUITE_PREFIX "test_compat", NULL,
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_hugepages(int n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");

	if (f) {
		fprintf(f, "%d\n", n);
		fclose(f);
	}
}

/* the library directories run.sh found with ldd, for the suite programs */
static char ld_library_path[1024] = "LD_LIBRARY_PATH=";

static void read_ld_library_path(void)
{
	FILE *f = fopen("/etc/faultline-ld-library-path", "r");
	size_t n = strlen(ld_library_path);

	if (f && fgets(ld_library_path + n, sizeof(ld_library_path) - n, f))
		ld_library_path[strcspn(ld_library_path, "\n")] = 0;
	if (f)
		fclose(f);
}

static void run_test(const char *name)
{
	char path[256], prog[256], limit_arg[16];
	int suite = !strncmp(name, SUITE_PREFIX, strlen(SUITE_PREFIX));
	int limit = test_timeout;
	double t0 = now();
	int status = 0;
	pid_t pid, w;

	snprintf(path, sizeof(path), "/bin/%s", name);
	if (suite) {
		/* tap_runner enforces the limit and prints the result line */
		snprintf(path, sizeof(path), "/bin/tap_runner");
		snprintf(prog, sizeof(prog), "/bin/%s", name + strlen(SUITE_PREFIX));
		snprintf(limit_arg, sizeof(limit_arg), "%d", suite_timeout);
		limit = suite_timeout + 15;
		/* enough free 2 MiB pages for every hugetlb case */
		set_hugepages(32);
	}
	pid = fork();
	if (pid == 0) {
		char *argv[] = { path, NULL };
		char *suite_argv[] = { path, (char *)name, prog, limit_arg,
				       suite_filter, NULL };
		char *envp[] = { "TMPDIR=/tmp", "PATH=/bin", NULL };
		char *suite_envp[] = { "TMPDIR=/tmp", "PATH=/bin", dirty_seconds,
				       ld_library_path, NULL };

		if (suite)
			execve(path, suite_argv, suite_envp);
		else
			execve(path, argv, envp);
		dprintf(1, "FAULTLINE-RESULT %s FAIL cannot exec %s: %s\n", name, path,
			strerror(errno));
		_exit(127);
	}
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (now() - t0 > limit) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			dprintf(1, "FAULTLINE-RESULT %s FAIL timed out after %d s\n", name,
				limit);
			break;
		}
		usleep(2000);
	}
	if (suite) {
		/* whatever a killed runner left behind; init is never signalled */
		kill(-1, SIGKILL);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		set_hugepages(8);
	}
	if (w == pid && WIFSIGNALED(status))
		dprintf(1, "FAULTLINE-RESULT %s FAIL killed by signal %d\n", name,
			WTERMSIG(status));
	dprintf(1, "FAULTLINE-TIME %s %.2f s\n", name, now() - t0);
}

int main(void)
{
	char *list = getenv("fltests"), *tok, *save = NULL;
	char *limit = getenv("fltimeout");
	char *slimit = getenv("flsuitetimeout");
	char *dseconds = getenv("fldirtyseconds");
	char buf[64];
	FILE *f;

	if (limit && atoi(limit) > 0)
		test_timeout = atoi(limit);
	if (slimit && atoi(slimit) > 0)
		suite_timeout = atoi(slimit);
	if (dseconds && atoi(dseconds) > 0)
		snprintf(dirty_seconds, sizeof(dirty_seconds), "FL_DIRTY_SECONDS=%d",
			 atoi(dseconds));
	suite_filter = getenv("flsuitefilter");
	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);

	/* a few 2 MiB hugetlb pages, so hugetlb cases of the selftests run */
	f = fopen("/proc/sys/vm/nr_hugepages", "w");
	if (f) {
		fputs("8\n", f);
		fclose(f);
	}

	read_ld_library_path();

	f = fopen("/proc/sys/kernel/osrelease", "r");
	if (f && fgets(buf, sizeof(buf), f))
		dprintf(1, "FAULTLINE-KERNEL %s", buf);
	if (f)
		fclose(f);
	dprintf(1, "FAULTLINE-CPUS %ld\n", sysconf(_SC_NPROCESSORS_ONLN));

	if (list && *list) {
		for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			run_test(tok);
	} else {
		for (int i = 0; default_tests[i]; i++)
			run_test(default_tests[i]);
	}
	dprintf(1, "FAULTLINE-DONE\n");
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
