// SPDX-License-Identifier: MIT
/*
 * TLS for the wire: TLS 1.3 only, and mutual authentication. Both ends
 * present a certificate and require the other's to chain to the one CA
 * the deployment trusts (cfg->ca). Host names are not checked: that CA is
 * private to the deployment (`faultline certs` makes one) and signs only
 * faultline's own hosts, so "signed by our CA" is the identity that
 * matters, and migrations often address a peer by an IP that no
 * certificate names.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>

#include "util/clock.h"
#include "wire-internal.h"

/* ------------------------------------------------ a socket BIO, no SIGPIPE */

/* OpenSSL's own socket BIO writes with write(2): a peer that went away
 * would kill the process with SIGPIPE. This one uses send(MSG_NOSIGNAL),
 * and gathers records until a flush: OpenSSL hands over one 16 KiB record
 * at a time, and a frame of 1 MiB was 65 send()s (its header a record of
 * its own); now 5. conn.c flushes at the end of every frame, OpenSSL after
 * each handshake flight and alert. */
#define BIO_WBUF (256u << 10)

struct sockbio {
	int fd;
	size_t off, len; /* buf[off, len) waits to be sent */
	char buf[];
};

/* Send what waits: 1 when all went, 0 when the socket is full (retry),
 * -1 on an error (errno). */
static int sockbio_drain(struct sockbio *s)
{
	while (s->off < s->len) {
		ssize_t n = send(s->fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
		s->off += (size_t)n;
	}
	s->off = s->len = 0;
	return 1;
}

static int bio_write(BIO *b, const char *data, size_t len, size_t *done)
{
	struct sockbio *s = BIO_get_data(b);
	ssize_t n;
	int r;

	BIO_clear_retry_flags(b);
	if (s->len + len > BIO_WBUF && (r = sockbio_drain(s)) <= 0) {
		if (r == 0)
			BIO_set_retry_write(b);
		return 0;
	}
	if (len < BIO_WBUF) {
		memcpy(s->buf + s->len, data, len);
		s->len += len;
		*done = len;
		return 1;
	}
	n = send(s->fd, data, len, MSG_NOSIGNAL); /* nothing waits before it */
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_write(b);
		return 0;
	}
	*done = (size_t)n;
	return 1;
}

static int bio_read(BIO *b, char *data, size_t len, size_t *done)
{
	struct sockbio *s = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = recv(s->fd, data, len, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			BIO_set_retry_read(b);
		return 0;
	}
	if (n == 0)
		return 0; /* end of stream */
	*done = (size_t)n;
	return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct sockbio *s = BIO_get_data(b);
	int r;

	(void)num;
	if (!s)
		return 0;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		BIO_clear_retry_flags(b);
		r = sockbio_drain(s);
		if (r == 0)
			BIO_set_retry_write(b);
		return r > 0;
	case BIO_CTRL_WPENDING:
		return (long)(s->len - s->off);
	case BIO_C_GET_FD:
		if (ptr)
			*(int *)ptr = s->fd;
		return s->fd;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "faultline socket");

	if (!m)
		return;
	BIO_meth_set_write_ex(m, bio_write);
	BIO_meth_set_read_ex(m, bio_read);
	BIO_meth_set_ctrl(m, bio_ctrl);
	BIO_meth_set_create(m, bio_create);
	BIO_meth_set_destroy(m, bio_destroy);
	bio_meth = m;
}

static BIO_METHOD *bio_method(void)
{
	pthread_once(&bio_once, bio_init);
	return bio_meth;
}

/* ------------------------------------------------------------- errors */

void fl__wire_tls_reason(SSL *ssl, char *buf, size_t len)
{
	unsigned long e;
	size_t at = 0;
	long v;

	if (!len)
		return;
	buf[0] = '\0';
	while ((e = ERR_get_error()) && at + 1 < len) {
		const char *r = ERR_reason_error_string(e);

		at += snprintf(buf + at, len - at, "%s%s", at ? "; " : "", r ? r : "unknown OpenSSL error");
	}
	if (ssl && at + 1 < len && (v = SSL_get_verify_result(ssl)) != X509_V_OK)
		at += snprintf(buf + at, len - at, "%scertificate verification: %s",
			       at ? "; " : "", X509_verify_cert_error_string(v));
	if (!at)
		snprintf(buf, len, "%s", errno ? strerror(errno) : "the connection was closed");
}

/* ------------------------------------------------------------ sessions */

/*
 * TLS contexts, one per (certificate, key, CA, side), made on first use
 * and kept: the files are read once, so a process that loads them before
 * it gives up the right to read them (fl_conn_tls_load) can still accept
 * and connect afterwards, and every connection does not parse PEM again.
 */
#define CTX_CACHE 8

static struct ctx_entry {
	char *cert, *key, *ca;
	bool server;
	SSL_CTX *ctx;
} ctx_cache[CTX_CACHE];
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static SSL_CTX *cached(const struct fl_tls_config *cfg, bool server)
{
	SSL_CTX *ctx = NULL;

	pthread_mutex_lock(&ctx_lock);
	for (size_t i = 0; i < CTX_CACHE && !ctx; i++) {
		struct ctx_entry *e = &ctx_cache[i];

		if (e->ctx && e->server == server && same(e->cert, cfg->cert) &&
		    same(e->key, cfg->key) && same(e->ca, cfg->ca) && SSL_CTX_up_ref(e->ctx))
			ctx = e->ctx;
	}
	pthread_mutex_unlock(&ctx_lock);
	return ctx;
}

/* Keep ctx for later (a reference of the cache's own); when the cache is
 * full, the context is simply not kept. */
static void cache(const struct fl_tls_config *cfg, bool server, SSL_CTX *ctx)
{
	pthread_mutex_lock(&ctx_lock);
	for (size_t i = 0; i < CTX_CACHE; i++) {
		struct ctx_entry *e = &ctx_cache[i];

		if (e->ctx)
			continue;
		e->cert = strdup(cfg->cert);
		e->key = strdup(cfg->key);
		e->ca = strdup(cfg->ca);
		if (!e->cert || !e->key || !e->ca || !SSL_CTX_up_ref(ctx)) {
			free(e->cert);
			free(e->key);
			free(e->ca);
			*e = (struct ctx_entry){ 0 };
			break;
		}
		e->server = server;
		e->ctx = ctx;
		break;
	}
	pthread_mutex_unlock(&ctx_lock);
}

/* The context for cfg's files and side (a reference the caller frees),
 * or NULL with err naming the file that could not be used. */
static SSL_CTX *context(const struct fl_tls_config *cfg, bool server, const char *peer,
			char *err, size_t errlen)
{
	SSL_CTX *ctx;
	char why[512];
	const char *what = "";

	if (!cfg->cert || !cfg->key || !cfg->ca) {
		fl__wire_err(err, errlen, "%s: TLS needs a certificate, its key and the CA (make them with `faultline certs`), or plain TCP asked for explicitly",
			 peer);
		return NULL;
	}
	if ((ctx = cached(cfg, server)))
		return ctx;
	ERR_clear_error();
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		what = "creating the TLS context";
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* An end of stream without close_notify is reported as an end of
	 * stream; the frame layer knows whether it cut a frame short. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* Read ahead into a 256 KiB buffer: one recv() brings ~16 records
	 * instead of two recv()s per record (header, then body). Nothing
	 * polls the socket while records wait in the buffer: conn.c waits on
	 * the fd only after SSL_read asked for more bytes. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 256 << 10);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: one session per connection */
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
		what = "certificate ";
		goto fail_file;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
		what = "private key ";
		goto fail_file;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fl__wire_tls_reason(NULL, why, sizeof(why));
		fl__wire_err(err, errlen, "%s: the private key %s does not belong to the certificate %s (%s)",
			 peer, cfg->key, cfg->cert, why);
		goto out;
	}
	if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
		what = "CA certificate ";
		goto fail_file;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	cache(cfg, server, ctx);
	return ctx;

fail_file:
	fl__wire_tls_reason(NULL, why, sizeof(why));
	fl__wire_err(err, errlen, "%s: cannot use the %s%s: %s", peer, what,
		 !strcmp(what, "certificate ") ? cfg->cert :
		 !strcmp(what, "private key ") ? cfg->key : cfg->ca, why);
	goto out;
fail:
	fl__wire_tls_reason(NULL, why, sizeof(why));
	fl__wire_err(err, errlen, "%s: %s: %s", peer, what, why);
out:
	SSL_CTX_free(ctx);
	return NULL;
}

int fl_conn_tls_load(const struct fl_tls_config *cfg, bool server, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (cfg->plain)
		return 0;
	ctx = context(cfg, server, "TLS", err, errlen);
	if (!ctx)
		return -EINVAL;
	SSL_CTX_free(ctx);
	return 0;
}

SSL *fl__wire_tls_new(int fd, const struct fl_tls_config *cfg, bool server,
		  const char *peer, char *err, size_t errlen)
{
	SSL_CTX *ctx = context(cfg, server, peer, err, errlen);
	struct sockbio *sb;
	SSL *ssl;
	BIO *bio;
	char why[512];

	if (!ctx)
		return NULL;
	ssl = SSL_new(ctx);
	bio = bio_method() ? BIO_new(bio_method()) : NULL;
	sb = malloc(sizeof(*sb) + BIO_WBUF);
	if (!ssl || !bio || !sb) {
		free(sb);
		BIO_free(bio);
		SSL_free(ssl);
		ssl = NULL;
		fl__wire_tls_reason(NULL, why, sizeof(why));
		fl__wire_err(err, errlen, "%s: creating the TLS session: %s", peer, why);
	} else {
		sb->fd = fd;
		sb->off = sb->len = 0;
		BIO_set_data(bio, sb);
		SSL_set_bio(ssl, bio, bio);
	}
	SSL_CTX_free(ctx); /* the session holds its own reference */
	return ssl;
}

int fl__wire_tls_handshake(SSL *ssl, int fd, bool server, const char *peer,
		       int timeout_ms, char *err, size_t errlen)
{
	uint64_t t0 = fl__now_ns();
	char why[512];

	for (;;) {
		struct pollfd p = { .fd = fd };
		int r, e;
		long left;

		ERR_clear_error();
		errno = 0;
		r = server ? SSL_accept(ssl) : SSL_connect(ssl);
		if (r == 1)
			return 0;
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			p.events = POLLIN;
		else if (e == SSL_ERROR_WANT_WRITE)
			p.events = POLLOUT;
		else {
			fl__wire_tls_reason(ssl, why, sizeof(why));
			fl__wire_err(err, errlen, "%s: TLS handshake failed: %s", peer, why);
			return -ECONNREFUSED;
		}
		left = timeout_ms - (long)((fl__now_ns() - t0) / 1000000);
		if (left <= 0) {
			fl__wire_err(err, errlen, "%s: TLS handshake timed out after %d ms", peer, timeout_ms);
			return -ETIMEDOUT;
		}
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
			fl__wire_err(err, errlen, "%s: poll: %s", peer, strerror(errno));
			return -errno;
		}
	}
}

/* Does cert's subjectAltName carry URI FL_CERT_ROLE_URI role? */
static bool has_role(X509 *cert, const char *role)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	char want[64];
	bool found = false;

	snprintf(want, sizeof(want), "%s%s", FL_CERT_ROLE_URI, role);
	for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

		if (g->type == GEN_URI &&
		    (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier) == strlen(want) &&
		    !memcmp(ASN1_STRING_get0_data(g->d.uniformResourceIdentifier), want, strlen(want)))
			found = true;
	}
	GENERAL_NAMES_free(names);
	return found;
}

/* The peer's certificate, beyond its chain to the CA (checked in the
 * handshake): it must say the role we expect it to play (a destination
 * must not pull a program's memory, a source must not write into one) and,
 * if asked, the host name or address we expect. -EACCES with the reason. */
int fl__wire_tls_check_peer(SSL *ssl, const char *role, const char *name, const char *peer,
			    char *err, size_t errlen)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	unsigned char ip[16];
	int ok;

	if (!cert) {
		fl__wire_err(err, errlen, "%s: presented no certificate", peer);
		return -EACCES;
	}
	if (role && !has_role(cert, role)) {
		const char *other = !strcmp(role, "source") ? "dest" : "source";
		const char *word = !strcmp(role, "dest") ? "destination" : "source";

		fl__wire_err(err, errlen, "%s: its certificate is not a faultline %s's (%s): "
			     "refused. Make one with `faultline certs --hosts NAME/%s`", peer, word,
			     has_role(cert, other) ? (!strcmp(other, "dest") ? "it is a destination's"
									     : "it is a source's")
						   : "it names no faultline role: made by an older "
						     "`faultline certs`?", role);
		return -EACCES;
	}
	if (!name)
		return 0;
	if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
		ok = X509_check_ip_asc(cert, name, 0);
	else
		ok = X509_check_host(cert, name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL);
	if (ok != 1) {
		fl__wire_err(err, errlen, "%s: its certificate is not for %s (--peer-name): refused",
			     peer, name);
		return -EACCES;
	}
	return 0;
}
