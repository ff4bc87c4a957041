/* SPDX-License-Identifier: MIT */
/*
 * A client of CRIU's page server (`criu dump --lazy-pages --address A
 * --port P`): GET requests for dump-time addresses of one pid, pipelined on
 * one TCP connection, replies matched in order, short replies followed up,
 * CLOSE at the end (../shared/criu/README.md, "Page-server wire protocol").
 *
 * One thread reads replies; submit() writes GETs from the caller's thread.
 * Finished requests are queued for take() and announced on event_fd.
 * Anything the server sends that is not the reply expected (a wrong
 * command, address or pid, more pages than asked, a cut connection) fails
 * every request in flight with -EPROTO or -ECONNRESET and closes the
 * connection: never a byte of a malformed reply reaches a process.
 */
#ifndef FL_CRIU_PAGE_CLIENT_H
#define FL_CRIU_PAGE_CLIENT_H

#include <faultline/source.h>

struct criu_pclient;

int fl__criu_pclient_create(struct criu_pclient **out, const char *addr, int port,
			    int event_fd, char *err, size_t errlen);
/* Ask for r->len bytes of pid's memory at dump-time address vaddr; r
 * comes back through take(), result set, data valid until release(). */
int fl__criu_pclient_submit(struct criu_pclient *c, struct fl_source_req *r, int32_t pid,
			    uint64_t vaddr);
/* Withdraw r: 0 (it never comes back) or -ENOENT. */
int fl__criu_pclient_cancel(struct criu_pclient *c, struct fl_source_req *r);
/* Up to max finished requests. */
size_t fl__criu_pclient_take(struct criu_pclient *c, struct fl_source_req **out, size_t max);
void fl__criu_pclient_release(struct criu_pclient *c, struct fl_source_req *r);
/* CLOSE, wait for the status word, close the connection. */
int fl__criu_pclient_close(struct criu_pclient *c, char *err, size_t errlen);
const char *fl__criu_pclient_error(const struct criu_pclient *c);
void fl__criu_pclient_destroy(struct criu_pclient *c);

#endif
