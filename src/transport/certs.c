// SPDX-License-Identifier: MIT
/*
 * A private CA for one deployment and a certificate per host, made with
 * OpenSSL's C API (what `faultline certs` runs; WIRE.md gives the same
 * recipe for the openssl command). Keys are Ed25519: small, fast, and
 * accepted by TLS 1.3. Every certificate is good for both ends of a TLS
 * connection (clientAuth + serverAuth), since a host is the source of one
 * migration and the destination of the next.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "wire-internal.h"

static void ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, len, "%s", r ? r : "unknown OpenSSL error");
	ERR_clear_error();
}

/* A host name becomes a file name: keep it to what names and addresses
 * are made of. */
static bool good_host(const char *h)
{
	if (!*h || strlen(h) > 200 || !strcmp(h, "ca") || h[0] == '.')
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_' || *p == ':'))
			return false;
	return true;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* A certificate for key, named cn, signed by issuer_key (issuer NULL:
 * self-signed, the CA). */
#define ROLE_SOURCE 1u
#define ROLE_DEST 2u

static X509 *make_cert(EVP_PKEY *key, const char *cn, unsigned roles, X509 *issuer,
		       EVP_PKEY *issuer_key, int days)
{
	X509 *x = X509_new();
	X509_NAME *name;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	char san[256];
	unsigned char ip[16];
	bool is_ca = !issuer;

	if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto fail;
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) ||
	    !X509_set_pubkey(x, key))
		goto fail;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"faultline", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, is_ca ? name : X509_get_subject_name(issuer)))
		goto fail;
	if (add_ext(x, is_ca ? x : issuer, NID_basic_constraints, is_ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE") ||
	    add_ext(x, is_ca ? x : issuer, NID_key_usage, is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature") ||
	    add_ext(x, is_ca ? x : issuer, NID_subject_key_identifier, "hash"))
		goto fail;
	if (!is_ca) {
		if (inet_pton(AF_INET, cn, ip) == 1 || inet_pton(AF_INET6, cn, ip) == 1)
			snprintf(san, sizeof(san), "IP:%s", cn);
		else
			snprintf(san, sizeof(san), "DNS:%s", cn);
		/* The roles, as URIs in the same extension: the peer checks it
		 * talks to a source (or a destination), not just to a host of
		 * the deployment. */
		if (roles & ROLE_SOURCE)
			strncat(san, ",URI:" FL_CERT_ROLE_URI "source", sizeof(san) - strlen(san) - 1);
		if (roles & ROLE_DEST)
			strncat(san, ",URI:" FL_CERT_ROLE_URI "dest", sizeof(san) - strlen(san) - 1);
		if (add_ext(x, issuer, NID_ext_key_usage, "clientAuth,serverAuth") ||
		    add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") ||
		    add_ext(x, issuer, NID_subject_alt_name, san))
			goto fail;
	}
	/* Ed25519 signs the whole message: no separate digest. */
	if (!X509_sign(x, is_ca ? key : issuer_key, NULL))
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

/* "NAME", "NAME/source" or "NAME/dest": the name into host, the roles
 * returned (0: a bad role). */
static unsigned host_roles(const char *spec, char *host, size_t len)
{
	const char *slash = strchr(spec, '/');

	if (!slash) {
		snprintf(host, len, "%s", spec);
		return !strcmp(spec, "source") ? ROLE_SOURCE :
		       !strcmp(spec, "dest") ? ROLE_DEST : ROLE_SOURCE | ROLE_DEST;
	}
	snprintf(host, len, "%.*s", (int)(slash - spec), spec);
	return !strcmp(slash + 1, "source") ? ROLE_SOURCE :
	       !strcmp(slash + 1, "dest") ? ROLE_DEST : 0;
}

static int write_pem(const char *dir, const char *name, X509 *cert, EVP_PKEY *key,
		     char *err, size_t errlen)
{
	char path[4096], why[256];
	FILE *f;
	int fd, ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	/* A key is created private (0600); a certificate is public. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
	if (fd < 0) {
		fl__wire_err(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		fl__wire_err(err, errlen, "%s: %s", path, strerror(errno));
		return -ENOMEM;
	}
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	if (fclose(f) || !ok) {
		ossl_reason(why, sizeof(why));
		fl__wire_err(err, errlen, "%s: cannot write: %s", path, ok ? strerror(errno) : why);
		return -EIO;
	}
	return 0;
}

int fl_certs_make(const char *dir, const char *const *hosts, size_t n, int days,
		  char *err, size_t errlen)
{
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *cert = NULL;
	char name[300], why[256];
	int ret = 0;

	if (days <= 0 || days > 36500) {
		fl__wire_err(err, errlen, "--days %d: must be 1 to 36500", days);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		char host[256];

		if (!host_roles(hosts[i], host, sizeof(host)) || !good_host(host)) {
			fl__wire_err(err, errlen, "host '%s': a name of letters, digits, '.', '-', '_', "
				     "':' (not 'ca'), optionally /source or /dest", hosts[i]);
			return -EINVAL;
		}
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		fl__wire_err(err, errlen, "%s: cannot create the directory: %s", dir, strerror(errno));
		return -errno;
	}
	ERR_clear_error();
	ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	ca = ca_key ? make_cert(ca_key, "faultline test CA", 0, NULL, NULL, days) : NULL;
	if (!ca) {
		ossl_reason(why, sizeof(why));
		fl__wire_err(err, errlen, "making the CA: %s", why);
		ret = -EIO;
		goto out;
	}
	ret = write_pem(dir, "ca.crt", ca, NULL, err, errlen);
	if (!ret)
		ret = write_pem(dir, "ca.key", NULL, ca_key, err, errlen);
	for (size_t i = 0; !ret && i < n; i++) {
		char host[256];
		unsigned roles = host_roles(hosts[i], host, sizeof(host));

		key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		cert = key ? make_cert(key, host, roles, ca, ca_key, days) : NULL;
		if (!cert) {
			ossl_reason(why, sizeof(why));
			fl__wire_err(err, errlen, "making the certificate of %s: %s", hosts[i], why);
			ret = -EIO;
			break;
		}
		snprintf(name, sizeof(name), "%s.crt", host);
		ret = write_pem(dir, name, cert, NULL, err, errlen);
		snprintf(name, sizeof(name), "%s.key", host);
		if (!ret)
			ret = write_pem(dir, name, NULL, key, err, errlen);
		X509_free(cert);
		EVP_PKEY_free(key);
		cert = NULL;
		key = NULL;
	}
out:
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return ret;
}
