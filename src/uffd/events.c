// SPDX-License-Identifier: MIT
/* Reading and decoding userfaultfd messages. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <faultline/uffd.h>

#include "events-internal.h"

/* One read() takes at most this many messages (32 bytes each). */
#define READ_BATCH 64

void fl_uffd_decode(const struct uffd_msg *msg, struct fl_uffd_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	switch (msg->event) {
	case UFFD_EVENT_PAGEFAULT: {
		uint64_t f = msg->arg.pagefault.flags;

		ev->kind = FL_EVENT_PAGEFAULT;
		ev->fault.address = msg->arg.pagefault.address;
		ev->fault.flags = ((f & UFFD_PAGEFAULT_FLAG_WRITE) ? FL_FAULT_WRITE : 0) |
				  ((f & UFFD_PAGEFAULT_FLAG_WP) ? FL_FAULT_WP : 0) |
				  ((f & UFFD_PAGEFAULT_FLAG_MINOR) ? FL_FAULT_MINOR : 0);
		ev->fault.tid = msg->arg.pagefault.feat.ptid;
		break;
	}
	case UFFD_EVENT_FORK:
		ev->kind = FL_EVENT_FORK;
		ev->fork.ufd = (int)msg->arg.fork.ufd;
		/* kernel patch 3: the 32 bits after ufd, always 0 before it */
		memcpy(&ev->fork.pid, (const char *)&msg->arg + sizeof(uint32_t),
		       sizeof(ev->fork.pid));
		break;
	case UFFD_EVENT_REMAP:
		ev->kind = FL_EVENT_REMAP;
		ev->remap.from = msg->arg.remap.from;
		ev->remap.to = msg->arg.remap.to;
		ev->remap.len = msg->arg.remap.len;
		break;
	case UFFD_EVENT_REMOVE:
	case UFFD_EVENT_UNMAP:
		ev->kind = msg->event == UFFD_EVENT_REMOVE ? FL_EVENT_REMOVE : FL_EVENT_UNMAP;
		ev->range.start = msg->arg.remove.start;
		ev->range.end = msg->arg.remove.end;
		break;
	case UFFD_EVENT_EXIT: {
		uint32_t pid_flags[2]; /* arg.exit = { __u32 pid, flags; } */

		memcpy(pid_flags, &msg->arg, sizeof(pid_flags));
		ev->kind = FL_EVENT_EXIT;
		ev->exit.pid = (int32_t)pid_flags[0];
		ev->exit.exec = pid_flags[1] & UFFD_EXIT_FLAG_EXEC;
		break;
	}
	default:
		ev->kind = FL_EVENT_UNKNOWN;
		ev->unknown.type = msg->event;
		break;
	}
}

int fl__uffd_read_raw(int fd, struct uffd_msg *msgs, size_t max)
{
	ssize_t n;

	if (!max)
		return 0;
	do
		n = read(fd, msgs, max * sizeof(msgs[0]));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (n % (ssize_t)sizeof(msgs[0]))
		return -EIO; /* the kernel only hands out whole messages */
	return (int)(n / (ssize_t)sizeof(msgs[0]));
}

int fl_uffd_read_events(int fd, struct fl_uffd_event *ev, size_t max)
{
	struct uffd_msg msgs[READ_BATCH];
	int n = fl__uffd_read_raw(fd, msgs, max < READ_BATCH ? max : READ_BATCH);

	for (int i = 0; i < n; i++)
		fl_uffd_decode(&msgs[i], &ev[i]);
	return n;
}

const char *fl_uffd_event_name(enum fl_uffd_event_kind kind)
{
	switch (kind) {
	case FL_EVENT_PAGEFAULT: return "pagefault";
	case FL_EVENT_FORK: return "fork";
	case FL_EVENT_REMAP: return "remap";
	case FL_EVENT_REMOVE: return "remove";
	case FL_EVENT_UNMAP: return "unmap";
	case FL_EVENT_EXIT: return "exit";
	case FL_EVENT_UNKNOWN: return "unknown";
	}
	return "invalid";
}
