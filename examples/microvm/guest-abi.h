/* SPDX-License-Identifier: MIT */
/*
 * What the microvm's guest and its VMM agree on: the guest-physical memory
 * layout the VMM builds before the first instruction, the control page
 * they share, and the I/O ports the guest writes to.
 *
 *   0x001000  GDT                      0x010000  PML4, then PDPT, then one
 *   0x006000  top of the guest stack             page directory per GiB
 *   0x007000  control page             0x200000  work pages, to the end of RAM
 *   0x008000  guest code (entry)
 */
#ifndef MICROVM_GUEST_ABI_H
#define MICROVM_GUEST_ABI_H

#define GUEST_GDT 0x1000UL
#define GUEST_STACK_TOP 0x6000UL
#define GUEST_CTRL 0x7000UL
#define GUEST_ENTRY 0x8000UL
#define GUEST_CODE_MAX 0x8000UL	 /* the code ends before the page tables */
#define GUEST_PML4 0x10000UL
#define GUEST_PDPT 0x11000UL
#define GUEST_PD 0x12000UL	 /* one 4 KiB page directory per GiB */
#define GUEST_WORK 0x200000UL	 /* first work page */
#define GUEST_MAX_GIB 64UL	 /* page directories fit below GUEST_WORK */

#define PORT_SERIAL 0x3f8 /* 16550 THR (write) */
#define PORT_SERIAL_LSR 0x3fd /* line status (read: transmitter empty) */
#define PORT_VERIFY 0x500 /* outl: 0 = verify ok, else 1 + mismatching page */
#define PORT_READY 0x501  /* outl: the guest initialised its pages */

#define CTRL_MAGIC 0x6d6963726f766d31ULL /* "microvm1" */

#define GUEST_MAX_VCPUS 2 /* vCPU i's stack: the page below GUEST_STACK_TOP - i * 4 KiB */

/* What each vCPU keeps of its own work, on its own cache line. */
struct guest_cpu {
	unsigned long long updates;	/* page updates so far */
	unsigned long long checksum;	/* sum of its pages' hashes */
	unsigned long long rng;		/* xorshift state of its walk */
	unsigned long long verify_done;	/* the last verify_req it answered */
	unsigned long long pad[4];
};

/*
 * The control page. The VMM fills magic, ram_bytes and nvcpus before
 * boot and increments verify_req to ask for a verification (each vCPU
 * answers on PORT_VERIFY); the guest owns the rest. Work page p belongs to
 * vCPU (p - first work page) % nvcpus: no page has two writers.
 */
struct guest_ctrl {
	unsigned long long magic;
	unsigned long long ram_bytes;
	unsigned long long nvcpus;
	unsigned long long initialised;
	unsigned long long verify_req;	/* written by the VMM */
	unsigned long long pad[3];
	struct guest_cpu cpu[GUEST_MAX_VCPUS];
};

/*
 * A work page p (its guest-physical page number) holding counter c:
 * word 0 = p, word 1 = c, word 2 = page_hash(p, c), word 511 = ~word 2.
 * A page that became zeros, garbage or another page cannot pass.
 */
static inline unsigned long long page_hash(unsigned long long p, unsigned long long c)
{
	unsigned long long x = (p << 24) ^ c ^ 0x9E3779B97F4A7C15ULL;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

#endif
