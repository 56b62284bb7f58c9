/* Volumes and fields in the backend's memory (host for CPU, device for
 * CUDA): the same ffdp_volume / ffdp_field structs, but the planes come from
 * ffdp_buf_alloc and go back with ffdp_buf_free, never ffdp_free.  Moving
 * data between the caller's host structs and these happens only here. */
#include <string.h>

#include "reg_internal.h"

static size_t plane_bytes(const ffdp_grid *g)
{
	return (size_t)ffdp_grid_voxels(g) * sizeof(float);
}

ffdp_status reg_volume_alloc(ffdp_backend *be, const ffdp_grid *g, ffdp_volume *v, ffdp_error *err)
{
	memset(v, 0, sizeof(*v));
	ffdp_status s = ffdp_grid_check(g, err);
	if (s)
		return s;
	v->grid = *g;
	v->data = ffdp_buf_alloc(be, plane_bytes(g), err);
	return v->data ? FFDP_OK : FFDP_ERR_NOMEM;
}

void reg_volume_free(ffdp_backend *be, ffdp_volume *v)
{
	ffdp_buf_free(be, v->data);
	v->data = NULL;
}

ffdp_status reg_volume_upload(ffdp_backend *be, const ffdp_volume *host, ffdp_volume *v, ffdp_error *err)
{
	ffdp_status s = reg_volume_alloc(be, &host->grid, v, err);
	if (!s)
		s = ffdp_buf_upload(be, v->data, host->data, plane_bytes(&host->grid), err);
	if (s)
		reg_volume_free(be, v);
	return s;
}

ffdp_status reg_field_alloc(ffdp_backend *be, const ffdp_grid *g, ffdp_field *f, ffdp_error *err)
{
	memset(f, 0, sizeof(*f));
	ffdp_status s = ffdp_grid_check(g, err);
	if (s)
		return s;
	f->grid = *g;
	f->ncomp = ffdp_grid_dim(g);
	for (int c = 0; c < f->ncomp; c++)
		if (!(f->c[c] = ffdp_buf_alloc(be, plane_bytes(g), err))) {
			reg_field_free(be, f);
			return FFDP_ERR_NOMEM;
		}
	return FFDP_OK;
}

void reg_field_free(ffdp_backend *be, ffdp_field *f)
{
	for (int c = 0; c < 3; c++) {
		ffdp_buf_free(be, f->c[c]);
		f->c[c] = NULL;
	}
}

ffdp_status reg_field_upload(ffdp_backend *be, const ffdp_field *host, ffdp_field *f, ffdp_error *err)
{
	ffdp_status s = reg_field_alloc(be, &host->grid, f, err);
	for (int c = 0; c < f->ncomp && !s; c++)
		s = ffdp_buf_upload(be, f->c[c], host->c[c], plane_bytes(&host->grid), err);
	if (s)
		reg_field_free(be, f);
	return s;
}

ffdp_status reg_field_download(ffdp_backend *be, const ffdp_field *f, ffdp_field *host, ffdp_error *err)
{
	const double t0 = ffdp_now();
	ffdp_status s = host->c[0] ? FFDP_OK : ffdp_field_alloc(host, &f->grid, err);
	const double t1 = ffdp_now();
	for (int c = 0; c < f->ncomp && !s; c++)
		s = ffdp_buf_download(be, host->c[c], f->c[c], plane_bytes(&f->grid), err);
	if (!s) /* the host's share of a large registration's end (debug log) */
		ffdp_log_debug("field to the host: %.3f s allocating, %.3f s copying %.2f GB", t1 - t0, ffdp_now() - t1,
			       1e-9 * f->ncomp * (double)plane_bytes(&f->grid));
	if (s)
		ffdp_field_free(host);
	return s;
}

ffdp_img reg_img(const ffdp_volume *v)
{
	ffdp_img x = {v->data, {v->grid.n[0], v->grid.n[1], v->grid.n[2]}};
	return x;
}

ffdp_vec reg_vec(const ffdp_field *f)
{
	ffdp_vec x = {{f->c[0], f->c[1], f->c[2]}, {f->grid.n[0], f->grid.n[1], f->grid.n[2]}, f->ncomp};
	return x;
}

void reg_linear3(const ffdp_mat4 *T, double A[9])
{
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			A[3 * r + c] = T->m[4 * r + c];
}
