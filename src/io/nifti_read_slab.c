/* Reading planes [z0, z1) of a NIfTI image: the whole read is the range
 * [0, nz).  Memory holds the slab only: a .nii is read by seeking past the
 * planes before it, a .nii.gz by inflating and discarding them. */
#include <string.h>

#include "ffdp/io.h"
#include "io/nifti_internal.h"

static ffdp_status check_range(const char *path, const ffdp_grid *g, int64_t z0, int64_t z1, ffdp_error *err)
{
	if (z0 >= 0 && z0 < z1 && z1 <= g->n[2])
		return FFDP_OK;
	return ffdp_fail(err, FFDP_ERR_ARG,
			 "%s: planes [%lld, %lld) requested, the image has %lld (want 0 <= z0 < z1 <= %lld)", path,
			 (long long)z0, (long long)z1, (long long)g->n[2], (long long)g->n[2]);
}

static ffdp_status read_values(const char *path, const nifti_image *nim, const ffdp_grid *whole, int64_t z0,
			       ffdp_volume *out, ffdp_value_stats *stats, ffdp_error *err)
{
	ffdp_nifti_stream st = {0};
	const int64_t plane = whole->n[0] * whole->n[1];
	ffdp_value_stats_init(stats);
	ffdp_status s = ffdp_nifti_stream_open(&st, path, nim, err);
	if (s == FFDP_OK)
		s = ffdp_volume_alloc(out, &out->grid, err);
	if (s == FFDP_OK)
		s = ffdp_nifti_stream_skip(&st, z0 * plane, err);
	if (s == FFDP_OK)
		s = ffdp_nifti_stream_read(&st, out->data, ffdp_grid_voxels(&out->grid), stats, err);
	/* The gzip trailer is checked only where reading reaches it anyway. */
	if (s == FFDP_OK && z0 + out->grid.n[2] == whole->n[2])
		s = ffdp_nifti_stream_finish(&st, err);
	ffdp_nifti_stream_close(&st);
	return s;
}

ffdp_status ffdp_nifti_read_planes(const char *path, unsigned flags, int64_t z0, int64_t z1, ffdp_volume *out,
				   ffdp_image_info *info, ffdp_error *err)
{
	nifti_image *nim = NULL;
	ffdp_image_info local;
	ffdp_value_stats stats;
	ffdp_grid g;
	memset(out, 0, sizeof(*out));
	ffdp_status s = ffdp_nifti_open_grid(path, &nim, &g, &local, err);
	if (s)
		return s;
	s = ffdp_nifti_check_scalar(nim, path, err);
	if (s == FFDP_OK && (flags & FFDP_READ_REQUIRE_3D) && g.n[2] == 1)
		s = ffdp_fail(err, FFDP_ERR_DATA, "%s: 2-D image (%lld x %lld) where a 3-D image is required",
			      path, (long long)g.n[0], (long long)g.n[1]);
	if (z1 < 0)
		z0 = 0, z1 = g.n[2];
	if (s == FFDP_OK)
		s = check_range(path, &g, z0, z1, err);
	if (s == FFDP_OK) {
		out->grid = ffdp_grid_slab(&g, z0, z1);
		s = read_values(path, nim, &g, z0, out, &stats, err);
	}
	nifti_image_free(nim);
	if (s == FFDP_OK && stats.nonfinite && !(flags & FFDP_READ_ALLOW_NONFINITE))
		s = ffdp_fail(err, FFDP_ERR_DATA, "%s: %lld voxels are NaN or infinite", path,
			      (long long)stats.nonfinite);
	if (s) {
		ffdp_volume_free(out);
		memset(out, 0, sizeof(*out));
		return s;
	}
	local.intensity_min = stats.min <= stats.max ? stats.min : 0.0;
	local.intensity_max = stats.min <= stats.max ? stats.max : 0.0;
	if (info)
		*info = local;
	return FFDP_OK;
}

ffdp_status ffdp_image_read_slab(const char *path, int64_t z0, int64_t z1, unsigned flags, ffdp_volume *out,
				 ffdp_image_info *info, ffdp_error *err)
{
	if (z1 < 0) { /* negative z1 means "all" internally; never from the API */
		memset(out, 0, sizeof(*out));
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: planes [%lld, %lld) requested: z1 is negative",
				 path ? path : "", (long long)z0, (long long)z1);
	}
	return ffdp_nifti_read_planes(path, flags, z0, z1, out, info, err);
}
