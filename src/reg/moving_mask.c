/* A moving-image mask (ffdp_reg_opts.moving_mask): weights in the moving
 * image's space, such as 0 over a lesion that the fixed image lacks.  Each
 * iteration the level's mask is sampled through the transform of that
 * iteration, exactly as the moving image is (trilinear, 0 outside), and
 * multiplied by the fixed mask: the loss weights, as ANTs' masks select
 * the points whose moving point is inside.  The mask is a constant of the
 * iteration (no gradient flows through it).  Under MPI each rank holds its
 * planes of the mask, and the sampler fetches the others' as it does the
 * moving image's: N ranks give one process's bits.  The loss stays a mean over
 * the fixed mask's weights (or the voxels), a constant of the level, so
 * that the GPU still reads nothing back inside an iteration; only MI's
 * fixed-point quantum then needs the weights' maximum from the device.
 * The moments stage's centres stay those of the whole images (masking one
 * side's mass alone would move its centre off the other's); its candidate
 * rotations are scored with the weights.
 */
#include "reg_internal.h"

ffdp_status reg_level_weights(reg_domain *dm, const reg_level *lv, const ffdp_sample_args *a, const float **w,
			      ffdp_error *err)
{
	*w = lv->fmask;
	if (!lv->mmask)
		return FFDP_OK;
	const ffdp_volume mk = {lv->M.grid, lv->mmask}; /* the rank's planes under MPI, as M */
	ffdp_sample_args b = *a;
	b.moving = (ffdp_img){lv->mmask, {lv->M.grid.n[0], lv->M.grid.n[1], lv->M.grid.n[2]}};
	b.moving16 = NULL;
	b.out = reg_dom_img(dm, lv->wbuf);
	b.interp = FFDP_INTERP_LINEAR;
	b.pad = FFDP_PAD_ZERO;
	b.accumulate = 0;
	ffdp_status s = reg_dom_sample(dm, &b, &mk, err);
	if (!s && lv->fmask)
		s = ffdp_op_mul(dm->be, b.out, reg_dom_img(dm, lv->fmask), err);
	*w = lv->wbuf;
	return s;
}
