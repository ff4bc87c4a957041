/* SPDX-License-Identifier: MIT */
/* One line of /proc/PID/stat, read the one safe way. */
#ifndef FL_UTIL_PROCFS_H
#define FL_UTIL_PROCFS_H

#include <stddef.h>

/*
 * Read the stat file at path (/proc/PID/stat, /proc/self/task/TID/stat)
 * into buf. The command name may hold spaces and parentheses, so fields
 * are counted from the last ')'. Returns the text from field 3 (the
 * state) on, with the name copied into comm when comm is not NULL; NULL
 * when the process is gone or the line has no name.
 */
const char *fl__proc_stat(const char *path, char *buf, size_t len, char *comm,
			  size_t commlen);

#endif
