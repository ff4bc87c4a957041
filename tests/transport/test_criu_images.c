// SPDX-License-Identifier: MIT
/* CRIU's image sets as a page source (src/transport/criu-*.c), from images
 * written here byte by byte: PE_PARENT chains followed page by page into
 * parent sets (old images without flags too), lazy entries cut at VMA
 * ends, zombies without memory, and every malformed or inconsistent image
 * refused with the file and the entry named. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runner.h"
#include "reap.h"
#include "source-criu.h"

#define PID 7
#define VMA1 0x10000000ull /* 8 pages */
#define VMA2 0x20000000ull /* 8 pages, then VMA3 right after it */
#define VMA3 0x20008000ull
#define SHARED 0x30000000ull
#define BIG 0x40000000ull /* BIG_PAGES pages */
#define BIG_PAGES 512

/* ---- a protobuf writer for the few shapes CRIU's images have ---- */
struct buf {
	unsigned char b[4096];
	size_t n;
};

static void varint(struct buf *b, uint64_t v)
{
	do {
		b->b[b->n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void field(struct buf *b, unsigned f, uint64_t v)
{
	varint(b, (uint64_t)f << 3);
	varint(b, v);
}

static void sub(struct buf *b, unsigned f, const struct buf *m)
{
	varint(b, (uint64_t)f << 3 | 2);
	varint(b, m->n);
	memcpy(b->b + b->n, m->b, m->n);
	b->n += m->n;
}

struct image {
	unsigned char b[65536];
	size_t n;
};

static void img_start(struct image *im, uint32_t magic)
{
	uint32_t m[2] = { 0x54564319u, magic };

	memcpy(im->b, m, 8);
	im->n = 8;
}

static void img_record(struct image *im, const struct buf *m)
{
	uint32_t l = (uint32_t)m->n;

	memcpy(im->b + im->n, &l, 4);
	memcpy(im->b + im->n + 4, m->b, m->n);
	im->n += 4 + m->n;
}

static void img_write(const char *dir, const char *name, const void *b, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

static void pstree(const char *dir, const int *pids, size_t n)
{
	struct image im;

	img_start(&im, 0x50273030u);
	for (size_t i = 0; i < n; i++) {
		struct buf e = { .n = 0 };

		field(&e, 1, (uint64_t)pids[i]);
		field(&e, 2, i ? (uint64_t)pids[0] : 0);
		field(&e, 3, (uint64_t)pids[0]);
		field(&e, 4, (uint64_t)pids[0]);
		img_record(&im, &e);
	}
	img_write(dir, "pstree.img", im.b, im.n);
}

static void vma(struct buf *mm, uint64_t start, uint64_t pages, uint32_t flags)
{
	struct buf v = { .n = 0 };

	field(&v, 1, start);
	field(&v, 2, start + pages * 4096);
	field(&v, 3, 0);
	field(&v, 4, 0);
	field(&v, 5, 3);
	field(&v, 6, flags);
	field(&v, 7, 1); /* VMA_AREA_REGULAR */
	field(&v, 8, 1); /* sint64 -1 */
	sub(mm, 14, &v);
}

static void mm(const char *dir)
{
	struct image im;
	struct buf m = { .n = 0 };
	char name[64];

	img_start(&im, 0x57492820u);
	field(&m, 1, 0x400000); /* a field of CRIU's mm_entry we do not read */
	vma(&m, VMA1, 8, 0x22);
	vma(&m, VMA2, 8, 0x22);
	vma(&m, VMA3, 8, 0x22);
	vma(&m, SHARED, 4, 0x21); /* MAP_SHARED | MAP_ANONYMOUS: never lazy */
	vma(&m, BIG, BIG_PAGES, 0x22);
	img_record(&im, &m);
	snprintf(name, sizeof(name), "mm-%d.img", PID);
	img_write(dir, name, im.b, im.n);
}

struct ent {
	uint64_t vaddr, pages;
	int flags; /* -1: old image, no flags field (PE_PRESENT) */
	bool in_parent;
};

static void pagemap(const char *dir, uint32_t pages_id, const struct ent *e, size_t n)
{
	struct image im;
	struct buf h = { .n = 0 };
	char name[64];

	img_start(&im, 0x56084025u);
	field(&h, 1, pages_id);
	img_record(&im, &h);
	for (size_t i = 0; i < n; i++) {
		struct buf r = { .n = 0 };

		field(&r, 1, e[i].vaddr);
		field(&r, 2, e[i].pages); /* compat_nr_pages */
		if (e[i].in_parent)
			field(&r, 3, 1);
		if (e[i].flags >= 0)
			field(&r, 4, (uint64_t)e[i].flags);
		img_record(&im, &r);
	}
	snprintf(name, sizeof(name), "pagemap-%d.img", PID);
	img_write(dir, name, im.b, im.n);
}

/* Page at vaddr, as the level that holds it wrote it. */
static unsigned char byte_of(uint64_t vaddr, int level)
{
	return (unsigned char)(vaddr >> 12) * 7 + (unsigned char)level * 50 + 1;
}

/* pages-<id>.img holding, in order, the pages of these runs. */
static void pages(const char *dir, uint32_t id, int level, const struct ent *e, size_t n)
{
	static unsigned char data[(64 + BIG_PAGES) * 4096];
	size_t len = 0;
	char name[64];

	for (size_t i = 0; i < n; i++)
		for (uint64_t p = 0; p < e[i].pages; p++, len += 4096)
			memset(data + len, byte_of(e[i].vaddr + p * 4096, level), 4096);
	snprintf(name, sizeof(name), "pages-%u.img", id);
	img_write(dir, name, data, len);
}

static char root[256];

static void make_dirs(void)
{
	char p[512];

	snprintf(root, sizeof(root), "%s/fl-criu-XXXXXX", getenv("TMPDIR") ?: "/var/tmp");
	assert_non_null(mkdtemp(root));
	snprintf(p, sizeof(p), "%s/gp", root);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/p", root);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/top", root);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/p/parent", root);
	assert_int_equal(symlink("../gp", p), 0);
	snprintf(p, sizeof(p), "%s/top/parent", root);
	assert_int_equal(symlink("../p", p), 0);
}

static void cleanup(void)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	(void)!system(cmd);
}

static char *dir_of(const char *level)
{
	static char p[3][512];
	static int i;

	i = (i + 1) % 3;
	snprintf(p[i], sizeof(p[i]), "%s/%s", root, level);
	return p[i];
}

/*
 * The chain. VMA1's 8 pages are lazy in top, whose bytes are in parent
 * sets: pages 0-3 in p, 4-7 in gp (an old image: no flags). VMA2+VMA3:
 * 12 lazy pages in top's own pages file, after 2 eager ones, crossing
 * from VMA2 into VMA3.
 */
static void good_set(void)
{
	const int pids[] = { PID, PID + 1 /* a zombie: no mm, no pagemap */ };
	const struct ent gp[] = { { VMA1 - 0x100000, 2, -1, false }, { VMA1 + 0x4000, 4, -1, false } };
	const struct ent p[] = { { VMA1, 4, 4, false }, { VMA1 + 0x4000, 4, -1, true } };
	const struct ent eager = { VMA2 - 0x2000, 2, 4, false };
	const struct ent top[] = { { VMA1, 8, 3, false }, { VMA2 - 0x2000, 2, 4, false },
				   { VMA2 + 0x2000, 12, 6, false } };

	make_dirs();
	pagemap(dir_of("gp"), 1, gp, 2);
	pages(dir_of("gp"), 1, 2, gp, 2);
	mm(dir_of("p"));
	pagemap(dir_of("p"), 2, p, 2);
	pages(dir_of("p"), 2, 1, p, 1);
	pstree(dir_of("top"), pids, 2);
	mm(dir_of("top"));
	pagemap(dir_of("top"), 3, top, 3);
	{
		struct ent both[] = { eager, top[2] };

		pages(dir_of("top"), 3, 0, both, 2);
	}
}

static void test_parent_chains_and_vma_ends_serve_every_page_from_its_level(const struct fl_case *c)
{
	struct fl_criu_source_opts o = { 0 };
	struct fl_source *s;
	const struct criu_lazy *l;
	struct reaped r = { .n = 0 };
	static struct fl_source_req req[16];
	char err[512] = "";
	size_t first;

	(void)c;
	good_set();
	o.images_dir = dir_of("top");
	assert_int_equal(fl__criu_source_create(&s, &o, err, sizeof(err)), 0);
	l = fl__criu_source_lazy(s);
	assert_int_equal(l->npids, 2);
	assert_int_equal(fl__criu_lazy_ranges_of(l, PID + 1, &first), 0);
	/* VMA1: p's 4 pages, gp's 4; VMA2's 6 and VMA3's 6 (contiguous in the
	 * file, but one copy cannot cross a VMA). */
	assert_int_equal(s->nregions, 4);
	assert_int_equal(l->lazy_bytes, 20 * 4096);
	for (size_t i = 0; i < s->nregions; i++) {
		req[i] = (struct fl_source_req){ .region = (uint32_t)i, .offset = 0,
						 .len = s->regions[i].len, .urgent = i % 2,
						 .cookie = malloc(s->regions[i].len) };
		assert_int_equal(fl_source_submit(s, &req[i]), 0);
	}
	assert_int_equal(fl_source_flush(s), 0);
	/* Faults at once; background reads only once the restore is done. */
	reap_all(s, &r, 2);
	assert_int_equal(fl_source_reap(s, collect, &r), 0);
	assert_true(r.order[0]->urgent && r.order[1]->urgent);
	fl__criu_source_start_background(s);
	reap_all(s, &r, (int)s->nregions);
	for (size_t i = 0; i < s->nregions; i++) {
		const struct criu_range *g = &l->ranges[req[i].region];
		const unsigned char *d = req[i].cookie;
		int level = g->vaddr < VMA1 + 0x4000 && g->vaddr >= VMA1 ? 1 :
			    g->vaddr >= VMA1 + 0x4000 && g->vaddr < VMA2 ? 2 : 0;

		assert_int_equal(req[i].result, 0);
		for (uint64_t off = 0; off < g->len; off += 4096)
			for (int k = 0; k < 4096; k += 512)
				if (d[off + k] != byte_of(g->vaddr + off, level))
					fail_msg("range %zu (%#llx +%#llx, level %d): byte %d of page %llu "
						 "is %u, not %u", i, (unsigned long long)g->vaddr,
						 (unsigned long long)g->len, level, k,
						 (unsigned long long)(off / 4096), d[off + k],
						 byte_of(g->vaddr + off, level));
		free(req[i].cookie);
	}
	assert_int_equal(l->ranges[2].vaddr, VMA2 + 0x2000);
	assert_int_equal(l->ranges[2].len, 6 * 4096);
	assert_int_equal(l->ranges[3].vaddr, VMA3);
	fl_source_destroy(s);
	cleanup();
}

/*
 * A deep window of local background reads is handed over a bounded piece
 * at a time, fault reads first: the monitor installs what a reap gives it
 * before it reads its userfaultfds again, so a fault must never wait
 * behind all of it. 2 MiB lazy in eight 256 KiB reads and one urgent page
 * at the end: the first reap gives the urgent page and at most 512 KiB of
 * the rest, the event fd stays readable until all is handed over, in the
 * order asked, every byte right.
 */
static void test_local_reads_are_handed_over_fault_first_in_bounded_pieces(const struct fl_case *c)
{
	const struct ent big = { BIG, BIG_PAGES, 6, false }; /* PE_LAZY | PE_PRESENT */
	struct fl_criu_source_opts o = { 0 };
	static struct fl_source_req req[9];
	const size_t piece = 64 * 4096;
	struct reaped r = { .n = 0 };
	struct pollfd pfd;
	struct fl_source *s;
	char err[512] = "";
	uint64_t bg = 0;
	int rounds = 0;

	(void)c;
	make_dirs();
	mm(dir_of("top"));
	{
		const int pids[] = { PID };

		pstree(dir_of("top"), pids, 1);
	}
	pagemap(dir_of("top"), 3, &big, 1);
	pages(dir_of("top"), 3, 0, &big, 1);
	o.images_dir = dir_of("top");
	assert_int_equal(fl__criu_source_create(&s, &o, err, sizeof(err)), 0);
	assert_int_equal(s->nregions, 1);
	fl__criu_source_start_background(s);
	for (size_t i = 0; i < 9; i++) {
		bool urgent = i == 8;

		req[i] = (struct fl_source_req){ .region = 0,
						 .offset = urgent ? (BIG_PAGES - 1) * 4096ull : i * piece,
						 .len = urgent ? 4096 : piece, .urgent = urgent,
						 .cookie = malloc(urgent ? 4096 : piece) };
		assert_int_equal(fl_source_submit(s, &req[i]), 0);
	}
	assert_int_equal(fl_source_flush(s), 0);
	r.src = s;
	pfd = (struct pollfd){ .fd = s->event_fd, .events = POLLIN };
	while (r.n < 9) {
		int before = r.n;

		assert_int_equal(poll(&pfd, 1, 1000), 1);
		assert_true(fl_source_reap(s, collect, &r) > 0);
		bg = 0;
		for (int i = before; i < r.n; i++)
			bg += r.order[i]->urgent ? 0 : r.order[i]->len;
		if (!rounds++)
			assert_true(r.order[0]->urgent);
		assert_true(bg <= 512u << 10);
	}
	assert_true(rounds >= 4);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	for (int i = 1; i < 9; i++)
		assert_ptr_equal(r.order[i], &req[i - 1]);
	for (size_t i = 0; i < 9; i++) {
		const unsigned char *d = req[i].cookie;

		assert_int_equal(req[i].result, 0);
		for (uint64_t off = 0; off < req[i].len; off += 4096)
			if (d[off] != byte_of(BIG + req[i].offset + off, 0) ||
			    d[off + 4095] != d[off])
				fail_msg("read %zu: page %llu is wrong", i,
					 (unsigned long long)(off / 4096));
		free(req[i].cookie);
	}
	fl_source_destroy(s);
	cleanup();
}

/* A pages file cut short after it was checked (the restore under way) is
 * a failed read naming the file, never zeros and never a SIGBUS in the
 * daemon: its bytes are read, not mapped. */
static void test_pages_file_truncated_after_checking_fails_the_read_naming_it(const struct fl_case *c)
{
	const struct ent big = { BIG, BIG_PAGES, 6, false };
	struct fl_criu_source_opts o = { 0 };
	static struct fl_source_req req[2];
	struct reaped r = { .n = 0 };
	struct fl_source *s;
	char err[512] = "", path[600];
	const int pids[] = { PID };

	(void)c;
	make_dirs();
	mm(dir_of("top"));
	pstree(dir_of("top"), pids, 1);
	pagemap(dir_of("top"), 3, &big, 1);
	pages(dir_of("top"), 3, 0, &big, 1);
	o.images_dir = dir_of("top");
	assert_int_equal(fl__criu_source_create(&s, &o, err, sizeof(err)), 0);
	fl__criu_source_start_background(s);
	snprintf(path, sizeof(path), "%s/pages-3.img", dir_of("top"));
	assert_int_equal(truncate(path, 100 * 4096), 0);
	req[0] = (struct fl_source_req){ .region = 0, .offset = 0, .len = 64 * 4096,
					 .cookie = malloc(64 * 4096) };
	req[1] = (struct fl_source_req){ .region = 0, .offset = 256 * 4096, .len = 4096,
					 .urgent = true, .cookie = malloc(4096) };
	assert_int_equal(fl_source_submit(s, &req[0]), 0);
	assert_int_equal(fl_source_submit(s, &req[1]), 0);
	assert_int_equal(fl_source_flush(s), 0);
	r.src = s;
	reap_all(s, &r, 2);
	assert_int_equal(req[0].result, 0);
	assert_int_equal(((unsigned char *)req[0].cookie)[63 * 4096], byte_of(BIG + 63 * 4096, 0));
	assert_int_equal(req[1].result, -EIO);
	assert_non_null(strstr(fl__criu_source_error(s), "pages-3.img"));
	assert_non_null(strstr(fl__criu_source_error(s), "truncated"));
	free(req[0].cookie);
	free(req[1].cookie);
	fl_source_destroy(s);
	cleanup();
}

/* Rewrite top's pagemap (or one of its files) and expect a refusal
 * naming `want`. */
static void refused(const struct ent *top, size_t n, const char *want)
{
	struct fl_criu_source_opts o = { .images_dir = dir_of("top") };
	struct fl_source *s = NULL;
	char err[512] = "";

	if (top)
		pagemap(dir_of("top"), 3, top, n);
	assert_true(fl__criu_source_create(&s, &o, err, sizeof(err)) < 0);
	assert_null(s);
	if (!strstr(err, want))
		fail_msg("refusal '%s' does not say '%s'", err, want);
}

static void test_inconsistent_images_are_refused_naming_file_and_entry(const struct fl_case *c)
{
	const struct ent outside[] = { { 0x50000000, 1, 6, false } };
	const struct ent shared[] = { { SHARED, 1, 6, false } };
	const struct ent badflags[] = { { VMA1, 1, 5, false } };
	const struct ent overlap[] = { { VMA1, 4, 2 | 4, false }, { VMA1 + 0x1000, 1, 6, false } };
	const struct ent remote_only[] = { { VMA1, 4, 2, false } };
	const struct ent gap[] = { { VMA2, 8, 3, false } }; /* p has no page in VMA2 */
	const struct ent toolong[] = { { VMA2, 8, 6, false }, { VMA3, 8, 6, false } };

	(void)c;
	good_set();
	refused(outside, 1, "pagemap-7.img: entry 0 has lazy pages at 0x50000000, outside every VMA");
	refused(shared, 1, "not private anonymous");
	refused(badflags, 1, "pagemap-7.img: entry 0 at 0x10000000: flags 0x5");
	refused(overlap, 2, "pagemap-7.img: entry 1 at 0x10001000 overlaps");
	refused(remote_only, 1, "not in the images (the dump was made with --lazy-pages");
	refused(gap, 1, "parent/pagemap-7.img has no page at 0x20000000");
	refused(toolong, 2, "pages-3.img: 57344 bytes, but its pagemap places 65536");
	cleanup();
}

static void test_malformed_bytes_are_refused_naming_the_record(const struct fl_case *c)
{
	struct image im;
	struct buf e = { .n = 0 };
	uint32_t huge = 1u << 30;

	(void)c;
	good_set();
	img_start(&im, 0x50273030u);
	field(&e, 1, 0); /* pid 0 */
	field(&e, 2, 0);
	field(&e, 3, 0);
	field(&e, 4, 0);
	img_record(&im, &e);
	img_write(dir_of("top"), "pstree.img", im.b, im.n);
	refused(NULL, 0, "pstree.img: record 1: pid 0");
	img_start(&im, 0x50273030u);
	memcpy(im.b + im.n, &huge, 4);
	im.n += 4;
	img_write(dir_of("top"), "pstree.img", im.b, im.n);
	refused(NULL, 0, "pstree.img: record 1 at byte 8 claims 1073741824 bytes");
	img_start(&im, 0x57492820u); /* an mm image where pstree belongs */
	img_write(dir_of("top"), "pstree.img", im.b, im.n);
	refused(NULL, 0, "pstree.img: magic 0x54564319 0x57492820");
	img_start(&im, 0x50273030u);
	e.n = 0;
	varint(&e, 1 << 3 | 2); /* field 1 as a string: not a pstree_entry */
	varint(&e, 1);
	e.b[e.n++] = 'x';
	img_record(&im, &e);
	img_write(dir_of("top"), "pstree.img", im.b, im.n);
	refused(NULL, 0, "pstree.img: record 1 is not a pstree_entry");
	cleanup();
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_parent_chains_and_vma_ends_serve_every_page_from_its_level);
	FL_ADD(test_local_reads_are_handed_over_fault_first_in_bounded_pieces);
	FL_ADD(test_pages_file_truncated_after_checking_fails_the_read_naming_it);
	FL_ADD(test_inconsistent_images_are_refused_naming_file_and_entry);
	FL_ADD(test_malformed_bytes_are_refused_naming_the_record);
	return fl_run_cases(cases, n, argc, argv);
}
