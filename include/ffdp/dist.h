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

#include "ffdp/grid.h"
#include "ffdp/io.h"
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

/* The backend whose buffers the sharded ops below receive.  Collective,
 * before the first op with that backend.  A CPU backend changes nothing:
 * planes move with MPI and every sum is formed plane by plane in global
 * order, so N ranks give the single-process bits.  A device backend
 * (CUDA): planes move between GPUs with NCCL when every rank has its own,
 * else through host memory with MPI (ranks sharing a GPU: NCCL refuses
 * them); sums are each rank's partial sums (the backend's own order) added
 * in rank order, so N ranks equal one process to rounding and one rank
 * gives its bits.  Flags force the device rules for tests on the CPU:
 * FFDP_DIST_STAGED stages every transfer, FFDP_DIST_PORTABLE uses rank-
 * order sums and the ops' shard options instead of plane-ordered sums. */
enum { FFDP_DIST_STAGED = 1u, FFDP_DIST_PORTABLE = 2u };
ffdp_status ffdp_dist_use_backend(ffdp_dist *d, ffdp_backend *be, unsigned flags, ffdp_error *err);
/* Frees the scratch the sharded ops keep in the backend's memory between
 * calls: before that backend is closed (ffdp_register does it). */
void ffdp_dist_release(ffdp_dist *d);
/* "mpi", "staged" or "nccl": how planes move now. */
const char *ffdp_dist_transport(const ffdp_dist *d);
/* This rank's index among the ranks of its host (to pick its GPU). */
int ffdp_dist_local_rank(const ffdp_dist *d);

/* Any rank's failure fails every rank, so that none is left waiting in an
 * exchange: returns s, or an error naming `what` when another rank failed.
 * Collective. */
ffdp_status ffdp_dist_agree(ffdp_dist *d, ffdp_status s, const char *what, ffdp_error *err);

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

/* ---- moving-image access ---------------------------------------------------
 * An image distributed like any slab: rank k holds the planes
 * ffdp_slab_of(n[2], k, size) of the whole volume of size n in own (host
 * memory; NULL when it holds none).  The sampler's points on a rank reach
 * an arbitrary z range of it (T, u); that range is fetched from its
 * owners: exactly the planes holding the corners the sampler reads, plus
 * one plane of margin each side against rounding of the range itself. */
typedef struct ffdp_dist_mbox ffdp_dist_mbox;
typedef struct ffdp_dist_image {
	const float *own;
	int64_t n[3];
	/* Optional, caller-owned (zeroed before the first call, freed with
	 * ffdp_dist_mbox_free): planes kept between calls on this same image.
	 * A rank refetches only when its points leave them, and then takes a
	 * quarter more on each side: a level's moving image never changes and
	 * the transform drifts slowly, so most iterations move no plane. */
	ffdp_dist_mbox *cache;
	/* Extra planes each side of the points' range, for ops whose points
	 * move after the range is taken (the field inverse's Newton steps). */
	int64_t margin;
} ffdp_dist_image;

/* This rank's fetch traffic, added to by each fetch. */
typedef struct ffdp_dist_traffic {
	uint64_t sent, recv; /* bytes */
	int64_t fetches;
	uint64_t ring;       /* bytes a ring would have brought this rank for the same calls */
} ffdp_dist_traffic;

/* Planes [z0, z1) of the whole image, fetched (p NULL when empty), in
 * be's memory. */
struct ffdp_dist_mbox {
	float *p;
	int64_t z0, z1;
	ffdp_backend *be;
};

/* The planes a's points need (a->W, a->B, a->u on a->out's box at a->lo;
 * a->moving is not read), in be's memory like m->own and a->u.
 * Collective; t may be NULL. */
ffdp_status ffdp_dist_fetch(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a, const ffdp_dist_image *m,
			    ffdp_dist_mbox *box, ffdp_dist_traffic *t, ffdp_error *err);
void ffdp_dist_mbox_free(ffdp_dist_mbox *box);
/* As ffdp_dist_fetch into m->cache (which must be set), keeping what it
 * holds when that covers a's points on this rank.  Collective. */
ffdp_status ffdp_dist_fetch_cached(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a,
				   const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err);
/* Point a's moving image at the box (moving, m_lo, m_full). */
void ffdp_dist_mbox_bind(const ffdp_dist_mbox *box, const ffdp_dist_image *m, ffdp_sample_args *a);

/* ffdp_op_sample over a distributed moving image: the planes fetched, or,
 * when some rank's points span more than the ring share of the planes,
 * the moving slabs passed around the ranks (each rank then holds one slab
 * at a time and samples the points whose cell starts in it through the
 * sampler's z gate).  Either way the bits are those of the single-process
 * op on the whole image.  Collective; t may be NULL. */
ffdp_status ffdp_dist_sample(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a,
			     const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err);
/* The same for ffdp_op_sample_grad, gu only. */
ffdp_status ffdp_dist_sample_grad(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_grad_args *ga,
				  const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err);
/* The ring share: frac of the planes (default 0.5; <= 0: always the ring,
 * >= 1: never).  Every rank must set the same. */
void ffdp_dist_set_ring(ffdp_dist *d, double frac);

/* Gather a slabbed volume (planes of `plane` floats, the rank's planes in
 * own) into whole on rank root (nz planes; whole is ignored elsewhere), or
 * scatter whole from root into each rank's own (root's own is not written:
 * its planes stay in whole).  Collective. */
ffdp_status ffdp_dist_gather(ffdp_dist *d, const float *own, int64_t plane, int64_t nz, float *whole, int root,
			     ffdp_error *err);
ffdp_status ffdp_dist_scatter(ffdp_dist *d, const float *whole, int64_t plane, int64_t nz, float *own, int root,
			      ffdp_error *err);

/* ---- reductions -------------------------------------------------------------
 * A sum over a z-slabbed volume is formed from per-plane partial sums
 * (each formed in a fixed order by the op), gathered and added in global
 * plane order: the same bits for any number of ranks, equal to the
 * single-process op's total (ops.h, "reproducible sums").  zsum holds the
 * rank's planes [s->z0, s->z1) with k doubles per plane; total gets k
 * sums.  Collective. */
ffdp_status ffdp_dist_plane_total(ffdp_dist *d, const ffdp_slab *s, const double *zsum, int k, double *total,
				  ffdp_error *err);

/* k sums, one set per rank, added in rank order (rank 0's first, so one
 * rank keeps its bits): the reduction for ops without per-plane sums.
 * Collective. */
ffdp_status ffdp_dist_rank_total(ffdp_dist *d, const double *mine, int k, double *total, ffdp_error *err);
/* 1 when sums over be's data are formed plane by plane (host memory and
 * the CPU's rules: ffdp_dist_use_backend). */
int ffdp_dist_exact_sums(const ffdp_dist *d, ffdp_backend *be);

/* Largest value over the ranks (exact).  Collective. */
double ffdp_dist_max(ffdp_dist *d, double x);

/* ffdp_op_moments of the whole volume from the rank's planes (own: n[2] =
 * s->z1 - s->z0): plane moments gathered and added in global plane order,
 * the single-process op's bits. */
ffdp_status ffdp_dist_moments(ffdp_dist *d, ffdp_backend *be, ffdp_img own, const ffdp_slab *s, double out[10],
			      ffdp_error *err);

/* ---- losses -----------------------------------------------------------------
 * a on the rank's own planes (f, m, mask, gradients: n[2] = s->z1 - s->z0;
 * pointers may be NULL when it owns none).  a->denom must be the global one
 * (> 0: the voxel count of the whole volume, or its mask sum); loss and
 * sum are global, gradients the rank's planes of the single-process op's,
 * bit for bit.  Collective. */
ffdp_status ffdp_dist_mse(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			  ffdp_error *err);

/* LNCC: each rank runs the op on a box of its planes plus the halo the
 * windows and anchors need (ffdp_lncc_planes; f, m and the mask are
 * exchanged), with the whole volume's shifts (ffdp_lncc_shift over the
 * gathered plane parts); o's shard fields are filled here. */
ffdp_status ffdp_dist_lncc(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			   const ffdp_lncc_opts *o, ffdp_error *err);

/* MI: the joint histogram is formed per plane by the op (hist_z), gathered
 * and added in global plane order, then given back (hist_in) for the loss
 * and gradients.  a->denom may be 0 (the histogram's total, now global). */
ffdp_status ffdp_dist_mi(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			 const ffdp_mi_opts *o, ffdp_error *err);

/* ---- the greedy step ---------------------------------------------------------
 * Fields on the rank's own planes (components NULL when it owns none). */

/* ffdp_op_smooth_vec, component by component (ffdp_dist_smooth). */
ffdp_status ffdp_dist_smooth_vec(ffdp_dist *d, ffdp_backend *be, ffdp_vec slab, const ffdp_slab *s,
				 const ffdp_smooth_opts *o, ffdp_error *err);

/* ffdp_op_adam_moments on the own planes; *max_norm is the global maximum
 * (NaN on every rank when any has one). */
ffdp_status ffdp_dist_adam_moments(ffdp_dist *d, ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v,
				   const ffdp_slab *s, const ffdp_adam_opts *o, double *max_norm, ffdp_error *err);

/* ffdp_op_warp_step: with compose, u gets a halo as deep as the
 * composition reaches (bounded by o->max_norm, which must be the global
 * one and > 0) plus one plane, and the op runs on the rank's box of the
 * volume; its own planes are kept.  Collective. */
ffdp_status ffdp_dist_warp_step(ffdp_dist *d, ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
				const ffdp_slab *s, const ffdp_warp_step_opts *o, ffdp_error *err);

/* ---- pyramid levels -------------------------------------------------------- */

/* *lo, *hi = min and max over the whole volume (ffdp_op_minmax rules: NaN
 * ignored, both NaN when every voxel is); own may have no plane.  Exact. */
ffdp_status ffdp_dist_minmax(ffdp_dist *d, ffdp_backend *be, ffdp_img own, double *lo, double *hi,
			     ffdp_error *err);

/* src (distributed, on src_grid) sampled linearly with border padding at
 * the voxel centres of the rank's planes of dst_grid, into dst_own: the
 * rank's part of ffdp_field_resample's sampling (fields: per component). */
ffdp_status ffdp_dist_resample(ffdp_dist *d, ffdp_backend *be, const ffdp_dist_image *src,
			       const ffdp_grid *src_grid, const ffdp_grid *dst_grid, float *dst_own,
			       ffdp_dist_traffic *t, ffdp_error *err);

/* The rank's planes of ffdp_pyramid_downsample: blur (ffdp_dist_smooth on
 * a copy), then ffdp_dist_resample. */
ffdp_status ffdp_dist_downsample(ffdp_dist *d, ffdp_backend *be, const ffdp_dist_image *src,
				 const ffdp_grid *src_grid, const ffdp_grid *dst_grid, float *dst_own,
				 ffdp_dist_traffic *t, ffdp_error *err);

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
