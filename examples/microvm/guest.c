// SPDX-License-Identifier: MIT
/*
 * The microvm's guest: 64-bit code with no OS, entered in long mode by the
 * VMM (paging on, every byte of RAM identity-mapped). It keeps working on
 * all of its RAM: each vCPU walks its share of the work pages
 * pseudo-randomly, bumps each page's counter and keeps a running checksum
 * of its pages in the control page. When the VMM asks (verify_req), each
 * recomputes its checksum over its pages (together: all of RAM) and
 * reports on the serial port and on PORT_VERIFY.
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

static void put_cpu(u64 id)
{
	put("cpu");
	put_dec(id);
	put(": ");
}

/* Every work page of this vCPU against its own counter, and all of them
 * against its running checksum and update count. 0 or 1 + the bad page. */
static u64 verify(u64 id, u64 first, u64 end, u64 step)
{
	volatile struct guest_cpu *me = &CTRL->cpu[id];
	u64 sum = 0, count = 0, pages = 0;

	for (u64 p = first + id; p < end; p += step, pages++) {
		volatile u64 *w = page(p);
		u64 h = w[2];

		if (w[0] != p || h != page_hash(p, w[1]) || w[PAGE_WORDS - 1] != ~h) {
			put_cpu(id);
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
	if (sum != me->checksum || count != me->updates) {
		put_cpu(id);
		put("verify MISMATCH at page 0 (checksum ");
		put_hex(sum);
		put(" but the control page says ");
		put_hex(me->checksum);
		put(")\n");
		return 1;
	}
	put_cpu(id);
	put("verify ok: ");
	put_dec(pages);
	put(" pages, ");
	put_dec(me->updates);
	put(" updates, checksum ");
	put_hex(sum);
	put("\n");
	return 0;
}

/* vCPU `id` enters here (the VMM puts id in rdi, its stack in rsp). */
__attribute__((section(".text.start"), noreturn)) void _start(u64 id)
{
	u64 first = GUEST_WORK >> 12, end = CTRL->ram_bytes >> 12, step = CTRL->nvcpus;
	u64 mine = (end - first - id + step - 1) / step; /* pages of this vCPU */
	volatile struct guest_cpu *me = &CTRL->cpu[id];

	if (CTRL->magic != CTRL_MAGIC || id >= step)
		for (;;)
			__asm__ volatile("hlt");
	if (id == 0 && !CTRL->initialised) {
		put("booted in long mode: ");
		put_dec(CTRL->ram_bytes >> 20);
		put(" MiB of RAM, ");
		put_dec(end - first);
		put(" work pages, ");
		put_dec(step);
		put(" vCPUs\n");
		for (u64 p = first; p < end; p++) {
			set_page(p, 0);
			CTRL->cpu[(p - first) % step].checksum += page_hash(p, 0);
		}
		for (u64 i = 0; i < step; i++)
			CTRL->cpu[i].rng = 0x2545F4914F6CDD1DULL * (i + 1);
		CTRL->initialised = 1;
		put("initialised every page\n");
		outl(PORT_READY, 1);
	}
	while (!CTRL->initialised)
		__asm__ volatile("pause");
	for (;;) {
		u64 x = me->rng, p, c, old;

		if (CTRL->verify_req != me->verify_done) {
			u64 req = CTRL->verify_req, r = verify(id, first, end, step);

			me->verify_done = req;
			outl(PORT_VERIFY, (unsigned)(r > 0xffffffffULL ? 0xffffffffULL : r));
		}
		/* xorshift64: a pseudo-random walk over this vCPU's pages. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		me->rng = x;
		p = first + id + step * (x % mine);
		old = page(p)[2];
		c = page(p)[1] + 1;
		set_page(p, c);
		me->checksum += page_hash(p, c) - old;
		if (++me->updates % PROGRESS_EVERY == 0) {
			put_cpu(id);
			put("progress: ");
			put_dec(me->updates);
			put(" updates, checksum ");
			put_hex(me->checksum);
			put("\n");
		}
	}
}
