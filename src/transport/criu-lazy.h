/* SPDX-License-Identifier: MIT */
/*
 * What a CRIU dump owes its restored processes lazily: every PE_LAZY
 * pagemap entry of every process in pstree.img, cut at VMA ends (one
 * UFFDIO_COPY cannot span VMAs), each piece with the place its bytes are:
 * a pages-<id>.img of this image set or of a parent set (PE_PARENT chains
 * followed to the page), or the source's page server.
 */
#ifndef FL_CRIU_LAZY_H
#define FL_CRIU_LAZY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRIU_PARENT_DEPTH_MAX 32

struct criu_range {
	int32_t pid;	    /* as in the images (its own pid namespace) */
	uint64_t vaddr;	    /* at dump time */
	uint64_t len;	    /* bytes */
	int32_t file;	    /* index into files[]; -1: the page server has them */
	uint64_t file_off;  /* of vaddr's bytes */
	uint64_t vma_start; /* the VMA it lies in (ranges never cross one) */
};

struct criu_file {
	char *path;
	uint64_t need; /* bytes the pagemaps say it holds */
};

struct criu_lazy {
	int32_t *pids; /* pstree.img's order */
	size_t npids;
	struct criu_range *ranges; /* grouped by pid in pids' order, by vaddr */
	size_t nranges;
	struct criu_file *files;
	size_t nfiles;
	uint64_t lazy_bytes;
};

/*
 * Read the image set in `dir`. remote: lazy pages whose bytes are not in
 * the images (a `criu dump --lazy-pages`) come from the page server;
 * without it they are an error, as is any image that is malformed or
 * inconsistent (a lazy page outside a lazily restored VMA, a parent image
 * that lacks a page, a pages file shorter than its pagemap says).
 */
int fl__criu_lazy_load(struct criu_lazy **out, const char *dir, bool remote, char *err,
		       size_t errlen);
void fl__criu_lazy_free(struct criu_lazy *l);

/* The ranges of pid: [*first, *first + return value). */
size_t fl__criu_lazy_ranges_of(const struct criu_lazy *l, int32_t pid, size_t *first);

#endif
