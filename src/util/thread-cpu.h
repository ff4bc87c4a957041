/* SPDX-License-Identifier: MIT */
/*
 * CPU seconds per thread, for the reports: a thread names itself
 * (fl__thread_name, shown by top -H and in /proc); when a named thread
 * ends, its CPU seconds are kept under its name, and fl__threads_cpu()
 * lists those with the live threads'. fl__thread_cpu_s() is the calling
 * thread's own.
 */
#ifndef FL_UTIL_THREAD_CPU_H
#define FL_UTIL_THREAD_CPU_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <faultline/migrate.h> /* struct fl_thread_cpu */

/* Name the calling thread (at most 15 characters are kept), and keep its
 * CPU seconds under that name when it ends. */
void fl__thread_name(const char *name);

/* CPU seconds the calling thread has used. */
static inline double fl__thread_cpu_s(void)
{
	struct timespec t;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t))
		return 0;
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* This process's threads whose name starts with prefix ("" for all): the
 * live ones, and the named ones that ended (summed by name), most CPU
 * first; how many were written. */
size_t fl__threads_cpu(const char *prefix, struct fl_thread_cpu *out, size_t max);

/* Add cpu_s to list[] under name: to its entry, or a new one while fewer
 * than max. */
void fl__thread_cpu_add(struct fl_thread_cpu *list, size_t *n, size_t max, const char *name,
			double cpu_s);

/* Print " NAME SECONDS, ..." for the n threads; returns their sum. */
double fl__thread_cpu_print(FILE *out, const struct fl_thread_cpu *t, size_t n);

#endif
