/* Adam moments and the fused greedy warp step (ops.h, "optimiser").
 *
 * d = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) is recomputed from the
 * stored float m and v, in double, by one function, so that the max_norm of
 * adam_moments bounds exactly the |d| that warp_step sees.
 *
 * IO floors (float32, 3-D; 2-D is two thirds):
 *   adam_moments            read g, m, v, write m, v       60 B/voxel
 *   warp_step, compose = 0  read m, v, u, write u          48 B/voxel
 *   warp_step, compose = 1  the same 48 B/voxel, plus the copy of each old
 *                           plane into the ring (24 B/voxel unless the ring
 *                           stays in cache), plus 24 B/voxel to measure the
 *                           reach when no max_norm is given.
 *
 * In-place composition u <- delta + u o (Id + C delta): slices (z planes, or
 * y rows in 2-D) are updated in increasing order.  Before slice s is
 * overwritten its old values are copied into a ring of K + 1 slices, K the
 * largest backward reach ceil(max -(C delta)_z); reads of old u at slice
 * s' <= s come from the ring, at s' > s from u itself (not yet written).
 * The slice order is sequential; each slice is split over the threads.
 */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "ffdp/volume.h"

typedef struct adam_k {
	double b1, b2, ibc1, ibc2, eps;
} adam_k;

static ffdp_status adam_k_make(const ffdp_adam_opts *o, adam_k *k, ffdp_error *err)
{
	if (o->t < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: step count must start at 1");
	if (!(o->beta1 >= 0.0 && o->beta1 < 1.0 && o->beta2 >= 0.0 && o->beta2 < 1.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: betas (%g, %g) must lie in [0, 1)", o->beta1, o->beta2);
	if (!(o->eps >= 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: eps %g is negative", o->eps);
	k->b1 = o->beta1;
	k->b2 = o->beta2;
	k->ibc1 = 1.0 / (1.0 - pow(o->beta1, o->t));
	k->ibc2 = 1.0 / (1.0 - pow(o->beta2, o->t));
	k->eps = o->eps;
	return FFDP_OK;
}

static inline double adam_d(float m, float v, const adam_k *k)
{
	return (double)m * k->ibc1 / (sqrt((double)v * k->ibc2) + k->eps);
}

/* ---- moments ----------------------------------------------------------------- */

/* Returns max |d|^2; *nonfinite set when some d is NaN or infinite. */
static inline double moments_all(ffdp_vec g, ffdp_vec m, ffdp_vec v, const int nc, const adam_k *k,
				 int *nonfinite)
{
	const int64_t nv = g.n[0] * g.n[1] * g.n[2];
	double mx = 0.0;
	int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : mx) reduction(| : bad)
	for (int64_t i = 0; i < nv; i++) {
		double s = 0.0;
		for (int c = 0; c < nc; c++) {
			double gi = g.c[c][i];
			float mi = (float)(k->b1 * m.c[c][i] + (1.0 - k->b1) * gi);
			float vi = (float)(k->b2 * v.c[c][i] + (1.0 - k->b2) * gi * gi);
			m.c[c][i] = mi;
			v.c[c][i] = vi;
			double d = adam_d(mi, vi, k);
			s += d * d;
		}
		bad |= !isfinite(s);
		mx = s > mx ? s : mx;
	}
	*nonfinite = bad;
	return mx;
}

ffdp_status ffdp_cpu_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				  double *max_norm, ffdp_error *err)
{
	(void)be;
	adam_k k;
	ffdp_status s = adam_k_make(o, &k, err);
	if (s)
		return s;
	int bad = 0;
	/* constant component counts let the compiler unroll the inner loop */
	double mx = g.ncomp == 3 ? moments_all(g, m, v, 3, &k, &bad) : moments_all(g, m, v, 2, &k, &bad);
	if (max_norm)
		*max_norm = bad ? NAN : sqrt(mx);
	return FFDP_OK;
}

/* ---- warp step ---------------------------------------------------------------- */

typedef struct ws_geom {
	int64_t n[3];
	int nc;
	int sa;            /* slice axis: 2 (z) in 3-D, 1 (y) in 2-D */
	int64_t ns, slice; /* slices, voxels per slice */
	double C[3][3];    /* 2-D: the z row and column are zero */
	double step;
	adam_k k;
	ffdp_pad pad;
} ws_geom;

static void ws_geom_make(ws_geom *g, const ffdp_vec *u, const ffdp_warp_step_opts *o, const adam_k *k)
{
	for (int a = 0; a < 3; a++)
		g->n[a] = u->n[a];
	g->nc = u->ncomp;
	g->sa = g->nc == 3 ? 2 : 1;
	g->ns = g->n[g->sa];
	g->slice = g->nc == 3 ? g->n[0] * g->n[1] : g->n[0];
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			g->C[r][c] = r < g->nc && c < g->nc ? o->C[3 * r + c] : 0.0;
	g->step = o->step;
	g->k = *k;
	g->pad = o->pad;
}

static inline void ws_delta(const ws_geom *g, const ffdp_vec *m, const ffdp_vec *v, int64_t i, double dl[3])
{
	dl[2] = 0.0;
	for (int c = 0; c < g->nc; c++)
		dl[c] = g->step * adam_d(m->c[c][i], v->c[c][i], &g->k);
}

/* Trilinear taps along one axis of size n (same rules as the sampler:
 * BORDER clamps the coordinate, ZERO drops corners outside).  Indices are
 * always inside [0, n - 1]; a dropped corner has weight 0. */
static inline void ws_taps(double q, int64_t n, ffdp_pad pad, int64_t i[2], double w[2])
{
	if (pad == FFDP_PAD_BORDER) {
		q = fmax(0.0, fmin(q, (double)(n - 1))); /* NaN -> n - 1: memory stays safe */
		int64_t a = (int64_t)q;
		if (a > n - 2)
			a = n > 1 ? n - 2 : 0;
		double f = n > 1 ? q - (double)a : 0.0;
		i[0] = a, i[1] = n > 1 ? a + 1 : a;
		w[0] = 1.0 - f, w[1] = f;
		return;
	}
	q = fmax(-2.0, fmin(q, (double)(n + 1)));
	double fl = floor(q), f = q - fl;
	int64_t a = (int64_t)fl;
	w[0] = a >= 0 && a < n ? 1.0 - f : 0.0;
	w[1] = a + 1 >= 0 && a + 1 < n ? f : 0.0;
	i[0] = a < 0 ? 0 : (a >= n ? n - 1 : a);
	i[1] = a + 1 < 0 ? 0 : (a + 1 >= n ? n - 1 : a + 1);
}

/* Largest backward reach max(0, -(C delta)_sa) over the field. */
static double ws_reach(const ws_geom *g, const ffdp_vec *m, const ffdp_vec *v)
{
	const int64_t nv = g->n[0] * g->n[1] * g->n[2];
	const double *cs = g->C[g->sa];
	double mx = 0.0;
#pragma omp parallel for schedule(static) reduction(max : mx)
	for (int64_t i = 0; i < nv; i++) {
		double dl[3];
		ws_delta(g, m, v, i, dl);
		double back = -(cs[0] * dl[0] + cs[1] * dl[1] + cs[2] * dl[2]);
		mx = back > mx ? back : mx;
	}
	return mx;
}

typedef struct ws_ring {
	float *p; /* component c, slot t at p + (c * cap + t) * slice */
	int64_t cap;
} ws_ring;

/* New value of voxel j of slice s; returns 1 if it needed a slice that the
 * ring no longer holds (it then reads the oldest one instead). */
static inline int ws_voxel(const ws_geom *g, ffdp_vec *u, const ffdp_vec *m, const ffdp_vec *v,
			   const ws_ring *ring, int64_t s, int64_t j)
{
	const int64_t nx = g->n[0], slice = g->slice;
	const int64_t i = s * slice + j;
	double pos[3];
	if (g->sa == 2)
		pos[0] = (double)(j % nx), pos[1] = (double)(j / nx), pos[2] = (double)s;
	else
		pos[0] = (double)j, pos[1] = (double)s, pos[2] = 0.0;
	double dl[3], q[3];
	ws_delta(g, m, v, i, dl);
	/* offset first, as ws_reach sums it, so that q >= s - ceil(reach) holds in floating point */
	for (int a = 0; a < 3; a++)
		q[a] = pos[a] + (g->C[a][0] * dl[0] + g->C[a][1] * dl[1] + g->C[a][2] * dl[2]);

	/* axes: x, the other in-slice axis (y in 3-D, the empty z in 2-D), the slice axis */
	int64_t ix[2], i2[2], is[2];
	double wx[2], w2[2], wsl[2];
	const int other = g->sa == 2 ? 1 : 2;
	const int64_t stride2 = g->sa == 2 ? nx : 0;
	ws_taps(q[0], g->n[0], g->pad, ix, wx);
	ws_taps(q[other], g->n[other], g->pad, i2, w2);
	ws_taps(q[g->sa], g->n[g->sa], g->pad, is, wsl);

	int bad = 0;
	const float *base[2][3];
	for (int t = 0; t < 2; t++) {
		int64_t st = is[t];
		if (st > s) {
			for (int c = 0; c < g->nc; c++)
				base[t][c] = u->c[c] + st * slice;
			continue;
		}
		if (st < s - ring->cap + 1) {
			bad |= wsl[t] != 0.0;
			st = s - ring->cap + 1;
		}
		for (int c = 0; c < g->nc; c++)
			base[t][c] = ring->p + ((int64_t)c * ring->cap + st % ring->cap) * slice;
	}
	for (int c = 0; c < g->nc; c++) {
		double acc = 0.0;
		for (int t = 0; t < 2; t++)
			for (int t2 = 0; t2 < 2; t2++) {
				const float *row = base[t][c] + i2[t2] * stride2;
				double w = wsl[t] * w2[t2];
				acc += w * (wx[0] * row[ix[0]] + wx[1] * row[ix[1]]);
			}
		u->c[c][i] = (float)(dl[c] + acc);
	}
	return bad;
}

static int ws_compose(const ws_geom *g, ffdp_vec u, const ffdp_vec *m, const ffdp_vec *v, const ws_ring *ring)
{
	const int64_t slice = g->slice;
	int bad = 0;
#pragma omp parallel reduction(| : bad)
	for (int64_t s = 0; s < g->ns; s++) {
		const int64_t slot = s % ring->cap;
#pragma omp for schedule(static)
		for (int64_t j = 0; j < slice; j++)
			for (int c = 0; c < g->nc; c++)
				ring->p[((int64_t)c * ring->cap + slot) * slice + j] = u.c[c][s * slice + j];
#pragma omp for schedule(static)
		for (int64_t j = 0; j < slice; j++)
			bad |= ws_voxel(g, &u, m, v, ring, s, j);
	}
	return bad;
}

static void ws_add(const ws_geom *g, ffdp_vec u, const ffdp_vec *m, const ffdp_vec *v)
{
	const int64_t nv = g->n[0] * g->n[1] * g->n[2];
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < nv; i++) {
		double dl[3];
		ws_delta(g, m, v, i, dl);
		for (int c = 0; c < g->nc; c++)
			u.c[c][i] = (float)((double)u.c[c][i] + dl[c]);
	}
}

/* Slices the ring must hold besides the current one. */
static ffdp_status ws_ring_depth(const ws_geom *g, const ffdp_vec *m, const ffdp_vec *v, double max_norm,
				 int64_t *depth, ffdp_error *err)
{
	double reach;
	if (max_norm > 0.0) {
		if (!isfinite(max_norm))
			return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: max_norm %g is not finite", max_norm);
		const double *cs = g->C[g->sa];
		double cn = sqrt(cs[0] * cs[0] + cs[1] * cs[1] + cs[2] * cs[2]);
		reach = fabs(g->step) * max_norm * cn * (1.0 + 1e-9);
	} else {
		reach = ws_reach(g, m, v);
	}
	double k = ceil(reach);
	*depth = k < (double)(g->ns - 1) ? (int64_t)k : g->ns - 1;
	return FFDP_OK;
}

ffdp_status ffdp_cpu_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
			       const ffdp_warp_step_opts *o, ffdp_error *err)
{
	(void)be;
	adam_k k;
	ffdp_status s = adam_k_make(&o->adam, &k, err);
	if (s)
		return s;
	if (!isfinite(o->step))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: step %g is not finite", o->step);
	ws_geom g;
	ws_geom_make(&g, &u, o, &k);
	if (!o->compose) {
		ws_add(&g, u, &m, &v);
		return FFDP_OK;
	}
	int64_t depth = 0;
	if ((s = ws_ring_depth(&g, &m, &v, o->max_norm, &depth, err)))
		return s;
	ws_ring ring = {NULL, depth + 1};
	ring.p = malloc((size_t)(ring.cap * g.slice * g.nc) * sizeof(float));
	if (!ring.p)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "warp_step: cannot allocate a ring of %lld slices",
				 (long long)ring.cap);
	int bad = ws_compose(&g, u, &m, &v, &ring);
	free(ring.p);
	if (bad)
		return ffdp_fail(err, FFDP_ERR_ARG,
				 "warp_step: max_norm %g is below the field's own; u was only partly updated",
				 o->max_norm);
	return FFDP_OK;
}
