// SPDX-License-Identifier: MIT
/*
 * The pre-copy round forecast (precopy-forecast.h), fed with what known
 * writers leave dirty: the forecast must tell a program that writes
 * everywhere (the round will not pay) from one with a small hot set (it
 * will), and say nothing before it knows.
 */
#include <math.h>
#include <stdio.h>

#include "../common/runner.h"
#include "precopy-forecast.h"

#define ALL 262144.0 /* 1 GiB of 4 KiB pages */

/* Distinct pages that w random writes a second over h pages leave dirty
 * after t seconds. */
static double saturating(double h, double w, double t)
{
	return h * -expm1(-w * t / h);
}

static void feed(struct fl__forecast *f, double h, double w, double until)
{
	fl__forecast_start(f, (size_t)ALL, 0.25);
	for (double t = 0.25; t <= until + 1e-9; t += 0.25)
		if (fl__forecast_due(f, t))
			fl__forecast_add(f, t, (size_t)saturating(h, w, t));
}

static void test_nothing_said_before_two_samples(const struct fl_case *c)
{
	struct fl__forecast f;

	(void)c;
	fl__forecast_start(&f, (size_t)ALL, 0.25);
	assert_true(fl__forecast_dirtied(&f, 10) < 0);
	assert_false(fl__forecast_due(&f, 0.1));
	assert_true(fl__forecast_due(&f, 0.25));
	fl__forecast_add(&f, 0.25, 100);
	assert_true(fl__forecast_dirtied(&f, 10) < 0);
	assert_false(fl__forecast_due(&f, 0.3));
}

static void test_an_idle_program_is_forecast_to_write_nothing(const struct fl_case *c)
{
	struct fl__forecast f;

	(void)c;
	feed(&f, ALL, 0, 2.0);
	assert_true(fl__forecast_dirtied(&f, 60) == 0);
}

static void test_writing_everywhere_is_forecast_to_dirty_most_of_memory(const struct fl_case *c)
{
	struct fl__forecast f;
	/* The README demo's two writers, measured: a round of 1 GiB at
	 * 96 MB/s lasted 11.3 s and left 233331 of its pages written again,
	 * about 51000 random writes a second. */
	double w = 51000, truth = saturating(ALL, w, 11.3), got;

	(void)c;
	feed(&f, ALL, w, 1.0);
	got = fl__forecast_dirtied(&f, 11.3);
	printf("# forecast %.0f pages, truth %.0f\n", got, truth);
	assert_true(fabs(got - truth) < 0.05 * truth);
	assert_true(got > 0.8 * ALL); /* the round would not pay */
}

static void test_a_hot_set_is_forecast_to_stay_small(const struct fl_case *c)
{
	struct fl__forecast f;
	/* 10k hot pages written 50k times a second: all dirty within a
	 * second, and never more. */
	double got;

	(void)c;
	feed(&f, 10000, 50000, 1.5);
	got = fl__forecast_dirtied(&f, 30);
	printf("# forecast %.0f pages of a 10000-page hot set\n", got);
	assert_true(got >= 9000 && got <= 10500);
}

static void test_a_working_set_being_filled_is_fitted(const struct fl_case *c)
{
	struct fl__forecast f;
	/* Half of memory, a quarter of it written after the first second:
	 * the fit finds the knee. */
	double h = ALL / 2, w = 40000, truth = saturating(h, w, 8), got;

	(void)c;
	feed(&f, h, w, 2.0);
	got = fl__forecast_dirtied(&f, 8);
	printf("# forecast %.0f pages, truth %.0f\n", got, truth);
	assert_true(fabs(got - truth) < 0.05 * truth);
	assert_true(got < ALL);
}

static void test_the_forecast_never_exceeds_memory(const struct fl_case *c)
{
	struct fl__forecast f;

	(void)c;
	feed(&f, 1e12, 1e5, 1.0); /* steady: extrapolated linearly */
	assert_true(fl__forecast_dirtied(&f, 1e6) == ALL);
}

static void test_a_long_round_samples_ever_more_sparsely(const struct fl_case *c)
{
	struct fl__forecast f;
	double h = ALL, w = 20000, truth = saturating(h, w, 60), got;

	(void)c;
	/* Every sample costs a collect: 40 s take far fewer than 160. */
	feed(&f, h, w, 40.0);
	printf("# %zu samples in 40 s\n", f.n);
	assert_true(f.n < 40);
	assert_true(f.due - f.t[f.n - 1] >= f.t[f.n - 1] / 8 - 1e-9);
	got = fl__forecast_dirtied(&f, 60);
	printf("# forecast %.0f pages, truth %.0f\n", got, truth);
	assert_true(fabs(got - truth) < 0.05 * truth);
}

static void test_a_full_table_keeps_every_other_sample(const struct fl_case *c)
{
	struct fl__forecast f;
	double h = ALL, w = 20000, truth = saturating(h, w, 60), got;

	(void)c;
	fl__forecast_start(&f, (size_t)ALL, 0.25);
	for (int i = 1; i <= 160; i++) /* whether due or not */
		fl__forecast_add(&f, i * 0.25, (size_t)saturating(h, w, i * 0.25));
	assert_true(f.n <= FL_FORECAST_SAMPLES);
	assert_true(f.every > 0.25);
	assert_true(f.t[f.n - 1] == 40.0);
	for (size_t i = 1; i < f.n; i++)
		assert_true(f.t[i] > f.t[i - 1]);
	got = fl__forecast_dirtied(&f, 60);
	printf("# forecast %.0f pages, truth %.0f, %zu samples kept\n", got, truth, f.n);
	assert_true(fabs(got - truth) < 0.05 * truth);
}

int main(int argc, char **argv)
{
	struct fl_case *cases = NULL;
	size_t n = 0;

	FL_ADD(test_nothing_said_before_two_samples);
	FL_ADD(test_an_idle_program_is_forecast_to_write_nothing);
	FL_ADD(test_writing_everywhere_is_forecast_to_dirty_most_of_memory);
	FL_ADD(test_a_hot_set_is_forecast_to_stay_small);
	FL_ADD(test_a_working_set_being_filled_is_fitted);
	FL_ADD(test_the_forecast_never_exceeds_memory);
	FL_ADD(test_a_long_round_samples_ever_more_sparsely);
	FL_ADD(test_a_full_table_keeps_every_other_sample);
	return fl_run_cases(cases, n, argc, argv);
}
