/* The pointwise ops on the CUDA backend against the CPU backend on the same
 * inputs: affine_scalar, clamp, mul and vec_linear bit for bit (all round as written),
 * minmax and vec_max_abs_diff exactly (NaN rules included), in place, 2-D,
 * odd sizes and one volume larger than a reduction grid; plus the device
 * copy.  Needs a GPU: built with CUDA, labelled "gpu". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "gpu_pair.h"
#include "testutil.h"

typedef gp_env env;

static void test_scalar_ops(env *e, const int64_t n[3])
{
	int64_t nv = n[0] * n[1] * n[2];
	float *h = gp_h_new(nv);
	tu_fill_uniform(&e->rng, h, nv, -250.0, 3100.0);
	h[nv / 5] = NAN, h[nv - 1] = -400.5f; /* NaN skipped; an extreme at the very end */
	float *d = gp_d_dup(e, h, nv);
	ffdp_img hi = {h, {n[0], n[1], n[2]}}, di = {d, {n[0], n[1], n[2]}};
	double clo, chi, glo, ghi;
	CHECK_OK(ffdp_op_minmax(e->cpu, hi, &clo, &chi, &e->err), &e->err, "cpu minmax");
	CHECK_OK(ffdp_op_minmax(e->gpu, di, &glo, &ghi, &e->err), &e->err, "cuda minmax");
	CHECK(glo == clo && ghi == chi, "minmax %lldx%lldx%lld: cuda [%g, %g] = cpu [%g, %g]", (long long)n[0],
	      (long long)n[1], (long long)n[2], glo, ghi, clo, chi);
	const double a = 1.0 / (chi - clo), b = -clo / (chi - clo);
	CHECK_OK(ffdp_op_affine_scalar(e->cpu, hi, a, b, &e->err), &e->err, "cpu affine_scalar");
	CHECK_OK(ffdp_op_affine_scalar(e->gpu, di, a, b, &e->err), &e->err, "cuda affine_scalar");
	CHECK(gp_bit_diffs(e, d, h, nv) == 0, "affine_scalar %lldx%lldx%lld: cuda = cpu bit for bit", (long long)n[0],
	      (long long)n[1], (long long)n[2]);
	CHECK_OK(ffdp_op_clamp(e->cpu, hi, 0.1 / 3.0, 0.9, &e->err), &e->err, "cpu clamp");
	CHECK_OK(ffdp_op_clamp(e->gpu, di, 0.1 / 3.0, 0.9, &e->err), &e->err, "cuda clamp");
	CHECK(gp_bit_diffs(e, d, h, nv) == 0, "clamp %lldx%lldx%lld: cuda = cpu bit for bit (NaN kept)", (long long)n[0],
	      (long long)n[1], (long long)n[2]);
	free(h);
	ffdp_buf_free(e->gpu, d);
	/* mul on numbers (a NaN's payload is the hardware's own) */
	float *ha = gp_h_new(nv), *hb = gp_h_new(nv);
	tu_fill_uniform(&e->rng, ha, nv, -250.0, 3100.0);
	tu_fill_uniform(&e->rng, hb, nv, -2.0, 2.0);
	float *da = gp_d_dup(e, ha, nv), *db = gp_d_dup(e, hb, nv);
	ffdp_img ha_i = {ha, {n[0], n[1], n[2]}}, hb_i = {hb, {n[0], n[1], n[2]}};
	ffdp_img da_i = {da, {n[0], n[1], n[2]}}, db_i = {db, {n[0], n[1], n[2]}};
	CHECK_OK(ffdp_op_mul(e->cpu, ha_i, hb_i, &e->err), &e->err, "cpu mul");
	CHECK_OK(ffdp_op_mul(e->gpu, da_i, db_i, &e->err), &e->err, "cuda mul");
	CHECK(gp_bit_diffs(e, da, ha, nv) == 0, "mul %lldx%lldx%lld: cuda = cpu bit for bit", (long long)n[0],
	      (long long)n[1], (long long)n[2]);
	free(ha), free(hb);
	ffdp_buf_free(e->gpu, da), ffdp_buf_free(e->gpu, db);
}

static void test_all_nan(env *e)
{
	float h[7];
	for (int i = 0; i < 7; i++)
		h[i] = NAN;
	float *d = gp_d_dup(e, h, 7);
	double lo = 0, hi = 0;
	ffdp_img di = {d, {7, 1, 1}};
	CHECK(!ffdp_op_minmax(e->gpu, di, &lo, &hi, &e->err) && isnan(lo) && isnan(hi),
	      "cuda minmax of an all-NaN image is NaN");
	ffdp_buf_free(e->gpu, d);
}

static void test_vec_ops(env *e, const int64_t n[3])
{
	const double A[9] = {0.97, -0.23, 0.06, 0.19, 1.11, -0.13, -0.05, 0.08, 0.94};
	gp_vec in = gp_vec_new(e, n, -6.0, 6.0), out = gp_vec_new(e, n, -6.0, 6.0);
	CHECK_OK(ffdp_op_vec_linear(e->cpu, in.h, A, out.h, &e->err), &e->err, "cpu vec_linear");
	CHECK_OK(ffdp_op_vec_linear(e->gpu, in.d, A, out.d, &e->err), &e->err, "cuda vec_linear");
	CHECK(gp_vec_bit_diffs(e, &out) == 0, "vec_linear %lldx%lldx%lld: cuda = cpu bit for bit", (long long)n[0],
	      (long long)n[1], (long long)n[2]);
	double cm, gm;
	CHECK_OK(ffdp_op_vec_max_abs_diff(e->cpu, in.h, out.h, &cm, &e->err), &e->err, "cpu max_abs_diff");
	CHECK_OK(ffdp_op_vec_max_abs_diff(e->gpu, in.d, out.d, &gm, &e->err), &e->err, "cuda max_abs_diff");
	CHECK(gm == cm && cm > 0, "max_abs_diff %lldx%lldx%lld: cuda %.9g = cpu %.9g", (long long)n[0],
	      (long long)n[1], (long long)n[2], gm, cm);
	/* in place */
	CHECK_OK(ffdp_op_vec_linear(e->cpu, in.h, A, in.h, &e->err), &e->err, "cpu vec_linear in place");
	CHECK_OK(ffdp_op_vec_linear(e->gpu, in.d, A, in.d, &e->err), &e->err, "cuda vec_linear in place");
	CHECK(gp_vec_bit_diffs(e, &in) == 0, "vec_linear in place %lldx%lldx%lld: cuda = cpu bit for bit", (long long)n[0],
	      (long long)n[1], (long long)n[2]);
	/* a NaN difference is +inf */
	float nan = NAN;
	ffdp_buf_upload(e->gpu, out.d.c[out.d.ncomp - 1] + out.nv / 2, &nan, sizeof(nan), &e->err);
	CHECK(!ffdp_op_vec_max_abs_diff(e->gpu, in.d, out.d, &gm, &e->err) && isinf(gm) && gm > 0,
	      "cuda max_abs_diff with a NaN is +inf");
	gp_vec_free(e, &in), gp_vec_free(e, &out);
}

static void test_copy(env *e)
{
	CHECK(ffdp_backend_host_memory(e->gpu) == 0, "CUDA buffers are not host memory");
	int64_t n = 100003;
	float *h = gp_h_new(n), *back = gp_h_new(n);
	tu_fill_uniform(&e->rng, h, n, -1, 1);
	float *a = gp_d_dup(e, h, n), *b = ffdp_buf_alloc(e->gpu, (size_t)n * sizeof(float), &e->err);
	CHECK_OK(ffdp_buf_copy(e->gpu, b, a, (size_t)n * sizeof(float), &e->err), &e->err, "cuda buffer copy runs");
	CHECK(gp_bit_diffs(e, b, h, n) == 0, "cuda buffer copy copies");
	free(h), free(back);
	ffdp_buf_free(e->gpu, a), ffdp_buf_free(e->gpu, b);
}

int main(void)
{
	env e = {NULL, NULL, tu_rng_make(77331), {0}};
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &e.cpu, &e.err), &e.err, "CPU backend");
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &e.gpu, &e.err), &e.err, "CUDA backend");
	if (!e.cpu || !e.gpu)
		return check_done();
	/* odd sizes, 2-D, and one larger than a full reduction grid */
	static const int64_t sizes[][3] = {{17, 13, 11}, {33, 29, 1}, {3, 1, 1}, {301, 257, 67}};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		test_scalar_ops(&e, sizes[k]);
		test_vec_ops(&e, sizes[k]);
	}
	test_all_nan(&e);
	test_copy(&e);
	ffdp_backend_close(e.gpu);
	ffdp_backend_close(e.cpu);
	return check_done();
}
