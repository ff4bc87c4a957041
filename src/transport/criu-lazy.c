// SPDX-License-Identifier: MIT
/*
 * A CRIU image set's lazy pages: which ranges each process is owed and
 * where each range's bytes are. All of it is checked here, before any
 * process is served: a page whose bytes cannot be found is an error now,
 * not zeros later.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "criu-image.h"
#include "criu-lazy.h"

static void say(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Loading one process: its pagemaps at each parent depth, read once. */
struct loader {
	struct criu_lazy *l;
	const char *dir;
	bool remote;
	int32_t pid;
	struct criu_pagemap pm[CRIU_PARENT_DEPTH_MAX + 1];
	bool have[CRIU_PARENT_DEPTH_MAX + 1];
	size_t cap_ranges;
	char *err;
	size_t errlen;
};

/* "parent/parent/" for depth 2 */
static void prefix(char *buf, size_t len, int depth)
{
	buf[0] = 0;
	for (int i = 0; i < depth; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), "parent/");
}

static int pagemap_at(struct loader *ld, int depth, struct criu_pagemap **out)
{
	char name[512], pre[8 * CRIU_PARENT_DEPTH_MAX + 1];
	void *buf;
	size_t len;
	int ret;

	if (depth > CRIU_PARENT_DEPTH_MAX) {
		say(ld->err, ld->errlen, "pid %d: PE_PARENT chain deeper than %d image sets "
		    "(a loop of parent links?)", ld->pid, CRIU_PARENT_DEPTH_MAX);
		return -ELOOP;
	}
	if (!ld->have[depth]) {
		prefix(pre, sizeof(pre), depth);
		snprintf(name, sizeof(name), "%spagemap-%d.img", pre, ld->pid);
		ret = fl__criu_read_file(ld->dir, name, &buf, &len, ld->err, ld->errlen);
		if (ret)
			return ret;
		ret = fl__criu_pagemap_decode(buf, len, name, &ld->pm[depth], ld->err, ld->errlen);
		free(buf);
		if (ret)
			return ret;
		ld->have[depth] = true;
	}
	*out = &ld->pm[depth];
	return 0;
}

static int file_index(struct loader *ld, int depth, const struct criu_pagemap *pm)
{
	struct criu_lazy *l = ld->l;
	char pre[8 * CRIU_PARENT_DEPTH_MAX + 1], *path;
	struct criu_file *nf;

	prefix(pre, sizeof(pre), depth);
	if (asprintf(&path, "%s/%spages-%u.img", ld->dir, pre, pm->pages_id) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < l->nfiles; i++)
		if (!strcmp(l->files[i].path, path)) {
			free(path);
			if (l->files[i].need < pm->data_bytes)
				l->files[i].need = pm->data_bytes;
			return (int)i;
		}
	nf = realloc(l->files, (l->nfiles + 1) * sizeof(*nf));
	if (!nf) {
		free(path);
		return -ENOMEM;
	}
	l->files = nf;
	l->files[l->nfiles] = (struct criu_file){ path, pm->data_bytes };
	return (int)l->nfiles++;
}

static int add_range(struct loader *ld, uint64_t va, uint64_t len, int32_t file,
		     uint64_t off, uint64_t vma_start)
{
	struct criu_lazy *l = ld->l;
	struct criu_range *last = l->nranges ? &l->ranges[l->nranges - 1] : NULL;

	l->lazy_bytes += len;
	if (last && last->pid == ld->pid && last->vma_start == vma_start &&
	    last->vaddr + last->len == va && last->file == file &&
	    (file < 0 || last->file_off + last->len == off)) {
		last->len += len;
		return 0;
	}
	if (l->nranges == ld->cap_ranges) {
		size_t cap = ld->cap_ranges ? ld->cap_ranges * 2 : 64;
		struct criu_range *nr = realloc(l->ranges, cap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		l->ranges = nr;
		ld->cap_ranges = cap;
	}
	l->ranges[l->nranges++] = (struct criu_range){ ld->pid, va, len, file, off, vma_start };
	return 0;
}

/* The entry of pm that holds va, or NULL. */
static const struct criu_pagemap_ent *entry_at(const struct criu_pagemap *pm, uint64_t va)
{
	size_t lo = 0, hi = pm->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct criu_pagemap_ent *e = &pm->e[mid];

		if (va < e->vaddr)
			hi = mid;
		else if (va >= e->vaddr + e->nr_pages * CRIU_PAGE)
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

/* Find the bytes of [va, va+len), all inside entry e of the pagemap at
 * `depth`, and add them as ranges. */
static int place(struct loader *ld, int depth, const struct criu_pagemap *pm,
		 const struct criu_pagemap_ent *e, uint64_t va, uint64_t len, uint64_t vma_start)
{
	char pre[8 * CRIU_PARENT_DEPTH_MAX + 1];
	int ret;

	if (e->flags & CRIU_PE_PRESENT) {
		int f = file_index(ld, depth, pm);

		if (f < 0)
			return f;
		return add_range(ld, va, len, f, e->data_offset + (va - e->vaddr), vma_start);
	}
	if (e->flags & CRIU_PE_PARENT) {
		struct criu_pagemap *ppm;

		if (ld->remote) {
			say(ld->err, ld->errlen, "pid %d: lazy pages at %#llx are in a parent "
			    "image set (PE_PARENT), which a page server does not serve",
			    ld->pid, (unsigned long long)va);
			return -EBADMSG;
		}
		if ((ret = pagemap_at(ld, depth + 1, &ppm)))
			return ret;
		while (len) {
			const struct criu_pagemap_ent *pe = entry_at(ppm, va);
			uint64_t n;

			if (!pe) {
				prefix(pre, sizeof(pre), depth + 1);
				say(ld->err, ld->errlen, "%spagemap-%d.img has no page at %#llx, "
				    "which the image set above it says is there (PE_PARENT)", pre,
				    ld->pid, (unsigned long long)va);
				return -EBADMSG;
			}
			n = pe->vaddr + pe->nr_pages * CRIU_PAGE - va;
			if (n > len)
				n = len;
			if ((ret = place(ld, depth + 1, ppm, pe, va, n, vma_start)))
				return ret;
			va += n;
			len -= n;
		}
		return 0;
	}
	if (ld->remote && depth == 0)
		return add_range(ld, va, len, -1, 0, vma_start);
	prefix(pre, sizeof(pre), depth);
	say(ld->err, ld->errlen, "%spagemap-%d.img: the lazy pages at %#llx are not in the "
	    "images (the dump was made with --lazy-pages: serve them with --page-server)", pre,
	    ld->pid, (unsigned long long)va);
	return -EBADMSG;
}

static const struct criu_vma *vma_at(const struct criu_vma *v, size_t n, uint64_t va)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (va < v[mid].start)
			hi = mid;
		else if (va >= v[mid].end)
			lo = mid + 1;
		else
			return &v[mid];
	}
	return NULL;
}

static int load_pid(struct loader *ld)
{
	char name[64];
	struct criu_vma *v = NULL;
	struct criu_pagemap *pm;
	void *buf;
	size_t len, nv;
	int ret;

	snprintf(name, sizeof(name), "mm-%d.img", ld->pid);
	ret = fl__criu_read_file(ld->dir, name, &buf, &len, ld->err, ld->errlen);
	if (ret == -ENOENT)
		return 0; /* no memory of its own: a zombie */
	if (ret)
		return ret;
	ret = fl__criu_mm_decode(buf, len, name, &v, &nv, ld->err, ld->errlen);
	free(buf);
	if (ret)
		return ret;
	if ((ret = pagemap_at(ld, 0, &pm)))
		goto out;
	for (size_t i = 0; i < pm->n && !ret; i++) {
		const struct criu_pagemap_ent *e = &pm->e[i];
		uint64_t va = e->vaddr, left = e->nr_pages * CRIU_PAGE;

		if (!(e->flags & CRIU_PE_LAZY))
			continue;
		while (left && !ret) {
			const struct criu_vma *m = vma_at(v, nv, va);
			uint64_t n;

			if (!m || !fl__criu_vma_lazy(m)) {
				say(ld->err, ld->errlen, "pagemap-%d.img: entry %zu has lazy pages at "
				    "%#llx, %s", ld->pid, i, (unsigned long long)va, m ?
				    "in a VMA that is not private anonymous memory (never registered "
				    "with the userfaultfd)" : "outside every VMA of mm-PID.img");
				ret = -EBADMSG;
				break;
			}
			n = m->end - va < left ? m->end - va : left;
			ret = place(ld, 0, pm, e, va, n, m->start);
			va += n;
			left -= n;
		}
	}
out:
	free(v);
	for (int d = 0; d <= CRIU_PARENT_DEPTH_MAX; d++)
		if (ld->have[d]) {
			fl__criu_pagemap_free(&ld->pm[d]);
			ld->have[d] = false;
		}
	return ret;
}

static int check_files(struct criu_lazy *l, char *err, size_t errlen)
{
	for (size_t i = 0; i < l->nfiles; i++) {
		struct stat st;

		if (stat(l->files[i].path, &st)) {
			int e = errno;

			say(err, errlen, "%s: %s", l->files[i].path, strerror(e));
			return -e;
		}
		if ((uint64_t)st.st_size < l->files[i].need) {
			say(err, errlen, "%s: %llu bytes, but its pagemap places %llu bytes of "
			    "pages in it: the image set is truncated", l->files[i].path,
			    (unsigned long long)st.st_size, (unsigned long long)l->files[i].need);
			return -EBADMSG;
		}
	}
	return 0;
}

int fl__criu_lazy_load(struct criu_lazy **out, const char *dir, bool remote, char *err,
		       size_t errlen)
{
	struct criu_lazy *l = calloc(1, sizeof(*l));
	struct loader ld = { .l = l, .dir = dir, .remote = remote, .err = err,
			     .errlen = errlen };
	void *buf;
	size_t len;
	int ret;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	ret = fl__criu_read_file(dir, "pstree.img", &buf, &len, err, errlen);
	if (ret == 0) {
		ret = fl__criu_pstree_decode(buf, len, "pstree.img", &l->pids, &l->npids, err,
					     errlen);
		free(buf);
	}
	for (size_t i = 0; i < l->npids && !ret; i++) {
		ld.pid = l->pids[i];
		ret = load_pid(&ld);
	}
	if (!ret)
		ret = check_files(l, err, errlen);
	if (ret) {
		fl__criu_lazy_free(l);
		return ret;
	}
	*out = l;
	return 0;
}

void fl__criu_lazy_free(struct criu_lazy *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nfiles; i++)
		free(l->files[i].path);
	free(l->files);
	free(l->ranges);
	free(l->pids);
	free(l);
}

size_t fl__criu_lazy_ranges_of(const struct criu_lazy *l, int32_t pid, size_t *first)
{
	size_t i = 0, n = 0;

	while (i < l->nranges && l->ranges[i].pid != pid)
		i++;
	*first = i;
	while (i + n < l->nranges && l->ranges[i + n].pid == pid)
		n++;
	return n;
}
