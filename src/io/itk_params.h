/* An ITK linear transform as its files hold it, whatever the container:
 * the type name, the "Parameters" (A row-major, then t) and the
 * "FixedParameters" (the centre c).  itk_transform.c reads and writes the
 * text form, itk_matlab.c the MATLAB binary form (ANTs' *GenericAffine.mat).
 */
#ifndef FFDP_IO_ITK_PARAMS_H
#define FFDP_IO_ITK_PARAMS_H

#include "ffdp/mat4.h"
#include "ffdp/status.h"

typedef struct ffdp_itk_params {
	char type[128];
	int dim;      /* 2 or 3, from the type name */
	double p[12]; /* Parameters */
	int np;
	double c[3];  /* FixedParameters */
	int nc;
} ffdp_itk_params;

/* The dimension of a supported type name (AffineTransform or
 * MatrixOffsetTransformBase, _double_ or _float_, 3_3 or 2_2), else 0. */
int ffdp_itk_type_dim(const char *type);

/* The message for a type name ffdp_itk_type_dim refuses. */
ffdp_status ffdp_itk_type_refused(const char *path, const char *type, ffdp_error *err);

/* The 4x4 of y = A (x - c) + c + t, after checking the parameter counts. */
ffdp_status ffdp_itk_params_matrix(const ffdp_itk_params *t, const char *path, ffdp_mat4 *T, ffdp_error *err);

/* MATLAB Level 4 binary transform files (itk_matlab.c). */
ffdp_status ffdp_itk_mat_read(const char *path, ffdp_itk_params *t, ffdp_error *err);
ffdp_status ffdp_itk_mat_write(const char *path, const ffdp_mat4 *T, ffdp_error *err);

#endif
