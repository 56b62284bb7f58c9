/* Grid-parallel distribution over MPI ranks (DESIGN.md, "Distributed").
 *
 * Built only when MPI is found (FFDP_HAVE_MPI).  The caller initialises and
 * finalises MPI; a context wraps a communicator (MPI_COMM_WORLD for now).
 *
 * Decomposition: slabs along z.  Rank k of R owns the global planes
 * [z0, z1); sizes are nz / R, the first nz % R ranks one plane more, in rank
 * order.  With R > nz the last ranks own no plane (z0 == z1).
 *
 * A haloed slab is a host buffer of (z1 - z0 + 2h) planes of nx * ny
 * floats: [h halo below][own planes][h halo above]; buffer plane i holds
 * global plane z0 - h + i.
 */
#ifndef FFDP_DIST_H
#define FFDP_DIST_H

#include <stdint.h>

#include "ffdp/ops.h"
#include "ffdp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ffdp_dist ffdp_dist;

/* A context on MPI_COMM_WORLD (duplicated, so our messages never match the
 * caller's).  MPI must be initialised. */
ffdp_status ffdp_dist_create(ffdp_dist **out, ffdp_error *err);
void ffdp_dist_destroy(ffdp_dist *d);
int ffdp_dist_rank(const ffdp_dist *d);
int ffdp_dist_size(const ffdp_dist *d);

/* Rank's slab of a grid with nz planes: global z range [z0, z1). */
typedef struct ffdp_slab {
	int64_t nz; /* planes in the whole volume */
	int64_t z0, z1;
} ffdp_slab;

ffdp_slab ffdp_slab_of(int64_t nz, int rank, int size);

/* Fill the 2h halo planes of a haloed slab (plane = nx * ny floats per
 * plane) from the ranks that own them.  Halo planes outside the volume
 * (global z < 0 or >= nz) are set to fill.  Any h >= 0 and slabs of any
 * thickness (also thinner than h, or empty) are supported: a halo then
 * spans several ranks, each sending its contiguous overlap.  Collective
 * over the context: every rank calls with the same nz, plane and h. */
ffdp_status ffdp_dist_halo_exchange(ffdp_dist *d, float *buf, int64_t plane, const ffdp_slab *s,
				    int64_t h, float fill, ffdp_error *err);

/* ffdp_op_smooth on the whole volume, each rank holding its own planes:
 * slab is the rank's [z0, z1) planes (n[2] == z1 - z0; p may be NULL when
 * the rank owns none), smoothed in place.  renormalize uses the true
 * volume faces.  The backend must use host memory (CPU).  Collective. */
ffdp_status ffdp_dist_smooth(ffdp_dist *d, ffdp_backend *be, ffdp_img slab, const ffdp_slab *s,
			     const ffdp_smooth_opts *o, ffdp_error *err);

/* ---- One output file from every rank's planes (src/dist/dist_io.c) ----
 *
 * Rank 0 creates the temporary and writes the header; for .nii every rank
 * writes its planes at their offset; for .nii.gz every rank deflates its
 * planes into gzip members (in a part file beside the target, except rank
 * 0's first component, which follows the header), the compressed sizes are
 * exchanged and each rank copies its members to their place, in rank order.
 * Rank 0 then checks the file and renames it.  A failure on any rank is a
 * failure on every rank, with the first failing rank's message, and leaves
 * no temporary.  The slabs must be ffdp_slab_of's (rank order, tiling
 * [0, nz)), and the file system one that every rank sees. */
#include "ffdp/io.h"

typedef struct ffdp_dist_writer ffdp_dist_writer;

/* Collective: every rank passes the same path, whole grid, ncomp, type and
 * range (of the whole image: see ffdp_image_writer_open), and its slab. */
ffdp_status ffdp_dist_writer_open(ffdp_dist *d, const char *path, const ffdp_grid *whole, int ncomp,
				  ffdp_write_type type, const ffdp_value_range *range, const ffdp_slab *s,
				  ffdp_dist_writer **out, ffdp_error *err);
/* Local: the rank's next nplanes planes of each component (in order, any
 * number at a time).  A failure here is reported again by commit. */
ffdp_status ffdp_dist_writer_append(ffdp_dist_writer *w, const float *const planes[], int64_t nplanes,
				    ffdp_error *err);
/* Collective, called by every rank whatever happened before; frees w. */
ffdp_status ffdp_dist_writer_commit(ffdp_dist_writer *w, ffdp_error *err);
/* Give up without a file, on every rank (not collective: each rank removes
 * its own part files, rank 0 the temporary); frees w. */
void ffdp_dist_writer_abort(ffdp_dist_writer *w);

/* The whole of it for a rank holding its slab: planes = (z1 - z0) planes of
 * the whole grid (may be NULL for an empty slab).  Integer types take their
 * range over every rank.  Collective. */
ffdp_status ffdp_dist_image_write(ffdp_dist *d, const char *path, const ffdp_grid *whole, const float *planes,
				  const ffdp_slab *s, ffdp_write_type type, ffdp_error *err);
/* An ANTs displacement field, c[k] the rank's planes of component k. */
ffdp_status ffdp_dist_field_write(ffdp_dist *d, const char *path, const ffdp_grid *whole, float *const c[3],
				  const ffdp_slab *s, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
