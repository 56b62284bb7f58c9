/* Rigid and affine stages: Adam on the transform's parameters, multi-scale.
 * The parametrisation, the gradient and the step are src/ops/linear_step.h
 * (T(x) = A (x - c) + c + rho t; affine: A and t, rigid: A = exp([w]) R0).
 *
 * One process on a device backend keeps the parameters, their moments,
 * dL/dW and the sampler's W in device memory (ffdp_op_linear_step, W_dev,
 * gW_dev): an iteration queues its work and reads nothing back (the loss
 * one iteration late, as every stage).  Elsewhere (host memory, ranks, a
 * W near the samplers' fixed-point bounds) the same step runs here on host
 * copies.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../ops/linear_step.h"
#include "reg_internal.h"

typedef struct linear_params {
	double p[12]; /* affine: A (9) then t/rho (3); rigid: w (3) then t/rho (3) */
	ffdp_linear_step_args la; /* rigid, R0, c, rho (the level's fields set per level) */
} linear_params;

static ffdp_mat4 params_to_T(const linear_params *lp)
{
	double T[16];
	ls_params_to_T(&lp->la, lp->p, T);
	ffdp_mat4 m;
	memcpy(m.m, T, sizeof(T));
	return m;
}

static void params_init(linear_params *lp, const reg_pair *p, const ffdp_mat4 *T, int rigid)
{
	memset(lp, 0, sizeof(*lp));
	ffdp_linear_step_args *la = &lp->la;
	la->rigid = rigid;
	ffdp_grid_center(&p->fn.grid, la->c);
	double ext = 0;
	for (int a = 0; a < 3; a++) {
		double e = (double)p->fn.grid.n[a] * p->fn.grid.spacing[a];
		ext += e * e;
	}
	la->rho = 0.5 * sqrt(ext);
	double A[9];
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++)
			A[3 * r + q] = T->m[4 * r + q];
	if (rigid) {
		/* Start from the nearest rotation to T's linear part (orthonormalise). */
		memcpy(la->R0, A, sizeof(A));
		for (int it = 0; it < 30; it++) { /* R <- (R + R^-T)/2 converges to the polar factor */
			ffdp_mat4 m = ffdp_mat4_from_linear(la->R0, (double[3]){0, 0, 0}), inv;
			if (ffdp_mat4_inverse(m, &inv, NULL))
				break;
			for (int r = 0; r < 3; r++)
				for (int q = 0; q < 3; q++)
					la->R0[3 * r + q] = 0.5 * (la->R0[3 * r + q] + inv.m[4 * q + r]);
		}
	} else {
		memcpy(lp->p, A, sizeof(A));
	}
	/* t such that T's translation is kept: T_t = c + rho t' - A c */
	double *tp = lp->p + (rigid ? 3 : 9);
	double Al[9];
	ls_linear_part(la, lp->p, Al);
	for (int r = 0; r < 3; r++)
		tp[r] = (T->m[4 * r + 3] - la->c[r] + Al[3 * r] * la->c[0] + Al[3 * r + 1] * la->c[1] +
			 Al[3 * r + 2] * la->c[2]) /
			la->rho;
}

/* A level's step: the arguments, and where state, gW and W live. */
typedef struct lin_level {
	ffdp_linear_step_args la;
	int dev; /* in backend memory (device), else the host copies below */
	double st[FFDP_LINEAR_STATE], gw[12];
	ffdp_linear_w w;
} lin_level;

/* Device residency applies: one process, a device backend, and a W
 * within half the fixed-point frame's bounds (Adam moves it little within
 * a level; w->fault reports a crossing at the level's end). */
static int lin_device_ok(const reg_domain *dm, const ffdp_linear_w *w0)
{
	if (dm->dist || ffdp_backend_host_memory(dm->be))
		return 0;
	for (int r = 0; r < 3; r++)
		if (!(fabs(w0->W[4 * r]) + fabs(w0->W[4 * r + 1]) + fabs(w0->W[4 * r + 2]) <= 128.0) ||
		    !(fabs(w0->W[4 * r + 3]) <= 0x1p27))
			return 0;
	return 1;
}

static void lin_level_free(ffdp_backend *be, lin_level *L)
{
	if (!L->dev)
		return;
	ffdp_buf_free(be, L->la.state);
	ffdp_buf_free(be, (void *)L->la.gW);
	ffdp_buf_free(be, L->la.w);
}

/* The level's step from lp's parameters (Adam's moments from 0) and its
 * first W. */
static ffdp_status lin_level_begin(reg_domain *dm, const reg_pair *p, const reg_level *lv, const ffdp_stage *st,
				   const linear_params *lp, lin_level *L, ffdp_error *err)
{
	memset(L, 0, sizeof(*L));
	L->la = lp->la;
	L->la.dim = p->dim, L->la.lr = st->lr, L->la.step = 0;
	memcpy(L->la.m_p2i, lv->m_p2i.m, sizeof(L->la.m_p2i));
	memcpy(L->la.f_i2p, lv->f_i2p.m, sizeof(L->la.f_i2p));
	memcpy(L->st, lp->p, sizeof(lp->p));
	ls_make_w(&L->la, L->st, &L->w);
	L->la.state = L->st, L->la.gW = L->gw, L->la.w = &L->w;
	if (!lin_device_ok(dm, &L->w))
		return FFDP_OK;
	ffdp_backend *be = dm->be;
	double *sd = ffdp_buf_alloc(be, sizeof(L->st), err), *gd = ffdp_buf_alloc(be, sizeof(L->gw), err);
	ffdp_linear_w *wd = ffdp_buf_alloc(be, sizeof(L->w), err);
	L->dev = 1, L->la.state = sd, L->la.gW = gd, L->la.w = wd;
	if (!sd || !gd || !wd)
		return FFDP_ERR_NOMEM;
	ffdp_status s = ffdp_buf_upload(be, sd, L->st, sizeof(L->st), err);
	return s ? s : ffdp_op_linear_step(be, &L->la, err);
}

/* The level's parameters back into lp (one read per level). */
static ffdp_status lin_level_end(reg_domain *dm, lin_level *L, linear_params *lp, ffdp_error *err)
{
	ffdp_status s = FFDP_OK;
	if (L->dev && !(s = ffdp_buf_download(dm->be, L->st, L->la.state, sizeof(L->st), err)))
		s = ffdp_buf_download(dm->be, &L->w, L->la.w, sizeof(L->w), err);
	if (!s && L->dev && L->w.fault)
		s = ffdp_fail(err, FFDP_ERR_DATA, "%s: the transform left the sampler's range (a row of W over 256 "
			      "voxels a voxel, or a shift over 2^28 voxels): the registration diverged",
			      L->la.rigid ? "rigid" : "affine");
	if (!s)
		memcpy(lp->p, L->st, sizeof(lp->p));
	return s;
}

/* One level: iterate sample -> loss -> backward -> step.  The images are
 * the domain's (the rank's planes under MPI); the parameters, their
 * gradient (reduced in plane order) and Adam are the same on every rank. */
static ffdp_status run_level(reg_domain *dm, const reg_pair *p, const ffdp_stage *st, const reg_level *lv,
			     linear_params *lp, int iters, float *warped, float *gm, ffdp_progress *pb, int64_t *done,
			     int *ran, double *last_loss, ffdp_error *err)
{
	lin_level L;
	reg_iter ri;
	reg_iter_init(&ri, st, dm->be, pb, done, lv->F.grid.n);
	ffdp_status s = lin_level_begin(dm, p, lv, st, lp, &L, err);
	/* the level's sampler, copied each iteration (the distributed sampler
	 * binds its box into the arguments); W, or W_dev read by the backend */
	const ffdp_mat4 id = ffdp_mat4_identity();
	ffdp_sample_args sa0, sa;
	reg_sampler_init(&sa0, &lv->M, &lv->m_p2i, &id, lv, warped);
	sa0.W_dev = L.dev ? L.la.w : NULL;
	sa0.out = reg_dom_img(dm, warped);
	sa0.lo[2] = dm->z0;
	int it, stop = 0;
	for (it = 0; it < iters && !stop && !s; it++) {
		sa = sa0;
		if (!L.dev)
			memcpy(sa.W, L.w.W, sizeof(sa.W));
		ffdp_scalar loss;
		memset(L.gw, 0, sizeof(L.gw));
		ffdp_sample_grad_args ga = {&sa, reg_dom_img(dm, gm), NULL, 0, L.dev ? NULL : L.gw, NULL, NULL,
					    L.dev ? (double *)L.la.gW : NULL};
		L.la.step = 1;
		L.la.c1 = 1 - pow(FFDP_LINEAR_BETA1, it + 1), L.la.c2 = 1 - pow(FFDP_LINEAR_BETA2, it + 1);
		const float *w = NULL;
		if ((s = reg_dom_sample(dm, &sa, &lv->M, err)) || (s = reg_level_weights(dm, lv, &sa, &w, err)) ||
		    (s = reg_dom_similarity(dm, &st->metric, lv->F.data, NULL, warped, w, lv->fmask, NULL, gm, 1.0,
					    lv->nvox, &loss, err)) ||
		    (s = reg_dom_sample_grad(dm, &ga, &lv->M, err)))
			break;
		if (L.dev)
			s = ffdp_op_linear_step(dm->be, &L.la, err);
		else
			ls_step(&L.la, L.st, L.gw, &L.w);
		if (s || (s = reg_iter_end(&ri, it, &loss, &stop, err)))
			break;
	}
	*ran = it;
	if (!s)
		s = lin_level_end(dm, &L, lp, err);
	lin_level_free(dm->be, &L);
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
		*T = params_to_T(&lp);
	rep->seconds = ffdp_now() - t0;
	return s;
}
