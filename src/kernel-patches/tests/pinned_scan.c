// SPDX-License-Identifier: GPL-2.0
/*
 * pinned_scan: writes through a FOLL_PIN pin are invisible to a
 * UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN dirty tracker (patch 2 of the series).
 *
 * 1. Track 16 anonymous pages with uffd-wp async; touch them all.
 * 2. Register page 5 as an io_uring fixed buffer (IORING_REGISTER_BUFFERS
 *    pins it with FOLL_PIN | FOLL_LONGTERM).
 * 3. Reset the tracker (PAGEMAP_SCAN with PM_SCAN_WP_MATCHING).
 * 4. IORING_OP_READ_FIXED from a file into the buffer: the kernel writes
 *    the page through its own mapping, no write fault.
 * 5. Scan: is page 5 reported? As PAGE_IS_WRITTEN: no (the miss, on every
 *    kernel). As PAGE_IS_PINNED: only with the patch.
 *
 * PASS: the page is reported through PAGE_IS_PINNED and no untouched page
 * is. FAIL: the write is missed (an unpatched kernel, including the 6.18
 * host, rejects PAGE_IS_PINNED with EINVAL). Uses raw io_uring syscalls so
 * the binary is static without liburing.
 */
#include "fl_kabi.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <linux/io_uring.h>

#define NPAGES 16
#define TARGET 5
#define PG 4096UL

static int ring_fd;
static struct io_uring_sqe *sqes;
static unsigned int *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_cqe *cqes;

static int ring_setup(void)
{
	struct io_uring_params p = { 0 };
	size_t sq_sz, cq_sz;
	void *sq, *cq;

	ring_fd = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (ring_fd < 0)
		return -errno;
	sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned int);
	cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (cq_sz > sq_sz)
			sq_sz = cq_sz;
		cq_sz = sq_sz;
	}
	sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		  ring_fd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	cq = sq;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  ring_fd, IORING_OFF_CQ_RING);
		if (cq == MAP_FAILED)
			return -errno;
	}
	sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
		    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		    ring_fd, IORING_OFF_SQES);
	if (sqes == MAP_FAILED)
		return -errno;
	sq_tail = (unsigned int *)((char *)sq + p.sq_off.tail);
	sq_mask = (unsigned int *)((char *)sq + p.sq_off.ring_mask);
	sq_array = (unsigned int *)((char *)sq + p.sq_off.array);
	cq_head = (unsigned int *)((char *)cq + p.cq_off.head);
	cq_tail = (unsigned int *)((char *)cq + p.cq_off.tail);
	cq_mask = (unsigned int *)((char *)cq + p.cq_off.ring_mask);
	cqes = (struct io_uring_cqe *)((char *)cq + p.cq_off.cqes);
	return 0;
}

/* one IORING_OP_READ_FIXED, waited for; returns cqe res */
static int read_fixed(int fd, void *buf, unsigned int len, off_t off)
{
	unsigned int tail = *sq_tail, idx = tail & *sq_mask, head;
	struct io_uring_sqe *sqe = &sqes[idx];
	int res;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_READ_FIXED;
	sqe->fd = fd;
	sqe->addr = (unsigned long)buf;
	sqe->len = len;
	sqe->off = off;
	sqe->buf_index = 0;
	sq_array[idx] = idx;
	__atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring_fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return -errno;
	head = *cq_head;
	if (head == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE))
		return -EIO;
	res = cqes[head & *cq_mask].res;
	__atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

static int pagemap_fd;

/* scan [mem, mem+len); returns number of regions or -errno */
static long scan(char *mem, __u64 flags, __u64 anyof, __u64 ret_mask,
		 struct page_region *vec, size_t vlen)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = flags,
		.start = (unsigned long)mem,
		.end = (unsigned long)mem + NPAGES * PG,
		.vec = (unsigned long)vec,
		.vec_len = vlen,
		.category_anyof_mask = anyof,
		.return_mask = ret_mask,
	};
	long n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);

	return n < 0 ? -errno : n;
}

static int reported(struct page_region *vec, long n, unsigned long addr, __u64 cat)
{
	for (long i = 0; i < n; i++)
		if (addr >= vec[i].start && addr < vec[i].end && (vec[i].categories & cat))
			return 1;
	return 0;
}

int main(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	struct uffdio_register reg = { 0 };
	struct page_region vec[NPAGES];
	char file[] = "/tmp/fl-pinned-XXXXXX", data[PG];
	struct iovec iov;
	int uffd, ffd, ret;
	long n;
	char *mem;

	fl_test_name = "pinned_scan";
	setvbuf(stdout, NULL, _IONBF, 0);

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0)
		FL_SKIP("no /proc/self/pagemap: %s", strerror(errno));
	uffd = fl_uffd_open(O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		FL_SKIP("userfaultfd: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_API, &api))
		FL_SKIP("UFFD_FEATURE_WP_ASYNC unsupported: %s", strerror(errno));
	if (ring_setup())
		FL_SKIP("io_uring unavailable: %s", strerror(errno));

	mem = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FL_CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	madvise(mem, NPAGES * PG, MADV_NOHUGEPAGE);
	memset(mem, 0x11, NPAGES * PG);
	reg.range.start = (unsigned long)mem;
	reg.range.len = NPAGES * PG;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	FL_CHECK(!ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER WP: %s", strerror(errno));

	/* pin page TARGET: io_uring fixed buffer */
	iov.iov_base = mem + TARGET * PG;
	iov.iov_len = PG;
	if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0)
		FL_SKIP("IORING_REGISTER_BUFFERS: %s", strerror(errno));

	/* source file with a known pattern */
	ffd = mkstemp(file);
	FL_CHECK(ffd >= 0, "mkstemp: %s", strerror(errno));
	unlink(file);
	memset(data, 0x5a, sizeof(data));
	FL_CHECK(pwrite(ffd, data, PG, 0) == (ssize_t)PG, "pwrite: %s", strerror(errno));

	/* reset tracking: write-protect everything, forget what was written */
	n = scan(mem, PM_SCAN_WP_MATCHING, PAGE_IS_WRITTEN, PAGE_IS_WRITTEN, vec, NPAGES);
	FL_CHECK(n >= 0, "PAGEMAP_SCAN reset: %s", strerror((int)-n));
	n = scan(mem, 0, PAGE_IS_WRITTEN, PAGE_IS_WRITTEN, vec, NPAGES);
	FL_CHECK(n == 0, "after reset %ld regions still written", n);

	/* the kernel writes into the pinned page */
	ret = read_fixed(ffd, mem + TARGET * PG, PG, 0);
	FL_CHECK(ret == (int)PG, "READ_FIXED: res %d (%s)", ret, ret < 0 ? strerror(-ret) : "short");
	FL_CHECK(!memcmp(mem + TARGET * PG, data, PG), "READ_FIXED data did not land");

	n = scan(mem, 0, PAGE_IS_WRITTEN, PAGE_IS_WRITTEN, vec, NPAGES);
	FL_CHECK(n >= 0, "PAGEMAP_SCAN: %s", strerror((int)-n));
	if (reported(vec, n, (unsigned long)mem + TARGET * PG, PAGE_IS_WRITTEN)) {
		printf("pinned_scan: the write through the pin was reported as PAGE_IS_WRITTEN\n");
		FL_PASS("write through io_uring fixed buffer seen as PAGE_IS_WRITTEN");
	}
	printf("pinned_scan: page written by READ_FIXED is NOT reported as PAGE_IS_WRITTEN (missed write)\n");

	n = scan(mem, PM_SCAN_WP_MATCHING, PAGE_IS_WRITTEN | PAGE_IS_PINNED,
		 PAGE_IS_WRITTEN | PAGE_IS_PINNED, vec, NPAGES);
	if (n == -EINVAL)
		FL_FAIL("missed write: page written through a FOLL_PIN pin not reported, kernel rejects PAGE_IS_PINNED (EINVAL)");
	FL_CHECK(n >= 0, "PAGEMAP_SCAN with PAGE_IS_PINNED: %s", strerror((int)-n));
	if (!reported(vec, n, (unsigned long)mem + TARGET * PG, PAGE_IS_PINNED))
		FL_FAIL("missed write: pinned page not reported with PAGE_IS_PINNED");
	for (int i = 0; i < NPAGES; i++)
		if (i != TARGET && reported(vec, n, (unsigned long)mem + i * PG,
					    PAGE_IS_WRITTEN | PAGE_IS_PINNED))
			FL_FAIL("untouched page %d reported (categories of its region)", i);

	/* still reported on the next round: a pinned page is always dirty */
	n = scan(mem, PM_SCAN_WP_MATCHING, PAGE_IS_WRITTEN | PAGE_IS_PINNED,
		 PAGE_IS_WRITTEN | PAGE_IS_PINNED, vec, NPAGES);
	FL_CHECK(n >= 0 && reported(vec, n, (unsigned long)mem + TARGET * PG, PAGE_IS_PINNED),
		 "pinned page not reported on the second round");

	/* unpin: no longer reported */
	FL_CHECK(!syscall(__NR_io_uring_register, ring_fd, IORING_UNREGISTER_BUFFERS, NULL, 0),
		 "IORING_UNREGISTER_BUFFERS: %s", strerror(errno));
	n = scan(mem, 0, PAGE_IS_PINNED, PAGE_IS_PINNED, vec, NPAGES);
	FL_CHECK(n == 0, "page still reported PAGE_IS_PINNED after unregistering the buffer (%ld regions)", n);

	FL_PASS("write through io_uring fixed buffer missed by PAGE_IS_WRITTEN, caught by PAGE_IS_PINNED");
}
