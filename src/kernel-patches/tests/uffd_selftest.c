// SPDX-License-Identifier: GPL-2.0
/*
 * uffd_selftest: run the kernel's own selftest case added by patch 1
 * (tools/testing/selftests/mm/uffd-unit-tests -f events-exit, built
 * statically by run.sh from the patched tree) and turn its summary line
 * into a FAULTLINE-RESULT line.
 *
 * PASS: pass=1 fail=0. FAIL: the case failed, or was skipped because the
 * kernel lacks UFFD_FEATURE_EVENT_EXIT (the expected result on an
 * unpatched kernel). SKIP: the selftest binary is not there.
 */
#include "fl_kabi.h"

#include <limits.h>
#include <libgen.h>
#include <sys/wait.h>

int main(void)
{
	char exe[PATH_MAX], bin[PATH_MAX + 32], line[512], summary[512] = "";
	unsigned int pass = 0, skip = 0, fail = 0;
	int skipped_missing = 0, status = 0, pfd[2];
	pid_t pid;
	ssize_t n;
	FILE *p;

	fl_test_name = "uffd_selftest";
	setvbuf(stdout, NULL, _IONBF, 0);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		FL_SKIP("readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	snprintf(bin, sizeof(bin), "%s/uffd-unit-tests", dirname(exe));
	if (access(bin, X_OK))
		FL_SKIP("%s not built", bin);
	/* no shell in the guest: fork and exec with a pipe, not popen() */
	if (pipe(pfd))
		FL_SKIP("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		execl(bin, bin, "-f", "events-exit", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	p = fdopen(pfd[0], "r");
	if (pid < 0 || !p)
		FL_SKIP("cannot run %s: %s", bin, strerror(errno));
	while (fgets(line, sizeof(line), p)) {
		fputs(line, stdout);
		if (strstr(line, "feature missing"))
			skipped_missing = 1;
		if (sscanf(line, "Userfaults unit tests: pass=%u, skip=%u, fail=%u",
			   &pass, &skip, &fail) == 3) {
			snprintf(summary, sizeof(summary), "%s", line);
			summary[strcspn(summary, "\n")] = 0;
		}
	}
	fclose(p);
	waitpid(pid, &status, 0);
	if (!summary[0])
		FL_FAIL("no summary from uffd-unit-tests (status 0x%x)", status);
	if (skipped_missing)
		FL_FAIL("events-exit skipped: kernel lacks UFFD_FEATURE_EVENT_EXIT (%s)", summary);
	if (pass == 1 && fail == 0)
		FL_PASS("uffd-unit-tests events-exit: %s", summary);
	FL_FAIL("uffd-unit-tests events-exit: %s", summary);
}
