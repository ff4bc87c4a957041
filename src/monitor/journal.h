/* SPDX-License-Identifier: MIT */
/*
 * The monitor's journal: what a monitor started after this one died needs
 * to serve the same processes with the same page states (journal.c).
 */
#ifndef FL_MONITOR_JOURNAL_H
#define FL_MONITOR_JOURNAL_H

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>

struct fl_monitor;
struct mproc;
struct journal;

#define JOURNAL_INBOX 64 /* messages one read() of a userfaultfd takes */

int fl__journal_attach(struct fl_monitor *m, int fd, char *err, size_t errlen);
void fl__journal_detach(struct fl_monitor *m);

/* A process adopted from a handoff (its regions as handed over). */
void fl__journal_adopted(struct mproc *p);
/* A process dropped: its userfaultfd is closed right after. */
void fl__journal_gone(struct mproc *p);

/*
 * Where to read p's userfaultfd into: the journal's inbox, so that the
 * messages a read() took are in the journal the moment the kernel has
 * copied them, even if this process dies before the read returns. NULL
 * without a journal (read into your own buffer then). After the read,
 * fl__journal_inbox_read() logs its events; once the batch is applied and
 * its faults handed on, fl__journal_inbox_done() clears the inbox.
 */
struct uffd_msg *fl__journal_inbox(struct mproc *p);
void fl__journal_inbox_read(struct fl_monitor *m, size_t n);
void fl__journal_inbox_done(struct fl_monitor *m);

/* Rebuild every process the journal names as live, with its regions and
 * its removed pages (a monitor resuming); *nrecords: how many were read. */
int fl__journal_replay(struct fl_monitor *m, size_t *nrecords, char *err, size_t errlen);

#endif
