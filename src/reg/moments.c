/* Moments initialiser: centres of mass, then (order 2) the rotation that
 * aligns principal axes.  Only proper rotations (det = +1) are candidates:
 * a mirror image is never a valid registration.  The axis signs are
 * ambiguous, so every proper candidate, and the identity rotation, is
 * scored with the stage's metric on a coarse level and the best kept. */
#include <math.h>
#include <string.h>

#include "reg_internal.h"

/* Centre (mm) and covariance (mm^2) of an image's intensity mass (v: the
 * domain's planes of it). */
static ffdp_status mass_moments(reg_domain *dm, const ffdp_volume *v, double c[3], double C[9], ffdp_error *err)
{
	double mo[10];
	ffdp_status s = reg_dom_moments(dm, v, mo, err);
	if (s)
		return s;
	if (!(mo[0] > 0))
		return ffdp_fail(err, FFDP_ERR_DATA, "moments: the image has no positive intensity");
	double mi[3] = {mo[1] / mo[0], mo[2] / mo[0], mo[3] / mo[0]};
	/* index covariance, then to mm: C = L Ci L^T with L = D diag(spacing) */
	static const int ab[6][2] = {{0, 0}, {0, 1}, {0, 2}, {1, 1}, {1, 2}, {2, 2}};
	double Ci[9];
	for (int k = 0; k < 6; k++) {
		int a = ab[k][0], b = ab[k][1];
		double cov = mo[4 + k] / mo[0] - mi[a] * mi[b];
		Ci[3 * a + b] = Ci[3 * b + a] = cov;
	}
	ffdp_mat4 i2p = ffdp_grid_index_to_phys(&v->grid);
	ffdp_mat4_apply_point(&i2p, mi, c);
	for (int r = 0; r < 3; r++)
		for (int q = 0; q < 3; q++) {
			double sum = 0;
			for (int a = 0; a < 3; a++)
				for (int b = 0; b < 3; b++)
					sum += i2p.m[4 * r + a] * Ci[3 * a + b] * i2p.m[4 * q + b];
			C[3 * r + q] = sum;
		}
	return FFDP_OK;
}

static ffdp_mat4 rigid_about(const double R[9], const double cf[3], const double cm[3])
{
	/* T(x) = R (x - cf) + cm */
	double t[3];
	for (int r = 0; r < 3; r++)
		t[r] = cm[r] - (R[3 * r] * cf[0] + R[3 * r + 1] * cf[1] + R[3 * r + 2] * cf[2]);
	return ffdp_mat4_from_linear(R, t);
}

static ffdp_status score(reg_domain *dm, const reg_level *lv, const ffdp_metric *mt, const ffdp_mat4 *T,
			 float *warped, double *loss, ffdp_error *err)
{
	ffdp_sample_args a;
	reg_sampler_init(&a, &lv->M, &lv->m_p2i, T, lv, warped);
	a.out = reg_dom_img(dm, warped);
	a.lo[2] = dm->z0;
	const float *w = NULL;
	ffdp_status s = reg_dom_sample(dm, &a, &lv->M, err);
	if (!s)
		s = reg_level_weights(dm, lv, &a, &w, err);
	if (s)
		return s;
	ffdp_scalar x;
	if ((s = reg_dom_similarity(dm, mt, lv->F.data, NULL, warped, w, lv->fmask, NULL, NULL, 1.0, lv->nvox, &x, err)))
		return s;
	return ffdp_scalar_get(dm->be, &x, loss, err);
}

ffdp_status reg_moments(const reg_pair *p, const ffdp_stage *st, ffdp_mat4 *T, ffdp_stage_report *rep,
			ffdp_error *err)
{
	double t0 = ffdp_now();
	double cf[3], cm[3], Cf[9], Cm[9];
	reg_domain dm;
	reg_level full;
	reg_domain_init(&dm, p->be, p->dist);
	/* the full-resolution level: the pair's images (their own planes) */
	ffdp_status s = reg_level_make(p, 1.0, 0, &full, err);
	if (!s)
		s = mass_moments(&dm, &full.F, cf, Cf, err);
	if (!s)
		s = mass_moments(&dm, &full.M, cm, Cm, err);
	reg_level_free(p, &full);
	if (s)
		return s;
	double I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
	*T = rigid_about(I, cf, cm);
	rep->kind = st->kind;
	rep->nlevels = 0;
	if (st->moments_order < 2) {
		rep->seconds = ffdp_now() - t0;
		return FFDP_OK;
	}
	if (p->dim == 2) {
		/* Keep rotations in the image plane: make its normal the dominant,
		 * unambiguous axis of both moment matrices. */
		double big = 0;
		for (int i = 0; i < 9; i++)
			big += fabs(Cf[i]) + fabs(Cm[i]);
		for (int r = 0; r < 3; r++)
			for (int q = 0; q < 3; q++) {
				Cf[3 * r + q] += 10 * big * p->fn.grid.dir[3 * r + 2] * p->fn.grid.dir[3 * q + 2];
				Cm[3 * r + q] += 10 * big * p->mn.grid.dir[3 * r + 2] * p->mn.grid.dir[3 * q + 2];
			}
	}
	double ef[3], em[3], Vf[9], Vm[9];
	reg_sym3_eigen(Cf, ef, Vf);
	reg_sym3_eigen(Cm, em, Vm);

	reg_level lv;
	double shrink = st->nlevels > 0 ? st->shrink[0] : 4.0;
	s = reg_level_make(p, shrink, 0, &lv, err);
	if (s)
		return s;
	reg_domain_level(&dm, &lv.F.grid);
	float *warped = reg_dom_buf(&dm, err);
	if (!warped) {
		reg_level_free(p, &lv);
		return FFDP_ERR_NOMEM;
	}
	double best_loss = 0;
	s = score(&dm, &lv, &st->metric, T, warped, &best_loss, err);
	for (int k = 0; k < 8 && !s; k++) {
		double D[3] = {k & 1 ? -1.0 : 1.0, k & 2 ? -1.0 : 1.0, k & 4 ? -1.0 : 1.0};
		double R[9];
		for (int r = 0; r < 3; r++)
			for (int q = 0; q < 3; q++)
				R[3 * r + q] = Vm[3 * r] * D[0] * Vf[3 * q] + Vm[3 * r + 1] * D[1] * Vf[3 * q + 1] +
					       Vm[3 * r + 2] * D[2] * Vf[3 * q + 2];
		ffdp_mat4 cand = rigid_about(R, cf, cm);
		if (ffdp_mat4_det3(&cand) < 0)
			continue; /* a mirror: never */
		if (p->dim == 2) {
			double nf[3] = {p->fn.grid.dir[2], p->fn.grid.dir[5], p->fn.grid.dir[8]}, nm[3];
			ffdp_mat4_apply_vector(&cand, nf, nm);
			double dot = nm[0] * p->mn.grid.dir[2] + nm[1] * p->mn.grid.dir[5] + nm[2] * p->mn.grid.dir[8];
			if (dot < 0.5)
				continue; /* would flip the plane over */
		}
		double loss;
		s = score(&dm, &lv, &st->metric, &cand, warped, &loss, err);
		ffdp_log_debug("moments: candidate %d loss %.6f (best %.6f) R row0 %.3f %.3f %.3f", k, loss, best_loss,
			       R[0], R[1], R[2]);
		if (!s && loss < best_loss) {
			best_loss = loss;
			*T = cand;
		}
	}
	ffdp_buf_free(p->be, warped);
	reg_level_free(p, &lv);
	rep->final_loss = best_loss;
	rep->fetch_sent = dm.sent, rep->fetch_recv = dm.recv, rep->fetches = dm.fetches;
	rep->fetch_ring = dm.ring;
	rep->seconds = ffdp_now() - t0;
	return s;
}
