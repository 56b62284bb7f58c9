/* Rigid and affine stages: Adam on the transform's parameters, multi-scale.
 *
 * T(x) = A (x - c) + c + t, c the fixed image centre, so rotations and
 * scalings act about the image and do not swing the translation.  Affine
 * optimises A directly (9) and t; rigid optimises A = exp([w]) R0 (3) and t.
 * Translations are optimised in units of rho = half the fixed image's
 * diagonal, so one learning rate suits both kinds of parameter.
 *
 * The gradient comes from the fused sampler's dL/dW (W = Pm T Pf):
 *   dL/dT[0:3, :] = Lm^T (dL/dW) Pf^T,  Lm the linear part of Pm,
 * then E = dL/dA_lin - dL/dT_t c^T is the gradient for A at fixed t.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reg_internal.h"

typedef struct linear_params {
	double p[12]; /* affine: A (9) then t/rho (3); rigid: w (3) then t/rho (3) */
	int np;
	int rigid;
	double R0[9], c[3], rho;
} linear_params;

/* Rodrigues: exp of the skew matrix of w. */
static void rotation_exp(const double w[3], double R[9])
{
	double th = sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]);
	double a = th > 1e-12 ? sin(th) / th : 1.0 - th * th / 6;
	double b = th > 1e-6 ? (1 - cos(th)) / (th * th) : 0.5 - th * th / 24;
	double K[9] = {0, -w[2], w[1], w[2], 0, -w[0], -w[1], w[0], 0};
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++) {
			double kk = 0;
			for (int k = 0; k < 3; k++)
				kk += K[3 * r + k] * K[3 * k + q];
			R[3 * r + q] = (r == q) + a * K[3 * r + q] + b * kk;
		}
}

static void linear_part(const linear_params *lp, const double *p, double A[9])
{
	if (!lp->rigid) {
		memcpy(A, p, 9 * sizeof(double));
		return;
	}
	double E[9];
	rotation_exp(p, E);
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++)
			A[3 * r + q] = E[3 * r] * lp->R0[q] + E[3 * r + 1] * lp->R0[3 + q] + E[3 * r + 2] * lp->R0[6 + q];
}

static ffdp_mat4 params_to_T(const linear_params *lp, const double *p)
{
	double A[9], t[3];
	linear_part(lp, p, A);
	const double *tp = p + (lp->rigid ? 3 : 9);
	for (int r = 0; r < 3; r++)
		t[r] = lp->c[r] + lp->rho * tp[r] - (A[3 * r] * lp->c[0] + A[3 * r + 1] * lp->c[1] + A[3 * r + 2] * lp->c[2]);
	return ffdp_mat4_from_linear(A, t);
}

static void params_init(linear_params *lp, const reg_pair *p, const ffdp_mat4 *T, int rigid)
{
	memset(lp, 0, sizeof(*lp));
	lp->rigid = rigid;
	lp->np = rigid ? 6 : 12;
	ffdp_grid_center(&p->fn.grid, lp->c);
	double ext = 0;
	for (int a = 0; a < 3; a++) {
		double e = (double)p->fn.grid.n[a] * p->fn.grid.spacing[a];
		ext += e * e;
	}
	lp->rho = 0.5 * sqrt(ext);
	double A[9];
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++)
			A[3 * r + q] = T->m[4 * r + q];
	if (rigid) {
		/* Start from the nearest rotation to T's linear part (orthonormalise). */
		memcpy(lp->R0, A, sizeof(A));
		for (int it = 0; it < 30; it++) { /* R <- (R + R^-T)/2 converges to the polar factor */
			ffdp_mat4 m = ffdp_mat4_from_linear(lp->R0, (double[3]){0, 0, 0}), inv;
			if (ffdp_mat4_inverse(m, &inv, NULL))
				break;
			for (int r = 0; r < 3; r++)
				for (int q = 0; q < 3; q++)
					lp->R0[3 * r + q] = 0.5 * (lp->R0[3 * r + q] + inv.m[4 * q + r]);
		}
	} else {
		memcpy(lp->p, A, sizeof(A));
	}
	/* t such that T's translation is kept: T_t = c + rho t' - A c */
	double *tp = lp->p + (rigid ? 3 : 9);
	double Al[9];
	linear_part(lp, lp->p, Al);
	for (int r = 0; r < 3; r++)
		tp[r] = (T->m[4 * r + 3] - lp->c[r] + Al[3 * r] * lp->c[0] + Al[3 * r + 1] * lp->c[1] +
			 Al[3 * r + 2] * lp->c[2]) /
			lp->rho;
}

/* dL/dparams from dL/dW on level lv. */
static void params_grad(const linear_params *lp, const reg_level *lv, const double gW[12], int dim, double *g)
{
	/* G4 = Lm^T gW Pf^T: 3x4, rows = T rows */
	double G[12];
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 4; q++) {
			double s = 0;
			for (int a = 0; a < 3; a++)
				for (int b = 0; b < 4; b++)
					s += lv->m_p2i.m[4 * a + r] * gW[4 * a + b] * lv->f_i2p.m[4 * q + b];
			G[4 * r + q] = s;
		}
	double E[9]; /* gradient wrt the linear part at fixed t' */
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++)
			E[3 * r + q] = G[4 * r + q] - G[4 * r + 3] * lp->c[q];
	if (dim == 2)
		for (int k = 0; k < 3; k++)
			E[3 * 2 + k] = E[3 * k + 2] = 0; /* keep z out of a 2-D problem */
	if (lp->rigid) {
		/* dR/dw_k by central differences of the exponential map (exact to ~1e-10) */
		for (int k = 0; k < 3; k++) {
			double wp[3] = {lp->p[0], lp->p[1], lp->p[2]}, wm[3] = {lp->p[0], lp->p[1], lp->p[2]};
			const double h = 1e-6;
			wp[k] += h, wm[k] -= h;
			double Rp[9], Rm[9];
			linear_part(lp, wp, Rp);
			linear_part(lp, wm, Rm);
			double s = 0;
			for (int i = 0; i < 9; i++)
				s += E[i] * (Rp[i] - Rm[i]) / (2 * h);
			g[k] = s;
		}
		if (dim == 2)
			g[0] = g[1] = 0;
	} else {
		memcpy(g, E, sizeof(E));
	}
	double *gt = g + (lp->rigid ? 3 : 9);
	for (int r = 0; r < 3; r++)
		gt[r] = lp->rho * G[4 * r + 3];
	if (dim == 2)
		gt[2] = 0;
}

typedef struct adam_state {
	double m[12], v[12];
	int t;
} adam_state;

static void adam_update(adam_state *a, double *p, const double *g, int n, double lr)
{
	const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
	a->t++;
	double c1 = 1 - pow(b1, a->t), c2 = 1 - pow(b2, a->t);
	for (int i = 0; i < n; i++) {
		a->m[i] = b1 * a->m[i] + (1 - b1) * g[i];
		a->v[i] = b2 * a->v[i] + (1 - b2) * g[i] * g[i];
		p[i] -= lr * (a->m[i] / c1) / (sqrt(a->v[i] / c2) + eps);
	}
}

/* One level: iterate sample -> loss -> backward -> Adam.  The images are
 * the domain's (the rank's planes under MPI); the parameters, their
 * gradient (reduced in plane order) and Adam are the same on every rank. */
static ffdp_status run_level(reg_domain *dm, const reg_pair *p, const ffdp_stage *st, const reg_level *lv,
			     linear_params *lp, int iters, float *warped, float *gm, ffdp_progress *pb, int64_t *done,
			     int *ran, double *last_loss, ffdp_error *err)
{
	adam_state ad;
	memset(&ad, 0, sizeof(ad));
	reg_iter ri;
	reg_iter_init(&ri, st, dm->be, pb, done, lv->F.grid.n);
	ffdp_sample_args sa;
	ffdp_status s = FFDP_OK;
	int it, stop = 0;
	/* gW comes to the host each iteration (Adam runs here); the loss is
	 * read one iteration late all the same: the stages' one rule */
	for (it = 0; it < iters && !stop; it++) {
		ffdp_mat4 T = params_to_T(lp, lp->p);
		reg_sampler_init(&sa, &lv->M, &lv->m_p2i, &T, lv, warped);
		sa.out = reg_dom_img(dm, warped);
		sa.lo[2] = dm->z0;
		ffdp_scalar loss;
		double gW[12] = {0}, g[12];
		if ((s = reg_dom_sample(dm, &sa, &lv->M, err)) ||
		    (s = reg_dom_similarity(dm, &st->metric, lv->F.data, NULL, warped, lv->fmask, NULL, gm, 1.0, lv->nvox, &loss,
					    err)))
			break;
		ffdp_sample_grad_args ga = {&sa, reg_dom_img(dm, gm), NULL, 0, gW, NULL, NULL};
		if ((s = reg_dom_sample_grad(dm, &ga, &lv->M, err)))
			break;
		params_grad(lp, lv, gW, p->dim, g);
		adam_update(&ad, lp->p, g, lp->np, st->lr);
		if ((s = reg_iter_end(&ri, it, &loss, &stop, err)))
			break;
	}
	*ran = it;
	return s ? s : reg_iter_finish(&ri, last_loss, err);
}

ffdp_status reg_linear(const reg_pair *p, const ffdp_stage *st, ffdp_mat4 *T, ffdp_stage_report *rep,
		       ffdp_error *err)
{
	double t0 = ffdp_now();
	linear_params lp;
	params_init(&lp, p, T, st->kind == FFDP_STAGE_RIGID);
	int64_t done = 0;
	ffdp_progress pb;
	reg_domain dm;
	reg_domain_init(&dm, p->be, p->dist);
	reg_stage_begin(st, rep, &pb);
	ffdp_status s = FFDP_OK;
	double lap = ffdp_now();
	reg_lap(p->be, &lap);
	for (int l = 0; l < st->nlevels && !s; l++) {
		reg_level lv;
		if ((s = reg_level_make(p, st->shrink[l], 0, &lv, err)))
			break;
		reg_domain_level(&dm, &lv.F.grid);
		float *warped = reg_dom_buf(&dm, err), *gm = reg_dom_buf(&dm, err);
		const double setup = reg_lap(p->be, &lap);
		if (!warped || !gm)
			s = FFDP_ERR_NOMEM;
		else
			s = run_level(&dm, p, st, &lv, &lp, st->iters[l], warped, gm, &pb, &done, &rep->iters[l],
				      &rep->final_loss, err);
		reg_level_log(st, l, lv.F.grid.n, setup, rep->iters[l], reg_lap(p->be, &lap));
		ffdp_buf_free(p->be, warped);
		ffdp_buf_free(p->be, gm);
		reg_level_free(p, &lv);
		done = reg_levels_done(st, l);
	}
	ffdp_progress_end(&pb);
	rep->fetch_sent = dm.sent, rep->fetch_recv = dm.recv, rep->fetches = dm.fetches;
	rep->fetch_ring = dm.ring;
	reg_domain_release(&dm);
	if (!s)
		*T = params_to_T(&lp, lp.p);
	rep->seconds = ffdp_now() - t0;
	return s;
}
