/* SPDX-License-Identifier: MIT */
/*
 * CRIU's image files, as a lazy-pages daemon reads them: pstree.img,
 * mm-<pid>.img, pagemap-<pid>.img (../shared/criu/README.md describes the
 * format; criu-image.proto holds the messages). Decoding works on bytes in
 * memory so that fuzz/fuzz_criu_image.c can feed it anything: every length
 * is bounded before use, and every refusal names the file and the record.
 */
#ifndef FL_CRIU_IMAGE_H
#define FL_CRIU_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRIU_MAGIC_COMMON 0x54564319u
#define CRIU_MAGIC_PSTREE 0x50273030u
#define CRIU_MAGIC_MM 0x57492820u
#define CRIU_MAGIC_PAGEMAP 0x56084025u

/* pagemap_entry flags */
#define CRIU_PE_PARENT 1u
#define CRIU_PE_LAZY 2u
#define CRIU_PE_PRESENT 4u

/* vma_entry status bits that are never registered */
#define CRIU_VMA_AREA_VSYSCALL (1u << 2)
#define CRIU_VMA_AREA_VDSO (1u << 3)
#define CRIU_VMA_AREA_VVAR (1u << 12)

#define CRIU_PAGE 4096ull
#define CRIU_ADDR_LIMIT (1ull << 57) /* 5-level paging's user half */
#define CRIU_RECORD_MAX (64u << 20)  /* one protobuf record */
#define CRIU_PIDS_MAX (1u << 22)

struct criu_vma {
	uint64_t start, end;
	uint32_t prot, flags, status;
};

struct criu_pagemap_ent {
	uint64_t vaddr, nr_pages;
	uint32_t flags;	      /* CRIU_PE_*, old images' in_parent mapped */
	uint64_t data_offset; /* in pages-<id>.img (PE_PRESENT only) */
};

struct criu_pagemap {
	uint32_t pages_id;
	struct criu_pagemap_ent *e;
	size_t n;
	uint64_t data_bytes; /* what pages-<id>.img must hold */
};

/* Decoders: 0, or -EBADMSG with err naming `name` and the record. Each
 * output is the caller's to free (free(), fl__criu_pagemap_free()). */
int fl__criu_pstree_decode(const void *buf, size_t len, const char *name, int32_t **pids,
			   size_t *n, char *err, size_t errlen);
int fl__criu_mm_decode(const void *buf, size_t len, const char *name, struct criu_vma **v,
		       size_t *n, char *err, size_t errlen);
int fl__criu_pagemap_decode(const void *buf, size_t len, const char *name,
			    struct criu_pagemap *pm, char *err, size_t errlen);
void fl__criu_pagemap_free(struct criu_pagemap *pm);

/* Read dir/name whole (at most CRIU_RECORD_MAX * 4 bytes): 0, -ENOENT, or
 * -errno with err naming the path. */
int fl__criu_read_file(const char *dir, const char *name, void **buf, size_t *len,
		       char *err, size_t errlen);

/* Whether a VMA is one CRIU's restorer registers with the userfaultfd:
 * private anonymous, not locked, not hugetlb, not vdso/vvar/vsyscall. */
bool fl__criu_vma_lazy(const struct criu_vma *v);

#endif
