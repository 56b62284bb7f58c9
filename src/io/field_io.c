/* ANTs/ITK displacement fields: NIfTI with dim = [5, nx, ny, nz, 1, ncomp],
 * intent vector, float32, the component planes one after another
 * ([c][z][y][x], which is ffdp_field's layout), vectors in LPS mm as ITK
 * writes them (ITK flips the grid to RAS, never the vector values). */
#include <stdio.h>
#include <string.h>

#include "ffdp/io.h"
#include "io/nifti_internal.h"
#include "io/nifti_pieces.h"

ffdp_status ffdp_field_write(const char *path, const ffdp_field *u, ffdp_error *err)
{
	if (!u)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: no field", path ? path : "");
	ffdp_nifti_layout L;
	/* ncomp 1 would make an image layout: ask for the grid's count and compare. */
	int ncomp = ffdp_grid_dim(&u->grid);
	ffdp_status s = ffdp_nifti_layout_make(path, &u->grid, ncomp, FFDP_WRITE_FLOAT32, NULL, &L, err);
	if (s)
		return s;
	if (u->ncomp != ncomp)
		return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: %d components on a %d-D grid", path,
				 u->ncomp, ncomp);
	for (int c = 0; c < ncomp; c++)
		if (!u->c[c])
			return ffdp_fail(err, FFDP_ERR_ARG, "cannot write %s: component %d has no data", path, c);
	/* The component planes are written one after another, straight from the field. */
	const float *planes[3] = {u->c[0], u->c[1], u->c[2]};
	return ffdp_nifti_write_whole(&L, planes, path, err);
}

static ffdp_status check_field_dims(const nifti_image *nim, const ffdp_grid *g, const char *path,
				    ffdp_error *err)
{
	int want = ffdp_grid_dim(g);
	int64_t d[8];
	for (int i = 0; i < 8; i++)
		d[i] = i == 0 ? nim->dim[0] : ffdp_nifti_dim(nim, i);
	if (d[0] != 5 || d[4] != 1 || d[6] != 1 || d[7] != 1 || (d[5] != 2 && d[5] != 3))
		return ffdp_fail(
		    err, FFDP_ERR_DATA,
		    "%s: not a displacement field: dim = [%lld, %lld, %lld, %lld, %lld, %lld], want "
		    "[5, nx, ny, nz, 1, 3] (ANTs/ITK layout)",
		    path, (long long)d[0], (long long)d[1], (long long)d[2], (long long)d[3], (long long)d[4],
		    (long long)d[5]);
	if (d[5] != want)
		return ffdp_fail(
		    err, FFDP_ERR_DATA, "%s: %lld-component field on a %d-D grid (%lld x %lld x %lld)", path,
		    (long long)d[5], want, (long long)g->n[0], (long long)g->n[1], (long long)g->n[2]);
	if (nim->datatype != DT_FLOAT32 && nim->datatype != DT_FLOAT64)
		return ffdp_fail(err, FFDP_ERR_FORMAT, "%s: field stored as %s (want float32 or float64)",
				 path, ffdp_nifti_type_name(nim->datatype));
	return FFDP_OK;
}

ffdp_status ffdp_field_read(const char *path, ffdp_field *out, ffdp_error *err)
{
	nifti_image *nim = NULL;
	ffdp_nifti_stream st = {0};
	ffdp_value_stats stats;
	ffdp_grid g;
	memset(out, 0, sizeof(*out));
	ffdp_status s = ffdp_nifti_open(path, &nim, NULL, err);
	if (s)
		return s;
	s = ffdp_nifti_grid(nim, path, &g, NULL, err);
	if (s == FFDP_OK)
		s = check_field_dims(nim, &g, path, err);
	if (s == FFDP_OK)
		s = ffdp_nifti_stream_open(&st, path, nim, err);
	if (s == FFDP_OK)
		s = ffdp_field_alloc(out, &g, err);
	ffdp_value_stats_init(&stats);
	for (int c = 0; s == FFDP_OK && c < out->ncomp; c++)
		s = ffdp_nifti_stream_read(&st, out->c[c], ffdp_grid_voxels(&g), &stats, err);
	if (s == FFDP_OK)
		s = ffdp_nifti_stream_finish(&st, err);
	ffdp_nifti_stream_close(&st);
	nifti_image_free(nim);
	if (s == FFDP_OK && stats.nonfinite)
		s = ffdp_fail(err, FFDP_ERR_DATA, "%s: %lld displacement values are NaN or infinite", path,
			      (long long)stats.nonfinite);
	if (s) {
		ffdp_field_free(out);
		memset(out, 0, sizeof(*out));
	}
	return s;
}
