// SPDX-License-Identifier: MIT
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner.h"
#include "toucher.h"

static __thread sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

static void *touch(void *arg)
{
	struct toucher *t = arg;
	struct sigaction sa = { .sa_handler = on_sigbus };

	t->tid = gettid();
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1)) {
		atomic_store(&t->sigbus, true);
		atomic_store(&t->done, true);
		return NULL;
	}
	if (t->how & TOUCH_READ)
		memcpy(t->seen, t->addr, t->len);
	if (t->how & TOUCH_WRITE)
		*(volatile uint64_t *)(t->addr + 8) = t->value;
	atomic_store(&t->done, true);
	return NULL;
}

void toucher_start(struct toucher *t, void *addr, size_t len, enum touch_how how,
		   uint64_t value)
{
	memset(t, 0, sizeof(*t));
	t->addr = addr;
	t->len = len;
	t->how = how;
	t->value = value;
	t->seen = calloc(1, len);
	assert_non_null(t->seen);
	assert_int_equal(pthread_create(&t->thread, NULL, touch, t), 0);
}

void toucher_join(struct toucher *t)
{
	pthread_join(t->thread, NULL);
	assert_true(atomic_load(&t->done));
}

void toucher_free(struct toucher *t)
{
	free(t->seen);
	t->seen = NULL;
}

bool event_pending(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

void wait_event(int fd, struct fl_uffd_event *ev, int ms)
{
	int n;

	assert_true(event_pending(fd, ms));
	n = fl_uffd_read_events(fd, ev, 1);
	assert_int_equal(n, 1);
}

void wait_fault(int fd, uint64_t addr, unsigned flags)
{
	struct fl_uffd_event ev;

	wait_event(fd, &ev, 10000);
	assert_int_equal(ev.kind, FL_EVENT_PAGEFAULT);
	assert_int_equal(ev.fault.address, addr);
	assert_int_equal(ev.fault.flags & flags, flags);
}

void uffd_or_skip(struct fl_uffd *u, uint64_t features)
{
	uint64_t missing = 0;
	int ret = fl_uffd_create(u, 0, 0, features, &missing);

	if (ret == -EOPNOTSUPP)
		fl_skip("kernel lacks userfaultfd feature(s) 0x%llx (%s)",
			(unsigned long long)missing,
			fl_uffd_feature_name(missing & -missing) ?: "?");
	if (ret == -EPERM)
		fl_skip("not allowed to create a userfaultfd handling kernel faults "
			"(needs CAP_SYS_PTRACE or /dev/userfaultfd)");
	assert_int_equal(ret, 0);
}
