/* MSE on the CPU against a double-precision reference: value, gradients (and
 * central differences of the reference), mask, denominator, scale, 2-D,
 * several blocks and thread counts. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

typedef struct mcase {
	const char *name;
	int64_t n[3];
	int mask;
	double denom, scale;
} mcase;

/* sum_i w (f - m)^2 in double */
static double ref_sum(const float *f, const float *m, const float *w, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = (double)f[i] - m[i];
		s += (w ? w[i] : 1.0) * d * d;
	}
	return s;
}

static void check_case(ffdp_backend *be, tu_rng *rng, const mcase *mc)
{
	ffdp_error err = {0};
	int64_t N = mc->n[0] * mc->n[1] * mc->n[2];
	size_t b4 = (size_t)N * 4, b8 = (size_t)N * 8;
	float *f = malloc(b4), *m = malloc(b4), *w = mc->mask ? malloc(b4) : NULL;
	float *gf = malloc(b4), *gm = malloc(b4);
	double *rf = malloc(b8), *rm = malloc(b8);

	tu_fill_smooth(rng, f, mc->n, 0.1);
	tu_fill_smooth(rng, m, mc->n, 0.1);
	double wsum = 0;
	for (int64_t i = 0; i < N; i++) {
		if (w)
			w[i] = tu_uniform(rng) < 0.25 ? 0.0f : (float)tu_uniform(rng);
		wsum += w ? w[i] : 1.0;
	}
	double denom = mc->denom > 0 ? mc->denom : wsum, g = 2 * mc->scale / denom;
	for (int64_t i = 0; i < N; i++) {
		double d = (double)m[i] - f[i], wi = w ? w[i] : 1.0;
		rm[i] = g * wi * d, rf[i] = -g * wi * d;
	}

	double loss = 0, sum = 0, want = ref_sum(f, m, w, N) / denom;
	ffdp_loss_args a = {{f, {mc->n[0], mc->n[1], mc->n[2]}},
			    {m, {mc->n[0], mc->n[1], mc->n[2]}},
			    w,
			    mc->denom,
			    mc->scale,
			    gf,
			    gm,
			    &loss,
			    &sum,
			    NULL, NULL, NULL};
	CHECK_OK(ffdp_op_mse(be, &a, &err), &err, "%s: mse runs", mc->name);
	CHECK(fabs(loss - want) <= 1e-5 * want, "%s: loss %.10g vs reference %.10g (rel %.1e)", mc->name, loss, want,
	      fabs(loss - want) / want);
	CHECK(fabs(sum - loss * denom) <= 1e-12 * sum, "%s: sum %.10g = loss * denom", mc->name, sum);
	double ef = tu_rel_err(gf, rf, N, 1e-30), em = tu_rel_err(gm, rm, N, 1e-30);
	CHECK(ef < 1e-5 && em < 1e-5, "%s: gf, gm vs reference over %lld voxels: rel %.1e, %.1e", mc->name,
	      (long long)N, ef, em);

	/* the reference against central differences of the reference value at 20 voxels */
	double worst = 0, gmax = fmax(tu_max_abs(rm, N), 1e-30), h = 1e-3;
	for (int s = 0; s < 20; s++) {
		int64_t i = (int64_t)(tu_uniform(rng) * N);
		double keep = m[i], d0 = (double)f[i] - keep, wi = w ? w[i] : 1.0;
		double lp = wi * (d0 - h) * (d0 - h), lm = wi * (d0 + h) * (d0 + h);
		double fd = mc->scale * (lp - lm) / (2 * h) / denom;
		worst = fmax(worst, fabs(fd - gm[i]) / gmax);
	}
	CHECK(worst < 1e-3, "%s: gm vs central differences at 20 voxels: rel %.1e", mc->name, worst);

	/* gradients optional, loss unchanged */
	double l2 = 0;
	a.gf = a.gm = NULL, a.loss = &l2, a.sum = NULL;
	CHECK_OK(ffdp_op_mse(be, &a, &err), &err, "%s: loss only", mc->name);
	CHECK(l2 == loss, "%s: loss only gives the same bits", mc->name);

	free(f), free(m), free(w), free(gf), free(gm), free(rf), free(rm);
}

static void check_threads(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	int64_t n[3] = {70, 60, 40}, N = 70 * 60 * 40;
	float *f = malloc((size_t)N * 4), *m = malloc((size_t)N * 4), *w = malloc((size_t)N * 4);
	double l[2];
	tu_fill_uniform(rng, f, N, 0, 1);
	tu_fill_uniform(rng, m, N, 0, 1);
	tu_fill_uniform(rng, w, N, 0, 1);
	int keep = omp_get_max_threads();
	for (int t = 0; t < 2; t++) {
		ffdp_loss_args a = {{f, {n[0], n[1], n[2]}}, {m, {n[0], n[1], n[2]}}, w, 0, 1, NULL, NULL, &l[t], NULL, NULL, NULL, NULL};
		omp_set_num_threads(t + 1);
		ffdp_op_mse(be, &a, &err);
	}
	omp_set_num_threads(keep);
	CHECK(l[0] == l[1], "70x60x40 (3 blocks), masked: 1 and 2 threads give the same bits %.17g", l[0]);

	/* zsum: each plane's sum is the op's on that plane alone (a shard), and
	 * the total is their sum in plane order */
	double zs[40], tot = 0, sum = 0, denom = 1234.5;
	int64_t bad = 0;
	ffdp_loss_args a = {{f, {n[0], n[1], n[2]}}, {m, {n[0], n[1], n[2]}}, w, denom, 1, NULL, NULL, &l[0], &sum, zs, NULL, NULL};
	ffdp_op_mse(be, &a, &err);
	for (int64_t z = 0; z < n[2]; z++) {
		int64_t o = z * n[0] * n[1];
		double pl, ps;
		ffdp_loss_args b = {{f + o, {n[0], n[1], 1}}, {m + o, {n[0], n[1], 1}}, w + o, denom, 1, NULL, NULL, &pl,
				    &ps, NULL, NULL, NULL};
		ffdp_op_mse(be, &b, &err);
		bad += ps != zs[z];
		tot += zs[z];
	}
	CHECK(bad == 0 && tot == sum, "zsum: %lld of 40 planes differ from the op on the plane alone; total %s",
	      (long long)bad, tot == sum ? "equal" : "differs");
	free(f), free(m), free(w);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(7);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (!be)
		return check_done();
	static const mcase cases[] = {
		{"17x23x11", {17, 23, 11}, 0, 0, 1},
		{"17x23x11 mask", {17, 23, 11}, 1, 0, 1},
		{"17x23x11 mask denom scale", {17, 23, 11}, 1, 321.5, -2.5},
		{"2-D 31x19", {31, 19, 1}, 0, 0, 1},
		{"2-D 31x19 mask scale", {31, 19, 1}, 1, 0, 0.5},
		{"90x80x30 (several blocks) mask", {90, 80, 30}, 1, 0, 1},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		check_case(be, &rng, &cases[c]);
	check_threads(be, &rng);

	float z[8] = {0}, one[8] = {1, 1, 1, 1, 1, 1, 1, 1};
	double loss;
	ffdp_loss_args a = {{one, {2, 2, 2}}, {one, {2, 2, 2}}, z, 0, 1, NULL, NULL, &loss, NULL, NULL, NULL, NULL};
	CHECK(ffdp_op_mse(be, &a, &err) == FFDP_ERR_ARG, "all-zero mask without denom refused: %s", err.msg);
	ffdp_backend_close(be);
	return check_done();
}
