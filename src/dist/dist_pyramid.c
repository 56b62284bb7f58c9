/* Pyramid levels over z-slabs (dist.h): the global intensity range, and
 * resampling between slabbed grids through the sampler's moving fetch
 * (the level's points reach a band of source planes, fetched from their
 * owners), after a distributed blur when downsampling.  Each piece is the
 * single-process op's arithmetic, so levels have its bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"
#include "ffdp/pyramid.h"

ffdp_status ffdp_dist_minmax(ffdp_dist *d, ffdp_backend *be, ffdp_img own, double *lo, double *hi,
			     ffdp_error *err)
{
	double v[2] = {NAN, NAN}, r[2];
	ffdp_status st = FFDP_OK;

	if (own.n[0] * own.n[1] * own.n[2] > 0)
		st = ffdp_op_minmax(be, own, &v[0], &v[1], err);
	if ((st = ffdp_dist_agree(d, st, "dist minmax", err)))
		return st;
	/* NaN (no voxel, or all NaN) must not win: send -max and max as +-inf */
	double send[2] = {v[0] == v[0] ? -v[0] : -INFINITY, v[1] == v[1] ? v[1] : -INFINITY};
	MPI_Allreduce(send, r, 2, MPI_DOUBLE, MPI_MAX, d->comm);
	*lo = r[0] == -INFINITY ? NAN : -r[0];
	*hi = r[1] == -INFINITY ? NAN : r[1];
	return FFDP_OK;
}

ffdp_status ffdp_dist_resample(ffdp_dist *d, ffdp_backend *be, const ffdp_dist_image *src,
			       const ffdp_grid *src_grid, const ffdp_grid *dst_grid, float *dst_own,
			       ffdp_dist_traffic *t, ffdp_error *err)
{
	ffdp_slab s = ffdp_slab_of(dst_grid->n[2], d->rank, d->size);
	ffdp_sample_args a;

	memset(&a, 0, sizeof(a));
	ffdp_pyramid_map(src_grid, dst_grid, a.W);
	a.out = (ffdp_img){dst_own, {dst_grid->n[0], dst_grid->n[1], s.z1 - s.z0}};
	a.lo[2] = s.z0;
	a.interp = FFDP_INTERP_LINEAR;
	a.pad = FFDP_PAD_BORDER;
	return ffdp_dist_sample(d, be, &a, src, t, err);
}

ffdp_status ffdp_dist_downsample(ffdp_dist *d, ffdp_backend *be, const ffdp_dist_image *src,
				 const ffdp_grid *src_grid, const ffdp_grid *dst_grid, float *dst_own,
				 ffdp_dist_traffic *t, ffdp_error *err)
{
	ffdp_slab s = ffdp_slab_of(src_grid->n[2], d->rank, d->size);
	const int64_t own = s.z1 - s.z0, plane = src_grid->n[0] * src_grid->n[1];
	ffdp_smooth_opts so;
	ffdp_status st = FFDP_OK;

	if (!ffdp_pyramid_blur(src_grid, dst_grid, &so))
		return ffdp_dist_resample(d, be, src, src_grid, dst_grid, dst_own, t, err);
	/* setup only: one blurred copy of the rank's source planes */
	float *copy = dist_alloc(be, own * plane + 1, err, "dist downsample");
	if (!copy)
		st = FFDP_ERR_NOMEM;
	else if (own > 0)
		st = dist_copy(be, copy, src->own, own * plane, err);
	st = ffdp_dist_agree(d, st, "dist downsample", err);
	if (!st)
		st = ffdp_dist_smooth(d, be, (ffdp_img){own > 0 ? copy : NULL, {src_grid->n[0], src_grid->n[1], own}},
				      &s, &so, err);
	if (!st) {
		ffdp_dist_image b = {.own = copy, .n = {src->n[0], src->n[1], src->n[2]}};
		st = ffdp_dist_resample(d, be, &b, src_grid, dst_grid, dst_own, t, err);
	}
	dist_free(be, copy);
	return st;
}
