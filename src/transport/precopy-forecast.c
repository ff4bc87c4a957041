// SPDX-License-Identifier: MIT
/*
 * The forecast of a pre-copy round's dirty set (see precopy-forecast.h).
 *
 * Two samples fix the fit: the newest (t2, d2) and the one nearest half
 * its time (t1, d1). Their ratio R = d2 / d1 lies between 1 (the working
 * set is all written already) and t2 / t1 (pages are written at a steady
 * rate and none twice yet); in between, the tau with
 * (1 - exp(-t2/tau)) / (1 - exp(-t1/tau)) = R is found by bisection, and
 * H = d2 / (1 - exp(-t2/tau)).
 */
#include <math.h>

#include "precopy-forecast.h"

void fl__forecast_start(struct fl__forecast *f, size_t all, double every)
{
	f->all = (double)all;
	f->every = every;
	f->due = every;
	f->n = 0;
}

bool fl__forecast_due(const struct fl__forecast *f, double t)
{
	return t >= f->due;
}

void fl__forecast_add(struct fl__forecast *f, double t, size_t dirtied)
{
	if (f->n == FL_FORECAST_SAMPLES) {
		/* Full: keep every other sample, sample half as often. */
		for (size_t i = 1; i < f->n / 2; i++) {
			f->t[i] = f->t[2 * i + 1];
			f->d[i] = f->d[2 * i + 1];
		}
		f->n /= 2;
		f->every *= 2;
	}
	f->t[f->n] = t;
	f->d[f->n] = (double)dirtied;
	f->n++;
	/* A sample costs a collect (a scan that write-protects again what
	 * was written): the longer the round, the sparser the samples. */
	f->due = t + (f->every > t / 8 ? f->every : t / 8);
}

/* (1 - exp(-t2/tau)) / (1 - exp(-t1/tau)): from 1 (tau -> 0) up to t2/t1
 * (tau -> infinity), rising with tau. */
static double ratio(double t1, double t2, double tau)
{
	return -expm1(-t2 / tau) / -expm1(-t1 / tau);
}

double fl__forecast_dirtied(const struct fl__forecast *f, double t_end)
{
	double t1, d1, t2, d2, r, lo, hi, tau, h, d;
	size_t k = 0;

	if (f->n < 2)
		return -1;
	t2 = f->t[f->n - 1];
	d2 = f->d[f->n - 1];
	if (d2 <= 0)
		return 0; /* nothing written yet */
	for (size_t i = 1; i + 1 < f->n; i++)
		if (fabs(f->t[i] - t2 / 2) < fabs(f->t[k] - t2 / 2))
			k = i;
	t1 = f->t[k];
	d1 = f->d[k];
	if (t1 <= 0 || t1 >= t2)
		return -1;
	if (d1 <= 0) /* writing began after t1: steady from there on */
		d = d2 * t_end / t2;
	else if ((r = d2 / d1) >= t2 / t1)
		d = d2 * t_end / t2; /* steady, or speeding up */
	else if (r <= 1.0)
		d = d2; /* the working set is written: it stays so */
	else {
		lo = t2 * 1e-4;
		hi = t2 * 1e4;
		for (int i = 0; i < 100; i++) {
			tau = sqrt(lo * hi);
			if (ratio(t1, t2, tau) < r)
				lo = tau;
			else
				hi = tau;
		}
		tau = sqrt(lo * hi);
		h = d2 / -expm1(-t2 / tau);
		d = h * -expm1(-t_end / tau);
	}
	if (d < d2)
		d = d2;
	return d < f->all ? d : f->all;
}
