/* File input and output: NIfTI images, ANTs displacement fields, ITK
 * linear transforms.  All writers write to a temporary name beside the
 * target and rename it into place, so a failed write leaves no partial file
 * and never touches an existing output until it is complete.  Readers never
 * modify their input.  Every error message names the file.
 */
#ifndef FFDP_IO_H
#define FFDP_IO_H

#include <stdint.h>

#include "ffdp/mat4.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the file said, for `ffdp info` and for writing back alike. */
typedef struct ffdp_image_info {
	int nifti_version;   /* 1 or 2 */
	int datatype;        /* NIfTI datatype code as stored (DT_INT16 = 4, ...) */
	char datatype_name[24];
	int ndim;            /* dim[0] */
	int64_t dims[7];     /* dim[1..7] */
	double pixdim[7];
	double scl_slope;    /* as stored; slope 0 means "no scaling" */
	double scl_inter;
	int qform_code;
	int sform_code;
	char geometry_from[8]; /* "sform", "qform" or "none": which one ITK's rule chose */
	char orientation[4];   /* axis codes as nibabel gives them, e.g. "RAS" */
	int intent_code;
	double intensity_min; /* after scaling; set only when the data are read */
	double intensity_max;
} ffdp_image_info;

/* Read flags. */
enum {
	FFDP_READ_REQUIRE_3D = 1 << 0,     /* refuse nz == 1 */
	FFDP_READ_ALLOW_NONFINITE = 1 << 1, /* keep NaN/Inf voxels instead of failing */
};

/* Read a scalar image (2-D or 3-D; a 4-D/5-D file whose extra dims are all 1
 * counts as 3-D) into float32, applying scl_slope/inter, with its geometry
 * in LPS.  info may be NULL. */
ffdp_status ffdp_image_read(const char *path, unsigned flags, ffdp_volume *out,
			    ffdp_image_info *info, ffdp_error *err);

/* Header only: geometry and info, no voxel data. */
ffdp_status ffdp_image_read_header(const char *path, ffdp_grid *grid, ffdp_image_info *info,
				   ffdp_error *err);

/* Storage type for writing. */
typedef enum ffdp_write_type {
	FFDP_WRITE_FLOAT32 = 0,
	FFDP_WRITE_INT16,  /* scaled: slope/inter chosen to cover the range */
	FFDP_WRITE_UINT8,  /* scaled likewise */
	FFDP_WRITE_LABEL16, /* rounded integers, no scaling (label maps) */
} ffdp_write_type;

/* Write a NIfTI-1 image (.nii or .nii.gz by extension) with qform and sform
 * both set from the grid (code 1, scanner anatomical), as ITK does. */
ffdp_status ffdp_image_write(const char *path, const ffdp_volume *v, ffdp_write_type type,
			     ffdp_error *err);

/* ANTs/ITK displacement field: NIfTI with dim = [5, nx, ny, nz, 1, ncomp],
 * intent NIFTI_INTENT_VECTOR, float32, components in LPS mm (not flipped to
 * RAS: ITK writes vector values as they are). */
ffdp_status ffdp_field_read(const char *path, ffdp_field *out, ffdp_error *err);
ffdp_status ffdp_field_write(const char *path, const ffdp_field *u, ffdp_error *err);

/* ITK text transform ("#Insight Transform File V1.0",
 * AffineTransform_double_3_3), as antsApplyTransforms reads it.  T maps
 * fixed (reference) LPS points to moving LPS points.  The reader also takes
 * AffineTransform_float_3_3, MatrixOffsetTransformBase_*_3_3 and the 2_2
 * variants, and honours FixedParameters (the centre). */
ffdp_status ffdp_affine_read(const char *path, ffdp_mat4 *T, ffdp_error *err);
ffdp_status ffdp_affine_write(const char *path, const ffdp_mat4 *T, ffdp_error *err);

/* Write a text file (reports) through a temporary name and rename. */
ffdp_status ffdp_write_text(const char *path, const char *text, ffdp_error *err);

/* Check that path's directory exists and is writable, so a long run fails
 * before it starts rather than at its end. */
ffdp_status ffdp_check_writable(const char *path, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
