/* SPDX-License-Identifier: MIT */
/*
 * The test runner: cmocka for assertions, one forked process per case (so
 * a case that crashes, hangs or leaves a userfaultfd behind cannot disturb
 * the next), TAP on stdout for `meson test`, and skips that say why.
 */
#ifndef FL_TEST_RUNNER_H
#define FL_TEST_RUNNER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

struct fl_case {
	char name[128];
	void (*fn)(const struct fl_case *c);
	const void *a, *b; /* the table rows this case crosses */
	unsigned timeout;  /* seconds; 0 = default (60) */
};

/* Run `n` cases, print TAP, return the exit status for main(). If argv[1]
 * is given, only cases whose name contains it run. */
int fl_run_cases(struct fl_case *cases, size_t n, int argc, char **argv);

/* Inside a case: stop here and report the case skipped, with the reason. */
void fl_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Add a case to a growing table (tests build their cross products). */
struct fl_case *fl_case_add(struct fl_case **cases, size_t *n,
			    void (*fn)(const struct fl_case *), const void *a,
			    const void *b, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* In main(), with `struct fl_case *cases` and `size_t n`: add a case
 * named after its function. */
#define FL_ADD(fn) fl_case_add(&cases, &n, fn, NULL, NULL, #fn)

/* Read an integer knob from the environment, with a default. */
long fl_env_long(const char *name, long def);

#endif
