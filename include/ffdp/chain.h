/* Transform chains in ANTs order, for `ffdp apply`.
 *
 * A chain T1, T2, ..., Tn (as antsApplyTransforms' -t options, in the order
 * given) maps a reference-space point x by applying the transforms to the
 * POINT in the order listed: x -> Tn(...T2(T1(x))).  So
 *   -t warp.nii.gz -t affine.txt          maps x -> A(x + w(x)),
 *   -t [affine.txt,1] -t inverse_warp.nii.gz  maps y -> z + w_inv(z), z = A^-1 y,
 * and the input image is sampled at the mapped point.
 *
 * Items: a 4x4 affine (reference -> input direction, as ITK/ANTs write
 * them), optionally inverted; or a displacement field in the ANTs
 * convention (LPS mm, on its own grid, p -> p + w(p); zero outside its grid,
 * fading to zero over the last voxel as the zero-padded sampler does).
 */
#ifndef FFDP_CHAIN_H
#define FFDP_CHAIN_H

#include "ffdp/mat4.h"
#include "ffdp/ops.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ffdp_chain_kind {
	FFDP_CHAIN_AFFINE = 0,
	FFDP_CHAIN_FIELD = 1,
} ffdp_chain_kind;

typedef struct ffdp_chain_item {
	ffdp_chain_kind kind;
	ffdp_mat4 A;          /* AFFINE */
	int invert;           /* AFFINE: use A^-1 (a field cannot be inverted here) */
	const ffdp_field *w;  /* FIELD: not owned */
} ffdp_chain_item;

/* Resample `in` (host memory; pass a CPU backend) on `ref` through the
 * chain: out(i) = in(Tn(...T1(x_i))), x_i the reference voxel centre.
 * interp LINEAR, NEAREST or LABEL; zero outside the input.  n = 0 is the
 * identity.  out is allocated here.  The mapped points are never stored:
 * P(i) = M x_i + D(i) with M an accumulated 4x4 and D a displacement on the
 * reference grid that exists only when the chain has a field; each field
 * is sampled at P through slabs with O(slab) scratch. */
ffdp_status ffdp_chain_resample(ffdp_backend *be, const ffdp_volume *in, const ffdp_grid *ref,
				const ffdp_chain_item *items, int n, ffdp_interp interp, ffdp_volume *out,
				ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
