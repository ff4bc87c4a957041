/* SPDX-License-Identifier: MIT */
/* Helpers of the snapshot tests: a scratch directory and a known pattern. */
#ifndef FL_SNAPTEST_H
#define FL_SNAPTEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <faultline/snapshot.h>

#include "pattern.h"
#include "runner.h"

/* A fresh directory under $TMPDIR (or /tmp); `dir` gets its path. The
 * snapshot goes in dir/snap (not created yet). */
static inline void snaptest_dir(char *dir, size_t len, char *snap, size_t snaplen)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, len, "%s/fl-snaptest-XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(snap, snaplen, "%s/snap", dir);
}

/* Remove a scratch directory and what is in it (two levels). */
static inline void snaptest_rm(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%.255s", dir, e->d_name) >= sizeof(path))
			continue;
		if (e->d_type == DT_DIR)
			snaptest_rm(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/* The standard snapshot of the tests: three regions with data, single zero
 * pages, a long zero run, an all-zero region, and a 2 MiB-page region that
 * ends in zeros (a hole at the end of the pages file). */
#define SNAPTEST_NREGIONS 3

struct snaptest {
	struct fl_region regions[SNAPTEST_NREGIONS];
	unsigned char *data[SNAPTEST_NREGIONS];
};

static inline int snaptest_zero(unsigned r, uint64_t block)
{
	switch (r) {
	case 0:
		return block % 5 == 2 || (block >= 20 && block < 36) || block >= 60;
	case 1:
		return 1;
	default:
		return block >= 3; /* only the first 3 blocks of huge page 0 */
	}
}

static inline void snaptest_make(const char *snap, struct snaptest *t)
{
	static const struct fl_region regions[SNAPTEST_NREGIONS] = {
		{ 0x10000000, 64 * 4096, 4096, 3, "[heap]" },
		{ 0x20000000, 32 * 4096, 4096, 3, "zeros" },
		{ 0x40000000, 2 << 21, 2 << 20, 7, "guest-ram" },
	};
	const void *data[SNAPTEST_NREGIONS];
	char err[512] = "";

	memcpy(t->regions, regions, sizeof(regions));
	for (unsigned r = 0; r < SNAPTEST_NREGIONS; r++) {
		uint64_t len = t->regions[r].len;

		t->data[r] = malloc(len);
		assert_non_null(t->data[r]);
		for (uint64_t b = 0; b < len / 4096; b++)
			snaptest_fill(t->data[r] + b * 4096, 4096, b, r, snaptest_zero(r, b));
		data[r] = r == 1 ? NULL : t->data[r]; /* NULL: all zeros */
	}
	if (fl_snapshot_write(snap, t->regions, SNAPTEST_NREGIONS, data, 0, err, sizeof(err)))
		fail_msg("fl_snapshot_write: %s", err);
}

static inline void snaptest_free(struct snaptest *t)
{
	for (unsigned r = 0; r < SNAPTEST_NREGIONS; r++)
		free(t->data[r]);
}

#endif
