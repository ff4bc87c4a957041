// SPDX-License-Identifier: MIT
/*
 * Snapshot another process: its private writable mappings from
 * /proc/PID/smaps, read with process_vm_readv (one system call per chunk,
 * no ptrace stop needed for the read itself), falling back to /proc/PID/mem
 * where process_vm_readv stops short (it gives up at the first page it
 * cannot read; /proc/PID/mem reports that page's real error).
 *
 * What is captured: private mappings that are readable and writable —
 * anonymous memory, [heap], [stack], the .data/.bss of the program and its
 * libraries, private writable file mappings (their current contents, file
 * pages included). What is not: shared mappings (their contents live in a
 * file or shmem object that outlives the process), read-only mappings (the
 * file has them), [vvar], [vdso], [vsyscall] (the kernel provides them).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <faultline/linux-compat.h>
#include <unistd.h>

#include "snapshot-internal.h"

#define CHUNK (4u << 20)
/* Checksums cost 4 bytes per 4 KiB of address space captured: refuse
 * address spaces that would need more than 1 GiB of them. */
#define CAPTURE_MAX (1ull << 40)
#define PROGRESS_EVERY (16ull << 20)

#define ERR(...) fl__snap_err(err, errlen, __VA_ARGS__)

struct maps {
	struct fl_region *r;
	size_t n, cap, skipped;
};

static bool special(const char *name)
{
	return !strcmp(name, "[vvar]") || !strcmp(name, "[vdso]") ||
	       !strcmp(name, "[vsyscall]") || !strncmp(name, "[vvar_", 6);
}

static const char *access_hint(int e)
{
	if (e == -EACCES || e == -EPERM)
		return ": reading another process's memory needs ptrace access to it "
		       "(the same user and kernel.yama.ptrace_scope allowing it, or root / CAP_SYS_PTRACE)";
	if (e == -ESRCH || e == -ENOENT)
		return ": the process does not exist (or exited)";
	return "";
}

/* The mappings to capture, from /proc/PID/smaps (for KernelPageSize). */
static int read_maps(pid_t pid, struct maps *mp, char *err, size_t errlen)
{
	char path[64], line[4096];
	struct fl_region *cur = NULL;
	FILE *f;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		ERR("cannot read %s%s", path, access_hint(ret));
		return ret;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end, off, inode, kb;
		char perms[8];
		int n = 0;

		if (sscanf(line, "%lx-%lx %7s %lx %*x:%*x %lu %n", &start, &end, perms,
			   &off, &inode, &n) >= 5 && n > 0) {
			char *name = line + n;
			size_t len;

			name[strcspn(name, "\n")] = 0;
			cur = NULL;
			if (perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p' || special(name)) {
				mp->skipped++;
				continue;
			}
			if (mp->n == mp->cap) {
				size_t cap = mp->cap ? 2 * mp->cap : 64;
				void *a = realloc(mp->r, cap * sizeof(*mp->r));

				if (!a) {
					ret = -ENOMEM;
					ERR("out of memory");
					break;
				}
				mp->r = a;
				mp->cap = cap;
			}
			cur = &mp->r[mp->n++];
			memset(cur, 0, sizeof(*cur));
			cur->start = start;
			cur->len = end - start;
			cur->page_size = 4096;
			cur->prot = PROT_READ | PROT_WRITE | (perms[2] == 'x' ? PROT_EXEC : 0);
			/* Keep the end of long paths: the file name says most. */
			len = strlen(name);
			if (len >= sizeof(cur->name)) {
				name += len - (sizeof(cur->name) - 1);
				len = sizeof(cur->name) - 1;
			}
			memcpy(cur->name, name, len);
		} else if (cur && sscanf(line, "KernelPageSize: %lu kB", &kb) == 1) {
			cur->page_size = (uint32_t)(kb * 1024);
		}
	}
	if (!ret && ferror(f)) {
		ret = -EIO;
		ERR("reading %s failed", path);
	}
	fclose(f);
	if (!ret && !mp->n && !mp->skipped) {
		/* smaps of a process that exited reads empty. */
		ret = -ESRCH;
		ERR("pid %d has no memory mappings: it exited or is a kernel thread", (int)pid);
	}
	return ret;
}

/* Anonymous memory: a page neither present nor swapped out reads as
 * zeros, so it need not be read at all (the file gets a hole). Not true of
 * file mappings: their absent pages are the file's. */
static bool anonymous(const char *name)
{
	return !name[0] || !strcmp(name, "[heap]") || !strncmp(name, "[stack", 6) ||
	       !strncmp(name, "[anon:", 6);
}

struct ranges {
	struct page_region *r;
	size_t n, cap;
};

/* The populated (present or swapped) parts of [start, end), with
 * PAGEMAP_SCAN on /proc/PID/pagemap: it skips empty page tables, so a huge
 * mostly untouched mapping costs little. -EOPNOTSUPP before Linux 6.7. */
static int populated(int pmfd, uint64_t start, uint64_t end, struct ranges *out)
{
	struct page_region vec[256];

	out->n = 0;
	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .start = start, .end = end,
			.vec = (uintptr_t)vec, .vec_len = 256,
			.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
			.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		};
		int n = ioctl(pmfd, PAGEMAP_SCAN, &a);

		if (n < 0)
			return errno == EINVAL || errno == ENOTTY ? -EOPNOTSUPP : -errno;
		for (int i = 0; i < n; i++) {
			if (out->n && out->r[out->n - 1].end == vec[i].start) {
				out->r[out->n - 1].end = vec[i].end;
				continue;
			}
			if (out->n == out->cap) {
				size_t cap = out->cap ? 2 * out->cap : 64;
				void *p = realloc(out->r, cap * sizeof(*out->r));

				if (!p)
					return -ENOMEM;
				out->r = p;
				out->cap = cap;
			}
			out->r[out->n++] = vec[i];
		}
		/* walk_end can be stale when the vector is not full (DESIGN.md):
		 * only a full vector means there is more. */
		if (n < 256)
			break;
		start = vec[n - 1].end > a.walk_end ? vec[n - 1].end : a.walk_end;
	}
	return 0;
}

/* Read len bytes at addr of pid into buf. */
static int read_remote(pid_t pid, int *memfd, uint64_t addr, void *buf,
		       size_t len, char *err, size_t errlen, const char *name)
{
	size_t got = 0;

	while (got < len) {
		struct iovec l = { (char *)buf + got, len - got };
		struct iovec r = { (void *)(uintptr_t)(addr + got), len - got };
		ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
		int e;

		if (n > 0) {
			got += n;
			continue;
		}
		e = n < 0 ? errno : EIO;
		if (e == ESRCH) {
			ERR("pid %d exited while its memory was being read", (int)pid);
			return -ESRCH;
		}
		/* Short or refused: /proc/PID/mem, which also says why. */
		if (*memfd < 0) {
			char path[64];

			snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
			*memfd = open(path, O_RDONLY | O_CLOEXEC);
			if (*memfd < 0) {
				int ret = -errno;

				ERR("cannot read the memory of pid %d (process_vm_readv: %s; %s: %s)%s",
				    (int)pid, strerror(e), path, strerror(-ret), access_hint(ret));
				return ret;
			}
		}
		n = pread(*memfd, (char *)buf + got, len - got, (off_t)(addr + got));
		if (n > 0) {
			got += n;
			continue;
		}
		e = n < 0 ? errno : EIO;
		ERR("cannot read pid %d's memory at 0x%llx (%s): %s%s", (int)pid,
		    (unsigned long long)(addr + got), name, strerror(e),
		    e == EIO ? " (a file mapping past the end of its file?)" : access_hint(-e));
		return -e;
	}
	return 0;
}

int fl_snapshot_write_pid(const char *dir, pid_t pid,
			  const struct fl_snapshot_pid_opts *opts,
			  struct fl_snapshot_pid_stats *stats, char *err,
			  size_t errlen)
{
	struct maps mp = { 0 };
	struct fl_snapshot_writer *w = NULL;
	char origin[128], comm[32] = "?", path[64];
	uint64_t total = 0, done = 0, next_report = PROGRESS_EVERY;
	int memfd = -1, pmfd = -1, ret;
	struct ranges pop = { 0 };
	bool sparse;
	void *buf = NULL;
	FILE *f;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (pid <= 0) {
		ERR("pid %d is not a process id", (int)pid);
		return -EINVAL;
	}
	ret = read_maps(pid, &mp, err, errlen);
	if (ret)
		goto out;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	snprintf(origin, sizeof(origin), "pid %d (%s)", (int)pid, comm);
	for (size_t i = 0; i < mp.n; i++)
		total += mp.r[i].len;
	if (total > CAPTURE_MAX) {
		size_t big = 0;

		for (size_t i = 1; i < mp.n; i++)
			if (mp.r[i].len > mp.r[big].len)
				big = i;
		ret = -E2BIG;
		ERR("pid %d has %.1f TiB of private writable mappings (the largest, \"%s\" at 0x%llx, %.1f TiB; an AddressSanitizer shadow?): "
		    "snapshots keep 4 bytes of checksum per 4 KiB of address space and take at most %llu TiB",
		    (int)pid, total / 1099511627776.0, mp.r[big].name,
		    (unsigned long long)mp.r[big].start, mp.r[big].len / 1099511627776.0,
		    CAPTURE_MAX >> 40);
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	pmfd = open(path, O_RDONLY | O_CLOEXEC); /* if it fails, everything is read */

	buf = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		buf = NULL;
		ret = -ENOMEM;
		ERR("out of memory for a %u MiB read buffer", CHUNK >> 20);
		goto out;
	}
	ret = fl_snapshot_writer_create(&w, dir, origin, opts ? opts->flags : 0, err, errlen);
	if (ret)
		goto out;
	for (size_t i = 0; i < mp.n; i++) {
		const struct fl_region *r = &mp.r[i];

		ret = fl_snapshot_writer_begin_region(w, r);
		if (ret) {
			ERR("%s", fl_snapshot_writer_error(w));
			goto out;
		}
		/* Which parts to read: all of it, or only what is populated. */
		pop.n = 0;
		if (pmfd >= 0 && anonymous(r->name) &&
		    populated(pmfd, r->start, r->start + r->len, &pop) == 0) {
			sparse = true;
		} else {
			sparse = false;
		}
		for (uint64_t off = 0, k = 0; off < r->len;) {
			size_t n = r->len - off < CHUNK ? r->len - off : CHUNK;
			const void *src = buf;

			if (sparse) {
				uint64_t a = r->start + off;

				while (k < pop.n && pop.r[k].end <= a)
					k++;
				if (k == pop.n || pop.r[k].start > a) {
					/* Unpopulated up to the next range: zeros. */
					uint64_t stop = k < pop.n ? pop.r[k].start : r->start + r->len;

					src = NULL;
					n = stop - a;
				} else if (pop.r[k].end - a < n) {
					n = pop.r[k].end - a;
				}
			}
			if (src) {
				ret = read_remote(pid, &memfd, r->start + off, buf, n, err, errlen, r->name);
				if (ret)
					goto out;
			}
			ret = fl_snapshot_writer_append(w, src, n);
			if (ret) {
				ERR("%s", fl_snapshot_writer_error(w));
				goto out;
			}
			off += n;
			done += n;
			if (opts && opts->progress && done >= next_report) {
				opts->progress(done, total, opts->arg);
				next_report = done + PROGRESS_EVERY;
			}
		}
	}
	ret = fl_snapshot_writer_finish(w);
	if (ret) {
		ERR("%s", fl_snapshot_writer_error(w));
		goto out;
	}
	if (opts && opts->progress)
		opts->progress(done, total, opts->arg);
	if (stats) {
		stats->regions = mp.n;
		stats->skipped = mp.skipped;
		fl_snapshot_writer_progress(w, &stats->bytes, &stats->data_bytes);
	}
out:
	fl_snapshot_writer_destroy(w);
	if (memfd >= 0)
		close(memfd);
	if (pmfd >= 0)
		close(pmfd);
	free(pop.r);
	if (buf)
		munmap(buf, CHUNK);
	free(mp.r);
	return ret;
}
