// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>

#include "errf.h"

void fl__errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
