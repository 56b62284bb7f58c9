/* Inverse of a displacement field: (Id + w_inv) = (Id + w)^-1, i.e. the
 * root of r(z) = w_inv(z) + w(z + w_inv(z)).  Safeguarded Newton steps
 * (ffdp_op_invert_step) from w_inv = -w: the plain fixed point
 * w_inv <- -w(z + w_inv) contracts only where |grad w| < 1, and SyN's
 * halves expand locally by more than that, where it oscillates by
 * millimetres and leaves folds in the composed warp.  All on the backend.
 * Each call gives every voxel up to REG_INVERT_BATCH steps, and a voxel
 * stops once its own residual is below the tolerance: most need two or
 * three, the few that start millimetres off need one capped voxel a step,
 * so one pass over the field replaces a dozen (the 1 mm pair's greedy
 * warp: 14 passes before).  The call's one scalar (max |r|) decides. */
#include <math.h>
#include <string.h>

#include "reg_internal.h"

enum { REG_INVERT_BATCH = 16 };

static const double neg_id[9] = {-1, 0, 0, 0, -1, 0, 0, 0, -1};

ffdp_status reg_invert_field(reg_domain *dm, const ffdp_field *w, ffdp_field *w_inv, int iters, ffdp_error *err)
{
	const ffdp_grid *g = &w->grid;
	ffdp_field tmp = {0};
	double C[9];
	ffdp_status s = reg_dom_field_alloc(dm, g, w_inv, err);
	if (!s)
		s = reg_dom_field_alloc(dm, g, &tmp, err);
	if (!s && dm->n[2] > 0)
		s = ffdp_op_vec_linear(dm->be, reg_dom_vec(dm, w), neg_id, reg_dom_vec(dm, w_inv), err);
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(g);
	reg_linear3(&p2i, C);
	const double tol = 1e-4 * g->spacing[0]; /* well below a voxel */
	double resid = INFINITY, best = INFINITY;
	int done = 0;
	while (done < iters && !s) {
		const int k = iters - done < REG_INVERT_BATCH ? iters - done : REG_INVERT_BATCH;
		if ((s = reg_dom_invert_step(dm, w, w_inv, &tmp, C, k, tol, &resid, err)))
			break;
		done += k;
		ffdp_field t = *w_inv; /* the new iterate becomes w_inv: swap planes */
		*w_inv = tmp, tmp = t;
		/* Newton converges in a few steps where an inverse exists; a
		 * batch that leaves the maximum where it was sits where the
		 * warp folds */
		if (resid <= tol || !(resid < 0.9 * best))
			break;
		best = resid;
	}
	if (!s && !(resid < 0.1 * g->spacing[0]))
		ffdp_log_warn("field inverse: residual %.3g mm after %d steps (the warp folds or is nearly "
			      "singular somewhere)", resid, done);
	else if (!s) /* a tenth of a voxel at a few folded voxels is no news */
		ffdp_log_debug("field inverse: residual %.3g mm after %d steps", resid, done);
	reg_field_free(dm->be, &tmp);
	if (s)
		reg_field_free(dm->be, w_inv);
	return s;
}
