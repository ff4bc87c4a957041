// SPDX-License-Identifier: MIT
/* The storm's checker: what a page must hold, and a report that says who
 * saw what where when it does not. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "memtypes.h"
#include "storm.h"

void storm_expected(const struct storm_page *p, int kind, char *buf)
{
	if (kind == K_SNAP && p->src >= 0 && p->src < DATA_PAGES)
		expect_page((size_t)p->src, buf);
	else if (kind == K_OWN)
		fill_pattern(buf, PG, p->stamp);
	else
		memset(buf, 0, PG);
}

_Noreturn void storm_fail(struct storm_proc *p, const char *fmt, ...)
{
	char msg[2048];
	int n;
	va_list ap;

	n = snprintf(msg, sizeof(msg), "storm: pid %d (slot %d, depth %d): ", (int)getpid(),
		     p->slot, p->depth);
	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	msg[n++] = '\n';
	/* One write: fifty processes may be reporting at once. */
	(void)!write(STDERR_FILENO, msg, (size_t)n);
	atomic_store(&storm_cfg.board->proc[p->slot].state, ST_FAILED);
	_exit(1);
}

static const char *kind_name(const struct storm_page *pg, int kind, char *buf, size_t len)
{
	if (kind == K_OWN)
		snprintf(buf, len, "its own write (stamp %#llx)", (unsigned long long)pg->stamp);
	else if (kind == K_ZERO)
		snprintf(buf, len, "zeros (%s)", pg->src < 0 ? "grown by mremap, then emptied" :
			 "emptied by MADV_DONTNEED");
	else if (pg->src < 0)
		snprintf(buf, len, "zeros (the tail an mremap grew)");
	else if (pg->src >= DATA_PAGES)
		snprintf(buf, len, "zeros (snapshot page %d of the zero region)", pg->src);
	else
		snprintf(buf, len, "the snapshot's page %d", pg->src);
	return buf;
}

/* What the bytes are, to tell a lost page from a misplaced one. */
static const char *what_it_holds(const char *got, size_t len, char *buf, size_t blen)
{
	char want[PG];
	size_t nz = 0;

	while (nz < len && !got[nz])
		nz++;
	if (nz == len)
		return "zeros";
	if (len == PG)
		for (size_t i = 0; i < DATA_PAGES; i++) {
			expect_page(i, want);
			if (!memcmp(got, want, PG)) {
				snprintf(buf, blen, "the snapshot's page %zu", i);
				return buf;
			}
		}
	return "bytes that are neither zeros nor a snapshot page";
}

static void hex16(char *out, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 3 * i, "%02x ", b[i]);
	out[n ? 3 * n - 1 : 0] = 0;
}

/* The first differing bytes of got and want, in hex. */
static void first_diff(const char *got, const char *want, size_t len, char *out, size_t olen)
{
	char g[64], w[64];
	size_t k = 0, n;

	while (k < len && got[k] == want[k])
		k++;
	if (k == len) {
		snprintf(out, olen, "no byte differs in the %zu read", len);
		return;
	}
	n = len - k < 16 ? len - k : 16;
	hex16(g, (const unsigned char *)got + k, n);
	hex16(w, (const unsigned char *)want + k, n);
	snprintf(out, olen, "first difference at byte %zu: got %s, want %s", k, g, w);
}

static _Noreturn void mismatch(struct storm_proc *p, int thread, const char *where,
			       const char *expect, const char *got, size_t got_len,
			       const char *want)
{
	char diff[256], held[64];

	first_diff(got, want, got_len, diff, sizeof(diff));
	storm_fail(p, "thread %d: %s: expected %s; %s; the page holds %s", thread, where, expect,
		   diff, what_it_holds(got, got_len, held, sizeof(held)));
}

void storm_check(struct storm_proc *p, int thread, int slice, unsigned idx,
		 const struct storm_page *pg, const char *addr)
{
	char want[PG], got[PG], where[96], name[96];
	int kind = atomic_load_explicit(&pg->kind, memory_order_relaxed);

	storm_expected(pg, kind, want);
	if (!memcmp(addr, want, PG))
		return;
	memcpy(got, addr, PG);
	snprintf(where, sizeof(where), "slice %d page %u at %p", slice, idx, (void *)addr);
	mismatch(p, thread, where, kind_name(pg, kind, name, sizeof(name)), got, PG, want);
}

void storm_check_shared(struct storm_proc *p, int thread, unsigned page)
{
	const char *addr = p->base + (size_t)page * PG;
	char want[PG], got[PG], where[96], expect[64];

	expect_page(page, want);
	if (!memcmp(addr, want, PG))
		return;
	memcpy(got, addr, PG);
	snprintf(where, sizeof(where), "shared page %u at %p", page, (void *)addr);
	snprintf(expect, sizeof(expect), "the snapshot's page %u", page);
	mismatch(p, thread, where, expect, got, PG, want);
}

void storm_check_raid(struct storm_proc *p, int thread, int slice, unsigned idx,
		      const struct storm_page *pg, int kind, bool exact, const char *got,
		      size_t got_len)
{
	char want[PG], where[160], expect[256], name[96];
	size_t k = 0, z;

	storm_expected(pg, kind, want);
	if (exact && got_len == PG && !memcmp(got, want, PG))
		return;
	if (!exact) {
		/* The old bytes, then zeros from a DONTNEED, then the end of the
		 * mapping: in that order only. Zeros followed by snapshot data
		 * would be a removed page brought back. */
		while (k < got_len && got[k] == want[k])
			k++;
		for (z = k; z < got_len && !got[z]; z++)
			;
		if (z == got_len)
			return;
	}
	snprintf(where, sizeof(where), "raid on contested slice %d page %u at %p (%zu bytes "
		 "read before %s)", slice, idx, (void *)atomic_load(&pg->addr), got_len,
		 got_len == PG ? "the end" : "SIGSEGV");
	snprintf(expect, sizeof(expect), exact ? "exactly %s (nothing changed the slice "
		 "during the read)" : "%s, possibly followed by zeros and SIGSEGV (a change of "
		 "the slice overlapped the read)", kind_name(pg, kind, name, sizeof(name)));
	mismatch(p, thread, where, expect, got, got_len, want);
}
