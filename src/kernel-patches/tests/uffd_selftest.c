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

#include <sys/wait.h>

int main(void)
{
	char line[512], summary[512] = "";
	char *argv[] = { NULL, "-f", "events-exit", NULL };
	unsigned int pass = 0, skip = 0, fail = 0;
	int skipped_missing = 0, status = 0;
	pid_t pid;
	FILE *p;

	fl_test_name = "uffd_selftest";
	setvbuf(stdout, NULL, _IONBF, 0);
	p = fl_run_sibling("uffd-unit-tests", argv, &pid);
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
