/* SPDX-License-Identifier: MIT */
/*
 * faultline/snapshot.h - snapshots of a program's memory, on disk.
 *
 * A snapshot is a directory of three files (src/transport/SNAPSHOT.md):
 *
 *   manifest.pb  a 32-byte header (magic, version, length, CRC32C) and a
 *                protobuf message: the regions and where their pages are
 *   pages        every region's bytes at a page-aligned offset; zero pages
 *                are holes (never written), found again with SEEK_HOLE
 *   checksums    one little-endian CRC32C per 4 KiB block of every region
 *
 * Writing: fl_snapshot_write() for memory in this process, the streaming
 * writer for anything else, fl_snapshot_write_pid() for another process.
 * Reading: fl_snapshot_open() validates everything that is cheap to check
 * before anything is served; fl_source_snapshot_create() serves the pages
 * through the page-source interface (faultline/source.h) with io_uring,
 * verifying each 4 KiB block against its checksum as it arrives.
 *
 * Every function returns 0 or -errno. Functions taking (err, errlen) write
 * a sentence there on failure naming the file, the cause and the fix.
 */
#ifndef FAULTLINE_SNAPSHOT_H
#define FAULTLINE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <faultline/source.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_SNAPSHOT_VERSION 1
/* Checksums cover 4 KiB blocks whatever the region's page size. */
#define FL_SNAPSHOT_BLOCK 4096u

/* Flags for the writers. */
#define FL_SNAPSHOT_REPLACE 0x1u /* replace a snapshot already in dir */

/* CRC32C (Castagnoli), as stored in snapshots. Start with crc = 0; pass
 * the previous value to continue over more bytes. */
uint32_t fl_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- writing ---------------------------------------------------------- */

/* Snapshot n regions of this process: region i's bytes are data[i] (a NULL
 * data[i] is all zeros). dir is created if missing. */
int fl_snapshot_write(const char *dir, const struct fl_region *regions,
		      size_t n, const void *const *data, unsigned flags,
		      char *err, size_t errlen);

/* The streaming writer underneath: begin a region, append its bytes in
 * order (any multiple of 4 KiB per call), begin the next, finish. Nothing
 * is a snapshot until finish() has written the manifest (last, then
 * fsync), so a crash leaves no half snapshot that opens. */
struct fl_snapshot_writer;

int fl_snapshot_writer_create(struct fl_snapshot_writer **out, const char *dir,
			      const char *origin, unsigned flags, char *err,
			      size_t errlen);
int fl_snapshot_writer_begin_region(struct fl_snapshot_writer *w,
				    const struct fl_region *r);
int fl_snapshot_writer_append(struct fl_snapshot_writer *w, const void *data,
			      uint64_t len);
int fl_snapshot_writer_finish(struct fl_snapshot_writer *w);
/* Bytes appended so far, and of those the bytes that were not zero. */
void fl_snapshot_writer_progress(const struct fl_snapshot_writer *w,
				 uint64_t *bytes, uint64_t *data_bytes);
/* The reason of the last failure, "" if none. */
const char *fl_snapshot_writer_error(const struct fl_snapshot_writer *w);
/* Frees w; if finish() did not succeed, removes the files it wrote. */
void fl_snapshot_writer_destroy(struct fl_snapshot_writer *w);

/* Snapshot another process's private writable memory (anonymous, heap,
 * stack, private writable file mappings; not shared mappings, not [vdso],
 * [vvar], [vsyscall]). The caller stops the process first (ptrace or
 * SIGSTOP) if it wants a consistent image. Reads with process_vm_readv,
 * falling back to /proc/PID/mem. Needs ptrace access to pid (same user
 * and yama ptrace_scope allowing it, or CAP_SYS_PTRACE). */
struct fl_snapshot_pid_stats {
	size_t regions;	     /* captured */
	size_t skipped;	     /* mappings not captured (shared, special) */
	uint64_t bytes;	     /* of memory captured */
	uint64_t data_bytes; /* of those, not zero (written to the file) */
};

struct fl_snapshot_pid_opts {
	unsigned flags; /* FL_SNAPSHOT_REPLACE */
	/* Called every few MiB and at the end; may be NULL. */
	void (*progress)(uint64_t bytes_done, uint64_t bytes_total, void *arg);
	void *arg;
};

int fl_snapshot_write_pid(const char *dir, pid_t pid,
			  const struct fl_snapshot_pid_opts *opts,
			  struct fl_snapshot_pid_stats *stats, char *err,
			  size_t errlen);

/* ---- reading ---------------------------------------------------------- */

struct fl_snapshot;

/* Open and validate: header magic, version and CRC, the manifest, regions
 * sorted, non-overlapping and page aligned, file offsets aligned and
 * non-overlapping, the sizes of pages and checksums, the checksums' CRC,
 * and that every hole in pages has a zero page's checksum. A snapshot
 * that fails any of these is refused with -EBADMSG (corrupt), -ENOENT
 * (missing file) or -EPROTONOSUPPORT (newer version), and err says which. */
int fl_snapshot_open(const char *dir, struct fl_snapshot **out, char *err,
		     size_t errlen);
void fl_snapshot_close(struct fl_snapshot *s);

const struct fl_region *fl_snapshot_regions(const struct fl_snapshot *s,
					    size_t *n);
const char *fl_snapshot_dir(const struct fl_snapshot *s);
/* Who wrote it ("pid 1234 (name)", or what the writer was given). */
const char *fl_snapshot_origin(const struct fl_snapshot *s);
/* Seconds since the epoch when it was written. */
uint64_t fl_snapshot_created(const struct fl_snapshot *s);
/* Bytes of the regions that are data (not holes) in the pages file. */
uint64_t fl_snapshot_data_bytes(const struct fl_snapshot *s);

/* Bytes of known-zero pages (holes) from offset in region, at most max,
 * rounded down to the region's page size; 0 when offset holds data. From a
 * map built at open: no system call. */
int64_t fl_snapshot_zero_run(const struct fl_snapshot *s, uint32_t region,
			     uint64_t offset, uint64_t max);

/* Read [offset, offset + len) of a region synchronously and verify it:
 * -EBADMSG with err naming region and page when a block's checksum fails. */
int fl_snapshot_read(const struct fl_snapshot *s, uint32_t region,
		     uint64_t offset, void *buf, uint64_t len, char *err,
		     size_t errlen);

/* Check every block of every region against its checksum. bad_blocks gets
 * the number that fail; err names the first. 0 if all pass, -EBADMSG if
 * any fails, -errno on I/O errors. progress may be NULL. */
int fl_snapshot_verify(const struct fl_snapshot *s, uint64_t *bad_blocks,
		       void (*progress)(uint64_t done, uint64_t total, void *arg),
		       void *arg, char *err, size_t errlen);

/* ---- the page source -------------------------------------------------- */

struct fl_source_snapshot_opts {
	unsigned queue_depth;	  /* requests in the source; 0 = 256 */
	/* Background reads in the kernel at once; 0 = 16. Kept small so an
	 * urgent read never waits behind a long background backlog. */
	unsigned background_inflight;
};

/* A page source serving snap's pages with io_uring (faultline/source.h).
 * event_fd is an eventfd registered with the ring: readable when reap()
 * has completions. Every block read is checked against its checksum; a
 * mismatch completes that request with -EBADMSG, and
 * fl_source_snapshot_error() names the region and page. snap is borrowed:
 * keep it open until the source is destroyed. opts may be NULL. */
int fl_source_snapshot_create(struct fl_source **out, struct fl_snapshot *snap,
			      const struct fl_source_snapshot_opts *opts);

/* The last error of a snapshot source ("" if none), e.g. which page failed
 * its checksum. */
const char *fl_source_snapshot_error(const struct fl_source *s);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_SNAPSHOT_H */
