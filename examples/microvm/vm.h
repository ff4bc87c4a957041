/* SPDX-License-Identifier: MIT */
/* The microvm's KVM machine: one VM, one or two vCPUs, RAM in one memory slot. */
#ifndef MICROVM_VM_H
#define MICROVM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest-abi.h"

struct vm;

struct vcpu {
	struct vm *vm;
	int id, fd;
	struct kvm_run *run;
	pthread_t thread;
	char line[256];		/* serial output not yet ended by a newline */
	size_t line_len;
};

struct vm {
	int kvm, vmfd;
	size_t run_size;
	char *ram;		/* the host mapping of guest RAM, at guest address 0 */
	size_t ram_len;
	int nvcpus;
	struct vcpu cpu[GUEST_MAX_VCPUS];
	bool dirty_log;		/* KVM_MEM_LOG_DIRTY_PAGES is on */
	bool running;		/* the vCPU threads exist */
	atomic_bool stop;	/* asked to stop (immediate_exit + signal) */
	atomic_int exit_reason; /* why a vCPU thread ended: 0 = stopped */
	atomic_int ready;	/* the guest has initialised its pages */
	atomic_uint verify_answers;
	atomic_uint verify_result; /* 0 ok, else 1 + the first bad page seen */
};

/* The serialized vCPU and device state of a paused VM (the migration
 * blob). Same machine type on both sides: x86-64, this VMM. */
struct vm_state {
	uint64_t magic, version, ram_len, nvcpus;
	struct {
		struct kvm_regs regs;
		struct kvm_sregs sregs;
		struct kvm_fpu fpu;
		uint32_t line_len;
		char line[256];
	} cpu[GUEST_MAX_VCPUS];
};

/* Can this process create a KVM VM at all? err says why not. */
int vm_kvm_usable(char *err, size_t errlen);
/* Open /dev/kvm, create the VM and its vCPUs over `ram` (mapped by the
 * caller, guest-physical address 0). On failure err says why, plainly. */
int vm_create(struct vm *vm, void *ram, size_t len, int nvcpus, char *err, size_t errlen);
/* Page tables, GDT, guest code, control page and long-mode registers. */
int vm_boot_setup(struct vm *vm, char *err, size_t errlen);
/* Run / stop the vCPUs, each on its own thread. */
int vm_start(struct vm *vm);
void vm_stop(struct vm *vm);
/* Ask the guest to verify its memory; wait for its answer (-1 if the vCPU
 * ended first). */
long vm_verify(struct vm *vm);
/* Dirty log of the memory slot (KVM_GET_DIRTY_LOG). */
int vm_dirty_log_start(struct vm *vm);
int vm_dirty_log_collect(struct vm *vm, uint64_t *bitmap);
/* The paused VM's state, and the way back. */
int vm_save(struct vm *vm, struct vm_state *s);
int vm_restore(struct vm *vm, const struct vm_state *s, char *err, size_t errlen);
void vm_destroy(struct vm *vm);

#endif
