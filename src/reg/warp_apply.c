/* Resampling through phi = T + u, and the ANTs form of the displacement. */
#include <string.h>

#include "reg_internal.h"

ffdp_status ffdp_warp_volume(ffdp_backend *be, const ffdp_volume *moving, const ffdp_grid *ref, const ffdp_mat4 *T,
			     const ffdp_field *u, ffdp_interp interp, ffdp_volume *out, ffdp_error *err)
{
	if (u && !ffdp_grid_same(&u->grid, ref, 1e-4))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp: the displacement field is not on the reference grid");
	if (ffdp_grid_dim(ref) != ffdp_grid_dim(&moving->grid))
		return ffdp_fail(err, FFDP_ERR_DATA, "warp: %d-D image on a %d-D reference grid",
				 ffdp_grid_dim(&moving->grid), ffdp_grid_dim(ref));
	ffdp_status s = ffdp_volume_alloc(out, ref, err);
	if (s)
		return s;
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(&moving->grid);
	ffdp_mat4 W = ffdp_mat4_mul(p2i, ffdp_mat4_mul(*T, ffdp_grid_index_to_phys(ref)));
	ffdp_vec uv;
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving = (ffdp_img){moving->data, {moving->grid.n[0], moving->grid.n[1], moving->grid.n[2]}};
	memcpy(a.W, W.m, 12 * sizeof(double));
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			a.B[3 * r + c] = p2i.m[4 * r + c];
	if (u) {
		uv = (ffdp_vec){{u->c[0], u->c[1], u->c[2]}, {ref->n[0], ref->n[1], ref->n[2]}, u->ncomp};
		a.u = &uv;
	}
	a.out = (ffdp_img){out->data, {ref->n[0], ref->n[1], ref->n[2]}};
	a.interp = interp;
	a.pad = FFDP_PAD_ZERO;
	s = ffdp_op_sample(be, &a, err);
	if (s)
		ffdp_volume_free(out);
	return s;
}

ffdp_status ffdp_warp_to_ants(const ffdp_field *u, const ffdp_mat4 *T, ffdp_field *w, ffdp_error *err)
{
	ffdp_mat4 L = *T, Linv;
	L.m[3] = L.m[7] = L.m[11] = 0;
	ffdp_status s = ffdp_mat4_inverse(L, &Linv, err);
	if (!s)
		s = ffdp_field_alloc(w, &u->grid, err);
	if (s)
		return s;
	int64_t n = ffdp_grid_voxels(&u->grid);
	int nc = u->ncomp;
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		double a[3] = {u->c[0][i], u->c[1][i], nc > 2 ? u->c[2][i] : 0.0}, b[3];
		ffdp_mat4_apply_vector(&Linv, a, b);
		for (int c = 0; c < nc; c++)
			w->c[c][i] = (float)b[c];
	}
	return FFDP_OK;
}
