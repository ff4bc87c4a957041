/* SPDX-License-Identifier: MIT */
/* The one way an error message is written into a caller's buffer. */
#ifndef FL_UTIL_ERRF_H
#define FL_UTIL_ERRF_H

#include <stddef.h>

/* printf into err (errlen bytes, always terminated); nothing if err is
 * NULL or errlen 0. */
void fl__errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
