// SPDX-License-Identifier: MIT
/* Lists of requests the page sources keep (source-internal.h). */
#include <string.h>

#include "source-internal.h"

size_t fl__take_fault_first(struct fl_source_req **done, size_t *ndone,
			    struct fl_source_req **out, uint64_t bg_max)
{
	size_t n = 0, kept = 0;
	uint64_t bytes = 0;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < *ndone; i++) {
			struct fl_source_req *q = done[i];

			if (!q || q->urgent != (pass == 0))
				continue;
			if (pass == 1 && n && bytes + q->len > bg_max)
				continue;
			bytes += q->urgent ? 0 : q->len;
			out[n++] = q;
			done[i] = NULL;
		}
	for (size_t i = 0; i < *ndone; i++)
		if (done[i])
			done[kept++] = done[i];
	*ndone = kept;
	return n;
}

bool fl__req_list_remove(struct fl_source_req **list, size_t *n, const struct fl_source_req *q)
{
	for (size_t i = 0; i < *n; i++)
		if (list[i] == q) {
			memmove(&list[i], &list[i + 1], (*n - i - 1) * sizeof(*list));
			(*n)--;
			return true;
		}
	return false;
}
