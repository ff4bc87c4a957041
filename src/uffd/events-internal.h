/* SPDX-License-Identifier: MIT */
/* Reading userfaultfd messages as the kernel wrote them (events.c). */
#ifndef FL_UFFD_EVENTS_INTERNAL_H
#define FL_UFFD_EVENTS_INTERNAL_H

#include <linux/userfaultfd.h>
#include <stddef.h>

/* Read up to max whole messages into msgs: their number, 0 when none is
 * pending, or -errno. For a caller that must keep the raw messages (the
 * monitor's journal); fl_uffd_read_events() decodes them. */
int fl__uffd_read_raw(int fd, struct uffd_msg *msgs, size_t max);

#endif
