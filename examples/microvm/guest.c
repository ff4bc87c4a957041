// SPDX-License-Identifier: MIT
/*
 * The microvm's guest: 64-bit code with no OS, entered in long mode by the
 * VMM (paging on, every byte of RAM identity-mapped). It keeps working on
 * all of its RAM: it walks the work pages pseudo-randomly, bumps each
 * page's counter and keeps a running checksum of every page in the
 * control page. When the VMM asks (verify_req), it recomputes the checksum
 * over all its RAM and reports on the serial port and on PORT_VERIFY.
 *
 * Built freestanding (no libc, no SSE: its only state is the general
 * registers and RAM, which is what the VMM migrates).
 */
#include "guest-abi.h"

typedef unsigned long long u64;

#define CTRL ((volatile struct guest_ctrl *)GUEST_CTRL)
#define PAGE_WORDS 512
#define PROGRESS_EVERY (1ULL << 14) /* updates between progress lines */

static inline void outb(unsigned short port, unsigned char v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(unsigned short port, unsigned v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static void put(const char *s)
{
	while (*s)
		outb(PORT_SERIAL, (unsigned char)*s++);
}

static void put_dec(u64 v)
{
	char b[24];
	int i = 23;

	b[i] = 0;
	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(b + i);
}

static void put_hex(u64 v)
{
	char b[17];

	for (int i = 15; i >= 0; i--, v >>= 4)
		b[i] = "0123456789abcdef"[v & 15];
	b[16] = 0;
	put(b);
}

static inline volatile u64 *page(u64 p)
{
	return (volatile u64 *)(p << 12);
}

static void set_page(u64 p, u64 c)
{
	volatile u64 *w = page(p);
	u64 h = page_hash(p, c);

	w[0] = p;
	w[1] = c;
	w[2] = h;
	w[PAGE_WORDS - 1] = ~h;
}

/* Every work page against its own counter, and all of them against the
 * running checksum and the update count. Returns 0 or 1 + the bad page. */
static u64 verify(u64 first, u64 end)
{
	u64 sum = 0, count = 0;

	for (u64 p = first; p < end; p++) {
		volatile u64 *w = page(p);
		u64 h = w[2];

		if (w[0] != p || h != page_hash(p, w[1]) || w[PAGE_WORDS - 1] != ~h) {
			put("verify MISMATCH at page ");
			put_dec(p);
			put(" (word0 ");
			put_hex(w[0]);
			put(")\n");
			return 1 + p;
		}
		sum += h;
		count += w[1];
	}
	if (sum != CTRL->checksum || count != CTRL->updates) {
		put("verify MISMATCH at page 0 (checksum ");
		put_hex(sum);
		put(" but the control page says ");
		put_hex(CTRL->checksum);
		put(")\n");
		return 1;
	}
	put("verify ok: ");
	put_dec(end - first);
	put(" pages, ");
	put_dec(CTRL->updates);
	put(" updates, checksum ");
	put_hex(sum);
	put("\n");
	return 0;
}

__attribute__((section(".text.start"), noreturn)) void _start(void)
{
	u64 first = GUEST_WORK >> 12, end = CTRL->ram_bytes >> 12, n = end - first;

	if (CTRL->magic != CTRL_MAGIC)
		for (;;)
			__asm__ volatile("hlt");
	if (!CTRL->initialised) {
		u64 sum = 0;

		put("booted in long mode: ");
		put_dec(CTRL->ram_bytes >> 20);
		put(" MiB of RAM, ");
		put_dec(n);
		put(" work pages\n");
		for (u64 p = first; p < end; p++) {
			set_page(p, 0);
			sum += page_hash(p, 0);
		}
		CTRL->checksum = sum;
		CTRL->rng = 0x2545F4914F6CDD1DULL;
		CTRL->initialised = 1;
		put("initialised every page, checksum ");
		put_hex(sum);
		put("\n");
		outl(PORT_READY, 1);
	}
	for (;;) {
		u64 x = CTRL->rng, p, c, old;

		if (CTRL->verify_req != CTRL->verify_done) {
			u64 r = verify(first, end);

			CTRL->verifies++;
			CTRL->verify_done = CTRL->verify_req;
			outl(PORT_VERIFY, (unsigned)(r > 0xffffffffULL ? 0xffffffffULL : r));
		}
		/* xorshift64: a pseudo-random walk over every work page. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		CTRL->rng = x;
		p = first + x % n;
		old = page(p)[2];
		c = page(p)[1] + 1;
		set_page(p, c);
		CTRL->checksum += page_hash(p, c) - old;
		if (++CTRL->updates % PROGRESS_EVERY == 0) {
			put("progress: ");
			put_dec(CTRL->updates);
			put(" updates, checksum ");
			put_hex(CTRL->checksum);
			put("\n");
		}
	}
}
