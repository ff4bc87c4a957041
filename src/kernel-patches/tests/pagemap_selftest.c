// SPDX-License-Identifier: GPL-2.0
/*
 * pagemap_selftest: regression check for patch 2. Runs the kernel's own
 * tools/testing/selftests/mm/pagemap_ioctl (built statically by run.sh from
 * the patched tree) and turns its "# Totals:" line into a FAULTLINE-RESULT
 * line. PAGEMAP_SCAN must keep working with or without PAGE_IS_PINNED:
 * expected PASS on every kernel. SKIP if the binary is not there.
 */
#include "fl_kabi.h"

#include <limits.h>
#include <libgen.h>
#include <sys/wait.h>

int main(void)
{
	char exe[PATH_MAX], bin[PATH_MAX + 32], line[512], summary[512] = "";
	char bail[512] = "";
	unsigned int pass = 0, fail = 0;
	int status = 0, pfd[2];
	ssize_t n;
	pid_t pid;
	FILE *p;

	fl_test_name = "pagemap_selftest";
	setvbuf(stdout, NULL, _IONBF, 0);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		FL_SKIP("readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = 0;
	snprintf(bin, sizeof(bin), "%s/pagemap_ioctl", dirname(exe));
	if (access(bin, X_OK))
		FL_SKIP("%s not built", bin);
	/* it creates scratch files named after its source file in the cwd */
	if (chdir(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"))
		FL_SKIP("chdir to a scratch directory: %s", strerror(errno));
	if (pipe(pfd))
		FL_SKIP("pipe: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		execl(bin, bin, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	p = fdopen(pfd[0], "r");
	if (pid < 0 || !p)
		FL_SKIP("cannot run %s: %s", bin, strerror(errno));
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
