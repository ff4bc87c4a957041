// SPDX-License-Identifier: MIT
/* Snapshot of a real process by pid: what the child had in memory is what
 * the pages file holds. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "snaptest.h"
#include "snapshot-internal.h"

/* Run the pattern child; its address comes back on a pipe. */
static pid_t spawn_child(uint64_t *addr)
{
	const char *exe = getenv("FL_PATTERN_CHILD");
	char line[64] = "";
	int fds[2];
	ssize_t n;
	pid_t pid;

	if (!exe)
		fl_skip("FL_PATTERN_CHILD is not set (run through meson test)");
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(exe, exe, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	n = read(fds[0], line, sizeof(line) - 1);
	close(fds[0]);
	assert_true(n == 17);
	*addr = strtoull(line, NULL, 16);
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static uint64_t progress_calls, progress_last;

static void progress(uint64_t done, uint64_t total, void *arg)
{
	(void)arg;
	assert_true(done <= total);
	progress_calls++;
	progress_last = done;
}

static void test_pages_file_holds_what_the_child_had(const struct fl_case *c)
{
	char dir[256], snap[300], err[512] = "";
	struct fl_snapshot_pid_opts opts = { .progress = progress };
	struct fl_snapshot_pid_stats st;
	struct fl_snapshot *s;
	const struct fl_region *g;
	unsigned char want[4096], got[4096];
	uint64_t addr;
	size_t n, ri = SIZE_MAX;
	pid_t pid;

	(void)c;
	pid = spawn_child(&addr);
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	kill(pid, SIGSTOP);
	if (fl_snapshot_write_pid(snap, pid, &opts, &st, err, sizeof(err))) {
		reap(pid);
		fail_msg("fl_snapshot_write_pid: %s", err);
	}
	reap(pid);
	assert_true(st.regions >= 3); /* at least heap or data, stack, our 8 MiB */
	assert_true(st.skipped >= 1);  /* [vdso] and read-only mappings */
	assert_true(st.data_bytes < st.bytes);
	assert_true(progress_calls >= 1);
	assert_int_equal(progress_last, st.bytes);

	if (fl_snapshot_open(snap, &s, err, sizeof(err)))
		fail_msg("open: %s", err);
	g = fl_snapshot_regions(s, &n);
	assert_int_equal(n, st.regions);
	for (size_t i = 0; i < n; i++) {
		assert_string_not_equal(g[i].name, "[vdso]");
		assert_string_not_equal(g[i].name, "[vvar]");
		if (g[i].start <= addr && addr + CHILD_PAGES * 4096 <= g[i].start + g[i].len)
			ri = i;
	}
	assert_true(ri != SIZE_MAX);
	assert_true(strstr(fl_snapshot_origin(s), "pid ") != NULL);
	/* The raw bytes of pages at the region's offset: the child's pattern,
	 * zero pages as holes. */
	for (uint64_t p = 0; p < CHILD_PAGES; p++) {
		uint64_t off = addr - g[ri].start + p * 4096;

		snaptest_fill(want, 4096, p, 5, child_zero(p));
		assert_int_equal(pread(s->pages_fd, got, 4096, (off_t)(s->m.where[ri].file_offset + off)), 4096);
		if (memcmp(want, got, 4096))
			fail_msg("page %llu of the child's memory differs in the pages file", (unsigned long long)p);
		assert_int_equal(fl_snapshot_zero_run(s, (uint32_t)ri, off, 4096), child_zero(p) ? 4096 : 0);
	}
	assert_int_equal(fl_snapshot_verify(s, NULL, NULL, NULL, err, sizeof(err)), 0);
	fl_snapshot_close(s);
	snaptest_rm(dir);
}

static void test_missing_pid_is_esrch_and_says_so(const struct fl_case *c)
{
	char dir[256], snap[300], err[512] = "";
	pid_t pid = fork();

	(void)c;
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0); /* now no such process (pids are not reused this fast) */
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(fl_snapshot_write_pid(snap, pid, NULL, NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "does not exist"));
	assert_int_equal(fl_snapshot_write_pid(snap, -3, NULL, NULL, err, sizeof(err)), -EINVAL);
	snaptest_rm(dir);
}

static void test_without_ptrace_access_the_error_says_what_is_needed(const struct fl_case *c)
{
	char dir[256], snap[300];
	uint64_t addr;
	pid_t target, prober;
	int st;

	(void)c;
	if (geteuid() != 0)
		fl_skip("needs root to run a prober as another user");
	target = spawn_child(&addr); /* root's */
	snaptest_dir(dir, sizeof(dir), snap, sizeof(snap));
	assert_int_equal(chmod(dir, 0777), 0);
	prober = fork();
	if (prober == 0) {
		char err[512] = "";
		int ret;

		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(10);
		ret = fl_snapshot_write_pid(snap, target, NULL, NULL, err, sizeof(err));
		_exit(ret == -EACCES || ret == -EPERM ? (strstr(err, "CAP_SYS_PTRACE") ? 0 : 2) : 3);
	}
	assert_int_equal(waitpid(prober, &st, 0), prober);
	reap(target);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	snaptest_rm(dir);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_pages_file_holds_what_the_child_had);
	FL_ADD(test_missing_pid_is_esrch_and_says_so);
	FL_ADD(test_without_ptrace_access_the_error_says_what_is_needed);
	return fl_run_cases(cases, n, argc, argv);
}
