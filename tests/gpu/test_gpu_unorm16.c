/* unorm16 images on the CUDA backend: pack and unpack give the CPU's bits;
 * the sampler (fast and general linear paths, nearest, label, the backward
 * with and without gW) and the losses (LNCC's fixed-window and general
 * kernels reading f in place for gm alone, exact and ANTs; gm with gf and
 * gf alone through a float copy; MSE and MI through float copies) given a
 * unorm16 image return the bits they return on the GPU for the unpacked
 * floats.  Needs a GPU: built with CUDA, labelled "gpu". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "gpu_pair.h"
#include "testutil.h"

/* An image in [0, 1] on the device as unorm16 (*q) and as its unpacked
 * floats (*x). */
static void image16(gp_env *e, const int64_t n[3], uint16_t **q, float **x)
{
	const int64_t nv = n[0] * n[1] * n[2];
	float *h = gp_h_new(nv);
	tu_fill_smooth(&e->rng, h, n, 0.05);
	float lo = INFINITY, hi = -INFINITY;
	for (int64_t i = 0; i < nv; i++)
		lo = fminf(lo, h[i]), hi = fmaxf(hi, h[i]);
	for (int64_t i = 0; i < nv; i++)
		h[i] = (h[i] - lo) / (hi - lo);
	*x = gp_d_dup(e, h, nv);
	*q = ffdp_buf_alloc(e->gpu, (size_t)nv * sizeof(uint16_t), &e->err);
	ffdp_img xi = {*x, {n[0], n[1], n[2]}};
	ffdp_op_unorm16_pack(e->gpu, xi, *q, &e->err);
	ffdp_op_unorm16_unpack(e->gpu, *q, xi, &e->err);
	free(h);
}

static void test_pack(gp_env *e)
{
	const int64_t n[3] = {61, 37, 29}, nv = n[0] * n[1] * n[2];
	float *h = gp_h_new(nv), *hy = gp_h_new(nv);
	tu_fill_uniform(&e->rng, h, nv, -0.2, 1.2);
	h[0] = NAN, h[1] = INFINITY;
	uint16_t *hq = malloc((size_t)nv * sizeof(uint16_t)), *dq_h = malloc((size_t)nv * sizeof(uint16_t));
	float *dx = gp_d_dup(e, h, nv), *dy = gp_d_dup(e, hy, nv);
	uint16_t *dq = ffdp_buf_alloc(e->gpu, (size_t)nv * sizeof(uint16_t), &e->err);
	ffdp_img hi = {h, {n[0], n[1], n[2]}}, di = {dx, {n[0], n[1], n[2]}}, hyi = {hy, {n[0], n[1], n[2]}},
		 dyi = {dy, {n[0], n[1], n[2]}};
	ffdp_status s = ffdp_op_unorm16_pack(e->cpu, hi, hq, &e->err);
	s = s ? s : ffdp_op_unorm16_pack(e->gpu, di, dq, &e->err);
	s = s ? s : ffdp_op_unorm16_unpack(e->cpu, hq, hyi, &e->err);
	s = s ? s : ffdp_op_unorm16_unpack(e->gpu, dq, dyi, &e->err);
	s = s ? s : ffdp_buf_download(e->gpu, dq_h, dq, (size_t)nv * sizeof(uint16_t), &e->err);
	CHECK_OK(s, &e->err, "unorm16 pack and unpack %lldx%lldx%lld, CPU and CUDA", (long long)n[0], (long long)n[1],
		 (long long)n[2]);
	if (!s)
		CHECK(!memcmp(hq, dq_h, (size_t)nv * sizeof(uint16_t)) && gp_bit_diffs(e, dy, hy, nv) == 0,
		      "  the same q and the same floats on both");
	free(h), free(hy), free(hq), free(dq_h);
	ffdp_buf_free(e->gpu, dx), ffdp_buf_free(e->gpu, dy), ffdp_buf_free(e->gpu, dq);
}

/* Values whose bits differ between two device buffers. */
static int64_t dd_diffs(gp_env *e, const float *d1, const float *d2, int64_t n)
{
	float *h = gp_d_get(e, d2, n);
	int64_t d = gp_bit_diffs(e, d1, h, n);
	free(h);
	return d;
}

static float *d_zeros(gp_env *e, int64_t n)
{
	float *h = gp_h_new(n), *d = gp_d_dup(e, h, n);
	free(h);
	return d;
}

static void test_sampler(gp_env *e, const int64_t mn[3], const int64_t on[3])
{
	uint16_t *q;
	float *M;
	image16(e, mn, &q, &M);
	const int64_t nv = on[0] * on[1] * on[2];
	gp_vec u = gp_vec_new(e, on, -2, 2);
	float *o1 = d_zeros(e, nv), *o2 = d_zeros(e, nv);
	for (int in = 0; in < 3; in++) {
		ffdp_sample_args a = tu_sample_args(M, mn, o1, on, &u.d, (ffdp_interp)in,
						    in == 1 ? FFDP_PAD_ZERO : FFDP_PAD_BORDER);
		ffdp_sample_args b = a;
		b.moving.p = NULL, b.moving16 = q, b.out.p = o2;
		ffdp_status s = ffdp_op_sample(e->gpu, &a, &e->err);
		s = s ? s : ffdp_op_sample(e->gpu, &b, &e->err);
		CHECK_OK(s, &e->err, "CUDA sample %s %lldx%lldx%lld, floats and unorm16",
			 in == 0 ? "linear" : in == 1 ? "nearest" : "label", (long long)on[0], (long long)on[1],
			 (long long)on[2]);
		if (!s)
			CHECK(dd_diffs(e, o1, o2, nv) == 0, "  the same bits");
		if (in || s)
			continue;
		for (int gw = 0; gw < 2; gw++) {
			gp_vec g1 = gp_vec_new(e, on, 0, 1), g2 = gp_vec_new(e, on, 0, 1);
			double w1[12] = {0}, w2[12] = {0};
			ffdp_sample_grad_args ga = {&a, {o1, {on[0], on[1], on[2]}}, &g1.d, 0, gw ? w1 : NULL, NULL, NULL, NULL};
			ffdp_sample_grad_args gb = {&b, {o1, {on[0], on[1], on[2]}}, &g2.d, 0, gw ? w2 : NULL, NULL, NULL, NULL};
			s = ffdp_op_sample_grad(e->gpu, &ga, &e->err);
			s = s ? s : ffdp_op_sample_grad(e->gpu, &gb, &e->err);
			CHECK_OK(s, &e->err, "  CUDA sample_grad%s", gw ? " with gW" : "");
			if (!s) {
				int64_t d = memcmp(w1, w2, sizeof(w1)) != 0;
				for (int c = 0; c < g1.d.ncomp; c++)
					d += dd_diffs(e, g1.d.c[c], g2.d.c[c], nv);
				CHECK(d == 0, "    the same bits (gu%s)", gw ? " and gW" : "");
			}
			gp_vec_free(e, &g1), gp_vec_free(e, &g2);
		}
	}
	ffdp_buf_free(e->gpu, q), ffdp_buf_free(e->gpu, M), ffdp_buf_free(e->gpu, o1), ffdp_buf_free(e->gpu, o2);
	gp_vec_free(e, &u);
}

/* kind: 0 LNCC exact gm (read in place), 1 LNCC ANTs gm (in place), 2 LNCC
 * gf only, 5 LNCC exact gm and gf (both through a float copy), 3 MSE, 4 MI */
static void test_loss(gp_env *e, const int64_t n[3], int kind, int k)
{
	uint16_t *q;
	float *f;
	image16(e, n, &q, &f);
	const int64_t nv = n[0] * n[1] * n[2];
	float *hm = gp_h_new(nv);
	tu_fill_smooth(&e->rng, hm, n, 0.1);
	float *m = gp_d_dup(e, hm, nv), *g[4];
	for (int i = 0; i < 4; i++)
		g[i] = d_zeros(e, nv);
	double l1 = 0, l2 = 0;
	ffdp_loss_args a;
	memset(&a, 0, sizeof(a));
	a.f = (ffdp_img){f, {n[0], n[1], n[2]}}, a.m = (ffdp_img){m, {n[0], n[1], n[2]}};
	a.scale = 1.0, a.loss = &l1;
	a.gm = kind == 2 ? NULL : g[0], a.gf = kind == 2 || kind == 5 ? g[1] : NULL;
	ffdp_loss_args b = a;
	b.f.p = NULL, b.f16 = q, b.loss = &l2;
	b.gm = a.gm ? g[2] : NULL, b.gf = a.gf ? g[3] : NULL;
	ffdp_status s;
	const char *nm = kind < 3 || kind == 5 ? "lncc" : kind == 3 ? "mse" : "mi 32";
	if (kind < 3 || kind == 5) {
		ffdp_lncc_opts o = {.k = k, .exact_grad = kind != 1};
		s = ffdp_op_lncc(e->gpu, &a, &o, &e->err);
		s = s ? s : ffdp_op_lncc(e->gpu, &b, &o, &e->err);
	} else if (kind == 3) {
		s = ffdp_op_mse(e->gpu, &a, &e->err);
		s = s ? s : ffdp_op_mse(e->gpu, &b, &e->err);
	} else {
		ffdp_mi_opts o = {.bins = 32, .kernel = FFDP_MI_GAUSSIAN, .f_lo = 0, .f_hi = 1, .m_lo = -0.5, .m_hi = 1.5};
		s = ffdp_op_mi(e->gpu, &a, &o, &e->err);
		s = s ? s : ffdp_op_mi(e->gpu, &b, &o, &e->err);
	}
	CHECK_OK(s, &e->err, "CUDA %s k=%d %s %lldx%lldx%lld, f as floats and as unorm16", nm, k,
		 kind == 1 ? "ANTs" : kind == 2 ? "gf only" : kind == 5 ? "gm and gf" : "", (long long)n[0], (long long)n[1],
		 (long long)n[2]);
	if (!s) {
		int64_t d = 0;
		for (int i = 0; i < 2; i++)
			if (i ? a.gf : a.gm)
				d += dd_diffs(e, g[i], g[i + 2], nv);
		CHECK(l1 == l2 && d == 0, "  loss %.9g and gradients: the same bits", l2);
	}
	free(hm);
	ffdp_buf_free(e->gpu, q), ffdp_buf_free(e->gpu, f), ffdp_buf_free(e->gpu, m);
	for (int i = 0; i < 4; i++)
		ffdp_buf_free(e->gpu, g[i]);
}

int main(void)
{
	gp_env e = {NULL, NULL, tu_rng_make(1620), {0}};
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &e.cpu, &e.err), &e.err, "CPU backend");
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &e.gpu, &e.err), &e.err, "CUDA backend");
	if (!e.cpu || !e.gpu)
		return check_done();
	test_pack(&e);
	const int64_t m3[3] = {45, 53, 37}, o3[3] = {41, 47, 33}, m2[3] = {67, 59, 1}, o2[3] = {61, 53, 1};
	test_sampler(&e, m3, o3); /* the fast 3-D kernel */
	test_sampler(&e, m2, o2); /* the general kernel */
	const int64_t l3[3] = {70, 37, 45};
	test_loss(&e, l3, 0, 5);  /* fixed-window kernel, f read in place */
	test_loss(&e, l3, 0, 11); /* general kernel, f read in place */
	test_loss(&e, l3, 1, 7);
	test_loss(&e, l3, 5, 5);  /* gm and gf: a float copy */
	test_loss(&e, l3, 2, 5);  /* gf alone: f takes m's place */
	test_loss(&e, l3, 3, 0);
	test_loss(&e, l3, 4, 0);
	ffdp_backend_close(e.gpu);
	ffdp_backend_close(e.cpu);
	return check_done();
}
