/* An ITK linear transform as its files hold it, whatever the container:
 * the type name, the "Parameters" (A row-major, then t) and the
 * "FixedParameters" (the centre c).  itk_transform.c reads and writes the
 * text form, itk_matlab.c the MATLAB binary form (ANTs' *GenericAffine.mat).
 */
#ifndef FFDP_IO_ITK_PARAMS_H
#define FFDP_IO_ITK_PARAMS_H

#include "ffdp/mat4.h"
#include "ffdp/status.h"

/* The linear types read (itk_params.c says what their parameters mean). */
enum { ITK_AFFINE, ITK_EULER3D, ITK_VERSOR3D, ITK_SIMILARITY3D, ITK_TRANSLATION, ITK_RIGID2D };

typedef struct ffdp_itk_params {
	char type[128];
	int kind;     /* ITK_* */
	int dim;      /* 2 or 3, from the type name */
	double p[12]; /* Parameters */
	int np;
	double c[4];  /* FixedParameters: the centre (Euler3D: then ComputeZYX) */
	int nc;
} ffdp_itk_params;

/* A supported type name (_double_ or _float_, 3_3 or 2_2): its kind and
 * dimension into t, and the dimension returned; else 0. */
int ffdp_itk_type_parse(const char *type, ffdp_itk_params *t);

/* The message for a type name ffdp_itk_type_parse refuses. */
ffdp_status ffdp_itk_type_refused(const char *path, const char *type, ffdp_error *err);

/* The 4x4 of y = A (x - c) + c + t, A and t from the type's parameters,
 * after checking their counts. */
ffdp_status ffdp_itk_params_matrix(const ffdp_itk_params *t, const char *path, ffdp_mat4 *T, ffdp_error *err);

/* MATLAB Level 4 binary transform files (itk_matlab.c). */
ffdp_status ffdp_itk_mat_read(const char *path, ffdp_itk_params *t, ffdp_error *err);
ffdp_status ffdp_itk_mat_write(const char *path, const ffdp_mat4 *T, ffdp_error *err);

#endif
