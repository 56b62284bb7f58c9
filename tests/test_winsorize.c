/* Winsorising's quantiles (src/reg/winsorize.c) against the exact order
 * statistics of sorted data: within one histogram bin ((max - min) / 2^16)
 * on uniform data, on normal data with bright outliers, with NaN voxels; no
 * change for {0, 1} or a constant image.  Then the normalised level images
 * of reg_pair_init: clamp((x - q_lo) / (q_hi - q_lo), 0, 1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "reg/reg_internal.h"
#include "testutil.h"

static int cmp_float(const void *a, const void *b)
{
	const float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* The exact values of ranks floor(q0 (m - 1)) and ceil(q1 (m - 1)) of the
 * m numbers among x. */
static void exact_quantiles(const float *x, int64_t n, const double q[2], double out[2])
{
	float *s = malloc((size_t)n * sizeof(float));
	int64_t m = 0;
	for (int64_t i = 0; i < n; i++)
		if (!isnan(x[i]))
			s[m++] = x[i];
	qsort(s, (size_t)m, sizeof(float), cmp_float);
	out[0] = s[(int64_t)floor(q[0] * (double)(m - 1))];
	out[1] = s[(int64_t)ceil(q[1] * (double)(m - 1))];
	free(s);
}

static void check_case(const char *what, const float *x, int64_t n, const double q[2])
{
	ffdp_error err = {0};
	reg_pair p;
	memset(&p, 0, sizeof(p));
	double lo = INFINITY, hi = -INFINITY, want[2];
	for (int64_t i = 0; i < n; i++)
		if (!isnan(x[i]))
			lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
	const double bin = (hi - lo) / 65536.0, min = lo, max = hi;
	exact_quantiles(x, n, q, want);
	CHECK_OK(reg_winsor_range(&p, x, n, q, &lo, &hi, &err), &err, "%s: quantiles run", what);
	CHECK(fabs(lo - want[0]) <= bin && fabs(hi - want[1]) <= bin && lo >= min && hi <= max,
	      "%s: [%.6g, %.6g] within a bin (%.2g) of the exact [%.6g, %.6g]", what, lo, hi, bin, want[0], want[1]);
}

static void check_quantiles(void)
{
	tu_rng r = tu_rng_make(31);
	const int64_t n = 23 * 19 * 17;
	float *x = malloc((size_t)n * sizeof(float));
	const double q[2] = {0.005, 0.995}, q2[2] = {0.02, 0.9};
	tu_fill_uniform(&r, x, n, -40.0, 260.0);
	check_case("uniform", x, n, q);
	check_case("uniform, 2 % and 90 %", x, n, q2);
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(100.0 + 15.0 * tu_normal(&r));
	for (int k = 0; k < 30; k++) /* bright outliers: the upper quantile stays in the tissue */
		x[(int64_t)(tu_uniform(&r) * (double)n)] = 5000.0f;
	check_case("normal with outliers", x, n, q);
	x[7] = NAN, x[n - 2] = NAN;
	check_case("normal with outliers and NaN", x, n, q);

	/* {0, 1}: the range as it came; a constant image: unchanged */
	ffdp_error err = {0};
	reg_pair p;
	memset(&p, 0, sizeof(p));
	const double none[2] = {0.0, 1.0};
	double lo = -3, hi = 9;
	CHECK(!reg_winsor_range(&p, x, n, none, &lo, &hi, &err) && lo == -3 && hi == 9, "{0, 1}: the range is kept");
	for (int64_t i = 0; i < n; i++)
		x[i] = 4.5f;
	lo = hi = 4.5;
	CHECK(!reg_winsor_range(&p, x, n, q, &lo, &hi, &err) && lo == 4.5 && hi == 4.5, "a constant image: kept");
	free(x);
}

/* reg_pair_init's images: the quantiles map to 0 and 1, beyond is clipped. */
static void check_pair(void)
{
	ffdp_error err = {0};
	tu_rng r = tu_rng_make(8);
	ffdp_grid g = tu_random_grid(&r, 21, 18, 13);
	ffdp_volume F = {g, NULL}, M = {g, NULL};
	const int64_t n = ffdp_grid_voxels(&g);
	F.data = malloc((size_t)n * sizeof(float)), M.data = malloc((size_t)n * sizeof(float));
	tu_fill_uniform(&r, F.data, n, 0.0, 100.0);
	tu_fill_uniform(&r, M.data, n, 10.0, 50.0);
	F.data[5] = 1e4f, M.data[9] = -1e3f;
	ffdp_backend *be = NULL;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "cpu backend");
	ffdp_reg_opts o;
	memset(&o, 0, sizeof(o));
	o.winsorize[0] = 0.01, o.winsorize[1] = 0.99;
	reg_pair p;
	CHECK_OK(reg_pair_init(&p, be, &F, &M, &o, &err), &err, "pair with winsorising");
	for (int which = 0; which < 2; which++) {
		const ffdp_volume *src = which ? &M : &F, *dst = which ? &p.mn : &p.fn;
		double q[2], lo, hi;
		exact_quantiles(src->data, n, o.winsorize, q);
		/* the pair's own quantiles: from its images' ends (0 and 1 land there) */
		double mx = 0, bad = 0;
		lo = INFINITY, hi = -INFINITY;
		for (int64_t i = 0; i < n; i++)
			lo = fmin(lo, dst->data[i]), hi = fmax(hi, dst->data[i]);
		reg_pair rp;
		memset(&rp, 0, sizeof(rp));
		double a = INFINITY, b = -INFINITY;
		for (int64_t i = 0; i < n; i++)
			a = fmin(a, src->data[i]), b = fmax(b, src->data[i]);
		const double bin = (b - a) / 65536.0;
		CHECK_OK(reg_winsor_range(&rp, src->data, n, o.winsorize, &a, &b, &err), &err, "quantiles");
		for (int64_t i = 0; i < n; i++) {
			double want = ((double)src->data[i] - a) / (b - a);
			want = want < 0 ? 0 : want > 1 ? 1 : want;
			mx = fmax(mx, fabs(dst->data[i] - want));
			bad += dst->data[i] < 0.0f || dst->data[i] > 1.0f;
		}
		CHECK(lo == 0.0 && hi == 1.0 && bad == 0 && mx < 1e-6 && fabs(a - q[0]) <= bin && fabs(b - q[1]) <= bin,
		      "%s: clamp((x - %.4g) / (%.4g - %.4g), 0, 1) to %.1e (exact quantile %.4g)", which ? "moving" : "fixed",
		      a, b, a, mx, q[0]);
	}
	reg_pair_free(&p);
	ffdp_backend_close(be);
	free(F.data), free(M.data);
}

int main(void)
{
	ffdp_log_set_level(FFDP_LOG_WARN);
	check_quantiles();
	check_pair();
	return check_done();
}
