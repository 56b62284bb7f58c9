/* The linear stages' step (ops.h, ffdp_op_linear_step): parameters -> T ->
 * the sampler's W, and dL/dW -> dL/dparameters -> Adam.  Host and device
 * code alike (CUDA compiles it __host__ __device__): the CPU backend,
 * CUDA's one-thread kernel (built without fused multiply-adds) and
 * src/reg/linear.c's host loop run these functions with only + - * / and
 * sqrt, exact on both: the device's parameters have the host's bits.
 *
 * T(x) = A (x - c) + c + rho t, c the fixed image centre, so rotations and
 * scalings act about the image and do not swing the translation; rho
 * (half the fixed image's diagonal) makes one learning rate suit both
 * kinds of parameter.  Affine: A (9) then t (3); rigid: A = exp([w]) R0,
 * w (3) then t (3).
 *
 * The gradient comes from the fused sampler's dL/dW (W = Pm T Pf):
 *   dL/dT[0:3, :] = Lm^T (dL/dW) Pf^T,  Lm the linear part of Pm,
 * then E = dL/dA_lin - dL/dT_t c^T is the gradient for A at fixed t.
 */
#ifndef FFDP_LINEAR_STEP_H
#define FFDP_LINEAR_STEP_H

#include <math.h>
#include <string.h>

#include "ffdp/ops.h"

#ifdef __CUDACC__
#define LS_FN static inline __host__ __device__
#else
#define LS_FN static inline
#endif

/* sin and cos of x from their series at x / 2^n (|x / 2^n| <= 1/4, 17
 * terms: the remainder under 1e-24) and n double-angle steps: only
 * + - * /, so the host and a device without fused multiply-adds get the
 * same bits (libm's and CUDA's sin and cos differ in the last ones). */
LS_FN void ls_sincos(double x, double *s_out, double *c_out)
{
	int n = 0;
	double y = x;
	while (fabs(y) > 0.25 && n < 1100)
		y *= 0.5, n++;
	const double y2 = y * y;
	double s = 1.0, c = 1.0; /* sin y / y = 1 - y^2/(2 3) (1 - y^2/(4 5) (1 - ...)), cos alike */
	for (int k = 8; k >= 1; k--) {
		s = 1.0 - y2 / ((2.0 * k) * (2.0 * k + 1.0)) * s;
		c = 1.0 - y2 / ((2.0 * k - 1.0) * (2.0 * k)) * c;
	}
	s *= y;
	for (; n > 0; n--) {
		const double s2 = 2.0 * s * c;
		c = (c - s) * (c + s);
		s = s2;
	}
	*s_out = s, *c_out = c;
}

/* Rodrigues: exp of the skew matrix of w. */
LS_FN void ls_rotation_exp(const double w[3], double R[9])
{
	double th = sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]), sn, cs;
	ls_sincos(th, &sn, &cs);
	double a = th > 1e-12 ? sn / th : 1.0 - th * th / 6;
	double b = th > 1e-6 ? (1 - cs) / (th * th) : 0.5 - th * th / 24;
	double K[9] = {0, -w[2], w[1], w[2], 0, -w[0], -w[1], w[0], 0};
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++) {
			double kk = 0;
			for (int k = 0; k < 3; k++)
				kk += K[3 * r + k] * K[3 * k + q];
			R[3 * r + q] = (r == q) + a * K[3 * r + q] + b * kk;
		}
}

/* A of parameters p. */
LS_FN void ls_linear_part(const ffdp_linear_step_args *a, const double *p, double A[9])
{
	if (!a->rigid) {
		for (int i = 0; i < 9; i++)
			A[i] = p[i];
		return;
	}
	double E[9];
	ls_rotation_exp(p, E);
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++)
			A[3 * r + q] = E[3 * r] * a->R0[q] + E[3 * r + 1] * a->R0[3 + q] + E[3 * r + 2] * a->R0[6 + q];
}

/* T of parameters p, as a 4x4 (last row 0 0 0 1). */
LS_FN void ls_params_to_T(const ffdp_linear_step_args *a, const double *p, double T[16])
{
	double A[9];
	ls_linear_part(a, p, A);
	const double *tp = p + (a->rigid ? 3 : 9);
	for (int r = 0; r < 4; r++)
		for (int q = 0; q < 4; q++)
			T[4 * r + q] = r == q ? 1.0 : 0.0;
	for (int r = 0; r < 3; r++) {
		for (int q = 0; q < 3; q++)
			T[4 * r + q] = A[3 * r + q];
		T[4 * r + 3] = a->c[r] + a->rho * tp[r] - (A[3 * r] * a->c[0] + A[3 * r + 1] * a->c[1] + A[3 * r + 2] * a->c[2]);
	}
}

/* r = x y for 4x4 matrices (ffdp_mat4_mul's order of terms). */
LS_FN void ls_mul4(const double *x, const double *y, double *r)
{
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++) {
			double s = 0.0;
			for (int k = 0; k < 4; k++)
				s += x[4 * i + k] * y[4 * k + j];
			r[4 * i + j] = s;
		}
}

/* w of parameters p on the level: W = m_p2i (T f_i2p), its fixed point and
 * whether that frame holds it (the samplers' bounds). */
LS_FN void ls_make_w(const ffdp_linear_step_args *a, const double *p, ffdp_linear_w *w)
{
	double T[16], TP[16], W[16];
	ls_params_to_T(a, p, T);
	ls_mul4(T, a->f_i2p, TP);
	ls_mul4(a->m_p2i, TP, W);
	int64_t fault = 0;
	for (int r = 0; r < 3; r++) {
		for (int q = 0; q < 4; q++) {
			const double x = W[4 * r + q];
			w->W[4 * r + q] = x;
			w->Wq[4 * r + q] = fabs(x) < 0x1p30 ? (int64_t)llrint(ldexp(x, 32)) : 0;
		}
		if (!(fabs(W[4 * r]) + fabs(W[4 * r + 1]) + fabs(W[4 * r + 2]) <= 256.0) || !(fabs(W[4 * r + 3]) <= 0x1p28))
			fault = 1;
	}
	w->fault = fault;
}

/* dL/dparameters g from dL/dW on the level. */
LS_FN void ls_params_grad(const ffdp_linear_step_args *a, const double *p, const double gW[12], double *g)
{
	/* G4 = Lm^T gW Pf^T: 3x4, rows = T rows */
	double G[12];
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 4; q++) {
			double s = 0;
			for (int i = 0; i < 3; i++)
				for (int b = 0; b < 4; b++)
					s += a->m_p2i[4 * i + r] * gW[4 * i + b] * a->f_i2p[4 * q + b];
			G[4 * r + q] = s;
		}
	double E[9]; /* gradient wrt the linear part at fixed t' */
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++)
			E[3 * r + q] = G[4 * r + q] - G[4 * r + 3] * a->c[q];
	if (a->dim == 2)
		for (int k = 0; k < 3; k++)
			E[3 * 2 + k] = E[3 * k + 2] = 0; /* keep z out of a 2-D problem */
	if (a->rigid) {
		/* dR/dw_k by central differences of the exponential map (exact to ~1e-10) */
		for (int k = 0; k < 3; k++) {
			double wp[3] = {p[0], p[1], p[2]}, wm[3] = {p[0], p[1], p[2]};
			const double h = 1e-6;
			wp[k] += h, wm[k] -= h;
			double Rp[9], Rm[9];
			ls_linear_part(a, wp, Rp);
			ls_linear_part(a, wm, Rm);
			double s = 0;
			for (int i = 0; i < 9; i++)
				s += E[i] * (Rp[i] - Rm[i]) / (2 * h);
			g[k] = s;
		}
		if (a->dim == 2)
			g[0] = g[1] = 0;
	} else {
		for (int i = 0; i < 9; i++)
			g[i] = E[i];
	}
	double *gt = g + (a->rigid ? 3 : 9);
	for (int r = 0; r < 3; r++)
		gt[r] = a->rho * G[4 * r + 3];
	if (a->dim == 2)
		gt[2] = 0;
}

/* The op on state (parameters, m, v, count) and gW, all in this memory.
 * The bias corrections come with the arguments (the host's pow): so the
 * device's step has the host's bits. */
LS_FN void ls_step(const ffdp_linear_step_args *a, double *state, const double *gW, ffdp_linear_w *w)
{
	double *p = state, *m = state + 12, *v = state + 24;
	const int np = a->rigid ? 6 : 12;
	if (a->step) {
		const double b1 = FFDP_LINEAR_BETA1, b2 = FFDP_LINEAR_BETA2, eps = 1e-8;
		double g[12];
		ls_params_grad(a, p, gW, g);
		state[36] += 1;
		for (int i = 0; i < np; i++) {
			m[i] = b1 * m[i] + (1 - b1) * g[i];
			v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
			p[i] -= a->lr * (m[i] / a->c1) / (sqrt(v[i] / a->c2) + eps);
		}
	}
	ls_make_w(a, p, w);
}

#endif
