// SPDX-License-Identifier: MIT
/*
 * CRIU image files: a common magic, a type magic, then records of a
 * 32-bit length and that many bytes of a protobuf message (host byte
 * order, no versioning). Decoded here from bytes in memory and checked
 * before anything else sees them: a malformed image is refused with the
 * file and the record named, never served as zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "criu-image.h"
#include "transport/criu-image.pb-c.h"
#include "util/errf.h"

/* MAP_* flags as vma_entry.flags holds them (x86-64 values). */
#define CRIU_MAP_SHARED 0x01u
#define CRIU_MAP_PRIVATE 0x02u
#define CRIU_MAP_ANONYMOUS 0x20u
#define CRIU_MAP_LOCKED 0x2000u
#define CRIU_MAP_HUGETLB 0x40000u

#define say fl__errf /* util/errf.h */

static uint32_t get32(const unsigned char *b)
{
	uint32_t v;

	memcpy(&v, b, 4); /* host order, as CRIU writes it */
	return v;
}

/* A walk over the records of one image. */
struct records {
	const unsigned char *b;
	size_t len, pos;
	unsigned index; /* of the record last returned */
	const char *name;
};

static int records_open(struct records *r, const void *buf, size_t len, const char *name,
			uint32_t magic, char *err, size_t errlen)
{
	*r = (struct records){ .b = buf, .len = len, .pos = 8, .name = name };
	if (len < 8) {
		say(err, errlen, "%s: %zu bytes, too short for CRIU's two magic numbers", name,
		    len);
		return -EBADMSG;
	}
	if (get32(r->b) != CRIU_MAGIC_COMMON || get32(r->b + 4) != magic) {
		say(err, errlen, "%s: magic %#x %#x, expected %#x %#x: not this kind of CRIU "
		    "image", name, get32(r->b), get32(r->b + 4), CRIU_MAGIC_COMMON, magic);
		return -EBADMSG;
	}
	return 0;
}

/* The next record: 1 with *p, *n set; 0 at the end; -EBADMSG. */
static int records_next(struct records *r, const unsigned char **p, size_t *n, char *err,
			size_t errlen)
{
	uint32_t l;

	if (r->pos == r->len)
		return 0;
	r->index++;
	if (r->len - r->pos < 4) {
		say(err, errlen, "%s: record %u: %zu bytes left, too few for a length", r->name,
		    r->index, r->len - r->pos);
		return -EBADMSG;
	}
	l = get32(r->b + r->pos);
	if (l > CRIU_RECORD_MAX || l > r->len - r->pos - 4) {
		say(err, errlen, "%s: record %u at byte %zu claims %u bytes, but %zu are left",
		    r->name, r->index, r->pos, l, r->len - r->pos - 4);
		return -EBADMSG;
	}
	*p = r->b + r->pos + 4;
	*n = l;
	r->pos += 4 + (size_t)l;
	return 1;
}

int fl__criu_pstree_decode(const void *buf, size_t len, const char *name, int32_t **pids,
			   size_t *n, char *err, size_t errlen)
{
	struct records rs;
	const unsigned char *p;
	size_t l, cap = 0;
	int ret;

	*pids = NULL;
	*n = 0;
	if ((ret = records_open(&rs, buf, len, name, CRIU_MAGIC_PSTREE, err, errlen)))
		return ret;
	while ((ret = records_next(&rs, &p, &l, err, errlen)) == 1) {
		Faultline__Criu__PstreeEntry *e = faultline__criu__pstree_entry__unpack(NULL, l, p);
		uint32_t pid;

		if (!e) {
			say(err, errlen, "%s: record %u is not a pstree_entry", name, rs.index);
			ret = -EBADMSG;
			break;
		}
		pid = e->pid;
		faultline__criu__pstree_entry__free_unpacked(e, NULL);
		if (pid == 0 || pid > INT32_MAX) {
			say(err, errlen, "%s: record %u: pid %u is not a process id", name, rs.index,
			    pid);
			ret = -EBADMSG;
			break;
		}
		for (size_t i = 0; i < *n; i++)
			if ((*pids)[i] == (int32_t)pid) {
				say(err, errlen, "%s: record %u: pid %u is listed twice", name,
				    rs.index, pid);
				ret = -EBADMSG;
				goto out;
			}
		if (*n == cap) {
			int32_t *np;

			if (cap >= CRIU_PIDS_MAX) {
				say(err, errlen, "%s: more than %u processes", name, CRIU_PIDS_MAX);
				ret = -EBADMSG;
				break;
			}
			cap = cap ? cap * 2 : 16;
			np = realloc(*pids, cap * sizeof(*np));
			if (!np) {
				ret = -ENOMEM;
				break;
			}
			*pids = np;
		}
		(*pids)[(*n)++] = (int32_t)pid;
	}
	if (ret == 0 && *n == 0) {
		say(err, errlen, "%s: no process in it", name);
		ret = -EBADMSG;
	}
out:
	if (ret < 0) {
		free(*pids);
		*pids = NULL;
		*n = 0;
	}
	return ret;
}

int fl__criu_mm_decode(const void *buf, size_t len, const char *name, struct criu_vma **v,
		       size_t *n, char *err, size_t errlen)
{
	Faultline__Criu__MmEntry *mm = NULL;
	struct records rs;
	const unsigned char *p;
	size_t l;
	int ret;

	*v = NULL;
	*n = 0;
	if ((ret = records_open(&rs, buf, len, name, CRIU_MAGIC_MM, err, errlen)))
		return ret;
	ret = records_next(&rs, &p, &l, err, errlen);
	if (ret < 0)
		return ret;
	if (ret == 0) {
		say(err, errlen, "%s: no mm_entry in it", name);
		return -EBADMSG;
	}
	mm = faultline__criu__mm_entry__unpack(NULL, l, p);
	if (!mm) {
		say(err, errlen, "%s: record 1 is not an mm_entry", name);
		return -EBADMSG;
	}
	*v = calloc(mm->n_vmas ? mm->n_vmas : 1, sizeof(**v));
	if (!*v) {
		ret = -ENOMEM;
		goto out;
	}
	ret = 0;
	for (size_t i = 0; i < mm->n_vmas; i++) {
		const Faultline__Criu__VmaEntry *e = mm->vmas[i];

		/* No upper bound: the vsyscall page is in the kernel's half. */
		if (e->start >= e->end || (e->start | e->end) % CRIU_PAGE) {
			say(err, errlen, "%s: vma %zu [%#llx, %#llx) is empty or unaligned", name, i, (unsigned long long)e->start,
			    (unsigned long long)e->end);
			ret = -EBADMSG;
			goto out;
		}
		if (i && e->start < (*v)[i - 1].end) {
			say(err, errlen, "%s: vma %zu at %#llx overlaps or precedes the one before "
			    "it (ending at %#llx)", name, i, (unsigned long long)e->start,
			    (unsigned long long)(*v)[i - 1].end);
			ret = -EBADMSG;
			goto out;
		}
		(*v)[i] = (struct criu_vma){ e->start, e->end, e->prot, e->flags, e->status };
	}
	*n = mm->n_vmas;
out:
	faultline__criu__mm_entry__free_unpacked(mm, NULL);
	if (ret < 0) {
		free(*v);
		*v = NULL;
	}
	return ret;
}

void fl__criu_pagemap_free(struct criu_pagemap *pm)
{
	if (!pm)
		return;
	free(pm->e);
	pm->e = NULL;
	pm->n = 0;
}

int fl__criu_pagemap_decode(const void *buf, size_t len, const char *name,
			    struct criu_pagemap *pm, char *err, size_t errlen)
{
	Faultline__Criu__PagemapHead *h;
	struct records rs;
	const unsigned char *p;
	size_t l, cap = 0;
	int ret;

	*pm = (struct criu_pagemap){ 0 };
	if ((ret = records_open(&rs, buf, len, name, CRIU_MAGIC_PAGEMAP, err, errlen)))
		return ret;
	ret = records_next(&rs, &p, &l, err, errlen);
	if (ret < 0)
		return ret;
	if (ret == 0 || !(h = faultline__criu__pagemap_head__unpack(NULL, l, p))) {
		say(err, errlen, "%s: record 1 is not a pagemap_head", name);
		return -EBADMSG;
	}
	pm->pages_id = h->pages_id;
	faultline__criu__pagemap_head__free_unpacked(h, NULL);
	while ((ret = records_next(&rs, &p, &l, err, errlen)) == 1) {
		Faultline__Criu__PagemapEntry *e = faultline__criu__pagemap_entry__unpack(NULL, l, p);
		struct criu_pagemap_ent x;

		if (!e) {
			say(err, errlen, "%s: record %u is not a pagemap_entry", name, rs.index);
			ret = -EBADMSG;
			break;
		}
		x.vaddr = e->vaddr;
		x.nr_pages = e->has_nr_pages ? e->nr_pages : e->compat_nr_pages;
		/* Images from old CRIU have no flags: in_parent says where. */
		if (e->has_flags)
			x.flags = e->flags;
		else
			x.flags = e->has_in_parent && e->in_parent ? CRIU_PE_PARENT : CRIU_PE_PRESENT;
		faultline__criu__pagemap_entry__free_unpacked(e, NULL);
		ret = -EBADMSG;
		if (x.vaddr % CRIU_PAGE || !x.nr_pages || x.vaddr >= CRIU_ADDR_LIMIT ||
		    x.nr_pages > (CRIU_ADDR_LIMIT - x.vaddr) / CRIU_PAGE) {
			say(err, errlen, "%s: entry %u (record %u): %llu pages at %#llx are empty, "
			    "unaligned or beyond user space", name, rs.index - 2, rs.index,
			    (unsigned long long)x.nr_pages, (unsigned long long)x.vaddr);
			break;
		}
		if (x.flags & ~(CRIU_PE_PARENT | CRIU_PE_LAZY | CRIU_PE_PRESENT) ||
		    (x.flags & CRIU_PE_PARENT && x.flags & CRIU_PE_PRESENT)) {
			say(err, errlen, "%s: entry %u at %#llx: flags %#x are not a combination "
			    "CRIU writes (PE_PARENT 1, PE_LAZY 2, PE_PRESENT 4; never 1 and 4)",
			    name, rs.index - 2, (unsigned long long)x.vaddr, x.flags);
			break;
		}
		if (pm->n && x.vaddr < pm->e[pm->n - 1].vaddr + pm->e[pm->n - 1].nr_pages * CRIU_PAGE) {
			say(err, errlen, "%s: entry %u at %#llx overlaps or precedes the entry "
			    "before it", name, rs.index - 2, (unsigned long long)x.vaddr);
			break;
		}
		/* Each PE_PRESENT entry's bytes follow the previous ones. */
		x.data_offset = pm->data_bytes;
		if (x.flags & CRIU_PE_PRESENT)
			pm->data_bytes += x.nr_pages * CRIU_PAGE;
		if (pm->n == cap) {
			struct criu_pagemap_ent *ne;

			cap = cap ? cap * 2 : 64;
			ne = realloc(pm->e, cap * sizeof(*ne));
			if (!ne) {
				ret = -ENOMEM;
				break;
			}
			pm->e = ne;
		}
		pm->e[pm->n++] = x;
		ret = 1;
	}
	if (ret < 0)
		fl__criu_pagemap_free(pm);
	return ret < 0 ? ret : 0;
}

int fl__criu_read_file(const char *dir, const char *name, void **buf, size_t *len,
		       char *err, size_t errlen)
{
	char path[4096];
	struct stat st;
	size_t got = 0;
	int fd, ret = 0;

	*buf = NULL;
	*len = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		say(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > 4ll * CRIU_RECORD_MAX) {
		say(err, errlen, "%s: not a regular file of at most %u bytes", path,
		    4 * CRIU_RECORD_MAX);
		close(fd);
		return -EBADMSG;
	}
	*buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!*buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, (char *)*buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			say(err, errlen, "%s: reading: %s", path, n < 0 ? strerror(errno) :
			    "the file shrank");
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (ret) {
		free(*buf);
		*buf = NULL;
		return ret;
	}
	*len = got;
	return 0;
}

bool fl__criu_vma_lazy(const struct criu_vma *v)
{
	return (v->flags & (CRIU_MAP_PRIVATE | CRIU_MAP_ANONYMOUS | CRIU_MAP_SHARED)) ==
		       (CRIU_MAP_PRIVATE | CRIU_MAP_ANONYMOUS) &&
	       !(v->flags & (CRIU_MAP_LOCKED | CRIU_MAP_HUGETLB)) &&
	       !(v->status & (CRIU_VMA_AREA_VDSO | CRIU_VMA_AREA_VVAR | CRIU_VMA_AREA_VSYSCALL));
}
