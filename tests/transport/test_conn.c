// SPDX-License-Identifier: MIT
/* Wire connections over loopback: mutual TLS 1.3 with certificates from
 * fl_certs_make, refusals of strangers, plain TCP only where allowed,
 * malformed frames refused before a byte lands in a page buffer, and a
 * shutdown that wakes a blocked receiver. */
#include <errno.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <faultline/wire.h>

#include "runner.h"

static const struct fl_region table[] = {
	{ .start = 0x10000000, .len = 2048 * 4096, .page_size = 4096, .prot = 3, .name = "ram" },
	{ .start = 0x80000000, .len = 4 << 20, .page_size = 2 << 20, .prot = 3, .name = "huge" },
};

struct pki {
	char dir[64];
	char path[8][300];
	struct fl_tls_config source, dest, other_source, other_dest;
};

static const char *pki_file(struct pki *p, int i, const char *sub, const char *name)
{
	snprintf(p->path[i], sizeof(p->path[i]), "%s%s/%s", p->dir, sub, name);
	return p->path[i];
}

/* Two CAs, each with a "source" and a "dest" certificate. */
static void pki_make(struct pki *p)
{
	static const char *const hosts[] = { "source", "dest" };
	char err[512] = "", other[128];

	strcpy(p->dir, "/tmp/fl-conn-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	if (fl_certs_make(p->dir, hosts, 2, 1, err, sizeof(err)))
		fail_msg("certs: %s", err);
	snprintf(other, sizeof(other), "%s/other", p->dir);
	if (fl_certs_make(other, hosts, 2, 1, err, sizeof(err)))
		fail_msg("certs: %s", err);
	p->source = (struct fl_tls_config){ .cert = pki_file(p, 0, "", "source.crt"),
					    .key = pki_file(p, 1, "", "source.key"),
					    .ca = pki_file(p, 2, "", "ca.crt") };
	p->dest = (struct fl_tls_config){ .cert = pki_file(p, 3, "", "dest.crt"),
					  .key = pki_file(p, 4, "", "dest.key"), .ca = p->source.ca };
	/* Same names, another CA; they trust their own CA. */
	p->other_source = (struct fl_tls_config){ .cert = pki_file(p, 5, "/other", "source.crt"),
						  .key = pki_file(p, 6, "/other", "source.key"),
						  .ca = pki_file(p, 7, "/other", "ca.crt") };
	p->other_dest = p->other_source;
}

static void pki_rm(struct pki *p)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
	if (system(cmd))
		fail_msg("%s failed", cmd);
}

/* ------------------------------------------------------------ a pair */

struct server {
	int lfd;
	struct fl_tls_config cfg;
	struct fl_conn *c;
	int ret;
	char err[1024];
};

static void *accept_main(void *arg)
{
	struct server *s = arg;

	s->ret = fl_conn_accept(&s->c, s->lfd, &s->cfg, s->err, sizeof(s->err));
	return NULL;
}

/* Listen on loopback, accept in a thread while the client connects. */
static int pair(const struct fl_tls_config *scfg, const struct fl_tls_config *ccfg,
		struct fl_conn **sc, struct fl_conn **cc, struct server *s, char *cerr,
		size_t cerrlen)
{
	char addr[64], err[256];
	pthread_t t;
	int port, ret;

	memset(s, 0, sizeof(*s));
	s->lfd = fl_conn_listen("127.0.0.1:0", &port, err, sizeof(err));
	if (s->lfd < 0)
		fail_msg("listen: %s", err);
	s->cfg = *scfg;
	assert_int_equal(pthread_create(&t, NULL, accept_main, s), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	ret = fl_conn_connect(cc, addr, ccfg, cerr, cerrlen);
	if (ret) {
		/* The server may wait for a handshake that never comes. */
		shutdown(s->lfd, SHUT_RDWR);
	}
	pthread_join(t, NULL);
	close(s->lfd);
	*sc = s->c;
	return ret;
}

static void pair_ok(const struct fl_tls_config *scfg, const struct fl_tls_config *ccfg,
		    struct fl_conn **sc, struct fl_conn **cc)
{
	struct server s;
	char err[1024] = "";

	if (pair(scfg, ccfg, sc, cc, &s, err, sizeof(err)))
		fail_msg("connect: %s", err);
	if (s.ret)
		fail_msg("accept: %s", s.err);
}

/* ------------------------------------------------------- page buffers */

struct pagebuf {
	uint8_t *mem[2]; /* one buffer per region of the table */
	int calls;
};

static void *page_buf(void *arg, uint32_t region, uint64_t offset, uint32_t len)
{
	struct pagebuf *b = arg;

	b->calls++;
	assert_true(region < 2);
	assert_true(offset + len <= table[region].len);
	return b->mem[region] + offset;
}

static void pagebuf_init(struct pagebuf *b)
{
	b->calls = 0;
	for (int r = 0; r < 2; r++) {
		b->mem[r] = aligned_alloc(4096, table[r].len);
		memset(b->mem[r], 0xAA, table[r].len);
	}
}

static void pagebuf_free(struct pagebuf *b)
{
	free(b->mem[0]);
	free(b->mem[1]);
}

static bool untouched(const struct pagebuf *b)
{
	for (int r = 0; r < 2; r++)
		for (uint64_t i = 0; i < table[r].len; i++)
			if (b->mem[r][i] != 0xAA)
				return false;
	return true;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed + (i >> 12));
}

static void recv_ok(struct fl_conn *c, struct fl_wire_hdr *h, struct fl_ctl *m,
		    struct pagebuf *b)
{
	char err[1024] = "";

	if (fl_conn_recv(c, h, m, page_buf, b, err, sizeof(err)))
		fail_msg("recv: %s", err);
}

struct sender {
	struct fl_conn *c;
	uint32_t region;
	uint64_t offset;
	const uint8_t *data;
	uint32_t len;
	int frames, ret;
};

static void *send_main(void *arg)
{
	struct sender *s = arg;

	for (int i = 0; i < s->frames && !s->ret; i++)
		s->ret = fl_conn_send_pages(s->c, s->region, s->offset, s->data, s->len, 0);
	return NULL;
}

/* Both directions over one connection pair: control messages, pages
 * (one urgent page and a 4 MiB frame bigger than any socket buffer, sent
 * by a thread while we receive), zero ranges. */
static void exchange(struct fl_conn *a, struct fl_conn *b)
{
	struct fl_ctl m = { .type = FL_CTL_HELLO }, d;
	struct fl_wire_hdr h;
	struct pagebuf pb;
	struct sender s;
	uint8_t *data = aligned_alloc(4096, FL_WIRE_MAX_PAGES);
	pthread_t t;

	pagebuf_init(&pb);
	assert_int_equal(fl_conn_set_regions(a, table, 2), 0);
	assert_int_equal(fl_conn_set_regions(b, table, 2), 0);
	fill(data, FL_WIRE_MAX_PAGES, 7);

	m.hello.version = FL_WIRE_VERSION;
	m.hello.role = FL_ROLE_SOURCE;
	m.hello.conn = FL_CONN_CONTROL;
	memset(m.hello.session, 0x42, 16);
	assert_int_equal(fl_conn_send_ctl(a, &m), 0);
	assert_int_equal(fl_conn_send_pages(a, 0, 5 * 4096, data, 4096, FL_WIRE_URGENT), 0);
	assert_int_equal(fl_conn_send_zero(a, 1, 0, 2 << 20, 0), 0);

	recv_ok(b, &h, &d, &pb);
	assert_int_equal(h.kind, FL_WIRE_CONTROL);
	assert_int_equal(d.type, FL_CTL_HELLO);
	assert_memory_equal(d.hello.session, m.hello.session, 16);
	recv_ok(b, &h, &d, &pb);
	assert_int_equal(h.kind, FL_WIRE_PAGES);
	assert_int_equal(h.flags, FL_WIRE_URGENT);
	assert_int_equal(h.offset, 5 * 4096);
	assert_memory_equal(pb.mem[0] + 5 * 4096, data, 4096);
	assert_int_equal(pb.mem[0][4 * 4096 + 4095], 0xAA);
	assert_int_equal(pb.mem[0][6 * 4096], 0xAA);
	recv_ok(b, &h, &d, &pb);
	assert_int_equal(h.kind, FL_WIRE_ZERO);
	assert_int_equal(h.region, 1);
	assert_int_equal(h.count, 2 << 20);

	/* The other way: a request, then a big frame from a thread. */
	m = (struct fl_ctl){ .type = FL_CTL_REQUEST, .request = { 0, 8192, 4096 } };
	assert_int_equal(fl_conn_send_ctl(b, &m), 0);
	recv_ok(a, &h, &d, &pb);
	assert_int_equal(d.type, FL_CTL_REQUEST);
	assert_int_equal(h.flags, FL_WIRE_URGENT);
	assert_int_equal(d.request.offset, 8192);
	s = (struct sender){ .c = b, .region = 0, .offset = 1024 * 4096, .data = data,
			     .len = FL_WIRE_MAX_PAGES, .frames = 1 };
	assert_int_equal(pthread_create(&t, NULL, send_main, &s), 0);
	recv_ok(a, &h, &d, &pb);
	pthread_join(t, NULL);
	assert_int_equal(s.ret, 0);
	assert_int_equal(h.length, FL_WIRE_MAX_PAGES);
	assert_memory_equal(pb.mem[0] + 1024 * 4096, data, FL_WIRE_MAX_PAGES);

	/* A request beyond the table is refused by the receiver. */
	m = (struct fl_ctl){ .type = FL_CTL_REQUEST, .request = { 0, 2048 * 4096, 4096 } };
	assert_int_equal(fl_conn_send_ctl(b, &m), 0);
	{
		char err[512] = "";

		assert_int_equal(fl_conn_recv(a, &h, &d, page_buf, &pb, err, sizeof(err)), -EPROTO);
		assert_non_null(strstr(err, "request.offset"));
	}
	free(data);
	pagebuf_free(&pb);
}

static void test_tls_carries_pages_and_control_both_ways(const struct fl_case *c)
{
	struct fl_conn *sc, *cc;
	struct pki p;

	(void)c;
	pki_make(&p);
	pair_ok(&p.dest, &p.source, &sc, &cc);
	assert_true(fl_conn_is_tls(sc));
	assert_true(fl_conn_is_tls(cc));
	assert_non_null(strstr(fl_conn_peer(cc), "127.0.0.1:"));
	assert_true(fl_conn_fd(cc) >= 0);
	exchange(cc, sc);
	fl_conn_close(cc);
	fl_conn_close(sc);
	pki_rm(&p);
}

static void test_concurrent_senders_never_interleave_frames(const struct fl_case *c)
{
	struct fl_conn *sc, *cc;
	struct sender s[2];
	struct pagebuf pb;
	uint8_t *d[2];
	pthread_t t[2];
	struct pki p;

	(void)c;
	pki_make(&p);
	pair_ok(&p.dest, &p.source, &sc, &cc);
	pagebuf_init(&pb);
	for (int i = 0; i < 2; i++) {
		d[i] = aligned_alloc(4096, 64 * 4096);
		memset(d[i], 'A' + i, 64 * 4096);
		s[i] = (struct sender){ .c = cc, .region = 0, .offset = (uint64_t)i * 64 * 4096,
					.data = d[i], .len = 64 * 4096, .frames = 50 };
		assert_int_equal(pthread_create(&t[i], NULL, send_main, &s[i]), 0);
	}
	for (int f = 0; f < 100; f++) {
		struct fl_wire_hdr h;
		struct fl_ctl m;
		int who;

		recv_ok(sc, &h, &m, &pb);
		who = (int)(h.offset / (64 * 4096));
		assert_true(who == 0 || who == 1);
		for (size_t i = 0; i < 64 * 4096; i += 997)
			assert_int_equal(pb.mem[0][h.offset + i], 'A' + who);
		memset(pb.mem[0] + h.offset, 0, 64 * 4096);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(s[i].ret, 0);
		free(d[i]);
	}
	pagebuf_free(&pb);
	fl_conn_close(cc);
	fl_conn_close(sc);
	pki_rm(&p);
}

/* A connection the other side refused: the first receive fails. In TLS
 * 1.3 a client finishes its handshake before the server has checked the
 * client's certificate, so the refusal can arrive only then. */
static void assert_dead(struct fl_conn *c)
{
	struct fl_wire_hdr h;
	struct fl_ctl m;
	char err[512] = "";

	if (!c)
		return;
	assert_true(fl_conn_recv(c, &h, &m, NULL, NULL, err, sizeof(err)) < 0);
	fl_conn_close(c);
}

static void test_server_signed_by_another_ca_is_refused(const struct fl_case *c)
{
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	assert_true(pair(&p.other_dest, &p.source, &sc, &cc, &s, err, sizeof(err)) < 0);
	assert_null(cc);
	if (!strstr(err, "certificate verify failed") || !strstr(err, "127.0.0.1"))
		fail_msg("client error does not say why: %s", err);
	assert_true(s.ret < 0);
	assert_null(sc);
	pki_rm(&p);
}

/* Both certificates chain to the deployment's CA, but a destination's
 * may not play the source: the accepting side refuses it, saying so. */
static void test_a_destination_certificate_cannot_play_the_source(const struct fl_case *c)
{
	struct fl_tls_config scfg, ccfg;
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	scfg = p.dest;
	scfg.peer_role = "source";
	ccfg = p.dest; /* a destination's certificate, connecting as a source */
	pair(&scfg, &ccfg, &sc, &cc, &s, err, sizeof(err));
	assert_true(s.ret == -EACCES);
	assert_null(sc);
	if (!strstr(s.err, "not a faultline source's") || !strstr(s.err, "it is a destination's"))
		fail_msg("the refusal does not say why: %s", s.err);
	fl_conn_close(cc);
	pki_rm(&p);
}

/* And a source's may not play the destination: the connecting side
 * refuses to send memory to it. */
static void test_a_source_certificate_cannot_play_the_destination(const struct fl_case *c)
{
	struct fl_tls_config scfg, ccfg;
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	scfg = p.source; /* a source's certificate, accepting as a destination */
	ccfg = p.source;
	ccfg.peer_role = "dest";
	assert_int_equal(pair(&scfg, &ccfg, &sc, &cc, &s, err, sizeof(err)), -EACCES);
	assert_null(cc);
	if (!strstr(err, "not a faultline destination's") || !strstr(err, "it is a source's"))
		fail_msg("the refusal does not say why: %s", err);
	fl_conn_close(sc);
	pki_rm(&p);
}

/* With a peer name, the certificate must be for that host. */
static void test_peer_name_must_match_the_certificate(const struct fl_case *c)
{
	struct fl_tls_config ccfg;
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	ccfg = p.source;
	ccfg.peer_role = "dest";
	ccfg.peer_name = "dest";
	pair_ok(&p.dest, &ccfg, &sc, &cc);
	fl_conn_close(sc);
	fl_conn_close(cc);
	sc = cc = NULL;
	ccfg.peer_name = "elsewhere.example";
	assert_int_equal(pair(&p.dest, &ccfg, &sc, &cc, &s, err, sizeof(err)), -EACCES);
	if (!strstr(err, "not for elsewhere.example"))
		fail_msg("the refusal does not name the host: %s", err);
	fl_conn_close(sc);
	pki_rm(&p);
}

static void test_client_signed_by_another_ca_is_refused(const struct fl_case *c)
{
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	/* The client trusts the server's CA, the server does not trust the
	 * client's. */
	p.other_source.ca = p.source.ca;
	pair(&p.dest, &p.other_source, &sc, &cc, &s, err, sizeof(err));
	assert_true(s.ret < 0);
	assert_null(sc);
	if (!strstr(s.err, "certificate verify failed") && !strstr(s.err, "unable to get local issuer"))
		fail_msg("server error does not say why: %s", s.err);
	assert_dead(cc);
	pki_rm(&p);
}

struct raw_client {
	int port;
	const char *ca;
	const char *cert, *key; /* NULL: none presented */
	bool tls12;		/* offer TLS 1.2 only */
	int ok;
};

/* A TLS 1.3 client that trusts our CA but presents no certificate. */
static void *raw_client_main(void *arg)
{
	struct raw_client *r = arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(r->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	char b[32];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	SSL_CTX_load_verify_locations(ctx, r->ca, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (r->cert) {
		SSL_CTX_use_certificate_file(ctx, r->cert, SSL_FILETYPE_PEM);
		SSL_CTX_use_PrivateKey_file(ctx, r->key, SSL_FILETYPE_PEM);
	}
	if (r->tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) == 1)
			r->ok = SSL_read(ssl, b, sizeof(b)) > 0; /* the refusal */
		SSL_free(ssl);
	}
	close(fd);
	SSL_CTX_free(ctx);
	return NULL;
}

/* Accept the raw client r (its ca, certificate and protocol set by the
 * caller; the port here) against the destination's configuration: it is
 * refused, and the server's error contains `why`. */
static void raw_client_refused(struct raw_client *r, struct pki *p, const char *why)
{
	struct fl_conn *sc = NULL;
	char err[1024] = "";
	pthread_t t;
	int lfd = fl_conn_listen("127.0.0.1:0", &r->port, err, sizeof(err));

	assert_true(lfd >= 0);
	assert_int_equal(pthread_create(&t, NULL, raw_client_main, r), 0);
	assert_true(fl_conn_accept(&sc, lfd, &p->dest, err, sizeof(err)) < 0);
	pthread_join(t, NULL);
	assert_null(sc);
	assert_false(r->ok);
	if (!strstr(err, why))
		fail_msg("server error does not say why: %s", err);
	close(lfd);
}

static void test_client_without_certificate_is_refused(const struct fl_case *c)
{
	struct pki p;

	(void)c;
	pki_make(&p);
	raw_client_refused(&(struct raw_client){ .ca = p.source.ca }, &p, "certificate");
	pki_rm(&p);
}

/* A client that offers only TLS 1.2 (with a good certificate) is refused:
 * the wire is TLS 1.3 only. */
static void test_tls12_client_is_refused(const struct fl_case *c)
{
	struct pki p;

	(void)c;
	pki_make(&p);
	raw_client_refused(&(struct raw_client){ .ca = p.source.ca, .cert = p.source.cert,
						 .key = p.source.key, .tls12 = true },
			   &p, "protocol");
	pki_rm(&p);
}

/* A certificate signed by the right CA, with the right role, but expired:
 * made here with the CA's key, valid from 3 days ago to yesterday. */
static void make_expired(struct pki *p, const char *crt, const char *key)
{
	FILE *f = fopen(pki_file(p, 0, "", "ca.key"), "r");
	EVP_PKEY *ca_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	X509 *ca = NULL, *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	if (f)
		fclose(f);
	f = fopen(p->source.ca, "r");
	ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	assert_true(ca_key && ca && k && x);
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
	X509_gmtime_adj(X509_getm_notBefore(x), -3 * 86400L);
	X509_gmtime_adj(X509_getm_notAfter(x), -86400L);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"source", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(ca));
	X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_alt_name,
				 "DNS:source,URI:" FL_CERT_ROLE_URI "source");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	assert_true(X509_sign(x, ca_key, NULL) > 0);
	f = fopen(crt, "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(key, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(k);
	EVP_PKEY_free(ca_key);
}

static void test_expired_client_certificate_is_refused(const struct fl_case *c)
{
	struct fl_tls_config old;
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "", crt[300], key[300];
	struct pki p;

	(void)c;
	pki_make(&p);
	snprintf(crt, sizeof(crt), "%s/expired.crt", p.dir);
	snprintf(key, sizeof(key), "%s/expired.key", p.dir);
	make_expired(&p, crt, key);
	old = p.source;
	old.cert = crt;
	old.key = key;
	pair(&p.dest, &old, &sc, &cc, &s, err, sizeof(err));
	assert_true(s.ret < 0);
	assert_null(sc);
	if (!strstr(s.err, "expired"))
		fail_msg("server error does not say why: %s", s.err);
	fl_conn_close(cc);
	pki_rm(&p);
}

static void test_tls_config_without_files_is_refused_clearly(const struct fl_case *c)
{
	struct fl_tls_config cfg = { 0 };
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	cfg = p.source;
	cfg.key = "/nonexistent/source.key";
	assert_true(pair(&p.dest, &cfg, &sc, &cc, &s, err, sizeof(err)) < 0);
	if (!strstr(err, "/nonexistent/source.key"))
		fail_msg("error does not name the file: %s", err);
	fl_conn_close(sc);
	pki_rm(&p);
}

/* -------------------------------------------------------------- plain */

static void test_plain_works_on_loopback_only_when_asked(const struct fl_case *c)
{
	struct fl_tls_config plain = { .plain = true };
	struct fl_conn *sc = NULL, *cc = NULL;
	struct server s;
	char err[1024] = "";
	struct pki p;

	(void)c;
	pair_ok(&plain, &plain, &sc, &cc);
	assert_false(fl_conn_is_tls(sc));
	assert_false(fl_conn_is_tls(cc));
	exchange(cc, sc);
	fl_conn_close(cc);
	fl_conn_close(sc);

	/* A plain client meets a TLS server: no connection. */
	pki_make(&p);
	pair(&p.dest, &plain, &sc, &cc, &s, err, sizeof(err));
	assert_true(s.ret < 0);
	assert_dead(cc);
	pki_rm(&p);
}

static void test_plain_to_non_loopback_is_refused_before_connecting(const struct fl_case *c)
{
	struct fl_tls_config plain = { .plain = true };
	struct fl_conn *cc = NULL;
	struct timespec t0, t1;
	char err[1024] = "";
	int ret;

	(void)c;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Nothing answers there: a refusal after trying would take seconds. */
	assert_int_equal(fl_conn_connect(&cc, "10.255.255.1:7700", &plain, err, sizeof(err)), -EPERM);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 2);
	assert_null(cc);
	if (!strstr(err, "10.255.255.1") || !strstr(err, "loopback"))
		fail_msg("error does not say why: %s", err);
	/* Forced, it is tried (and fails or times out for want of a peer). */
	plain.force_plain = true;
	ret = fl_conn_connect(&cc, "10.255.255.1:7700", &plain, err, sizeof(err));
	assert_int_not_equal(ret, -EPERM);
	if (!ret)
		fl_conn_close(cc);
}

/* An address of this machine that is not loopback, or false. */
static bool local_address(char *buf, size_t len)
{
	struct ifaddrs *ifa, *i;
	bool found = false;

	if (getifaddrs(&ifa))
		return false;
	for (i = ifa; i && !found; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
		    (ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr) >> 24) != 127) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, buf, len);
			found = true;
		}
	freeifaddrs(ifa);
	return found;
}

static void test_plain_accept_refuses_a_non_loopback_peer(const struct fl_case *c)
{
	struct fl_tls_config plain = { .plain = true, .force_plain = false }, forced = plain;
	struct server s = { 0 };
	struct fl_conn *cc = NULL;
	char ip[64], addr[96], err[1024] = "";
	pthread_t t;
	int port;

	(void)c;
	if (!local_address(ip, sizeof(ip)))
		fl_skip("this machine has no non-loopback IPv4 address to connect from");
	s.lfd = fl_conn_listen("0.0.0.0:0", &port, err, sizeof(err));
	assert_true(s.lfd >= 0);
	s.cfg = plain;
	assert_int_equal(pthread_create(&t, NULL, accept_main, &s), 0);
	/* The client is forced; the server is not. */
	forced.force_plain = true;
	snprintf(addr, sizeof(addr), "%s:%d", ip, port);
	if (fl_conn_connect(&cc, addr, &forced, err, sizeof(err)))
		fail_msg("connect: %s", err);
	pthread_join(t, NULL);
	assert_int_equal(s.ret, -EPERM);
	if (!strstr(s.err, ip) || !strstr(s.err, "loopback"))
		fail_msg("error does not say why: %s", s.err);
	assert_dead(cc);
	close(s.lfd);
}

/* ----------------------------------------------------- malformed input */

struct evil {
	const char *name;
	struct fl_wire_hdr h;
	int magic_off; /* 1: break the magic */
	size_t payload; /* bytes actually sent after the header */
	const char *says;
};

static const struct evil evils[] = {
	{ "garbage", { 0 }, 1, 100, "magic" },
	{ "oversized length", { FL_WIRE_PAGES, 0, 0, FL_WIRE_MAX_PAGES + 4096, 0, FL_WIRE_MAX_PAGES + 4096 }, 0, 8192, "length" },
	{ "region out of range", { FL_WIRE_PAGES, 0, 5, 4096, 0, 4096 }, 0, 4096, "region 5" },
	{ "beyond the region", { FL_WIRE_PAGES, 0, 0, 8192, 2047 * 4096, 8192 }, 0, 8192, "beyond the end" },
	{ "truncated header", { FL_WIRE_PAGES, 0, 0, 4096, 0, 4096 }, 0, 0, "frame header truncated" },
	{ "truncated control payload", { FL_WIRE_CONTROL, 0, 0, 1000, 0, 0 }, 0, 10, "control payload truncated" },
	{ "bad protobuf", { FL_WIRE_CONTROL, 0, 0, 8, 0, 0 }, 0, 8, "not a protobuf" },
};

static void test_malformed_frame_fails_recv_and_writes_no_page(const struct fl_case *c)
{
	const struct evil *e = c->a;
	struct fl_tls_config plain = { .plain = true };
	struct fl_conn *sc, *cc;
	struct fl_wire_hdr h;
	struct fl_ctl m;
	struct pagebuf pb;
	uint8_t frame[FL_WIRE_HDR_SIZE + 8192];
	char err[1024] = "";
	size_t len;

	pair_ok(&plain, &plain, &sc, &cc);
	assert_int_equal(fl_conn_set_regions(sc, table, 2), 0);
	pagebuf_init(&pb);
	memset(frame, 0xff, sizeof(frame));
	fl_wire_hdr_pack(&e->h, frame);
	if (e->magic_off)
		memcpy(frame, "GET / HTTP/1.1\r\n", 16);
	len = FL_WIRE_HDR_SIZE + e->payload;
	if (!strcmp(e->name, "truncated header"))
		len = 20;
	assert_int_equal(send(fl_conn_fd(cc), frame, len, MSG_NOSIGNAL), (ssize_t)len);
	shutdown(fl_conn_fd(cc), SHUT_WR); /* the stream ends there */
	assert_int_equal(fl_conn_recv(sc, &h, &m, page_buf, &pb, err, sizeof(err)), -EPROTO);
	if (!strstr(err, e->says) || !strstr(err, "127.0.0.1"))
		fail_msg("%s: error '%s' does not name '%s' and the peer", e->name, err, e->says);
	assert_int_equal(pb.calls, 0);
	assert_true(untouched(&pb));
	pagebuf_free(&pb);
	fl_conn_close(cc);
	fl_conn_close(sc);
}

static void test_truncated_pages_payload_fails_recv(const struct fl_case *c)
{
	struct fl_tls_config plain = { .plain = true };
	struct fl_wire_hdr h = { FL_WIRE_PAGES, 0, 0, 8192, 0, 8192 };
	struct fl_conn *sc, *cc;
	struct fl_ctl m;
	struct pagebuf pb;
	uint8_t frame[FL_WIRE_HDR_SIZE + 4096];
	char err[1024] = "";

	(void)c;
	pair_ok(&plain, &plain, &sc, &cc);
	pagebuf_init(&pb);
	fl_wire_hdr_pack(&h, frame);
	memset(frame + FL_WIRE_HDR_SIZE, 1, 4096);
	assert_int_equal(send(fl_conn_fd(cc), frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
	fl_conn_close(cc);
	assert_int_equal(fl_conn_recv(sc, &h, &m, page_buf, &pb, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "page payload truncated: the stream ended after 4096 of 8192"));
	/* Then the clean end of the stream. */
	pagebuf_free(&pb);
	fl_conn_close(sc);
}

static void test_clean_end_of_stream_is_econnreset(const struct fl_case *c)
{
	struct fl_conn *sc, *cc;
	struct fl_wire_hdr h;
	struct fl_ctl m;
	char err[512] = "";
	struct pki p;

	(void)c;
	pki_make(&p);
	pair_ok(&p.dest, &p.source, &sc, &cc);
	fl_conn_close(cc);
	assert_int_equal(fl_conn_recv(sc, &h, &m, NULL, NULL, err, sizeof(err)), -ECONNRESET);
	assert_non_null(strstr(err, "closed"));
	fl_conn_close(sc);
	pki_rm(&p);
}

/* ------------------------------------------------------------ shutdown */

struct blocked {
	struct fl_conn *c;
	int ret;
	char err[512];
};

static void *recv_main(void *arg)
{
	struct blocked *b = arg;
	struct fl_wire_hdr h;
	struct fl_ctl m;

	b->ret = fl_conn_recv(b->c, &h, &m, NULL, NULL, b->err, sizeof(b->err));
	return NULL;
}

static void test_shutdown_wakes_a_blocked_recv(const struct fl_case *c)
{
	struct fl_tls_config plain = { .plain = true };
	const struct fl_tls_config *cfgs[2];
	struct pki p;

	(void)c;
	pki_make(&p);
	cfgs[0] = &plain;
	for (int tls = 0; tls < 2; tls++) {
		struct fl_conn *sc, *cc;
		struct blocked b = { 0 };
		pthread_t t;

		pair_ok(tls ? &p.dest : cfgs[0], tls ? &p.source : cfgs[0], &sc, &cc);
		b.c = sc;
		assert_int_equal(pthread_create(&t, NULL, recv_main, &b), 0);
		usleep(100 * 1000);
		fl_conn_shutdown(sc);
		pthread_join(t, NULL);
		assert_int_equal(b.ret, -ECONNRESET);
		assert_non_null(strstr(b.err, "shut down"));
		/* Sending on it now fails, without SIGPIPE. */
		assert_true(fl_conn_send_zero(sc, 0, 0, 4096, 0) < 0);
		fl_conn_close(sc);
		fl_conn_close(cc);
	}
	pki_rm(&p);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_tls_carries_pages_and_control_both_ways);
	FL_ADD(test_concurrent_senders_never_interleave_frames);
	FL_ADD(test_server_signed_by_another_ca_is_refused);
	FL_ADD(test_client_signed_by_another_ca_is_refused);
	FL_ADD(test_a_destination_certificate_cannot_play_the_source);
	FL_ADD(test_a_source_certificate_cannot_play_the_destination);
	FL_ADD(test_peer_name_must_match_the_certificate);
	FL_ADD(test_tls12_client_is_refused);
	FL_ADD(test_expired_client_certificate_is_refused);
	FL_ADD(test_client_without_certificate_is_refused);
	FL_ADD(test_tls_config_without_files_is_refused_clearly);
	FL_ADD(test_plain_works_on_loopback_only_when_asked);
	FL_ADD(test_plain_to_non_loopback_is_refused_before_connecting);
	FL_ADD(test_plain_accept_refuses_a_non_loopback_peer);
	for (size_t i = 0; i < sizeof(evils) / sizeof(evils[0]); i++)
		fl_case_add(&cases, &n, test_malformed_frame_fails_recv_and_writes_no_page,
			    &evils[i], NULL, "test_malformed_frame_fails_recv: %s", evils[i].name);
	FL_ADD(test_truncated_pages_payload_fails_recv);
	FL_ADD(test_clean_end_of_stream_is_econnreset);
	FL_ADD(test_shutdown_wakes_a_blocked_recv);
	return fl_run_cases(cases, n, argc, argv);
}
