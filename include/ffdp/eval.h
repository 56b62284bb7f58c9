/* Evaluation: label overlap, surface distance, warp regularity, similarity.
 *
 * Host code over host volumes.  Functions that take an ffdp_backend run one
 * op (Jacobian determinant, LNCC) on host memory: pass a CPU backend.
 *
 * Label maps hold integers stored as float32; values are rounded to the
 * nearest integer (a value further than 1e-3 from an integer, or NaN, is
 * refused: the map is probably an intensity image or was resampled with
 * linear interpolation).  Label 0 is background and never reported.
 */
#ifndef FFDP_EVAL_H
#define FFDP_EVAL_H

#include <stdint.h>

#include "ffdp/mat4.h"
#include "ffdp/ops.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One label of a pair of label maps a (e.g. fixed) and b (e.g. warped moving).
 *
 * dice    = 2 |A n B| / (|A| + |B|), A and B the label's voxel sets.
 * hd95_mm = 95th percentile of the pooled boundary distances:
 *   a boundary voxel of A is a voxel of A with a face neighbour (6 in 3-D,
 *   4 in 2-D) outside A or outside the image;  for each boundary voxel of A
 *   the distance to the nearest boundary voxel of B, and for each boundary
 *   voxel of B the distance to the nearest boundary voxel of A, form one
 *   pooled sorted list d[0..n-1]; hd95 = d at rank 0.95 (n-1), linearly
 *   interpolated between neighbouring ranks (numpy's default percentile).
 *   Distances are between voxel centres in mm: |diag(spacing) di| for an
 *   index difference di, which equals the physical distance for any grid
 *   since the direction matrix is orthonormal.
 *   NaN when the label is missing from one map (or hd95 was not asked for).
 */
typedef struct ffdp_label_stats {
	int64_t label;
	int64_t n_a, n_b;          /* voxels */
	int64_t n_ab;              /* voxels labelled in both */
	double vol_a_mm3, vol_b_mm3;
	double dice;
	double hd95_mm;
} ffdp_label_stats;

typedef struct ffdp_label_eval {
	ffdp_label_stats *labels; /* every label of either map, ascending; owned */
	int nlabels;
	int nboth;                /* labels present in both maps */
	double mean_dice;         /* means over the labels present in both maps */
	double mean_hd95_mm;      /* (NaN when there are none) */
} ffdp_label_eval;

/* a and b must be on the same grid.  want_hd95 = 0 skips the distances. */
ffdp_status ffdp_eval_labels(const ffdp_volume *a, const ffdp_volume *b, int want_hd95, ffdp_label_eval *out,
			     ffdp_error *err);
void ffdp_label_eval_free(ffdp_label_eval *e);

/* Exact squared Euclidean distance transform with per-axis spacing (mm):
 * out[i] = min over voxels j with seed[j] != 0 of sum_a (spacing[a] (i_a - j_a))^2,
 * INFINITY when there is no seed.  Separable lower envelope of parabolas
 * (Felzenszwalb and Huttenlocher), linear time, one line of scratch per
 * thread. */
ffdp_status ffdp_edt_sq(const uint8_t *seed, const int64_t n[3], const double spacing[3], double *out,
			ffdp_error *err);

/* Regularity of x -> T(x) + u(x) on u's grid: J = det(L + du/dx), L the
 * linear part of T (identity when T is NULL), du/dx by central differences
 * (one-sided at the faces) in physical mm.  For an ANTs warp w, which maps
 * x -> x + w(x), pass T = NULL.  Works through slabs: O(slab) scratch. */
typedef struct ffdp_jacobian_stats {
	int64_t voxels;
	int64_t folded;          /* voxels with J <= 0 */
	double folded_fraction;
	double det_min, det_mean, det_max;
} ffdp_jacobian_stats;

ffdp_status ffdp_eval_jacobian(ffdp_backend *be, const ffdp_field *u, const ffdp_mat4 *T,
			       ffdp_jacobian_stats *out, ffdp_error *err);
/* The same, and the determinant of every voxel into map (host memory, u's
 * grid; ANTs' CreateJacobianDeterminantImage without the log): the input of
 * tensor-based morphometry. */
ffdp_status ffdp_eval_jacobian_map(ffdp_backend *be, const ffdp_field *u, const ffdp_mat4 *T, float *map,
				   ffdp_jacobian_stats *out, ffdp_error *err);

/* Global normalised cross-correlation of a and b (same grid) over the
 * voxels where mask > 0 (all voxels when mask is NULL):
 * sum (a - ma)(b - mb) / sqrt(sum (a - ma)^2 sum (b - mb)^2), in double.
 * NaN when either image is constant over the mask. */
ffdp_status ffdp_eval_ncc(const ffdp_volume *a, const ffdp_volume *b, const ffdp_volume *mask, double *ncc,
			  ffdp_error *err);

/* Local NCC as the registration metric defines it (ffdp_op_lncc): the mean
 * over voxels of the SQUARED windowed correlation, cc = cov^2 /
 * (var_a var_b + eps) in a k^3 (k^2 in 2-D) window, so in [0, 1] (0 where
 * either image is flat) and blind to the sign of the correlation.
 * Reported as "lncc2 (squared)". */
ffdp_status ffdp_eval_lncc2(ffdp_backend *be, const ffdp_volume *a, const ffdp_volume *b, int k, double *lncc2,
			    ffdp_error *err);

/* Mean distance, in voxels of truth's grid (x spacing), between
 * phi(x) = T(x) + u(x) (u may be NULL) and a known truth x + t(x), over the
 * voxels where mask > 0 (all when mask is NULL): how well a registration
 * recovered a synthetic deformation (ffdp_phantom_make's truth). */
ffdp_status ffdp_eval_endpoint_error(const ffdp_mat4 *T, const ffdp_field *u, const ffdp_field *truth,
				     const ffdp_volume *mask, double *mean_voxels, ffdp_error *err);

/* Inverse consistency of a registration's result (ffdp_reg_result's T, u
 * and u_inv, host fields on the fixed grid), w the ANTs form of u
 * (ffdp_warp_to_ants): the means over the voxels where mask > 0 (all when
 * mask is NULL), in voxels of the grid's x spacing, of how far
 * (Id + w) o (Id + w_inv) (*fwd_inv: forward after inverse) and
 * (Id + w_inv) o (Id + w) (*inv_fwd) are from the identity.  Each
 * includes the trilinear interpolation of the outer field.  be: a CPU
 * backend. */
ffdp_status ffdp_eval_inverse_consistency(ffdp_backend *be, const ffdp_field *u, const ffdp_mat4 *T,
					  const ffdp_field *u_inv, const ffdp_volume *mask, double *fwd_inv,
					  double *inv_fwd, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
