/* Shared by the NIfTI image and field readers/writers (private to src/io).
 *
 * Headers are parsed by nifti_clib; voxel data are read here with zlib
 * (which reads .nii and .nii.gz alike), because nifti_clib silently replaces
 * NaN/Inf floats by 0 on load and prints its own messages on short reads.
 */
#ifndef FFDP_IO_NIFTI_INTERNAL_H
#define FFDP_IO_NIFTI_INTERNAL_H

#include <stdint.h>
#include <zlib.h>

#include <nifti2_io.h>

#include "ffdp/io.h"
#include "io/nifti_geometry.h"

/* Check the file (exists, regular, non-empty, readable, NIfTI magic) and
 * parse its header.  Every message names path.  *nim is freed by the caller
 * with nifti_image_free; *version (may be NULL) is 1 or 2, from the header
 * size (nifti_clib reports NIfTI-2 single files as nifti_type 1). */
ffdp_status ffdp_nifti_open(const char *path, nifti_image **nim, int *version, ffdp_error *err);

/* ffdp_nifti_open, then the LPS grid and (info not NULL) the header facts. */
ffdp_status ffdp_nifti_open_grid(const char *path, nifti_image **nim, ffdp_grid *g, ffdp_image_info *info,
				 ffdp_error *err);
/* A scalar image: every dimension past the third must be 1. */
ffdp_status ffdp_nifti_check_scalar(const nifti_image *nim, const char *path, ffdp_error *err);

/* Planes [z0, z1) of a scalar image (z1 < 0: every plane), as
 * ffdp_image_read_slab describes; ffdp_image_read is the whole range. */
ffdp_status ffdp_nifti_read_planes(const char *path, unsigned flags, int64_t z0, int64_t z1, ffdp_volume *out,
				   ffdp_image_info *info, ffdp_error *err);

/* Header facts for ffdp_image_info (intensity range left 0). */
void ffdp_nifti_fill_info(const nifti_image *nim, int version, ffdp_xform_source src, const ffdp_grid *g,
			  ffdp_image_info *info);
/* dim[i] of the header, 1 past dim[0] (nifti_clib leaves those 0). */
int64_t ffdp_nifti_dim(const nifti_image *nim, int i);

/* "int16", "float32", ...; "unknown" for codes nifti does not define. */
const char *ffdp_nifti_type_name(int datatype);
/* 1 for the real scalar types ffdp converts to float32. */
int ffdp_nifti_type_is_real(int datatype);

/* Sequential reader of a file's voxel data, converting to float32. */
typedef struct ffdp_nifti_stream {
	gzFile gz;
	const char *path; /* for messages: the name the user gave */
	const nifti_image *nim;
	double slope, inter; /* applied when scale != 0 */
	int scale;
	int64_t pos;        /* values read so far */
	unsigned char *buf; /* raw chunk */
} ffdp_nifti_stream;

typedef struct ffdp_value_stats {
	int64_t nonfinite;
	double min, max; /* over finite values; min > max when there are none */
} ffdp_value_stats;

ffdp_status ffdp_nifti_stream_open(ffdp_nifti_stream *s, const char *path, const nifti_image *nim,
				   ffdp_error *err);
/* The next n values; stats accumulate over calls (initialise with
 * ffdp_value_stats_init). */
ffdp_status ffdp_nifti_stream_read(ffdp_nifti_stream *s, float *out, int64_t n, ffdp_value_stats *st,
				   ffdp_error *err);
/* Pass over the next n values without converting them: a seek for a plain
 * file; for gzip zlib inflates and discards them. */
ffdp_status ffdp_nifti_stream_skip(ffdp_nifti_stream *s, int64_t n, ffdp_error *err);
/* After the last value: for gzip, read on to the end of the stream so that
 * zlib checks the CRC and length in the trailer (corruption that inflates
 * cleanly is caught only there). */
ffdp_status ffdp_nifti_stream_finish(ffdp_nifti_stream *s, ffdp_error *err);
void ffdp_nifti_stream_close(ffdp_nifti_stream *s);
void ffdp_value_stats_init(ffdp_value_stats *st);

/* path ends in ".nii" or ".nii.gz". */
int ffdp_nifti_write_name_ok(const char *path);

#endif
