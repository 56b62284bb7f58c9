/* The linear stages' step (ops.h ffdp_op_linear_step, src/ops/linear_step.h)
 * on the CPU backend:
 *   - dL/dparameters against central differences of a loss of W, for the
 *     affine and rigid parametrisations, 3-D and 2-D (where z's terms are
 *     0), with oblique level matrices;
 *   - W of the parameters against the registration's composition with
 *     ffdp_mat4 (m_p2i T f_i2p), bit for bit, and Wq = llrint(W 2^32);
 *   - Adam's first step moves each free parameter by lr against its
 *     gradient's sign; the count advances; the fault flag;
 *   - its sine and cosine (+ - * / only) against libm's;
 *   - W_dev and gW_dev on a host-memory backend give the bits of W and gW. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "ops/linear_step.h"
#include "testutil.h"

static ffdp_linear_step_args args(tu_rng *r, int rigid, int dim)
{
	ffdp_linear_step_args a;
	memset(&a, 0, sizeof(a));
	a.rigid = rigid, a.dim = dim, a.lr = 0.01, a.rho = 70.0;
	for (int k = 0; k < 3; k++)
		a.c[k] = 20 + 40 * tu_uniform(r);
	const double R[9] = {0.96, -0.28, 0.0, 0.28, 0.96, 0.0, 0.0, 0.0, 1.0};
	memcpy(a.R0, R, sizeof(R));
	const double sp[3] = {1.2, 0.9, 1.5};
	for (int i = 0; i < 4; i++)
		for (int q = 0; q < 4; q++) {
			a.f_i2p[4 * i + q] = i == q ? (i < 3 ? sp[i] : 1.0) : (i < 3 && q < 4 ? 0.1 * tu_uniform(r) : 0.0);
			a.m_p2i[4 * i + q] = i == q ? (i < 3 ? 0.9 : 1.0) : (i < 3 ? 0.1 * tu_uniform(r) - 0.05 : 0.0);
		}
	return a;
}

/* L(W) = sum_i c_i (W_i - W*_i)^2 / 2: dL/dW = c (W - W*). */
static double loss_of(const ffdp_linear_step_args *a, const double *p, const double *c, const double *ws,
		      double *gW)
{
	ffdp_linear_w w;
	ls_make_w(a, p, &w);
	double L = 0;
	for (int i = 0; i < 12; i++) {
		const double d = w.W[i] - ws[i];
		L += 0.5 * c[i] * d * d;
		if (gW)
			gW[i] = c[i] * d;
	}
	return L;
}

static void test_grad(tu_rng *r, int rigid, int dim)
{
	ffdp_linear_step_args a = args(r, rigid, dim);
	double p[12] = {0}, c[12], ws[12], gW[12], g[12];
	const int np = rigid ? 6 : 12;
	for (int i = 0; i < 12; i++)
		c[i] = 0.5 + tu_uniform(r), ws[i] = tu_uniform(r) - 0.5;
	if (rigid) /* (in 2-D only the rotation about z moves: w_x, w_y stay 0) */
		p[0] = dim == 2 ? 0.0 : 0.1, p[1] = dim == 2 ? 0.0 : -0.05, p[2] = 0.07;
	else
		for (int i = 0; i < 9; i++)
			p[i] = (i % 4 == 0) + 0.1 * (tu_uniform(r) - 0.5);
	for (int i = rigid ? 3 : 9; i < np; i++)
		p[i] = 0.2 * (tu_uniform(r) - 0.5);
	loss_of(&a, p, c, ws, gW);
	ls_params_grad(&a, p, gW, g);
	double worst = 0, gmax = 0;
	int zeros = 1;
	for (int i = 0; i < np; i++) {
		const double h = 1e-6;
		double pp[12], pm[12];
		memcpy(pp, p, sizeof(p)), memcpy(pm, p, sizeof(p));
		pp[i] += h, pm[i] -= h;
		double fd = (loss_of(&a, pp, c, ws, NULL) - loss_of(&a, pm, c, ws, NULL)) / (2 * h);
		/* in 2-D the parameters that move z get no gradient */
		const int zterm = dim == 2 && (rigid ? (i == 0 || i == 1 || i == 5) : (i == 2 || i == 5 || i == 6 ||
											   i == 7 || i == 8 || i == 11));
		if (zterm) {
			zeros &= g[i] == 0.0;
			continue;
		}
		worst = fmax(worst, fabs(g[i] - fd));
		gmax = fmax(gmax, fabs(fd));
	}
	CHECK(worst < 1e-6 * gmax && gmax > 0 && zeros,
	      "linear_step gradient, %s %d-D: |g - central differences| %.1e of %.1e%s", rigid ? "rigid" : "affine", dim,
	      worst, gmax, dim == 2 ? ", z terms 0" : "");
}

static void test_w_and_adam(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	ffdp_linear_step_args a = args(r, 0, 3);
	double st[FFDP_LINEAR_STATE] = {0}, gW[12];
	ffdp_linear_w w;
	for (int i = 0; i < 12; i++)
		st[i] = (i < 9 ? (i % 4 == 0) : 0.0) + 0.05 * (tu_uniform(r) - 0.5), gW[i] = tu_uniform(r) - 0.5;
	a.state = st, a.gW = gW, a.w = &w;
	ffdp_status s = ffdp_op_linear_step(be, &a, &err);
	/* the registration's composition: ffdp_mat4 products of T = [A, t] */
	double A[9], t[3];
	memcpy(A, st, sizeof(A));
	for (int k = 0; k < 3; k++)
		t[k] = a.c[k] + a.rho * st[9 + k] - (A[3 * k] * a.c[0] + A[3 * k + 1] * a.c[1] + A[3 * k + 2] * a.c[2]);
	ffdp_mat4 T = ffdp_mat4_from_linear(A, t), Pm, Pf;
	memcpy(Pm.m, a.m_p2i, sizeof(Pm.m)), memcpy(Pf.m, a.f_i2p, sizeof(Pf.m));
	ffdp_mat4 W = ffdp_mat4_mul(Pm, ffdp_mat4_mul(T, Pf));
	int same = 1;
	for (int i = 0; i < 12; i++)
		same &= w.W[i] == W.m[i] && w.Wq[i] == (int64_t)llrint(ldexp(W.m[i], 32));
	CHECK(!s && same && !w.fault && st[36] == 0, "linear_step without step: W = m_p2i T f_i2p bits, Wq its fixed point");
	double p0[12];
	memcpy(p0, st, sizeof(p0));
	double g[12];
	ls_params_grad(&a, st, gW, g);
	a.step = 1, a.c1 = 1 - FFDP_LINEAR_BETA1, a.c2 = 1 - FFDP_LINEAR_BETA2;
	s = ffdp_op_linear_step(be, &a, &err);
	double worst = 0;
	for (int i = 0; i < 12; i++)
		worst = fmax(worst, fabs((p0[i] - st[i]) - a.lr * (g[i] > 0 ? 1 : -1)));
	CHECK(!s && worst < 1e-6 * a.lr && st[36] == 1, "linear_step: Adam's first step is lr against each sign (%.1e)",
	      worst);
	a.step = 0, a.m_p2i[7] = 0x1p29;
	s = ffdp_op_linear_step(be, &a, &err);
	CHECK(!s && w.fault == 1, "linear_step: a translation past 2^28 voxels faults");
	a.state = NULL;
	CHECK(ffdp_op_linear_step(be, &a, &err) == FFDP_ERR_ARG, "linear_step without state is refused: %s", err.msg);
}

/* W_dev, gW_dev on the CPU backend: ops.c hands the CPU W and gW. */
static void test_dev_args(ffdp_backend *be, tu_rng *r)
{
	ffdp_error err = {0};
	const int64_t mn[3] = {23, 19, 17}, on[3] = {21, 18, 15}, mv = mn[0] * mn[1] * mn[2], ov = on[0] * on[1] * on[2];
	float *m = malloc((size_t)mv * sizeof(float)), *o1 = malloc((size_t)ov * sizeof(float)),
	      *o2 = malloc((size_t)ov * sizeof(float)), *go = malloc((size_t)ov * sizeof(float));
	tu_fill_uniform(r, m, mv, 0, 1), tu_fill_uniform(r, go, ov, -1, 1);
	ffdp_linear_w w;
	memset(&w, 0, sizeof(w));
	const double W[12] = {0.97, 0.05, -0.02, 0.7, -0.04, 1.03, 0.03, -0.4, 0.02, -0.03, 0.98, 0.9};
	memcpy(w.W, W, sizeof(W));
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving = (ffdp_img){m, {mn[0], mn[1], mn[2]}};
	a.out = (ffdp_img){o1, {on[0], on[1], on[2]}};
	a.pad = FFDP_PAD_BORDER;
	memcpy(a.W, W, sizeof(W));
	ffdp_sample_args b = a;
	memset(b.W, 0, sizeof(b.W));
	b.W_dev = &w, b.out.p = o2;
	double g1[12] = {0}, g2[12] = {1, 2, 3}; /* written, not added */
	ffdp_sample_grad_args ga = {&a, {go, {on[0], on[1], on[2]}}, NULL, 0, g1, NULL, NULL, NULL};
	ffdp_sample_grad_args gb = {&b, {go, {on[0], on[1], on[2]}}, NULL, 0, NULL, NULL, NULL, g2};
	ffdp_status s = ffdp_op_sample(be, &a, &err);
	s = s ? s : ffdp_op_sample(be, &b, &err);
	s = s ? s : ffdp_op_sample_grad(be, &ga, &err);
	s = s ? s : ffdp_op_sample_grad(be, &gb, &err);
	CHECK(!s && !memcmp(o1, o2, (size_t)ov * sizeof(float)) && !memcmp(g1, g2, sizeof(g1)),
	      "W_dev and gW_dev on the CPU: the bits of W and gW");
	b.u = NULL, b.accumulate = 0, b.interp = FFDP_INTERP_NEAREST;
	CHECK(ffdp_op_sample(be, &b, &err) == FFDP_ERR_ARG, "W_dev with nearest interpolation is refused: %s", err.msg);
	free(m), free(o1), free(o2), free(go);
}

/* ls_sincos (the step's own, for the host's bits on the device) against
 * libm over several turns. */
static void test_sincos(void)
{
	double worst = 0;
	for (int i = -4000; i <= 4000; i++) {
		const double x = i * 0.0031 + 1e-7 * i * i;
		double s, c;
		ls_sincos(x, &s, &c);
		worst = fmax(worst, fmax(fabs(s - sin(x)), fabs(c - cos(x))));
	}
	CHECK(worst < 2e-14, "ls_sincos = libm's sin and cos to %.1e on [-14, 14]", worst);
}

int main(void)
{
	ffdp_backend *be = NULL;
	ffdp_error err = {0};
	tu_rng r = tu_rng_make(77);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "cpu backend");
	if (!be)
		return check_done();
	for (int rigid = 0; rigid < 2; rigid++)
		for (int dim = 2; dim <= 3; dim++)
			test_grad(&r, rigid, dim);
	test_sincos();
	test_w_and_adam(be, &r);
	test_dev_args(be, &r);
	ffdp_backend_close(be);
	return check_done();
}
