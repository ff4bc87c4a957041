/* SPDX-License-Identifier: MIT */
/* Inside the wire protocol: shared by the frame codec, the control codec
 * and the connections. The format is described in WIRE.md. */
#ifndef FL_WIRE_INTERNAL_H
#define FL_WIRE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <faultline/wire.h>

#define WIRE_PAGE 4096u		 /* every offset and length is a multiple */
#define WIRE_HUGE_PAGE (2u << 20) /* the other region page size */
#define WIRE_ADDR_LIMIT (1ull << 57) /* 5-level paging's user half */

#include "../util/errf.h"

/* The wire's errors: fl__errf (util/errf.h). */
#define fl__wire_err fl__errf

/* Check a REQUEST or OWED message against the receiver's region table
 * (fl_ctl_decode cannot: it does not know the table). -EPROTO if out. */
int fl__wire_ctl_check_regions(const struct fl_ctl *m, const struct fl_region *r,
			   size_t n, char *err, size_t errlen);



/* ---------------------------------------------- TLS (tls.c), for conn.c */

struct ssl_st;

/* A TLS 1.3 session on connected socket fd, mutual authentication against
 * cfg->ca, not yet handshaken. The socket is non-blocking; the BIO sends
 * with MSG_NOSIGNAL so a closed peer is EPIPE, never SIGPIPE. */
struct ssl_st *fl__wire_tls_new(int fd, const struct fl_tls_config *cfg, bool server,
			    const char *peer, char *err, size_t errlen);
/* Complete the handshake within timeout_ms. */
int fl__wire_tls_handshake(struct ssl_st *ssl, int fd, bool server, const char *peer,
		       int timeout_ms, char *err, size_t errlen);
/* Why the last SSL call on ssl failed (the thread's OpenSSL error queue,
 * and the certificate verification result), emptying the queue. */
void fl__wire_tls_reason(struct ssl_st *ssl, char *buf, size_t len);
int fl__wire_tls_check_peer(struct ssl_st *ssl, const char *role, const char *name,
			    const char *peer, char *err, size_t errlen);
#endif
