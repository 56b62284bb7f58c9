/* 4x4 homogeneous transforms in double precision, row-major:
 * m[4*r + c].  y = M x for column vectors x = (x, y, z, 1).
 * Physical transforms are in ITK/ANTs LPS millimetres.
 */
#ifndef FFDP_MAT4_H
#define FFDP_MAT4_H

#include "ffdp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ffdp_mat4 {
	double m[16];
} ffdp_mat4;

ffdp_mat4 ffdp_mat4_identity(void);
/* a * b (apply b first). */
ffdp_mat4 ffdp_mat4_mul(ffdp_mat4 a, ffdp_mat4 b);
/* Inverse of an affine (last row 0 0 0 1) matrix; FFDP_ERR_ARG if singular. */
ffdp_status ffdp_mat4_inverse(ffdp_mat4 a, ffdp_mat4 *out, ffdp_error *err);
/* Affine from a 3x3 linear part (row-major) and a translation. */
ffdp_mat4 ffdp_mat4_from_linear(const double lin[9], const double t[3]);
/* y = M (x, 1): apply to a point. */
void ffdp_mat4_apply_point(const ffdp_mat4 *a, const double x[3], double y[3]);
/* y = L x: apply the linear part to a vector. */
void ffdp_mat4_apply_vector(const ffdp_mat4 *a, const double x[3], double y[3]);
/* Determinant of the linear 3x3 part. */
double ffdp_mat4_det3(const ffdp_mat4 *a);
/* Largest absolute entry difference. */
double ffdp_mat4_max_abs_diff(const ffdp_mat4 *a, const ffdp_mat4 *b);

#ifdef __cplusplus
}
#endif
#endif
