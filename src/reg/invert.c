/* Inverse of a displacement field by fixed-point iteration:
 * (Id + w_inv) = (Id + w)^-1  <=>  w_inv(z) = -w(z + w_inv(z)).
 * The map v -> -w(z + v) contracts when |grad w| < 1 (a diffeomorphic,
 * smoothed warp), so the error shrinks geometrically from w_inv = -w.
 * All on the backend: per iteration a sample, a negation and a max-abs
 * reduction whose one scalar decides convergence. */
#include <string.h>

#include "reg_internal.h"

static const double neg_id[9] = {-1, 0, 0, 0, -1, 0, 0, 0, -1};

/* next = -w(z + cur(z)), component by component: identity index map,
 * B = phys->index. */
static ffdp_status invert_step(ffdp_backend *be, const ffdp_field *w, const ffdp_field *cur, ffdp_field *next,
			       ffdp_error *err)
{
	const ffdp_grid *g = &w->grid;
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	ffdp_vec cv = reg_vec(cur);
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.W[0] = a.W[5] = a.W[10] = 1.0;
	reg_linear3(&p2i, a.B);
	a.u = &cv;
	a.pad = FFDP_PAD_BORDER;
	ffdp_status s = FFDP_OK;
	for (int c = 0; c < w->ncomp && !s; c++) {
		a.moving = (ffdp_img){w->c[c], {g->n[0], g->n[1], g->n[2]}};
		a.out = (ffdp_img){next->c[c], {g->n[0], g->n[1], g->n[2]}};
		s = ffdp_op_sample(be, &a, err);
	}
	return s ? s : ffdp_op_vec_linear(be, reg_vec(next), neg_id, reg_vec(next), err);
}

ffdp_status reg_invert_field(ffdp_backend *be, const ffdp_field *w, ffdp_field *w_inv, int iters, ffdp_error *err)
{
	const ffdp_grid *g = &w->grid;
	ffdp_field tmp = {0};
	ffdp_status s = reg_field_alloc(be, g, w_inv, err);
	if (!s)
		s = reg_field_alloc(be, g, &tmp, err);
	if (!s)
		s = ffdp_op_vec_linear(be, reg_vec(w), neg_id, reg_vec(w_inv), err);
	for (int it = 0; it < iters && !s; it++) {
		double change = 0;
		if ((s = invert_step(be, w, w_inv, &tmp, err)) ||
		    (s = ffdp_op_vec_max_abs_diff(be, reg_vec(w_inv), reg_vec(&tmp), &change, err)))
			break;
		ffdp_field t = *w_inv; /* the new iterate becomes w_inv: swap planes */
		*w_inv = tmp, tmp = t;
		if (change < 1e-4 * g->spacing[0])
			break; /* converged to well below a voxel */
	}
	reg_field_free(be, &tmp);
	if (s)
		reg_field_free(be, w_inv);
	return s;
}
