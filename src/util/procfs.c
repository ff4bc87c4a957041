// SPDX-License-Identifier: MIT
/* /proc/PID/stat, parsed past the command name. */
#include <stdio.h>
#include <string.h>

#include "procfs.h"

const char *fl__proc_stat(const char *path, char *buf, size_t len, char *comm,
			  size_t commlen)
{
	FILE *f = fopen(path, "re");
	char *open, *close;
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	open = strchr(buf, '(');
	close = strrchr(buf, ')');
	if (!open || !close || close < open || close[1] != ' ')
		return NULL;
	if (comm && commlen) {
		size_t k = (size_t)(close - open - 1);

		if (k >= commlen)
			k = commlen - 1;
		memcpy(comm, open + 1, k);
		comm[k] = 0;
	}
	return close + 2;
}
