/* SPDX-License-Identifier: MIT */
/*
 * faultline/wire.h - the migration wire protocol and its connections.
 *
 * A migration uses two connections between source and destination, each
 * TCP with TLS 1.3 and mutual authentication (plain TCP only when asked,
 * and only on loopback unless forced):
 *
 *   control  hello, region table, the background page stream, pre-copy
 *            rounds, the owed-page bitmap at switch-over, resume, done,
 *            statistics, errors
 *   urgent   the destination's page requests for faults and their replies,
 *            so that an urgent page never waits behind background pages
 *            (as QEMU's postcopy-preempt channel)
 *
 * Every frame starts with a fixed 32-byte little-endian header:
 *
 *   u32 magic   FL_WIRE_MAGIC
 *   u8  kind    FL_WIRE_CONTROL | FL_WIRE_PAGES | FL_WIRE_ZERO
 *   u8  flags   FL_WIRE_URGENT | ...
 *   u16 reserved (0)
 *   u32 region  PAGES/ZERO: region index; CONTROL: 0
 *   u32 length  payload bytes that follow (CONTROL: protobuf-c bytes;
 *               PAGES: page bytes; ZERO: 0)
 *   u64 offset  PAGES/ZERO: byte offset in the region
 *   u64 count   ZERO: bytes of zeros the range covers; PAGES: = length
 *
 * Control payloads are one protobuf-c message (src/transport/wire.proto);
 * page payloads are raw bytes read straight into the caller's
 * page-aligned buffer (no protobuf copy of page data). Every length,
 * count, offset and region index is checked before use against the
 * limits below and the region table the receiver holds; a malformed frame
 * fails the receive with -EPROTO and an error naming what was wrong, and
 * the caller closes the connection.
 */
#ifndef FAULTLINE_WIRE_H
#define FAULTLINE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <faultline/source.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_WIRE_MAGIC 0x57544c46u /* "FLTW" */
#define FL_WIRE_VERSION 1
#define FL_WIRE_HDR_SIZE 32
#define FL_WIRE_MAX_CONTROL (16u << 20) /* a control message, bytes */
#define FL_WIRE_MAX_PAGES (4u << 20)	 /* page bytes in one frame */
#define FL_WIRE_MAX_REGIONS 4096
#define FL_WIRE_STATS_MAX 64 /* values in one STATS message */

enum fl_wire_kind {
	FL_WIRE_CONTROL = 1,
	FL_WIRE_PAGES = 2,
	FL_WIRE_ZERO = 3,
};

#define FL_WIRE_URGENT 0x1 /* the reply to a page request */

/* ---------------------------------------------------- control messages */

enum fl_ctl_type {
	FL_CTL_HELLO = 1, /* both ways, first: version, role, capabilities */
	FL_CTL_REGIONS,	  /* source -> dest: the region table */
	FL_CTL_ROUND,	  /* source -> dest: a pre-copy round begins/ends */
	FL_CTL_OWED,	  /* source -> dest: pages still owed (bitmap) */
	FL_CTL_RESUME,	  /* source -> dest: switch-over done, start the program */
	FL_CTL_REQUEST,	  /* dest -> source (urgent): send these pages now */
	FL_CTL_DONE,	  /* dest -> source: every page is present */
	FL_CTL_STATS,	  /* either way: counters for the final report */
	FL_CTL_ERROR,	  /* either way: why the sender gives up */
	FL_CTL_PING,	  /* either way, control connection: still here */
	FL_CTL_REJOIN,	  /* dest -> source after a break: where it stands */
	FL_CTL_HAVE,	  /* dest -> source after REJOIN: pages held (bitmap) */
};

/* REJOIN's phase: the destination had not been resumed yet (pre-copy, or
 * the switch-over cut short), or it runs the program (post-copy). */
#define FL_REJOIN_PRECOPY 1
#define FL_REJOIN_POSTCOPY 2

/* Heartbeat: each side sends FL_CTL_PING on the control connection every
 * FL_WIRE_PING_S, and gives the other up after FL_WIRE_SILENCE_S without
 * a frame there (a peer alive but silent, or a path that drops everything
 * without a reset, is noticed in seconds, not after TCP's timeouts). */
#define FL_WIRE_PING_S 1
#define FL_WIRE_SILENCE_S 6

#define FL_ROLE_SOURCE 1
#define FL_ROLE_DEST 2
#define FL_CONN_CONTROL 1
#define FL_CONN_URGENT 2

struct fl_ctl {
	enum fl_ctl_type type;
	union {
		struct {
			uint32_t version;
			uint32_t role;	       /* FL_ROLE_* */
			uint32_t conn;	       /* FL_CONN_*: which connection this is */
			uint64_t capabilities; /* reserved, 0 */
			uint8_t session[16];   /* ties the two connections together */
			bool rejoin;	       /* source: back to this session */
		} hello;
		struct {
			struct fl_region *regions; /* owned by the message */
			size_t n;
		} regions;
		struct {
			uint32_t round;	     /* 1, 2, ... */
			uint64_t dirty_pages; /* pages this round sends */
			bool end;	     /* false: begins, true: all sent */
		} round;
		struct { /* OWED and HAVE */
			uint32_t region;
			uint64_t first_page;	/* bit i is page first_page + i */
			uint64_t npages;
			uint8_t *bitmap;	/* (npages + 7) / 8 bytes, owned */
		} owed;
		struct {
			uint32_t phase; /* FL_REJOIN_* */
			uint32_t round; /* pre-copy: the last round begun, 0 none */
		} rejoin;
		struct {
			void *blob;  /* opaque device state for a VMM, owned; may be NULL */
			size_t len;
		} resume;
		struct {
			uint32_t region;
			uint64_t offset, len; /* bytes, page aligned */
		} request;
		struct {
			uint64_t values[FL_WIRE_STATS_MAX]; /* meaning agreed by the callers */
			size_t n;
		} stats;
		struct {
			int32_t code; /* -errno */
			char message[256];
		} error;
	};
};

/* Free what a received message owns (regions, bitmap, blob). */
void fl_ctl_free(struct fl_ctl *m);

/* Encode / decode a control payload (the bytes after the header).
 * Decoding checks every field: counts, sizes, region geometry. */
int fl_ctl_encode(const struct fl_ctl *m, uint8_t **out, size_t *len);
int fl_ctl_decode(const uint8_t *buf, size_t len, struct fl_ctl *m, char *err,
		  size_t errlen);

/* ------------------------------------------------------------- frames */

struct fl_wire_hdr {
	enum fl_wire_kind kind;
	unsigned flags;
	uint32_t region;
	uint32_t length;
	uint64_t offset;
	uint64_t count;
};

void fl_wire_hdr_pack(const struct fl_wire_hdr *h, uint8_t out[FL_WIRE_HDR_SIZE]);
/* Checks magic, kind, reserved bits and the size limits; with a region
 * table (regions != NULL) also that the region exists and that the
 * page-aligned range lies inside it. */
int fl_wire_hdr_unpack(const uint8_t in[FL_WIRE_HDR_SIZE], struct fl_wire_hdr *h,
		       const struct fl_region *regions, size_t nregions, char *err,
		       size_t errlen);

/* -------------------------------------------------------- connections */

/* A certificate's role, as a subjectAltName URI: FL_CERT_ROLE_URI "source". */
#define FL_CERT_ROLE_URI "faultline:role:"

struct fl_tls_config {
	const char *cert; /* our certificate (PEM) */
	const char *key;  /* its private key (PEM) */
	const char *ca;	  /* the CA that must have signed the peer's */
	bool plain;	  /* no TLS: only with an explicit flag */
	bool force_plain; /* allow plain TCP to a non-loopback peer */
	/* What the peer's certificate must say, beyond chaining to ca: its
	 * role ("source" or "dest", as `faultline certs` writes it; NULL: the
	 * caller's side sets it: a receiver wants a source, a source a dest)
	 * and its name (a DNS name or an IP address in its subjectAltName;
	 * NULL: any host of the deployment). */
	const char *peer_role;
	const char *peer_name;
};

struct fl_conn;

/* Connect to "host:port" (IPv4, IPv6 in brackets, or a name). With TLS,
 * TLS 1.3 only, the peer's certificate must chain to cfg->ca, and ours is
 * presented. Plain TCP is refused unless cfg->plain, and to a non-loopback
 * address unless cfg->force_plain. */
int fl_conn_connect(struct fl_conn **out, const char *host_port,
		    const struct fl_tls_config *cfg, char *err, size_t errlen);

/* Listen on "addr:port" ("0.0.0.0:7700", "[::]:7700", "127.0.0.1:0").
 * Returns the listening fd; *port gets the bound port (may be NULL). */
int fl_conn_listen(const char *addr_port, int *port, char *err, size_t errlen);

/* Accept one connection and do the TLS handshake (a peer without a
 * certificate signed by cfg->ca is refused). */
int fl_conn_accept(struct fl_conn **out, int listen_fd,
		   const struct fl_tls_config *cfg, char *err, size_t errlen);

/* Read cfg's certificate, key and CA now (server: for accepting) and keep
 * them for the process's later connections with the same files: for a
 * process about to lose the right to read them. Nothing for plain TCP.
 * 0, or -EINVAL with err naming the file that cannot be used. */
int fl_conn_tls_load(const struct fl_tls_config *cfg, bool server, char *err,
		     size_t errlen);

/* Sending: each call writes one whole frame (thread-safe per connection). */
int fl_conn_send_ctl(struct fl_conn *c, const struct fl_ctl *m);
int fl_conn_send_pages(struct fl_conn *c, uint32_t region, uint64_t offset,
		       const void *data, uint32_t len, unsigned flags);
int fl_conn_send_zero(struct fl_conn *c, uint32_t region, uint64_t offset,
		      uint64_t len, unsigned flags);

/* Where the payload of a PAGES frame goes: return a buffer of `len` bytes
 * for (region, offset), or NULL to have it read and dropped. */
typedef void *(*fl_conn_page_buf_fn)(void *arg, uint32_t region,
				     uint64_t offset, uint32_t len);

/* Set the region table frames are checked against (copied). */
int fl_conn_set_regions(struct fl_conn *c, const struct fl_region *r, size_t n);

/*
 * Receive one frame (blocking). CONTROL: *ctl is filled (fl_ctl_free it).
 * PAGES: the payload lands in the buffer buf_fn returned. ZERO: only the
 * header. Returns 0, -ECONNRESET at a clean end of stream, -EPROTO for a
 * malformed frame (err says what), or another -errno.
 */
int fl_conn_recv(struct fl_conn *c, struct fl_wire_hdr *h, struct fl_ctl *ctl,
		 fl_conn_page_buf_fn buf_fn, void *arg, char *err, size_t errlen);

int fl_conn_fd(const struct fl_conn *c);
/* The peer's address, "host:port", and whether TLS is on. */
const char *fl_conn_peer(const struct fl_conn *c);
bool fl_conn_is_tls(const struct fl_conn *c);
/* Shut both directions down (wakes a thread blocked in recv). */
void fl_conn_shutdown(struct fl_conn *c);

/* Reads and writes on c that wait past `seconds` from now fail with
 * -ETIMEDOUT (0: no deadline, the default). For the set-up exchanges, so a
 * peer that connects and says nothing costs a bounded wait. */
void fl_conn_set_deadline(struct fl_conn *c, double seconds);
/* Reads on c fail with -ETIMEDOUT once nothing has arrived for `seconds`
 * (0: never, the default): for a connection whose peer sends a heartbeat. */
void fl_conn_set_idle_timeout(struct fl_conn *c, double seconds);
void fl_conn_close(struct fl_conn *c);

/*
 * Make a test CA and one certificate and key per host in directory dir
 * (created if missing): ca.crt, ca.key, HOST.crt, HOST.key (keys 0600),
 * valid for `days` days, usable for both TLS client and server auth.
 * Each names its host (subjectAltName DNS or IP) and its roles
 * (subjectAltName URIs faultline:role:source, faultline:role:dest): a
 * host given as "NAME/source" or "NAME/dest" gets that role only, hosts
 * named "source" and "dest" theirs, any other both (it is the source of
 * one migration and the destination of the next). What `faultline certs`
 * runs.
 */
int fl_certs_make(const char *dir, const char *const *hosts, size_t n, int days,
		  char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_WIRE_H */
