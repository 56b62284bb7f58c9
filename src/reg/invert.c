/* Inverse of a displacement field by fixed-point iteration:
 * (Id + w_inv) = (Id + w)^-1  <=>  w_inv(z) = -w(z + w_inv(z)).
 * The map v -> -w(z + v) contracts when |grad w| < 1 (a diffeomorphic,
 * smoothed warp), so the error shrinks geometrically from w_inv = -w. */
#include <math.h>
#include <string.h>

#include "reg_internal.h"

ffdp_status reg_invert_field(ffdp_backend *be, const ffdp_field *w, ffdp_field *w_inv, int iters, ffdp_error *err)
{
	const ffdp_grid *g = &w->grid;
	ffdp_field tmp = {0};
	ffdp_status s = ffdp_field_alloc(w_inv, g, err);
	if (!s)
		s = ffdp_field_alloc(&tmp, g, err);
	if (s) {
		ffdp_field_free(w_inv);
		return s;
	}
	int64_t n = ffdp_grid_voxels(g);
	int nc = w->ncomp;
	for (int c = 0; c < nc; c++)
		for (int64_t i = 0; i < n; i++)
			w_inv->c[c][i] = -w->c[c][i];
	/* sample each component of w at z + w_inv(z): identity index map, B = phys->index */
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	ffdp_vec wi = {{w_inv->c[0], w_inv->c[1], w_inv->c[2]}, {g->n[0], g->n[1], g->n[2]}, nc};
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.W[0] = a.W[5] = a.W[10] = 1.0;
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			a.B[3 * r + c] = p2i.m[4 * r + c];
	a.u = &wi;
	a.pad = FFDP_PAD_BORDER;
	for (int it = 0; it < iters && !s; it++) {
		for (int c = 0; c < nc && !s; c++) {
			a.moving = (ffdp_img){w->c[c], {g->n[0], g->n[1], g->n[2]}};
			a.out = (ffdp_img){tmp.c[c], {g->n[0], g->n[1], g->n[2]}};
			s = ffdp_op_sample(be, &a, err);
		}
		if (s)
			break;
		double change = 0;
		for (int c = 0; c < nc; c++) {
			float *dst = w_inv->c[c];
			const float *src = tmp.c[c];
#pragma omp parallel for reduction(max : change) schedule(static)
			for (int64_t i = 0; i < n; i++) {
				double d = fabs((double)dst[i] + src[i]);
				change = d > change ? d : change;
				dst[i] = -src[i];
			}
		}
		if (change < 1e-4 * g->spacing[0])
			break; /* converged to well below a voxel */
	}
	ffdp_field_free(&tmp);
	if (s)
		ffdp_field_free(w_inv);
	return s;
}
