/* The greedy step over z-slabs (dist.h): smoothing of fields, Adam moments
 * with the global max norm, and the in-place warp step on a haloed box.
 *
 * The warp step composes u with a displacement that reaches at most K
 * planes (K bounded from the global max norm exactly as the op bounds its
 * ring), so a voxel of the rank's planes reads old u within K + 1 planes;
 * delta comes from m and v of the voxel itself, so their halo is zeros.  On the
 * box [z0 - h, z1 + h) clipped to the volume, the op clamps only at true
 * volume faces for the rank's own voxels, and takes the same path (short
 * or padded) for each of them as on the whole volume: their bits agree.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

ffdp_status ffdp_dist_smooth_vec(ffdp_dist *d, ffdp_backend *be, ffdp_vec slab, const ffdp_slab *s,
				 const ffdp_smooth_opts *o, ffdp_error *err)
{
	ffdp_status st = FFDP_OK;
	for (int c = 0; c < slab.ncomp && !st; c++) {
		ffdp_img x = {slab.c[c], {slab.n[0], slab.n[1], slab.n[2]}};
		st = ffdp_dist_smooth(d, be, x, s, o, err);
	}
	return st;
}

ffdp_status ffdp_dist_adam_moments(ffdp_dist *d, ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v,
				   const ffdp_slab *s, const ffdp_adam_opts *o, double *max_norm, ffdp_error *err)
{
	double mx = 0.0;
	int nan = 0;
	ffdp_status st = FFDP_OK;

	if (s->z1 > s->z0)
		st = ffdp_op_adam_moments(be, g, m, v, o, &mx, err);
	st = ffdp_dist_agree(d, st, "dist adam", err);
	if (st)
		return st;
	nan = mx != mx;
	MPI_Allreduce(MPI_IN_PLACE, &nan, 1, MPI_INT, MPI_MAX, d->comm);
	mx = ffdp_dist_max(d, nan ? 0.0 : mx);
	*max_norm = nan ? NAN : mx;
	return FFDP_OK;
}

/* Planes the composition reaches (the op's ring depth rule, cpu_adam.c). */
static int64_t step_reach(const ffdp_vec *u, const ffdp_warp_step_opts *o)
{
	const double *cz = o->C + 6;
	double cn = sqrt(cz[0] * cz[0] + cz[1] * cz[1] + cz[2] * cz[2]);
	double reach = ceil(fabs(o->step) * o->max_norm * cn * (1.0 + 1e-5));
	(void)u;
	return (int64_t)reach;
}

ffdp_status ffdp_dist_warp_step(ffdp_dist *d, ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
				const ffdp_slab *s, const ffdp_warp_step_opts *o, ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0, plane = u.n[0] * u.n[1];
	ffdp_status st = FFDP_OK;

	if (!o->compose) {
		if (own > 0)
			st = ffdp_op_warp_step(be, u, m, v, o, err);
		return ffdp_dist_agree(d, st, "dist warp step", err);
	}
	if (!(o->max_norm > 0.0) || !isfinite(o->max_norm) || u.ncomp != 3)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist warp step: needs the global max_norm (> 0) and a 3-D field");
	int64_t k = step_reach(&u, o), h = k + 1 < s->nz ? k + 1 : s->nz;
	const int64_t lo = s->z0 - h > 0 ? s->z0 - h : 0, hi = s->z1 + h < s->nz ? s->z1 + h : s->nz;
	const int64_t len = (own + 2 * h) * plane;
	/* bf16 moments: one word field in m, none in v */
	const int nf = o->adam.store == FFDP_MOMENTS_BF16 ? 2 : 3;
	float *buf = NULL;
	if (!(st = dist_check_backend(d, be, "dist warp step", err)) &&
	    !(buf = dist_scratch(d, be, 3 * nf * len + 1, err, "dist warp step")))
		st = FFDP_ERR_NOMEM;
	st = ffdp_dist_agree(d, st, "dist warp step", err);
	if (st)
		return st;
	/* u, m, v components with halos, one after another; m and v keep zero
	 * halos (zero words too) */
	const ffdp_vec *src[3] = {&u, &m, &v};
	ffdp_vec box[3];
	for (int f = 0; f < nf && !st; f++) {
		box[f] = (ffdp_vec){{NULL, NULL, NULL}, {u.n[0], u.n[1], hi - lo}, 3};
		for (int c = 0; c < 3 && !st; c++) {
			float *b = buf + (size_t)(3 * f + c) * (size_t)len;
			if (own > 0)
				st = dist_copy(be, b + h * plane, src[f]->c[c], own * plane, err);
			if (!st && f > 0)
				st = ffdp_buf_zero(be, b, (size_t)(h * plane) * sizeof(float), err);
			if (!st && f > 0)
				st = ffdp_buf_zero(be, b + (h + own) * plane, (size_t)(h * plane) * sizeof(float), err);
			/* only old u is read across planes; m, v there only feed
			 * halo voxels, whose new values are dropped */
			st = ffdp_dist_agree(d, st, "dist warp step", err);
			if (!st && f == 0)
				st = dist_halo_exchange_be(d, be, b, plane, s, h, 0.0f, err);
			box[f].c[c] = b + (lo - (s->z0 - h)) * plane;
		}
	}
	if (nf == 2)
		box[2] = box[1];
	if (!st && own > 0) {
		st = ffdp_op_warp_step(be, box[0], box[1], box[2], o, err);
		for (int c = 0; c < 3 && !st; c++)
			st = dist_copy(be, u.c[c], box[0].c[c] + (s->z0 - lo) * plane, own * plane, err);
	}
	dist_scratch_put(d, be, buf, 3 * nf * len + 1);
	return ffdp_dist_agree(d, st, "dist warp step", err);
}
