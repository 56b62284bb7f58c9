/* Writing a NIfTI file in parts (private to src/io and src/dist).
 *
 * A layout is everything about an output file but its voxel values: the
 * header bytes and how floats are stored.  A file is the header followed by
 * ncomp components of nz planes each ([c][z][y][x]); for .nii.gz the header
 * is a gzip member of its own and the data follow as members (byte_sink.h).
 *
 * Pieces: a process writing planes [z0, z1) of every component owns one
 * piece per component.  A piece whose place in the file is known when
 * writing starts (every piece of a .nii; of a .nii.gz only the first
 * component's, behind the header, of the process that wrote the header) is
 * written straight into the shared temporary; any other is compressed into a
 * part file of its own beside the target and copied into place once every
 * process's compressed sizes are known.  Pieces lie in the file in the order
 * (component, process): ffdp_nifti_pieces_offsets.
 */
#ifndef FFDP_IO_NIFTI_PIECES_H
#define FFDP_IO_NIFTI_PIECES_H

#include <stdint.h>

#include "ffdp/io.h"
#include "io/atomic_file.h"
#include "io/byte_sink.h"

typedef struct ffdp_nifti_layout {
	int64_t dims[8];   /* NIfTI dim[0..7] */
	int64_t nz, plane; /* planes per component, values per plane */
	int ncomp;         /* 1: scalar image; 2, 3: displacement field */
	int datatype, nbyper;
	int labels;        /* integers stored as round(x), unscaled */
	float slope, inter; /* integer types: stored q = round((x - inter) / slope) */
	int gz;
	int header_bytes;  /* vox_offset: 352 (NIfTI-1) or 544 (NIfTI-2) */
	unsigned char header[544];
} ffdp_nifti_layout;

/* ncomp 1: an image stored as type (range: the values of the whole image,
 * needed for every type but float32; may be NULL then).  ncomp 2 or 3: an
 * ANTs displacement field (float32).  NIfTI-2 when a dimension exceeds
 * 32767; gzip by the .gz extension. */
ffdp_status ffdp_nifti_layout_make(const char *path, const ffdp_grid *g, int ncomp, ffdp_write_type type,
				   const ffdp_value_range *range, ffdp_nifti_layout *L, ffdp_error *err);

/* Write the header at the start of fd; *end: where the data begin. */
ffdp_status ffdp_nifti_header_write(const ffdp_nifti_layout *L, int fd, const char *path, int64_t *end,
				    ffdp_error *err);

/* Create the temporary beside path (a) and write the header into it;
 * *head_end: where the data begin.  On failure a is left inactive. */
ffdp_status ffdp_nifti_begin(const ffdp_nifti_layout *L, const char *path, ffdp_atomic_file *a, int64_t *head_end,
			     ffdp_error *err);

/* A sink for the data of L at pos: float32 is deflated with zlib's RLE
 * strategy (docs/perf.md: as small as the default for float data at a
 * third of the time), integers with the default. */
ffdp_status ffdp_nifti_data_sink_open(const ffdp_nifti_layout *L, ffdp_sink *s, int fd, int64_t pos, const char *path,
				      ffdp_error *err);

/* Store n values as the layout says and append them to s. */
ffdp_status ffdp_nifti_encode_write(const ffdp_nifti_layout *L, ffdp_sink *s, const float *x, int64_t n,
				    ffdp_error *err);

/* Belt and braces after the checked writes: the temporary's header reads
 * back with the layout's dims and type, and the file is size bytes long. */
ffdp_status ffdp_nifti_verify_written(const ffdp_nifti_layout *L, const char *tmp, int64_t size,
				      const char *path, ffdp_error *err);

/* The whole file from planes[c] (nz * plane values each), through a
 * temporary renamed into place. */
ffdp_status ffdp_nifti_write_whole(const ffdp_nifti_layout *L, const float *const planes[3], const char *path,
				   ffdp_error *err);

typedef struct ffdp_nifti_piece {
	ffdp_atomic_file part; /* active when the piece goes to a part file */
	int fd;                /* the part file's, or -1 for a direct piece */
	int64_t start;         /* direct: offset in the temporary */
	ffdp_sink sink;
} ffdp_nifti_piece;

typedef struct ffdp_nifti_pieces {
	const ffdp_nifti_layout *L;
	const char *path;  /* the target, for messages and part names */
	int fd;            /* the shared temporary, opened for writing */
	int64_t z0, z1, next;
	ffdp_nifti_piece p[3];
} ffdp_nifti_pieces;

/* Open the shared temporary tmp and one piece per component for planes
 * [z0, z1).  head_end: where the header ends, or -1 where this process did
 * not write it.  L and path must outlive P. */
ffdp_status ffdp_nifti_pieces_open(ffdp_nifti_pieces *P, const ffdp_nifti_layout *L, const char *path,
				   const char *tmp, int64_t z0, int64_t z1, int64_t head_end, ffdp_error *err);
/* The next nplanes planes of each component (planes[c]: nplanes * plane values). */
ffdp_status ffdp_nifti_pieces_append(ffdp_nifti_pieces *P, const float *const planes[3], int64_t nplanes,
				     ffdp_error *err);
/* Flush every piece (all planes [z0, z1) must have been appended);
 * size[c]: the bytes piece c takes in the file. */
ffdp_status ffdp_nifti_pieces_finish(ffdp_nifti_pieces *P, int64_t size[3], ffdp_error *err);
/* Copy the part files to their offsets in the temporary. */
ffdp_status ffdp_nifti_pieces_place(ffdp_nifti_pieces *P, const int64_t off[3], ffdp_error *err);
/* Close everything and remove the part files (always; safe twice). */
void ffdp_nifti_pieces_close(ffdp_nifti_pieces *P);

/* Offsets of process rank's pieces, given every process's sizes
 * (size[3 * r + c]) and where the header ends; *end: the file's length. */
void ffdp_nifti_pieces_offsets(int ncomp, int64_t head_end, const int64_t *size, int nproc, int rank,
			       int64_t off[3], int64_t *end);

#endif
