// SPDX-License-Identifier: MIT
/*
 * local-restore: a lazy restore on one machine, end to end.
 *
 *  1. A workload fills N MiB with data (some 2 MiB runs left zero) and
 *     saves it to a sparse snapshot file; it records the SHA-256 of memory.
 *  2. A restored process starts at once on EMPTY memory registered with
 *     userfaultfd, and hands the userfaultfd to us (SCM_RIGHTS). It touches
 *     pages at random, then hashes all of its memory and compares.
 *  3. We are the monitor: each missing-page fault is served first (pread
 *     from the snapshot, UFFDIO_COPY; UFFDIO_ZEROPAGE for holes), and the
 *     rest is streamed in 2 MiB batches in the background, starting near
 *     the latest fault.
 *
 * The restored process keeps its own copy of the userfaultfd open: if the
 * monitor died, its faults would wait instead of silently reading zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <faultline/uffd.h>

#define PG 4096UL
#define CHUNK (2UL << 20)

struct handoff {
	uint64_t addr, len;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "local-restore: %s: %s\n", what, strerror(err));
	exit(1);
}

static void sha256(const void *p, size_t len, unsigned char out[32])
{
	unsigned int n = 32;

	if (!EVP_Digest(p, len, out, &n, EVP_sha256(), NULL))
		die("SHA-256", EIO);
}

static void hex(const unsigned char *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* 1. The original program: fill memory, snapshot it sparsely. */
static void make_snapshot(const char *path, size_t len, unsigned char digest[32])
{
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t x = 0x243F6A8885A308D3ULL;
	int fd;

	if (mem == MAP_FAILED)
		die("mmap", errno);
	for (size_t c = 0; c < len / CHUNK; c++) {
		uint64_t *w = (uint64_t *)(mem + c * CHUNK);

		if (c % 7 == 3)
			continue; /* a zero run: becomes a hole */
		for (size_t i = 0; i < CHUNK / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[i] = x;
		}
	}
	sha256(mem, len, digest);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(path, errno);
	if (ftruncate(fd, (off_t)len) < 0)
		die("ftruncate", errno);
	for (size_t c = 0; c < len / CHUNK; c++) {
		if (c % 7 == 3)
			continue; /* leave the hole */
		if (pwrite(fd, mem + c * CHUNK, CHUNK, (off_t)(c * CHUNK)) != (ssize_t)CHUNK)
			die("writing the snapshot", errno ? errno : EIO);
	}
	close(fd);
	munmap(mem, len);
}

static int send_fd(int sock, int fd, const struct handoff *h)
{
	char ctrl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)h, .iov_len = sizeof(*h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl, .msg_controllen = sizeof(ctrl) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == sizeof(*h) ? 0 : -errno;
}

static int recv_fd(int sock, int *fd, struct handoff *h)
{
	char ctrl[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = h, .iov_len = sizeof(*h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl, .msg_controllen = sizeof(ctrl) };
	struct cmsghdr *c;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != sizeof(*h))
		return -EPROTO;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -EPROTO;
	memcpy(fd, CMSG_DATA(c), sizeof(int));
	return 0;
}

/* 2. The restored program: runs on memory that arrives as it touches it. */
static int restored(int sock, size_t len, const unsigned char want[32])
{
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fl_uffd u;
	struct handoff h = { (uint64_t)(uintptr_t)mem, len };
	unsigned char got[32];
	unsigned seed = 42;
	volatile uint64_t sink = 0;
	double t0;
	int ret;

	if (mem == MAP_FAILED)
		return 10;
	madvise(mem, len, MADV_NOHUGEPAGE);
	ret = fl_uffd_create(&u, 0, 0, 0, NULL);
	if (ret < 0) {
		fprintf(stderr, "restored: userfaultfd: %s\n", strerror(-ret));
		return 11;
	}
	if (fl_uffd_register(u.fd, h.addr, len, UFFDIO_REGISTER_MODE_MISSING, NULL) ||
	    send_fd(sock, u.fd, &h))
		return 12;
	/* u.fd stays open here on purpose (see the top of the file). */
	t0 = now_s();
	for (size_t i = 0; i < len / PG / 8; i++)
		sink += *(volatile uint64_t *)(mem + ((size_t)rand_r(&seed) % (len / PG)) * PG);
	printf("restored: touched %zu random pages in %.2f s\n", len / PG / 8, now_s() - t0);
	fflush(stdout);
	sha256(mem, len, got);
	if (memcmp(got, want, 32)) {
		char a[65], b[65];

		hex(got, a);
		hex(want, b);
		fprintf(stderr, "restored: MEMORY DIFFERS: sha256 %s, snapshot had %s\n", a, b);
		return 1;
	}
	printf("restored: memory verified, sha256 equal to the snapshot's\n");
	fflush(stdout);
	(void)sink;
	return 0;
}

/* 3. The monitor. */
struct monitor {
	int fd, snap;
	uint64_t base, len;
	uint8_t *present; /* one byte per 2 MiB chunk streamed (or zero) */
	char *buf;
	size_t cursor;
	uint64_t faults, fault_pages, bg_bytes, zero_bytes, fault_ns_total, fault_ns_max;
	double t0, last_progress;
	size_t chunks_done;
};

static bool chunk_is_hole(struct monitor *m, size_t c)
{
	off_t off = (off_t)(c * CHUNK);
	off_t data = lseek(m->snap, off, SEEK_DATA);

	return data < 0 || data >= off + (off_t)CHUNK;
}

static int install(struct monitor *m, uint64_t off, uint64_t len, bool hole)
{
	int ret;

	if (hole)
		return fl_uffd_zeropage(m->fd, m->base + off, len, PG, 0, NULL);
	if (pread(m->snap, m->buf, len, (off_t)off) != (ssize_t)len)
		return -EIO;
	do
		ret = fl_uffd_copy(m->fd, m->base + off, m->buf, len, PG, 0, NULL);
	while (ret == -EAGAIN); /* no events are enabled: only a race */
	return ret;
}

static int serve_faults(struct monitor *m)
{
	struct fl_uffd_event ev[32];
	int n = fl_uffd_read_events(m->fd, ev, 32);

	for (int i = 0; i < n; i++) {
		struct timespec a, b;
		uint64_t off, ns;
		int ret;

		if (ev[i].kind != FL_EVENT_PAGEFAULT)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &a);
		off = (ev[i].fault.address & ~(PG - 1)) - m->base;
		ret = install(m, off, PG, chunk_is_hole(m, off / CHUNK));
		if (ret == -ESRCH)
			return ret;
		if (ret < 0)
			die("serving a fault", -ret);
		clock_gettime(CLOCK_MONOTONIC, &b);
		ns = (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec));
		m->faults++;
		m->fault_ns_total += ns;
		if (ns > m->fault_ns_max)
			m->fault_ns_max = ns;
		/* Stream next from where the program is working now. */
		m->cursor = off / CHUNK;
	}
	return n < 0 ? n : 0;
}

static int stream_one(struct monitor *m)
{
	size_t chunks = m->len / CHUNK;
	int ret;
	bool hole;

	while (m->present[m->cursor % chunks])
		m->cursor++;
	m->cursor %= chunks;
	hole = chunk_is_hole(m, m->cursor);
	ret = install(m, m->cursor * CHUNK, CHUNK, hole);
	if (ret < 0)
		return ret;
	m->present[m->cursor] = 1;
	m->chunks_done++;
	if (hole)
		m->zero_bytes += CHUNK;
	else
		m->bg_bytes += CHUNK;
	return 0;
}

static void progress(struct monitor *m, bool final)
{
	double t = now_s();

	if (!final && t - m->last_progress < 0.5)
		return;
	m->last_progress = t;
	printf("\rmonitor: %5.1f%% restored, %llu faults served, %.0f MB/s streamed%s",
		100.0 * (double)m->chunks_done / (double)(m->len / CHUNK),
		(unsigned long long)m->faults,
		(double)(m->bg_bytes + m->zero_bytes) / 1e6 / (t - m->t0), final ? "\n" : "");
	fflush(stdout);
}

static void run_monitor(struct monitor *m)
{
	size_t chunks = m->len / CHUNK;

	m->t0 = m->last_progress = now_s();
	while (m->chunks_done < chunks) {
		struct pollfd p = { .fd = m->fd, .events = POLLIN };
		int ret;

		/* Faults first: look before every background batch. */
		if (poll(&p, 1, 0) > 0 && serve_faults(m) == -ESRCH)
			break;
		ret = stream_one(m);
		if (ret == -ESRCH)
			break;
		if (ret < 0)
			die("streaming", -ret);
		progress(m, false);
	}
	progress(m, true);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = "/var/tmp/faultline-local-restore.snap";
	size_t mib = 1024, len;
	unsigned char digest[32];
	struct monitor m = { 0 };
	struct handoff h;
	int sv[2], status, c;
	double t;
	pid_t pid;

	while ((c = getopt_long(argc, argv, "m:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mib = strtoul(optarg, NULL, 0); break;
		case 's': path = optarg; break;
		case 'h':
			printf("usage: local-restore [--mib N] [--snapshot PATH]\n");
			return 0;
		default: return 2;
		}
	}
	if (mib < 2 || mib % 2) {
		fprintf(stderr, "local-restore: --mib must be an even number >= 2\n");
		return 2;
	}
	len = mib << 20;
	printf("source: filling %zu MiB and writing a sparse snapshot to %s\n", mib, path);
	t = now_s();
	make_snapshot(path, len, digest);
	printf("source: snapshot written in %.2f s\n", now_s() - t);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair", errno);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		close(sv[0]);
		_exit(restored(sv[1], len, digest));
	}
	close(sv[1]);
	if (recv_fd(sv[0], &m.fd, &h) < 0 || h.len != len) {
		kill(pid, SIGKILL);
		die("receiving the userfaultfd from the restored process", EPROTO);
	}
	m.base = h.addr;
	m.len = h.len;
	m.snap = open(path, O_RDONLY | O_CLOEXEC);
	m.present = calloc(len / CHUNK, 1);
	m.buf = aligned_alloc(PG, CHUNK);
	if (m.snap < 0 || !m.present || !m.buf)
		die("monitor set-up", errno ? errno : ENOMEM);
	printf("monitor: serving %zu MiB lazily to pid %d\n", mib, pid);
	t = now_s();
	run_monitor(&m);
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid", errno);
	printf("monitor: done in %.2f s: %llu faults (mean %.1f us, max %.1f us to serve), "
	       "%.0f MiB streamed, %.0f MiB of zero runs mapped without reading\n",
	       now_s() - t, (unsigned long long)m.faults,
	       m.faults ? (double)m.fault_ns_total / (double)m.faults / 1000.0 : 0.0,
	       (double)m.fault_ns_max / 1000.0, (double)m.bg_bytes / (1 << 20),
	       (double)m.zero_bytes / (1 << 20));
	unlink(path);
	free(m.present);
	free(m.buf);
	close(m.snap);
	close(m.fd);
	close(sv[0]);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "local-restore: FAILED: the restored process %s %d\n",
			WIFEXITED(status) ? "exited with" : "died of signal",
			WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return 1;
	}
	printf("local-restore: OK\n");
	return 0;
}
