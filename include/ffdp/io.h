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
 * both set from the grid (code 1, scanner anatomical), as ITK does.
 * .nii.gz is written as gzip members deflated in parallel (OpenMP threads;
 * the bytes do not depend on the thread count). */
ffdp_status ffdp_image_write(const char *path, const ffdp_volume *v, ffdp_write_type type,
			     ffdp_error *err);

/* The values an image holds, as the integer writers need them to choose a
 * storage type and scaling; partial ranges combine by min, max, sum, sum. */
typedef struct ffdp_value_range {
	double min, max;    /* over finite values; min > max when there are none */
	int64_t nonfinite;  /* NaN or infinite values */
	int64_t fractional; /* finite values that are not whole numbers */
} ffdp_value_range;

void ffdp_value_range_scan(const float *x, int64_t n, ffdp_value_range *r);

/* Read planes [z0, z1) of a 3-D (or 2-D) image without reading the rest
 * into memory: the datatypes, scaling, flags and messages of
 * ffdp_image_read.  out's grid is the slab's: the whole grid with nz =
 * z1 - z0 and the origin moved by z0 planes along the third direction, so
 * that its index -> physical map is the whole image's, shifted.  A .nii is
 * read by seeking; a .nii.gz must inflate (and discard) every byte before
 * the slab, so reading all slabs one by one costs O(nz^2 / slab) inflation.
 * Only a slab that ends at nz checks the gzip trailer.  info (may be NULL)
 * describes the whole file; its intensity range is the slab's. */
ffdp_status ffdp_image_read_slab(const char *path, int64_t z0, int64_t z1, unsigned flags, ffdp_volume *out,
				 ffdp_image_info *info, ffdp_error *err);

/* Stream an image or displacement field to a file plane by plane, never
 * holding it whole: open, append the planes in order (any number at a
 * time), commit.  ncomp 1: a scalar image stored as type; range (values of
 * the whole image) is needed for every type but FFDP_WRITE_FLOAT32 and may
 * be NULL then.  ncomp 2 or 3 (= the grid's dimension): an ANTs
 * displacement field, float32.  The file appears only at a successful
 * commit; commit and abort free the writer. */
typedef struct ffdp_image_writer ffdp_image_writer;

ffdp_status ffdp_image_writer_open(const char *path, const ffdp_grid *g, int ncomp, ffdp_write_type type,
				   const ffdp_value_range *range, ffdp_image_writer **out, ffdp_error *err);
/* planes[c]: nplanes * nx * ny values of component c. */
ffdp_status ffdp_image_writer_append(ffdp_image_writer *w, const float *const planes[], int64_t nplanes,
				     ffdp_error *err);
ffdp_status ffdp_image_writer_commit(ffdp_image_writer *w, ffdp_error *err);
void ffdp_image_writer_abort(ffdp_image_writer *w);

/* ANTs/ITK displacement field: NIfTI with dim = [5, nx, ny, nz, 1, ncomp],
 * intent NIFTI_INTENT_VECTOR, float32, components in LPS mm (not flipped to
 * RAS: ITK writes vector values as they are). */
ffdp_status ffdp_field_read(const char *path, ffdp_field *out, ffdp_error *err);
ffdp_status ffdp_field_write(const char *path, const ffdp_field *u, ffdp_error *err);

/* ITK linear transforms, as antsApplyTransforms reads them: text
 * ("#Insight Transform File V1.0"; .txt, .tfm) or ITK's MATLAB binary form
 * (.mat, ANTs' 0GenericAffine.mat), by the name's extension.  T maps fixed
 * (reference) LPS points to moving LPS points.  The writer writes
 * AffineTransform_double_3_3 with the centre 0; the reader also takes
 * MatrixOffsetTransformBase, Euler3D, VersorRigid3D, Similarity3D,
 * Translation and Rigid2D/Euler2D transforms (float or double; 2-D ones
 * embedded in 3-D) and honours FixedParameters (the centre). */
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
