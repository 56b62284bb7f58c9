/* Adam's moments stored as bfloat16 words (FFDP_MOMENTS_BF16): the stored
 * m is the double reference rounded to nearest, the stored v one of the
 * two bf16 neighbours of its reference and unbiased over many voxels where
 * round-to-nearest would not move it at all; max_norm is that of the stored
 * words; a split of the volume into boxes (index0) or another thread count
 * stores the same words; the warp step reads the words exactly as float
 * planes holding their values; moments_get/put round trip; bad arguments
 * are refused. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static tfield random_words(tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	tfield w = tu_field_new(nx, ny, nz);
	for (int c = 0; c < w.nc; c++)
		for (int64_t i = 0; i < w.nv; i++)
			w.c[c][i] = tu_bf16_word((float)(tu_uniform(rng) - 0.5), (float)(0.8 * tu_uniform(rng)));
	return w;
}

static tfield copy_field(const tfield *f)
{
	tfield g = tu_field_new(f->n[0], f->n[1], f->n[2]);
	for (int c = 0; c < f->nc; c++)
		memcpy(g.c[c], f->c[c], (size_t)f->nv * sizeof(float));
	return g;
}

static int same_bits(const tfield *a, const tfield *b)
{
	int same = 1;
	for (int c = 0; c < a->nc; c++)
		same &= memcmp(a->c[c], b->c[c], (size_t)a->nv * sizeof(float)) == 0;
	return same;
}

static ffdp_adam_opts bf16_opts(int t)
{
	ffdp_adam_opts o = {t, 0.9, 0.99, 1e-8, FFDP_MOMENTS_BF16, 0, NULL, NULL};
	return o;
}

static void test_moments(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, int t)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(nx, ny, nz), w = random_words(rng, nx, ny, nz);
	for (int c = 0; c < g.nc; c++)
		tu_fill_uniform(rng, g.c[c], g.nv, -2.0, 2.0);
	tfield w0 = copy_field(&w);
	ffdp_adam_opts o = bf16_opts(t);
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	double max_norm = -1;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&w), none, &o, &max_norm, &err), &err,
		 "bf16 adam_moments %lldx%lldx%lld t = %d", (long long)nx, (long long)ny, (long long)nz, t);
	double bc1 = 1.0 - pow(o.beta1, t), bc2 = 1.0 - pow(o.beta2, t), em = 0, ev = 0, norm = 0;
	for (int64_t i = 0; i < g.nv; i++) {
		double s = 0;
		for (int c = 0; c < g.nc; c++) {
			double gi = g.c[c][i];
			double mr = o.beta1 * tu_bf16_half(w0.c[c][i], 0) + (1 - o.beta1) * gi;
			double vr = o.beta2 * tu_bf16_half(w0.c[c][i], 1) + (1 - o.beta2) * gi * gi;
			double ms = tu_bf16_half(w.c[c][i], 0), vs = tu_bf16_half(w.c[c][i], 1);
			/* the backends' update in float (or double) rounds at 1e-7 of its terms */
			double fm = 1e-6 * (fabs(tu_bf16_half(w0.c[c][i], 0)) + 0.1 * fabs(gi)), fv = 1e-6 * (vr + 1e-30);
			/* m: nearest (half an ulp); v: one of the two neighbours */
			em = fmax(em, fabs(ms - mr) / (0.5 * tu_bf16_ulp(mr) + fm + 1e-30));
			ev = fmax(ev, fabs(vs - vr) / (tu_bf16_ulp(vr) + fv));
			double d = (ms / bc1) / (sqrt(vs / bc2) + o.eps);
			s += d * d;
		}
		norm = fmax(norm, sqrt(s));
	}
	CHECK(em <= 1.0, "  stored m is the reference rounded to nearest bf16 (error / half ulp %.3f)", em);
	CHECK(ev <= 1.0, "  stored v is a bf16 neighbour of the reference (error / ulp %.3f)", ev);
	CHECK(fabs(max_norm - norm) < 1e-5 * norm, "  max_norm %.6f = that of the stored words %.6f", max_norm, norm);

	/* two z-boxes with their global index0, and 3 threads: the same words */
	tfield wb = copy_field(&w0), wt = copy_field(&w0);
	int64_t cut = g.n[2] > 1 ? g.n[2] / 2 : 0, plane = g.n[0] * g.n[1];
	int64_t axis = g.n[2] > 1 ? 2 : 1;
	if (axis == 1)
		cut = g.n[1] / 2, plane = g.n[0];
	for (int part = 0; part < 2; part++) {
		ffdp_vec gv = tu_field_vec(&g), wv = tu_field_vec(&wb);
		int64_t z0 = part ? cut : 0, z1 = part ? g.n[axis] : cut;
		for (int c = 0; c < g.nc; c++) {
			gv.c[c] += z0 * plane;
			wv.c[c] += z0 * plane;
		}
		gv.n[axis] = wv.n[axis] = z1 - z0;
		ffdp_adam_opts ob = o;
		ob.index0 = z0 * plane;
		CHECK_OK(ffdp_op_adam_moments(be, gv, wv, none, &ob, NULL, &err), &err, "  box %d of 2", part);
	}
	CHECK(same_bits(&w, &wb), "  two boxes with their index0 store the same words as one call");
	omp_set_num_threads(3);
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&wt), none, &o, NULL, &err), &err,
		 "  3 threads");
	omp_set_num_threads(2);
	CHECK(same_bits(&w, &wt), "  3 threads store the same words as 2");
	memcpy(wt.c[0], w0.c[0], (size_t)g.nv * sizeof(float));
	memcpy(wt.c[1], w0.c[1], (size_t)g.nv * sizeof(float));
	if (g.nc == 3)
		memcpy(wt.c[2], w0.c[2], (size_t)g.nv * sizeof(float));
	ffdp_cpu_force_scalar = 1;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&wt), none, &o, NULL, &err), &err,
		 "  scalar path");
	ffdp_cpu_force_scalar = 0;
	CHECK(same_bits(&w, &wt), "  the scalar path stores the same words (AVX2 %s)",
	      ffdp_cpu_use_avx2() ? "on" : "absent");
	tu_field_free(&g), tu_field_free(&w), tu_field_free(&w0), tu_field_free(&wb), tu_field_free(&wt);
}

/* v = 1, g^2 = 1.2: v' = 1.002, a quarter of an ulp above 1, where
 * round-to-nearest stays at 1 for ever. */
static void test_unbiased(ffdp_backend *be)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(29, 31, 17), w = tu_field_new(29, 31, 17);
	for (int c = 0; c < 3; c++)
		for (int64_t i = 0; i < g.nv; i++) {
			g.c[c][i] = (float)sqrt(1.2);
			w.c[c][i] = tu_bf16_word(0.5f, 1.0f);
		}
	ffdp_adam_opts o = bf16_opts(5);
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&w), none, &o, NULL, &err), &err,
		 "bf16 adam_moments, an update of a quarter ulp");
	double sum = 0, n = 0, want = 0.99 * 1.0 + 0.01 * (double)((float)sqrt(1.2) * (float)sqrt(1.2));
	for (int c = 0; c < 3; c++)
		for (int64_t i = 0; i < g.nv; i++)
			sum += tu_bf16_half(w.c[c][i], 1), n++;
	/* 45849 roundings of sd ~0.0034: the mean's sd is 1.6e-5 */
	CHECK(fabs(sum / n - want) < 1.2e-4, "  mean stored v %.6f = %.6f (unbiased; nearest would give 1)",
	      sum / n, want);
	tu_field_free(&g), tu_field_free(&w);
}

/* The warp step on words equals the warp step on float planes holding
 * the words' values, bit for bit. */
static void test_warp_step(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, int compose)
{
	ffdp_error err = {0};
	tfield u = tu_field_new(nx, ny, nz), w = random_words(rng, nx, ny, nz);
	tfield m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	for (int c = 0; c < u.nc; c++) {
		tu_fill_smooth(rng, u.c[c], u.n, 0.01);
		for (int64_t i = 0; i < u.nv; i++) {
			m.c[c][i] = tu_bf16_half(w.c[c][i], 0);
			v.c[c][i] = tu_bf16_half(w.c[c][i], 1) + 0.05f; /* steps under a voxel */
			w.c[c][i] = tu_bf16_word(m.c[c][i], v.c[c][i]);
			v.c[c][i] = tu_bf16_half(w.c[c][i], 1);
		}
	}
	tfield u2 = copy_field(&u);
	ffdp_warp_step_opts o = {{3, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL}, -0.3, compose, {0}, FFDP_PAD_BORDER, 0, NULL};
	o.C[0] = 1.0 / 0.9, o.C[1] = 0.2, o.C[3] = -0.1, o.C[4] = 1.0 / 1.1, o.C[8] = u.nc == 3 ? 1.0 / 1.3 : 0.0;
	CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u), tu_field_vec(&m), tu_field_vec(&v), &o, &err), &err,
		 "warp_step %lldx%lldx%lld compose %d, float moments", (long long)nx, (long long)ny, (long long)nz,
		 compose);
	o.adam.store = FFDP_MOMENTS_BF16;
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&w), none, &o, &err), &err,
		 "  the same on bf16 words");
	CHECK(same_bits(&u, &u2), "  same bits as float planes of the words' values");
	tu_field_free(&u), tu_field_free(&u2), tu_field_free(&w), tu_field_free(&m), tu_field_free(&v);
}

static void test_get_put(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	tfield w = random_words(rng, 13, 7, 5), w0 = copy_field(&w), x = tu_field_new(13, 7, 5);
	tfield y = tu_field_new(13, 7, 5);
	tu_fill_uniform(rng, x.c[0], x.nv, -3.0, 3.0);
	x.c[0][3] = NAN, x.c[0][4] = -INFINITY, x.c[0][5] = 0.0f;
	ffdp_img wi = {w.c[0], {13, 7, 5}}, xi = {x.c[0], {13, 7, 5}}, yi = {y.c[0], {13, 7, 5}};
	for (int half = 0; half < 2; half++) {
		memcpy(w0.c[0], w.c[0], (size_t)w.nv * sizeof(float));
		CHECK_OK(ffdp_op_moments_put(be, wi, half, xi, &err), &err, "moments_put, half %d", half);
		CHECK_OK(ffdp_op_moments_get(be, wi, half, yi, &err), &err, "moments_get, half %d", half);
		double e = 0;
		int other = 1, specials = isnan(y.c[0][3]) && y.c[0][4] == -INFINITY && y.c[0][5] == 0.0f;
		for (int64_t i = 0; i < x.nv; i++) {
			if (i >= 3 && i <= 5)
				continue;
			e = fmax(e, fabs((double)y.c[0][i] - x.c[0][i]) / (0.5 * tu_bf16_ulp(x.c[0][i])));
			other &= half ? tu_bf16_half(w.c[0][i], 0) == tu_bf16_half(w0.c[0][i], 0) : tu_bf16_half(w.c[0][i], 1) == tu_bf16_half(w0.c[0][i], 1);
		}
		CHECK(e <= 1.0, "  get(put(x)) is x rounded to nearest bf16 (error / half ulp %.3f)", e);
		CHECK(specials, "  NaN stays NaN, -inf and 0 stay");
		CHECK(other, "  the other half is kept");
	}
	CHECK(ffdp_op_moments_get(be, wi, 2, yi, &err) == FFDP_ERR_ARG, "half 2 refused: %s", err.msg);
	CHECK(ffdp_op_moments_get(be, wi, 0, wi, &err) == FFDP_ERR_ARG, "in place refused: %s", err.msg);
	tu_field_free(&w), tu_field_free(&w0), tu_field_free(&x), tu_field_free(&y);
}

static void test_args(ffdp_backend *be)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(5, 4, 3), w = tu_field_new(5, 4, 3);
	g.c[1][7] = NAN;
	ffdp_vec none = {{NULL, NULL, NULL}, {0, 0, 0}, 0};
	ffdp_adam_opts o = bf16_opts(1);
	double mn = 0;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&w), none, &o, &mn, &err), &err,
		 "bf16 adam_moments with a NaN gradient voxel");
	CHECK(isnan(mn), "  max_norm is NaN");
	o.index0 = -1;
	CHECK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&w), none, &o, &mn, &err) == FFDP_ERR_ARG,
	      "negative index0 refused: %s", err.msg);
	o = bf16_opts(1);
	o.store = (ffdp_moment_store)7;
	CHECK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&w), none, &o, &mn, &err) == FFDP_ERR_ARG,
	      "unknown storage refused: %s", err.msg);
	o.store = FFDP_MOMENTS_F32;
	CHECK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&w), none, &o, &mn, &err) == FFDP_ERR_ARG,
	      "float moments without v refused: %s", err.msg);
	tu_field_free(&g), tu_field_free(&w);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(1601);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (!be)
		return check_done();
	omp_set_num_threads(2);
	for (int t = 1; t <= 7; t += 6) {
		test_moments(be, &rng, 17, 23, 11, t);
		test_moments(be, &rng, 31, 19, 1, t);
	}
	test_moments(be, &rng, 301, 7, 3, 4); /* several blocks per row */
	test_unbiased(be);
	test_warp_step(be, &rng, 17, 23, 11, 1);
	test_warp_step(be, &rng, 31, 19, 1, 1);
	test_warp_step(be, &rng, 17, 23, 11, 0);
	test_get_put(be, &rng);
	test_args(be);
	ffdp_backend_close(be);
	return check_done();
}
