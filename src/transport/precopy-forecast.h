/* SPDX-License-Identifier: MIT */
/*
 * Whether a pre-copy round is worth finishing, judged while it runs.
 *
 * The source samples, a few times a second, how many pages the program
 * has written since the round began, and fits the samples to what a
 * program writing at random over a working set of H pages leaves dirty:
 * D(t) = H (1 - exp(-t / tau)). A program that writes everywhere grows D
 * about linearly until it nears all of memory; one with a small hot set
 * saturates at H. The fit predicts how many pages will be dirty again
 * when the round ends, which is what the next round (or post-copy) must
 * send anyway.
 */
#ifndef FL_TRANSPORT_PRECOPY_FORECAST_H
#define FL_TRANSPORT_PRECOPY_FORECAST_H

#include <stdbool.h>
#include <stddef.h>

#define FL_FORECAST_SAMPLES 64

struct fl__forecast {
	double all;	/* pages in every region: D never exceeds it */
	double every;	/* seconds between samples (doubles when full) */
	double due;	/* when the next sample is due, from the round's start */
	size_t n;
	double t[FL_FORECAST_SAMPLES], d[FL_FORECAST_SAMPLES];
};

/* A round begins; samples every `every` seconds over `all` pages (an
 * eighth of the time since the round began, once that is longer). */
void fl__forecast_start(struct fl__forecast *f, size_t all, double every);

/* Whether a sample is due t seconds into the round. */
bool fl__forecast_due(const struct fl__forecast *f, double t);

/* t seconds into the round, `dirtied` distinct pages have been written
 * since it began. */
void fl__forecast_add(struct fl__forecast *f, double t, size_t dirtied);

/* Distinct pages written between the round's start and t_end, forecast
 * from the samples (at most `all`); negative without two samples that
 * say anything (the first two, or none written yet: then 0). */
double fl__forecast_dirtied(const struct fl__forecast *f, double t_end);

#endif
