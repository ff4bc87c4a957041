/* SPDX-License-Identifier: MIT */
/*
 * faultline/handoff.h - a restorer hands its userfaultfd to a monitor.
 *
 * The restorer (the restored program itself, a VMM, or a container
 * restorer) maps its regions, creates a userfaultfd, registers them and
 * sends the fd with its region list over a unix socket (SCM_RIGHTS). It
 * keeps its own copy of the fd open: if the monitor dies, the program's
 * next missing page blocks instead of silently reading zeros, and a new
 * monitor can be handed the same fd.
 */
#ifndef FAULTLINE_HANDOFF_H
#define FAULTLINE_HANDOFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <faultline/uffd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_HANDOFF_MAGIC 0x4f484c46u /* "FLHO" */
#define FL_HANDOFF_VERSION 1
#define FL_HANDOFF_MAX_REGIONS 4096

/* One registered range and where its pages come from. */
struct fl_handoff_region {
	uint64_t addr;		/* in the restored process, page aligned */
	uint64_t len;		/* bytes */
	uint64_t source_offset; /* byte offset into the source region */
	uint32_t source_region; /* index into the page source's regions */
	uint32_t page_size;
};

/* On the wire, after the header (host byte order: same machine). */
struct fl_handoff_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t nregions;
	uint64_t features; /* what the userfaultfd was opened with */
	int32_t pid;	   /* the process owning the memory; 0 = the sender */
	uint32_t reserved;
};

/* The monitor's answer: status 0 or -errno, then msglen bytes of text. */
struct fl_handoff_ack {
	int32_t status;
	uint32_t msglen;
};

/*
 * Restorer side, one call: create a userfaultfd (following fork, mremap,
 * MADV_DONTNEED and munmap when allowed), register every region MISSING,
 * connect to the monitor at `socket_path`, hand over the fd and the regions,
 * and wait for the monitor's answer. On success `u` holds the restorer's own
 * copy of the fd: keep it open for the life of the process.
 */
int fl_restore_handoff(const char *socket_path,
		       const struct fl_handoff_region *regions, size_t n,
		       struct fl_uffd *u, char *err, size_t errlen);

/* The same over an already connected socket, for an existing fd. */
int fl_handoff_send(int sock, const struct fl_uffd *u, pid_t pid,
		    const struct fl_handoff_region *regions, size_t n,
		    char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
