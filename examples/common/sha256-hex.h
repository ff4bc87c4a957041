/* SPDX-License-Identifier: MIT */
/* The examples compare memory on both sides of a move by its SHA-256. */
#ifndef FL_EXAMPLE_SHA256_HEX_H
#define FL_EXAMPLE_SHA256_HEX_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>

/* SHA-256 of [p, p+len) as 64 hex digits and a NUL. */
static inline void sha256_hex(const void *p, size_t len, char out[65])
{
	unsigned char d[32];
	unsigned int n = 32;

	EVP_Digest(p, len, d, &n, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

#endif
