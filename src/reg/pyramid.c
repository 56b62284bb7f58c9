/* Pyramid levels (include/ffdp/pyramid.h), written against the public ops;
 * every buffer is the backend's (buffers.c). */
#include <math.h>
#include <string.h>

#include "reg_internal.h"

ffdp_status ffdp_pyramid_level_grid(const ffdp_grid *g, double shrink, int64_t min_size, ffdp_grid *out,
				    ffdp_error *err)
{
	ffdp_status s = ffdp_grid_check(g, err);
	if (s)
		return s;
	if (!(shrink >= 1.0) || !isfinite(shrink))
		return ffdp_fail(err, FFDP_ERR_ARG, "pyramid: shrink factor %g is not a finite number >= 1",
				 shrink);
	ffdp_grid l = *g;
	double off[3];
	for (int a = 0; a < 3; a++) {
		int64_t n = g->n[a], m = llround((double)n / shrink);
		int64_t floor_n = min_size < n ? min_size : n;
		if (m < floor_n)
			m = floor_n;
		if (m < 1)
			m = 1;
		double ratio = (double)n / (double)m;
		l.n[a] = m;
		l.spacing[a] = g->spacing[a] * ratio;
		off[a] = g->spacing[a] * (ratio - 1.0) * 0.5;
	}
	for (int r = 0; r < 3; r++)
		for (int a = 0; a < 3; a++)
			l.origin[r] += g->dir[3 * r + a] * off[a];
	*out = l;
	return FFDP_OK;
}

void ffdp_pyramid_map(const ffdp_grid *src, const ffdp_grid *dst, double W[12])
{
	ffdp_mat4 m = ffdp_mat4_mul(ffdp_grid_phys_to_index(src), ffdp_grid_index_to_phys(dst));
	memcpy(W, m.m, 12 * sizeof(double));
}

static ffdp_status check_pair(const ffdp_grid *src, const ffdp_grid *dst, const char *what, ffdp_error *err)
{
	ffdp_status s;
	if ((s = ffdp_grid_check(src, err)) || (s = ffdp_grid_check(dst, err)))
		return s;
	if (ffdp_grid_dim(src) != ffdp_grid_dim(dst))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: %d-D source, %d-D target grid", what,
				 ffdp_grid_dim(src), ffdp_grid_dim(dst));
	return FFDP_OK;
}

/* Linear, border-padded sample of one plane on src_grid at dst's voxel centres. */
static ffdp_status sample_plane(ffdp_backend *be, float *plane, const ffdp_grid *src_grid, float *out,
				const ffdp_grid *dst_grid, ffdp_error *err)
{
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving.p = plane;
	a.out.p = out;
	for (int k = 0; k < 3; k++)
		a.moving.n[k] = src_grid->n[k], a.out.n[k] = dst_grid->n[k];
	ffdp_pyramid_map(src_grid, dst_grid, a.W);
	a.interp = FFDP_INTERP_LINEAR;
	a.pad = FFDP_PAD_BORDER;
	return ffdp_op_sample(be, &a, err);
}

int ffdp_pyramid_blur(const ffdp_grid *src, const ffdp_grid *dst, ffdp_smooth_opts *so)
{
	/* anti-aliasing: sigma = 0.5 n/n' source voxels on each shrinking axis */
	int blur = 0;
	memset(so, 0, sizeof(*so));
	so->truncate = 2.0, so->renormalize = 1;
	for (int a = 0; a < 3; a++)
		if (dst->n[a] < src->n[a]) {
			so->sigma[a] = 0.5 * (double)src->n[a] / (double)dst->n[a];
			blur = 1;
		}
	return blur;
}

ffdp_status ffdp_pyramid_downsample(ffdp_backend *be, const ffdp_volume *src, const ffdp_grid *dst_grid,
				    ffdp_volume *dst, ffdp_error *err)
{
	memset(dst, 0, sizeof(*dst));
	ffdp_status s;
	if ((s = check_pair(&src->grid, dst_grid, "downsample", err)))
		return s;
	ffdp_smooth_opts so;
	int blur = ffdp_pyramid_blur(&src->grid, dst_grid, &so);
	ffdp_volume tmp = {0};
	const ffdp_volume *from = src;
	if (blur) {
		/* level setup only: one blurred copy of the source */
		if ((s = reg_volume_alloc(be, &src->grid, &tmp, err)) ||
		    (s = ffdp_buf_copy(be, tmp.data, src->data, (size_t)ffdp_grid_voxels(&src->grid) * sizeof(float),
				       err)) ||
		    (s = ffdp_op_smooth(be, reg_img(&tmp), &so, err)))
			goto out;
		from = &tmp;
	}
	if ((s = reg_volume_alloc(be, dst_grid, dst, err)))
		goto out;
	s = sample_plane(be, from->data, &from->grid, dst->data, dst_grid, err);
out:
	reg_volume_free(be, &tmp);
	if (s) {
		reg_volume_free(be, dst);
		memset(dst, 0, sizeof(*dst));
	}
	return s;
}

ffdp_status ffdp_plane_resample(ffdp_backend *be, const float *src, const ffdp_grid *src_grid, float *dst,
				const ffdp_grid *dst_grid, ffdp_error *err)
{
	ffdp_status s = check_pair(src_grid, dst_grid, "plane_resample", err);
	return s ? s : sample_plane(be, (float *)src, src_grid, dst, dst_grid, err);
}

ffdp_status ffdp_field_resample(ffdp_backend *be, const ffdp_field *src, const ffdp_grid *dst_grid,
				ffdp_field *dst, ffdp_error *err)
{
	memset(dst, 0, sizeof(*dst));
	ffdp_status s;
	if ((s = check_pair(&src->grid, dst_grid, "field_resample", err)))
		return s;
	if (src->ncomp != ffdp_grid_dim(&src->grid))
		return ffdp_fail(err, FFDP_ERR_ARG, "field_resample: %d components on a %d-D grid", src->ncomp,
				 ffdp_grid_dim(&src->grid));
	if ((s = reg_field_alloc(be, dst_grid, dst, err)))
		return s;
	for (int c = 0; c < src->ncomp && !s; c++)
		s = sample_plane(be, src->c[c], &src->grid, dst->c[c], dst_grid, err);
	if (s) {
		reg_field_free(be, dst);
		memset(dst, 0, sizeof(*dst));
	}
	return s;
}
