// SPDX-License-Identifier: MIT
/*
 * The KVM side of the microvm: a VM with one memory slot (guest RAM at
 * guest-physical 0, backed by the VMM's own mapping), vCPUs started
 * directly in 64-bit long mode, and the smallest serial port that prints.
 *
 * Long mode is set up by the VMM, not by guest code: identity-mapped page
 * tables with 2 MiB pages over all of RAM, a flat GDT, then CR0/CR4/EFER,
 * CR3 and the segments through KVM_SET_SREGS. The guest's first
 * instruction runs with paging on and can reach every byte of its RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest-bin.h"
#include "vm.h"

#define STATE_MAGIC 0x6d766d7374617465ULL
#define STATE_VERSION 1

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define PTE_P 1ULL
#define PTE_W 2ULL
#define PTE_PS 0x80ULL
#define PTE_AD 0x60ULL /* accessed + dirty, preset */

static int fail(char *err, size_t errlen, int ret, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(-ret));
	return ret;
}

static int set_cpuid(struct vm *vm, int vcpufd)
{
	size_t n = 128;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->nent = (uint32_t)n;
	/* What KVM can give a guest, as is: the guest needs long mode (LM),
	 * which KVM checks before it accepts EFER.LME. */
	if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c) < 0 ||
	    ioctl(vcpufd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	free(c);
	return ret;
}

static int set_slot(struct vm *vm, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = 0, .flags = flags, .guest_phys_addr = 0,
		.memory_size = vm->ram_len, .userspace_addr = (uintptr_t)vm->ram,
	};

	return ioctl(vm->vmfd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int vm_kvm_usable(char *err, size_t errlen)
{
	struct vm vm = { .kvm = -1, .vmfd = -1 };
	int ret = 0;

	vm.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm.kvm < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/kvm: %s (%s)", strerror(-ret),
			 ret == -ENOENT ? "no KVM on this machine: load kvm_intel/kvm_amd, or "
					  "enable nested virtualization on the host" :
			 "run as root or join the group owning /dev/kvm");
	} else if ((vm.vmfd = ioctl(vm.kvm, KVM_CREATE_VM, 0)) < 0) {
		ret = fail(err, errlen, -errno, "KVM_CREATE_VM (is KVM usable here?)");
	}
	vm_destroy(&vm);
	return ret;
}

int vm_create(struct vm *vm, void *ram, size_t len, int nvcpus, char *err, size_t errlen)
{
	int ret, mmap_size;

	memset(vm, 0, sizeof(*vm));
	vm->kvm = vm->vmfd = -1;
	for (int i = 0; i < GUEST_MAX_VCPUS; i++)
		vm->cpu[i].fd = -1;
	vm->ram = ram;
	vm->ram_len = len;
	if (nvcpus < 1 || nvcpus > GUEST_MAX_VCPUS) {
		snprintf(err, errlen, "1 to %d vCPUs", GUEST_MAX_VCPUS);
		return -EINVAL;
	}
	vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/kvm: %s (%s)", strerror(-ret),
			 ret == -ENOENT ? "no KVM on this machine: load kvm_intel/kvm_amd, or "
					  "enable nested virtualization on the host" :
			 "run as root or join the group owning /dev/kvm");
		return ret;
	}
	if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm speaks an unknown KVM API version");
		return -ENOTSUP;
	}
	vm->vmfd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
	if (vm->vmfd < 0)
		return fail(err, errlen, -errno, "KVM_CREATE_VM (is KVM usable here?)");
	/* Intel needs a TSS area below 4 GiB outside RAM, even unused. */
	ioctl(vm->vmfd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
	if ((ret = set_slot(vm, 0)))
		return fail(err, errlen, ret, "KVM_SET_USER_MEMORY_REGION");
	mmap_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0)
		return fail(err, errlen, -errno, "KVM_GET_VCPU_MMAP_SIZE");
	vm->run_size = (size_t)mmap_size;
	/* No in-kernel interrupt controller: each vCPU runs from the state
	 * the VMM sets, no INIT/SIPI needed for the second one. */
	for (int i = 0; i < nvcpus; i++) {
		struct vcpu *c = &vm->cpu[i];

		c->vm = vm;
		c->id = i;
		c->fd = ioctl(vm->vmfd, KVM_CREATE_VCPU, i);
		if (c->fd < 0)
			return fail(err, errlen, -errno, "KVM_CREATE_VCPU");
		vm->nvcpus = i + 1;
		c->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (c->run == MAP_FAILED) {
			c->run = NULL;
			return fail(err, errlen, -errno, "mmap of the vCPU's kvm_run");
		}
		if ((ret = set_cpuid(vm, c->fd)))
			return fail(err, errlen, ret, "KVM_SET_CPUID2");
	}
	return 0;
}

int vm_boot_setup(struct vm *vm, char *err, size_t errlen)
{
	struct guest_ctrl *ctrl = (struct guest_ctrl *)(vm->ram + GUEST_CTRL);
	uint64_t *pml4 = (uint64_t *)(vm->ram + GUEST_PML4);
	uint64_t *pdpt = (uint64_t *)(vm->ram + GUEST_PDPT);
	uint64_t *gdt = (uint64_t *)(vm->ram + GUEST_GDT);
	size_t gib = (vm->ram_len + (1UL << 30) - 1) >> 30;
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 1 << 3, .present = 1,
		.type = 11 /* execute/read, accessed */, .dpl = 0, .db = 0, .s = 1,
		.l = 1 /* 64-bit */, .g = 1,
	};
	struct kvm_segment data = code;
	struct kvm_sregs sregs;

	if (sizeof(guest_bin) > GUEST_CODE_MAX || gib > GUEST_MAX_GIB ||
	    vm->ram_len < 2 * GUEST_WORK) {
		snprintf(err, errlen, "guest RAM must be 4 MiB to %lu GiB", GUEST_MAX_GIB);
		return -EINVAL;
	}
	/* Identity map: PML4[0] -> PDPT, PDPT[i] -> a directory of 2 MiB pages. */
	pml4[0] = GUEST_PDPT | PTE_P | PTE_W;
	for (size_t i = 0; i < gib; i++) {
		uint64_t *pd = (uint64_t *)(vm->ram + GUEST_PD + i * 4096);

		pdpt[i] = (GUEST_PD + i * 4096) | PTE_P | PTE_W;
		for (size_t j = 0; j < 512; j++)
			pd[j] = ((i << 30) | (j << 21)) | PTE_P | PTE_W | PTE_PS | PTE_AD;
	}
	/* Null, code, data: what the hidden parts of the segments say too. */
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffULL;
	gdt[2] = 0x00cf93000000ffffULL;
	memcpy(vm->ram + GUEST_ENTRY, guest_bin, sizeof(guest_bin));
	ctrl->magic = CTRL_MAGIC;
	ctrl->ram_bytes = vm->ram_len;
	ctrl->nvcpus = (unsigned long long)vm->nvcpus;

	if (ioctl(vm->cpu[0].fd, KVM_GET_SREGS, &sregs) < 0)
		return fail(err, errlen, -errno, "KVM_GET_SREGS");
	sregs.gdt.base = GUEST_GDT;
	sregs.gdt.limit = 3 * 8 - 1;
	sregs.cr3 = GUEST_PML4;
	sregs.cr4 = CR4_PAE;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	sregs.cs = code;
	data.type = 3; /* read/write, accessed */
	data.selector = 2 << 3;
	data.l = 0;
	data.db = 1;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	for (int i = 0; i < vm->nvcpus; i++) {
		/* Each vCPU: its id as _start's argument, its own stack page. */
		struct kvm_regs regs = {
			.rip = GUEST_ENTRY, .rsp = GUEST_STACK_TOP - (uint64_t)i * 4096,
			.rdi = (uint64_t)i, .rflags = 2,
		};

		if (ioctl(vm->cpu[i].fd, KVM_SET_SREGS, &sregs) < 0)
			return fail(err, errlen, -errno,
				    "KVM_SET_SREGS refused 64-bit long mode (nested KVM?)");
		if (ioctl(vm->cpu[i].fd, KVM_SET_REGS, &regs) < 0)
			return fail(err, errlen, -errno, "KVM_SET_REGS");
	}
	return 0;
}

/* ------------------------------------------------------------- devices */

/* One line buffer per vCPU, so two vCPUs' lines never mix. */
static void serial_out(struct vcpu *v, char c)
{
	if (c == '\n' || v->line_len == sizeof(v->line) - 1) {
		v->line[v->line_len] = 0;
		printf("guest: %s\n", v->line);
		fflush(stdout);
		v->line_len = 0;
		if (c == '\n')
			return;
	}
	v->line[v->line_len++] = c;
}

static void port_io(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *r = v->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;

	for (uint32_t i = 0; i < r->io.count; i++, data += r->io.size) {
		if (r->io.direction == KVM_EXIT_IO_OUT) {
			uint32_t val = 0;

			memcpy(&val, data, r->io.size);
			if (r->io.port == PORT_SERIAL)
				serial_out(v, (char)val);
			else if (r->io.port == PORT_READY)
				atomic_store(&vm->ready, 1);
			else if (r->io.port == PORT_VERIFY) {
				unsigned ok = 0;

				if (val) /* keep the first mismatch any vCPU reports */
					atomic_compare_exchange_strong(&vm->verify_result, &ok, val);
				atomic_fetch_add(&vm->verify_answers, 1);
			}
		} else {
			/* The line status register says "ready to send"; every
			 * other port reads as nothing there. */
			memset(data, r->io.port == PORT_SERIAL_LSR ? 0x60 : 0xff, r->io.size);
		}
	}
}

/* ---------------------------------------------------------------- vCPU */

static void on_kick(int sig)
{
	(void)sig; /* only there to interrupt KVM_RUN */
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;

	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (atomic_load(&vm->stop))
					return NULL;
				continue;
			}
			fprintf(stderr, "microvm: vCPU %d: KVM_RUN: %s\n", v->id, strerror(errno));
			atomic_store(&vm->exit_reason, -errno);
			return NULL;
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			port_io(v);
			break;
		case KVM_EXIT_INTR:
			if (atomic_load(&vm->stop))
				return NULL;
			break;
		case KVM_EXIT_HLT:
			fprintf(stderr, "microvm: the guest halted\n");
			atomic_store(&vm->exit_reason, KVM_EXIT_HLT);
			return NULL;
		default: {
			struct kvm_regs regs = { 0 };

			ioctl(v->fd, KVM_GET_REGS, &regs);
			fprintf(stderr, "microvm: vCPU %d: exit %u (hardware reason %#llx) at rip %#llx\n",
				v->id, v->run->exit_reason,
				(unsigned long long)v->run->fail_entry.hardware_entry_failure_reason,
				(unsigned long long)regs.rip);
			atomic_store(&vm->exit_reason, (int)v->run->exit_reason);
			return NULL;
		}
		}
	}
}

int vm_start(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = on_kick }; /* no SA_RESTART */
	int ret;

	sigaction(SIGUSR2, &sa, NULL);
	atomic_store(&vm->stop, false);
	for (int i = 0; i < vm->nvcpus; i++) {
		vm->cpu[i].run->immediate_exit = 0;
		ret = pthread_create(&vm->cpu[i].thread, NULL, vcpu_thread, &vm->cpu[i]);
		if (ret) { /* stop the ones that started */
			atomic_store(&vm->stop, true);
			for (int k = 0; k < i; k++) {
				vm->cpu[k].run->immediate_exit = 1;
				while (pthread_tryjoin_np(vm->cpu[k].thread, NULL) == EBUSY) {
					pthread_kill(vm->cpu[k].thread, SIGUSR2);
					usleep(1000);
				}
			}
			return -ret;
		}
	}
	vm->running = true;
	return 0;
}

/*
 * Stop the vCPU so its state can be read: immediate_exit makes the next
 * KVM_RUN return EINTR at once, the signal kicks one in progress (SIGUSR2:
 * a faultline monitor in this process takes SIGUSR1 for its statistics). KVM
 * completes an I/O instruction the VMM has just emulated before it honours
 * immediate_exit, so the registers read afterwards are between two guest
 * instructions.
 */
void vm_stop(struct vm *vm)
{
	if (!vm->running)
		return;
	atomic_store(&vm->stop, true);
	for (int i = 0; i < vm->nvcpus; i++)
		vm->cpu[i].run->immediate_exit = 1;
	for (int i = 0; i < vm->nvcpus; i++)
		while (pthread_tryjoin_np(vm->cpu[i].thread, NULL) == EBUSY) {
			pthread_kill(vm->cpu[i].thread, SIGUSR2);
			usleep(1000);
		}
	vm->running = false;
}

long vm_verify(struct vm *vm)
{
	volatile struct guest_ctrl *ctrl = (volatile struct guest_ctrl *)(vm->ram + GUEST_CTRL);
	unsigned before = atomic_load(&vm->verify_answers);

	atomic_store(&vm->verify_result, 0);
	/* The VMM's own write to guest RAM: KVM's dirty log does not see it
	 * (vm_dirty_log_collect always reports the control page). */
	ctrl->verify_req++;
	while (atomic_load(&vm->verify_answers) - before < (unsigned)vm->nvcpus) {
		if (!vm->running || atomic_load(&vm->exit_reason))
			return -1;
		usleep(1000);
	}
	return (long)atomic_load(&vm->verify_result);
}

/* ----------------------------------------------------------- dirty log */

/*
 * Turning KVM_MEM_LOG_DIRTY_PAGES on starts an empty log (KVM write-protects
 * the slot and records writes from then on), which is what the first
 * pre-copy round needs: round 1 sends every page, and the first collect
 * returns what the guest wrote meanwhile. Each KVM_GET_DIRTY_LOG returns
 * and clears the log (without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2).
 */
int vm_dirty_log_start(struct vm *vm)
{
	int ret = set_slot(vm, KVM_MEM_LOG_DIRTY_PAGES);

	vm->dirty_log = ret == 0;
	return ret;
}

int vm_dirty_log_collect(struct vm *vm, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = bitmap };
	size_t ctrl_page = GUEST_CTRL >> 12;

	/* KVM's bitmap is one bit per 4 KiB page in unsigned longs: on x86-64
	 * the same layout as faultline's (bit i of word i/64 is page i). */
	if (ioctl(vm->vmfd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	bitmap[ctrl_page / 64] |= 1ULL << (ctrl_page % 64);
	return 0;
}

/* --------------------------------------------------------------- state */

int vm_save(struct vm *vm, struct vm_state *s)
{
	memset(s, 0, sizeof(*s));
	s->magic = STATE_MAGIC;
	s->version = STATE_VERSION;
	s->ram_len = vm->ram_len;
	s->nvcpus = (uint64_t)vm->nvcpus;
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->cpu[i];

		if (ioctl(v->fd, KVM_GET_REGS, &s->cpu[i].regs) < 0 ||
		    ioctl(v->fd, KVM_GET_SREGS, &s->cpu[i].sregs) < 0 ||
		    ioctl(v->fd, KVM_GET_FPU, &s->cpu[i].fpu) < 0)
			return -errno;
		s->cpu[i].line_len = (uint32_t)v->line_len;
		memcpy(s->cpu[i].line, v->line, v->line_len);
	}
	return 0;
}

int vm_restore(struct vm *vm, const struct vm_state *s, char *err, size_t errlen)
{
	if (s->magic != STATE_MAGIC || s->version != STATE_VERSION ||
	    s->ram_len != vm->ram_len || s->nvcpus != (uint64_t)vm->nvcpus) {
		snprintf(err, errlen, "the device state is not a microvm's of this RAM size "
				      "and vCPU count");
		return -EINVAL;
	}
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->cpu[i];

		if (s->cpu[i].line_len >= sizeof(v->line)) {
			snprintf(err, errlen, "the device state's serial line is too long");
			return -EINVAL;
		}
		if (ioctl(v->fd, KVM_SET_SREGS, &s->cpu[i].sregs) < 0 ||
		    ioctl(v->fd, KVM_SET_REGS, &s->cpu[i].regs) < 0 ||
		    ioctl(v->fd, KVM_SET_FPU, &s->cpu[i].fpu) < 0)
			return fail(err, errlen, -errno, "restoring a vCPU");
		v->line_len = s->cpu[i].line_len;
		memcpy(v->line, s->cpu[i].line, v->line_len);
	}
	return 0;
}

void vm_destroy(struct vm *vm)
{
	vm_stop(vm);
	for (int i = 0; i < vm->nvcpus; i++) {
		if (vm->cpu[i].run)
			munmap(vm->cpu[i].run, vm->run_size);
		if (vm->cpu[i].fd >= 0)
			close(vm->cpu[i].fd);
		vm->cpu[i].run = NULL;
		vm->cpu[i].fd = -1;
	}
	vm->nvcpus = 0;
	if (vm->vmfd >= 0)
		close(vm->vmfd);
	if (vm->kvm >= 0)
		close(vm->kvm);
	vm->vmfd = vm->kvm = -1;
}
