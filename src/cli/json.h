/* SPDX-License-Identifier: MIT */
/* A minimal streaming JSON writer for the command's --json output. */
#ifndef FL_CLI_JSON_H
#define FL_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct json {
	FILE *out;
	int depth;
	bool need_comma[32];
};

void json_begin(struct json *j, FILE *out);
void json_end(struct json *j);
void json_object(struct json *j, const char *key); /* key NULL inside arrays */
void json_array(struct json *j, const char *key);
void json_close(struct json *j, char bracket);	    /* '}' or ']' */
void json_str(struct json *j, const char *key, const char *v);
void json_int(struct json *j, const char *key, int64_t v);
void json_uint(struct json *j, const char *key, uint64_t v);
void json_bool(struct json *j, const char *key, bool v);
void json_double(struct json *j, const char *key, double v);

#endif
