// SPDX-License-Identifier: MIT
/*
 * A stand-in for Firecracker restoring a snapshot with a "Uffd" memory
 * backend, doing to a page-fault handler exactly what Firecracker does:
 *
 *   1. map guest memory as private anonymous memory, one mapping per
 *      region (two with a gap between them, like a VM with an MMIO hole);
 *   2. create a userfaultfd that handles faults raised inside the kernel
 *      too (no UFFD_USER_MODE_ONLY: vCPUs fault inside KVM), do UFFDIO_API
 *      asking for UFFD_FEATURE_EVENT_REMOVE, register every region MISSING;
 *   3. connect to the handler's socket and send one JSON array of regions
 *      with the userfaultfd attached (SCM_RIGHTS), then never read the
 *      socket again;
 *   4. run: several threads touch guest pages in scattered order (some
 *      through the kernel, with pwrite() from guest memory); a "balloon"
 *      frees ranges with MADV_DONTNEED, before and after they are touched.
 *
 * It checks every byte against the memory file: file data where the file
 * has data, zeros in its holes and in ballooned ranges.
 *
 *   fc-standin make-file FILE --mib N [--truncate-mib M]
 *   fc-standin run --socket S --memory-file FILE [--layout one|two]
 *              [--form page_size|page_size_kib|both] [--threads N] [--no-balloon]
 *              [--split]
 *   fc-standin bad --socket S --memory-file FILE --kind KIND [--guest-mib N]
 *
 * `bad` sends a message the handler must refuse (KIND: notjson, nofd,
 * missing, dup, overflow, misaligned, overlap, pagesize, disagree, trailing,
 * twofds, partial (half a message, then hang up), or valid: a well-formed
 * message, for a memory file too short for it) and
 * exits 0 if the handler answered "faultline: refused: ..." and closed.
 * Exit status 77 means the machine cannot run this (no userfaultfd).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE 4096ul
#define MIB (1ul << 20)
#define GAP (2 * MIB) /* between the two regions of --layout two */
#define BALLOON (MIB) /* bytes per balloon inflation */

struct region {
	char *base;
	uint64_t size, offset;
};

static struct region regions[2];
static int nregions;
static const char *file_map; /* the memory file, mapped read-only */
static uint64_t file_size;
static int nthreads = 4;
static uint64_t balloon_before, balloon_after; /* file offsets; ~0 = none */
static bool after_done;
static volatile uint64_t mismatches;

static void die(const char *what)
{
	fprintf(stderr, "fc-standin: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* The file's content: every 8-byte word names its offset. */
static uint64_t pattern(uint64_t off)
{
	uint64_t z = off + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Holes: every 8th MiB entirely, and single pages scattered in the rest. */
static bool is_hole(uint64_t off)
{
	return (off / MIB) % 8 == 3 || (off / PAGE) % 37 == 5;
}

static int make_file(const char *path, uint64_t mib, uint64_t truncate_mib)
{
	uint64_t size = mib * MIB;
	uint64_t *buf = malloc(PAGE);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);

	if (fd < 0 || !buf)
		die(path);
	if (ftruncate(fd, (off_t)size))
		die("ftruncate");
	for (uint64_t off = 0; off < size; off += PAGE) {
		if (is_hole(off))
			continue; /* never written: a hole */
		for (size_t w = 0; w < PAGE / 8; w++)
			buf[w] = pattern(off + w * 8);
		if (pwrite(fd, buf, PAGE, (off_t)off) != (ssize_t)PAGE)
			die("pwrite");
	}
	if (truncate_mib && ftruncate(fd, (off_t)(truncate_mib * MIB)))
		die("ftruncate");
	close(fd);
	free(buf);
	printf("fc-standin: wrote %s: %llu MiB%s\n", path, (unsigned long long)mib,
	       truncate_mib ? " (then truncated)" : "");
	return 0;
}

static void map_file(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st))
		die(path);
	file_size = (uint64_t)st.st_size;
	file_map = mmap(NULL, file_size, PROT_READ, MAP_SHARED, fd, 0);
	if (file_map == MAP_FAILED)
		die("mmap memory file");
	close(fd);
}

/* Guest memory as Firecracker maps it: private anonymous, one mapping per
 * region, a hole of PROT_NONE between them. */
static void map_guest(bool two, uint64_t guest)
{
	size_t span = guest + (two ? GAP : 0);
	char *at = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			-1, 0);

	if (at == MAP_FAILED)
		die("mmap guest memory");
	nregions = two ? 2 : 1;
	regions[0] = (struct region){ at, two ? guest / 2 : guest, 0 };
	if (two)
		regions[1] = (struct region){ at + guest / 2 + GAP, guest / 2, guest / 2 };
	for (int i = 0; i < nregions; i++)
		if (mmap(regions[i].base, regions[i].size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) ==
		    MAP_FAILED)
			die("mmap region");
}

static int make_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		printf("fc-standin: SKIP: userfaultfd() for kernel faults: %s (needs "
		       "CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1)\n", strerror(errno));
		exit(77);
	}
	if (ioctl(fd, UFFDIO_API, &api))
		die("UFFDIO_API with UFFD_FEATURE_EVENT_REMOVE");
	for (int i = 0; i < nregions; i++) {
		struct uffdio_register reg = {
			.range = { (uint64_t)(uintptr_t)regions[i].base, regions[i].size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (ioctl(fd, UFFDIO_REGISTER, &reg))
			die("UFFDIO_REGISTER");
	}
	return fd;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		die(path);
	return s;
}

/* One sendmsg() of len bytes with nfds copies of fd attached (Firecracker:
 * the whole message, one fd). */
static void send_part(int s, const char *json, size_t len, int fd, int nfds)
{
	char ctrl[CMSG_SPACE(2 * sizeof(int))] = { 0 };
	struct iovec iov = { (void *)json, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0 && nfds) {
		struct cmsghdr *cm;
		int fds[2] = { fd, fd };

		msg.msg_control = ctrl;
		msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	}
	if (sendmsg(s, &msg, MSG_NOSIGNAL) != (ssize_t)iov.iov_len)
		die("sendmsg");
}

static void send_msg(int s, const char *json, int fd)
{
	send_part(s, json, strlen(json), fd, 1);
}

/* The region list as Firecracker serializes it. */
static void region_json(char *out, size_t len, const char *form)
{
	size_t k = 0;

	k += (size_t)snprintf(out + k, len - k, "[");
	for (int i = 0; i < nregions; i++) {
		const char *ps = !strcmp(form, "page_size_kib") ? "\"page_size_kib\":4096"
				 : !strcmp(form, "both") ? "\"page_size\":4096,\"page_size_kib\":4096"
							 : "\"page_size\":4096";

		k += (size_t)snprintf(out + k, len - k,
				      "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,%s}",
				      i ? "," : "", (unsigned long long)(uintptr_t)regions[i].base,
				      (unsigned long long)regions[i].size,
				      (unsigned long long)regions[i].offset, ps);
	}
	snprintf(out + k, len - k, "]");
}

static bool in_balloon(uint64_t off, uint64_t b)
{
	return b != ~0ull && off >= b && off < b + BALLOON;
}

static char *guest_addr(uint64_t off)
{
	for (int i = 0; i < nregions; i++)
		if (off >= regions[i].offset && off < regions[i].offset + regions[i].size)
			return regions[i].base + (off - regions[i].offset);
	return NULL;
}

static const char zero_page[PAGE];

/* One page, read by the CPU (user fault) or by the kernel (pwrite from guest
 * memory: a fault in copy_from_user, like KVM's), compared with the file. */
static bool check_page(uint64_t off, bool by_kernel, int memfd, char *scratch)
{
	const char *g = guest_addr(off), *want;
	bool zero = in_balloon(off, balloon_before) ||
		    (after_done && in_balloon(off, balloon_after));

	want = zero ? zero_page : file_map + off;
	if (by_kernel) {
		if (pwrite(memfd, g, PAGE, 0) != (ssize_t)PAGE ||
		    pread(memfd, scratch, PAGE, 0) != (ssize_t)PAGE) {
			fprintf(stderr, "fc-standin: the kernel could not read guest page at "
				"file offset %llu: %s\n", (unsigned long long)off, strerror(errno));
			return false;
		}
		g = scratch;
	}
	if (memcmp(g, want, PAGE)) {
		if (__atomic_fetch_add(&mismatches, 1, __ATOMIC_RELAXED) < 10)
			fprintf(stderr, "fc-standin: page at file offset %llu (%s%s) differs from %s\n",
				(unsigned long long)off, by_kernel ? "read by the kernel, " : "",
				is_hole(off) ? "a hole" : "data",
				zero ? "zeros (ballooned)" : "the file");
		return false;
	}
	return true;
}

static void *toucher(void *arg)
{
	long t = (long)arg;
	uint64_t npages = file_size / PAGE, from = npages * (uint64_t)t / (uint64_t)nthreads,
		 to = npages * (uint64_t)(t + 1) / (uint64_t)nthreads;
	char *scratch = malloc(PAGE);
	int memfd = (int)syscall(SYS_memfd_create, "fc-standin", 0);

	if (!scratch || memfd < 0)
		die("memfd_create");
	/* Every thread first hits the same few pages at once (concurrent
	 * faults on one page), then its share in scattered order. */
	for (uint64_t k = 0; k < 8; k++)
		check_page(k * 97 % npages * PAGE, t % 2, memfd, scratch);
	for (uint64_t k = from; k < to; k++) {
		uint64_t page = k * 7919 % npages; /* 7919 is prime, npages a power of 2 */

		check_page(page * PAGE, (k + (uint64_t)t) % 3 == 0, memfd, scratch);
	}
	close(memfd);
	free(scratch);
	return NULL;
}

static void balloon(uint64_t off)
{
	/* Firecracker's balloon: the guest gives pages back, the VMM frees
	 * them with MADV_DONTNEED. The kernel reports a REMOVE event and
	 * blocks here until the handler has read it. */
	if (madvise(guest_addr(off), BALLOON, MADV_DONTNEED))
		die("madvise(MADV_DONTNEED)");
}

static int run(const char *sock, bool two, const char *form, bool with_balloon, bool split)
{
	pthread_t th[64];
	char json[1024];
	uint64_t npages, zeros = 0;
	int uffd, s;

	if (file_size % (2 * MIB) || file_size < 16 * MIB) {
		fprintf(stderr, "fc-standin: the memory file must be a multiple of 2 MiB, >= 16 MiB\n");
		return 1;
	}
	map_guest(two, file_size);
	uffd = make_uffd();
	region_json(json, sizeof(json), form);
	s = connect_to(sock);
	if (split) { /* a stream socket may deliver it in pieces */
		size_t half = strlen(json) / 2;

		send_part(s, json, half, uffd, 1);
		usleep(100 * 1000);
		send_part(s, json + half, strlen(json) - half, -1, 0);
	} else {
		send_msg(s, json, uffd);
	}
	/* Like Firecracker: keep our userfaultfd and the socket open for the
	 * life of the VM, and never read from either. */
	balloon_before = with_balloon ? file_size / 4 : ~0ull;
	balloon_after = with_balloon ? file_size - file_size / 4 : ~0ull;
	if (with_balloon)
		balloon(balloon_before); /* before any page there was touched */
	for (long t = 0; t < nthreads; t++)
		if (pthread_create(&th[t], NULL, toucher, (void *)t))
			die("pthread_create");
	for (long t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	npages = file_size / PAGE;
	if (with_balloon) {
		/* After: pages the guest had, freed; they must come back as
		 * zeros, their neighbours keep the file's data. */
		balloon(balloon_after);
		after_done = true;
		for (uint64_t off = balloon_after - 4 * PAGE; off < balloon_after + BALLOON + 4 * PAGE;
		     off += PAGE)
			check_page(off, false, -1, NULL);
	}
	for (uint64_t p = 0; p < npages; p++)
		zeros += is_hole(p * PAGE) || in_balloon(p * PAGE, balloon_before) ||
			 in_balloon(p * PAGE, balloon_after);
	if (mismatches) {
		fprintf(stderr, "fc-standin: FAILED: %llu pages differ\n",
			(unsigned long long)mismatches);
		return 1;
	}
	printf("fc-standin: %llu MiB of guest memory in %d region(s) (%s) match the memory "
	       "file: %llu pages, %llu of them zeros (holes%s), %d threads\n",
	       (unsigned long long)(file_size / MIB), nregions, form,
	       (unsigned long long)npages, (unsigned long long)zeros,
	       with_balloon ? " and 2 ballooned MiB" : "", nthreads);
	close(s);
	close(uffd);
	return 0;
}

static int bad(const char *sock, const char *kind, uint64_t guest)
{
	char json[2048], answer[1024];
	size_t have = 0;
	int uffd = -1, s;
	struct pollfd pfd;

	map_guest(false, guest);
	if (strcmp(kind, "nofd"))
		uffd = make_uffd();
	uint64_t b = (uint64_t)(uintptr_t)regions[0].base, sz = regions[0].size;

	if (!strcmp(kind, "notjson"))
		snprintf(json, sizeof(json), "hello, handler");
	else if (!strcmp(kind, "nofd") || !strcmp(kind, "valid") || !strcmp(kind, "twofds") ||
		 !strcmp(kind, "partial"))
		region_json(json, sizeof(json), "page_size");
	else if (!strcmp(kind, "missing"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"offset\":0,"
			 "\"page_size\":4096}]", (unsigned long long)b);
	else if (!strcmp(kind, "dup"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
			 "\"offset\":0,\"offset\":4096,\"page_size\":4096}]",
			 (unsigned long long)b, (unsigned long long)sz);
	else if (!strcmp(kind, "overflow"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,"
			 "\"size\":99999999999999999999,\"offset\":0,\"page_size\":4096}]",
			 (unsigned long long)b);
	else if (!strcmp(kind, "misaligned"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
			 "\"offset\":100,\"page_size\":4096}]",
			 (unsigned long long)b, (unsigned long long)sz);
	else if (!strcmp(kind, "overlap"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
			 "\"offset\":0,\"page_size\":4096},{\"base_host_virt_addr\":%llu,"
			 "\"size\":4096,\"offset\":%llu,\"page_size\":4096}]",
			 (unsigned long long)b, (unsigned long long)sz,
			 (unsigned long long)(b + PAGE), (unsigned long long)sz);
	else if (!strcmp(kind, "pagesize"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
			 "\"offset\":0,\"page_size\":8192}]",
			 (unsigned long long)b, (unsigned long long)sz);
	else if (!strcmp(kind, "disagree"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
			 "\"offset\":0,\"page_size\":4096,\"page_size_kib\":4}]",
			 (unsigned long long)b, (unsigned long long)sz);
	else if (!strcmp(kind, "trailing"))
		snprintf(json, sizeof(json), "[{\"base_host_virt_addr\":%llu,\"size\":%llu,"
			 "\"offset\":0,\"page_size\":4096}] [",
			 (unsigned long long)b, (unsigned long long)sz);
	else {
		fprintf(stderr, "fc-standin: unknown --kind %s\n", kind);
		return 2;
	}
	s = connect_to(sock);
	if (!strcmp(kind, "partial")) {
		/* Half a message, then gone: the handler must drop it and live. */
		send_part(s, json, strlen(json) / 2, uffd, 1);
		printf("fc-standin: sent half a message and hung up\n");
		return 0;
	}
	send_part(s, json, strlen(json), uffd, !strcmp(kind, "twofds") ? 2 : 1);
	pfd = (struct pollfd){ s, POLLIN, 0 };
	/* The handler answers and closes; a handler that adopted us would
	 * keep silent. */
	while (have < sizeof(answer) - 1 && poll(&pfd, 1, 30000) == 1) {
		ssize_t n = read(s, answer + have, sizeof(answer) - 1 - have);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	answer[have] = '\0';
	printf("fc-standin: sent %s message, handler said: %s", kind, have ? answer : "nothing\n");
	return strncmp(answer, "faultline: refused: ", 20) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "memory-file", required_argument, NULL, 'f' },
		{ "mib", required_argument, NULL, 'm' },
		{ "truncate-mib", required_argument, NULL, 't' },
		{ "guest-mib", required_argument, NULL, 'g' },
		{ "layout", required_argument, NULL, 'l' },
		{ "form", required_argument, NULL, 'F' },
		{ "threads", required_argument, NULL, 'T' },
		{ "kind", required_argument, NULL, 'k' },
		{ "no-balloon", no_argument, NULL, 'B' },
		{ "split", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *file = NULL, *layout = "one", *form = "page_size", *kind = NULL;
	uint64_t mib = 64, trunc = 0, guest_mib = 0;
	bool with_balloon = true, split = false;
	int c;

	if (argc < 2) {
		fprintf(stderr, "usage: fc-standin make-file FILE [--mib N] | run ... | bad ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "make-file") && argc >= 3) {
		optind = 3;
		file = argv[2];
	} else {
		optind = 2;
	}
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': sock = optarg; break;
		case 'f': file = optarg; break;
		case 'm': mib = strtoull(optarg, NULL, 0); break;
		case 't': trunc = strtoull(optarg, NULL, 0); break;
		case 'g': guest_mib = strtoull(optarg, NULL, 0); break;
		case 'l': layout = optarg; break;
		case 'F': form = optarg; break;
		case 'T': nthreads = atoi(optarg); break;
		case 'k': kind = optarg; break;
		case 'B': with_balloon = false; break;
		case 'p': split = true; break;
		default: return 2;
		}
	}
	if (nthreads < 1 || nthreads > 64)
		nthreads = 4;
	if (!strcmp(argv[1], "make-file"))
		return file ? make_file(file, mib, trunc) : 2;
	if (!sock || !file) {
		fprintf(stderr, "fc-standin: --socket and --memory-file are required\n");
		return 2;
	}
	map_file(file);
	if (!strcmp(argv[1], "run"))
		return run(sock, !strcmp(layout, "two"), form, with_balloon, split);
	if (!strcmp(argv[1], "bad") && kind)
		return bad(sock, kind, guest_mib ? guest_mib * MIB : file_size);
	fprintf(stderr, "fc-standin: unknown command %s\n", argv[1]);
	return 2;
}
