/* unorm16 images (ops.h, "16-bit images") on the CPU: pack rounds to the
 * nearest of 65536 levels and clamps (NaN to 0), unpack returns q times
 * the step; the sampler (every interpolation, the backward with gW) and
 * the losses (LNCC, MSE, MI) given a unorm16 image return the bits they
 * return for the unpacked floats; bad arguments are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static int same(const float *a, const float *b, int64_t n)
{
	return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void test_pack(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	const int64_t n[3] = {23, 17, 5}, nv = n[0] * n[1] * n[2];
	float *x = malloc((size_t)nv * sizeof(float)), *y = malloc((size_t)nv * sizeof(float));
	uint16_t *q = malloc((size_t)nv * sizeof(uint16_t));
	tu_fill_uniform(rng, x, nv, -0.2, 1.2);
	x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 0.5f / 65535.0f, x[4] = 1.0f;
	ffdp_img xi = {x, {n[0], n[1], n[2]}}, yi = {y, {n[0], n[1], n[2]}};
	CHECK_OK(ffdp_op_unorm16_pack(be, xi, q, &err), &err, "unorm16_pack %lldx%lldx%lld", (long long)n[0],
		 (long long)n[1], (long long)n[2]);
	CHECK_OK(ffdp_op_unorm16_unpack(be, q, yi, &err), &err, "unorm16_unpack");
	double e = 0;
	int exact = 1;
	for (int64_t i = 5; i < nv; i++) {
		double c = fmin(fmax((double)x[i], 0.0), 1.0);
		e = fmax(e, fabs(q[i] - c * 65535.0));
		exact &= y[i] == (float)q[i] * (1.0f / 65535.0f);
	}
	CHECK(e <= 0.5 + 1e-3, "  q is the nearest level of the clamped value (error %.4f levels)", e);
	CHECK(exact, "  unpack gives q times the step");
	CHECK(q[0] == 0 && q[1] == 65535 && q[2] == 0 && q[4] == 65535 && (q[3] == 0 || q[3] == 1),
	      "  NaN -> 0, +inf -> 65535, -inf -> 0, 1 -> 65535, half a level -> 0 or 1 (%u %u %u %u %u)", q[0],
	      q[1], q[2], q[3], q[4]);
	CHECK(ffdp_op_unorm16_pack(be, xi, NULL, &err) == FFDP_ERR_ARG, "no output refused: %s", err.msg);
	free(x), free(y), free(q);
}

/* A smooth image in [0, 1] as unorm16 and as its unpacked floats. */
static void image16(ffdp_backend *be, tu_rng *rng, const int64_t n[3], uint16_t **q, float **x)
{
	ffdp_error err = {0};
	const int64_t nv = n[0] * n[1] * n[2];
	*x = malloc((size_t)nv * sizeof(float));
	*q = malloc((size_t)nv * sizeof(uint16_t));
	tu_fill_smooth(rng, *x, n, 0.05);
	float lo = INFINITY, hi = -INFINITY;
	for (int64_t i = 0; i < nv; i++)
		lo = fminf(lo, (*x)[i]), hi = fmaxf(hi, (*x)[i]);
	for (int64_t i = 0; i < nv; i++)
		(*x)[i] = ((*x)[i] - lo) / (hi - lo);
	ffdp_img xi = {*x, {n[0], n[1], n[2]}};
	ffdp_op_unorm16_pack(be, xi, *q, &err);
	ffdp_op_unorm16_unpack(be, *q, xi, &err);
}

static void test_sampler(ffdp_backend *be, tu_rng *rng, const int64_t mn[3], const int64_t on[3])
{
	ffdp_error err = {0};
	uint16_t *q;
	float *M;
	image16(be, rng, mn, &q, &M);
	tfield u = tu_field_new(on[0], on[1], on[2]);
	for (int c = 0; c < u.nc; c++)
		tu_fill_uniform(rng, u.c[c], u.nv, -2.0, 2.0);
	const int64_t nv = on[0] * on[1] * on[2];
	float *o1 = malloc((size_t)nv * sizeof(float)), *o2 = malloc((size_t)nv * sizeof(float));
	ffdp_vec uv = tu_field_vec(&u);
	for (int in = 0; in < 3; in++) {
		ffdp_sample_args a = tu_sample_args(M, mn, o1, on, &uv, (ffdp_interp)in,
						    in == 1 ? FFDP_PAD_ZERO : FFDP_PAD_BORDER);
		ffdp_status s1 = ffdp_op_sample(be, &a, &err);
		ffdp_sample_args b = a;
		b.moving.p = NULL, b.moving16 = q, b.out.p = o2;
		ffdp_status s2 = ffdp_op_sample(be, &b, &err);
		CHECK(!s1 && !s2 && same(o1, o2, nv), "sample %s %lldx%lldx%lld from unorm16: the floats' bits",
		      in == 0 ? "linear" : in == 1 ? "nearest" : "label", (long long)on[0], (long long)on[1],
		      (long long)on[2]);
		if (in)
			continue;
		tfield g1 = tu_field_new(on[0], on[1], on[2]), g2 = tu_field_new(on[0], on[1], on[2]);
		ffdp_vec g1v = tu_field_vec(&g1), g2v = tu_field_vec(&g2);
		double w1[12] = {0}, w2[12] = {0};
		tu_fill_uniform(rng, o1, nv, -1.0, 1.0);
		ffdp_sample_grad_args ga = {&a, {o1, {on[0], on[1], on[2]}}, &g1v, 0, w1, NULL, NULL, NULL};
		ffdp_sample_grad_args gb = {&b, {o1, {on[0], on[1], on[2]}}, &g2v, 0, w2, NULL, NULL, NULL};
		s1 = ffdp_op_sample_grad(be, &ga, &err);
		s2 = ffdp_op_sample_grad(be, &gb, &err);
		int sg = !s1 && !s2 && !memcmp(w1, w2, sizeof(w1));
		for (int c = 0; c < g1.nc; c++)
			sg &= same(g1.c[c], g2.c[c], nv);
		CHECK(sg, "  sample_grad (gu and gW) from unorm16: the floats' bits");
		tu_field_free(&g1), tu_field_free(&g2);
	}
	ffdp_sample_args bad;
	memset(&bad, 0, sizeof(bad));
	bad.moving = (ffdp_img){M, {mn[0], mn[1], mn[2]}};
	bad.moving16 = q;
	bad.out = (ffdp_img){o1, {on[0], on[1], on[2]}};
	CHECK(ffdp_op_sample(be, &bad, &err) == FFDP_ERR_ARG, "floats and unorm16 together refused: %s", err.msg);
	free(q), free(M), free(o1), free(o2);
	tu_field_free(&u);
}

static void test_losses(ffdp_backend *be, tu_rng *rng, const int64_t n[3])
{
	ffdp_error err = {0};
	uint16_t *q;
	float *f;
	image16(be, rng, n, &q, &f);
	const int64_t nv = n[0] * n[1] * n[2];
	float *m = malloc((size_t)nv * sizeof(float)), *g1 = malloc((size_t)nv * sizeof(float));
	float *g2 = malloc((size_t)nv * sizeof(float)), *h1 = malloc((size_t)nv * sizeof(float));
	float *h2 = malloc((size_t)nv * sizeof(float));
	tu_fill_smooth(rng, m, n, 0.1);
	for (int kind = 0; kind < 3; kind++) {
		double l1 = 0, l2 = 0;
		ffdp_loss_args a;
		memset(&a, 0, sizeof(a));
		a.f = (ffdp_img){f, {n[0], n[1], n[2]}}, a.m = (ffdp_img){m, {n[0], n[1], n[2]}};
		a.scale = 1.0, a.gm = g1, a.gf = h1, a.loss = &l1;
		ffdp_loss_args b = a;
		b.f.p = NULL, b.f16 = q, b.gm = g2, b.gf = h2, b.loss = &l2;
		ffdp_status s1, s2;
		const char *nm = kind == 0 ? "lncc k=5" : kind == 1 ? "mse" : "mi 32";
		if (kind == 0) {
			ffdp_lncc_opts o = {.k = 5, .exact_grad = 1};
			s1 = ffdp_op_lncc(be, &a, &o, &err), s2 = ffdp_op_lncc(be, &b, &o, &err);
		} else if (kind == 1) {
			a.gf = b.gf = NULL;
			s1 = ffdp_op_mse(be, &a, &err), s2 = ffdp_op_mse(be, &b, &err);
		} else {
			ffdp_mi_opts o = {.bins = 32, .kernel = FFDP_MI_GAUSSIAN, .f_lo = 0, .f_hi = 1, .m_lo = -0.5, .m_hi = 1.5};
			s1 = ffdp_op_mi(be, &a, &o, &err), s2 = ffdp_op_mi(be, &b, &o, &err);
		}
		CHECK(!s1 && !s2 && l1 == l2 && same(g1, g2, nv) && (!a.gf || same(h1, h2, nv)),
		      "%s %lldx%lldx%lld with f as unorm16: loss %.9g and gradients, the floats' bits", nm,
		      (long long)n[0], (long long)n[1], (long long)n[2], l2);
	}
	free(q), free(f), free(m), free(g1), free(g2), free(h1), free(h2);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(1616);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (!be)
		return check_done();
	test_pack(be, &rng);
	const int64_t m3[3] = {19, 23, 13}, o3[3] = {17, 21, 11}, m2[3] = {29, 31, 1}, o2[3] = {27, 25, 1};
	test_sampler(be, &rng, m3, o3);
	test_sampler(be, &rng, m2, o2);
	test_losses(be, &rng, o3);
	test_losses(be, &rng, o2);
	ffdp_backend_close(be);
	return check_done();
}
