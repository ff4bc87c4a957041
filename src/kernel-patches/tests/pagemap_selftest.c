// SPDX-License-Identifier: GPL-2.0
/*
 * pagemap_selftest: regression check for patch 2. Runs the kernel's own
 * tools/testing/selftests/mm/pagemap_ioctl (built statically by run.sh from
 * the patched tree) and turns its "# Totals:" line into a FAULTLINE-RESULT
 * line. PAGEMAP_SCAN must keep working with or without PAGE_IS_PINNED:
 * expected PASS on every kernel. SKIP if the binary is not there.
 */
#include "fl_kabi.h"

#include <sys/wait.h>

int main(void)
{
	char line[512], summary[512] = "", bail[512] = "";
	char *argv[] = { NULL, NULL };
	unsigned int pass = 0, fail = 0;
	int status = 0;
	pid_t pid;
	FILE *p;

	fl_test_name = "pagemap_selftest";
	setvbuf(stdout, NULL, _IONBF, 0);
	/* it creates scratch files named after its source file in the cwd */
	if (chdir(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"))
		FL_SKIP("chdir to a scratch directory: %s", strerror(errno));
	p = fl_run_sibling("pagemap_ioctl", argv, &pid);
	while (fgets(line, sizeof(line), p)) {
		/* only failures and the summary: the full TAP output is long */
		if (!strncmp(line, "not ok", 6) || !strncmp(line, "# Totals", 8) ||
		    strstr(line, "Bail out"))
			fputs(line, stdout);
		if (strstr(line, "Bail out")) {
			snprintf(bail, sizeof(bail), "%s", line);
			bail[strcspn(bail, "\n")] = 0;
		}
		if (sscanf(line, "# Totals: pass:%u fail:%u", &pass, &fail) == 2) {
			snprintf(summary, sizeof(summary), "%s", line + 2);
			summary[strcspn(summary, "\n")] = 0;
		}
	}
	fclose(p);
	waitpid(pid, &status, 0);
	if (!summary[0])
		FL_FAIL("no summary from pagemap_ioctl (status 0x%x)", status);
	if (bail[0])
		FL_FAIL("pagemap_ioctl stopped early: %s (%s)", bail, summary);
	if (fail || !pass || !WIFEXITED(status) || WEXITSTATUS(status))
		FL_FAIL("pagemap_ioctl: %s (exit status 0x%x)", summary, status);
	FL_PASS("pagemap_ioctl: %s", summary);
}
