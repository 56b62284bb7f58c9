/* Private to src/reg: the pieces each stage is built from. */
#ifndef FFDP_REG_INTERNAL_H
#define FFDP_REG_INTERNAL_H

#include <pthread.h>

#include "ffdp/ffdp.h"
#include "ffdp/pyramid.h"
#include "ffdp/register.h"

/* One pyramid level of a fixed/moving pair, in backend memory. */
typedef struct reg_level {
	ffdp_volume F, M;  /* level images, intensities normalised to [0, 1] */
	/* or, at full resolution for a caller that takes them, unorm16
	 * (ops.h; F.data or M.data is then NULL) */
	const uint16_t *F16, *M16;
	float *fmask;      /* fixed-side loss weights on F's grid, or NULL */
	/* A moving mask (one process): mmask on M's grid, and the weights it
	 * gives each iteration (reg_level_weights) on F's grid in wbuf.
	 * Neither is in the level cache. */
	float *mmask, *wbuf;
	ffdp_mat4 f_i2p;   /* fixed level index -> phys */
	ffdp_mat4 f_p2i;
	ffdp_mat4 m_p2i;   /* moving level phys -> index */
	int64_t nvox;      /* fixed level voxels */
	int cached;        /* F, M and fmask belong to the pair's level cache */
} reg_level;

/* Coarse levels' images kept from stage to stage (level.c): the
 * 728x872x728 pair's affine and greedy stages share scales 4 and 2, each
 * made from a transient full-resolution float copy of its unorm16 image
 * (25-30 ms a level).  Emptied when a deformable stage makes its
 * full-resolution level, whose buffers are the registration's peak. */
enum { REG_LEVEL_CACHE = 8 };
typedef struct reg_level_cache {
	struct {
		double shrink;
		ffdp_volume F, M;
		float *fmask;
	} e[REG_LEVEL_CACHE];
	int n;
} reg_level_cache;

/* The whole-resolution inputs, uploaded and normalised once: from here
 * until the results are downloaded no voxel is touched on the host. */
typedef struct reg_pair {
	ffdp_backend *be;
	const ffdp_volume *fixed, *moving; /* caller's, host: grids only */
	ffdp_volume fn, mn;                /* normalised copies, backend memory */
	uint16_t *fq, *mq;                 /* images16: them as unorm16 (fn.data, mn.data NULL) */
	ffdp_volume fmask;                 /* fixed mask, backend memory; data NULL when none */
	ffdp_volume mmask;                 /* moving mask, backend memory (one process); data NULL when none */
	int min_level_size;
	int dim;                           /* 2 or 3 */
	struct ffdp_dist *dist;            /* deformable stages over MPI ranks, or NULL */
	ffdp_moment_store moments;         /* Adam's moment storage (deformable stages) */
	reg_level_cache *lc;               /* or NULL (MPI: levels are the ranks') */
} reg_pair;

ffdp_status reg_pair_init(reg_pair *p, ffdp_backend *be, const ffdp_volume *fixed, const ffdp_volume *moving,
			  const ffdp_reg_opts *o, ffdp_error *err);
/* [*lo, *hi] (the image's range on entry) narrowed to its quantiles q[0],
 * q[1] (winsorize.c) from the n host values at x: the image, or under MPI
 * the rank's planes.  Unchanged for q = {0, 1} or a constant image.
 * Collective under MPI. */
ffdp_status reg_winsor_range(const reg_pair *p, const float *x, int64_t n, const double q[2], double *lo,
			     double *hi, ffdp_error *err);
void reg_pair_free(reg_pair *p);
/* Build the level at `shrink` (1 = full resolution: shares the pair's data). */
/* take16: full-resolution images may come as unorm16 (F16, M16) */
ffdp_status reg_level_make(const reg_pair *p, double shrink, int take16, reg_level *lv, ffdp_error *err);
void reg_level_free(const reg_pair *p, reg_level *lv);

/* Volumes and fields whose planes live in the backend's memory
 * (buffers.c): allocated zero-filled with ffdp_buf_alloc, freed with
 * ffdp_buf_free (freeing a zeroed struct is a no-op).  _upload allocates
 * and copies a host struct in; reg_field_download copies out into a host
 * field of f's grid: *host as it comes when allocated (reg_host_fields),
 * else allocated here (ffdp_field_alloc; an empty struct). */
ffdp_status reg_volume_alloc(ffdp_backend *be, const ffdp_grid *g, ffdp_volume *v, ffdp_error *err);
void reg_volume_free(ffdp_backend *be, ffdp_volume *v);
ffdp_status reg_volume_upload(ffdp_backend *be, const ffdp_volume *host, ffdp_volume *v, ffdp_error *err);
ffdp_status reg_field_alloc(ffdp_backend *be, const ffdp_grid *g, ffdp_field *f, ffdp_error *err);
void reg_field_free(ffdp_backend *be, ffdp_field *f);
ffdp_status reg_field_upload(ffdp_backend *be, const ffdp_field *host, ffdp_field *f, ffdp_error *err);
ffdp_status reg_field_download(ffdp_backend *be, const ffdp_field *f, ffdp_field *host, ffdp_error *err);
/* Op views of a whole volume / field. */
ffdp_img reg_img(const ffdp_volume *v);
ffdp_vec reg_vec(const ffdp_field *f);
/* The 3x3 linear part of T, row-major. */
void reg_linear3(const ffdp_mat4 *T, double A[9]);

/* Sampler arguments that warp src (with phys->index map src_p2i) through
 * T (+ u, set by the caller) onto the level's fixed grid, into out.
 * Border padding: a point outside src takes the nearest edge value, which
 * is background for any sensible image, whereas zero padding invents an
 * edge wherever the background is not exactly 0 (noisy or normalised
 * images) and drags affine stages towards it. */
void reg_sampler_init(ffdp_sample_args *a, const ffdp_volume *src, const ffdp_mat4 *src_p2i, const ffdp_mat4 *T,
		      const reg_level *lv, float *out);

/* ---- the domain (domain.c) -------------------------------------------------
 * Where a deformable stage's level fields live: the whole level grid in one
 * process, or, with a dist context, the rank's z-slab of it (src/dist).
 * The loop calls these functions; each calls the plain op without a dist
 * context and the sharded one with it, which has the same bits.  Level
 * images (reg_level F, M) then hold the rank's planes of their grid. */
/* Moving planes a rank keeps between the iterations of a level (src/dist's
 * fetch cache), one per image sampled: the two sides of SyN and a moving
 * mask at most. */
enum { REG_MCACHES = 3 };
typedef struct reg_mcache {
	const float *key; /* the image's planes */
	void *box;        /* its ffdp_dist_mbox (domain.c) */
} reg_mcache;

typedef struct reg_domain {
	ffdp_backend *be;
	struct ffdp_dist *dist;   /* NULL: one process */
	int64_t nz, z0, z1;       /* the level's planes, and the rank's [z0, z1) */
	int64_t n[3];             /* the rank's box: nx, ny, z1 - z0 */
	uint64_t sent, recv;      /* moving fetch traffic, bytes */
	uint64_t ring;            /* what a ring would have moved instead */
	int64_t fetches;
	reg_mcache mcache[REG_MCACHES]; /* dropped with each level */
	const float *mask_key;    /* the level mask whose weight sum is mask_sum */
	double mask_sum;
	const float *mask_max_key; /* ... and whose maximum is mask_max (0: not known to be a plain mask) */
	double mask_max;
} reg_domain;

void reg_domain_init(reg_domain *dm, ffdp_backend *be, struct ffdp_dist *dist);
/* Frees what the domain keeps (the fetch caches). */
void reg_domain_release(reg_domain *dm);
/* The rank's planes of grid g (all of them in one process). */
void reg_domain_level(reg_domain *dm, const ffdp_grid *g);
int reg_domain_rank(const reg_domain *dm);
/* Views on the rank's box. */
ffdp_img reg_dom_img(const reg_domain *dm, float *p);
ffdp_vec reg_dom_vec(const reg_domain *dm, const ffdp_field *f);
/* One plane: src_own the rank's planes of src_grid, dst_own those of g. */
ffdp_status reg_dom_plane_resample(reg_domain *dm, const float *src_own, const ffdp_grid *src_grid,
				   const ffdp_grid *g, float *dst_own, ffdp_error *err);
/* The rank's box of a field on grid g (all of it without MPI). */
void reg_dom_box(const reg_domain *dm, const ffdp_grid *g, int64_t n[3]);
/* A field on grid g with the rank's planes only (backend memory). */
ffdp_status reg_dom_field_alloc(reg_domain *dm, const ffdp_grid *g, ffdp_field *f, ffdp_error *err);
float *reg_dom_buf(reg_domain *dm, ffdp_error *err);
/* f (the rank's planes of a field on the previous level) onto grid g. */
ffdp_status reg_dom_field_resample(reg_domain *dm, const ffdp_field *f, const ffdp_grid *g, ffdp_field *out,
				   ffdp_error *err);
/* The sampler on the rank's box (a->out, a->lo, a->u are set for it);
 * src holds the rank's planes of its grid. */
ffdp_status reg_dom_sample(reg_domain *dm, ffdp_sample_args *a, const ffdp_volume *src, ffdp_error *err);
ffdp_status reg_dom_sample_grad(reg_domain *dm, ffdp_sample_grad_args *ga, const ffdp_volume *src,
				ffdp_error *err);
/* reg_similarity over the level (nvox: its voxels), the loss weighted by
 * mask (or not: NULL) and its mean taken over dmask's weights (NULL: over
 * nvox).  mask == dmask is the plain masked loss; a mask that changes
 * from call to call (reg_level_weights) comes with the level's fixed mask
 * as dmask, whose sum is kept once a level. */
ffdp_status reg_dom_similarity(reg_domain *dm, const ffdp_metric *mt, float *f, const uint16_t *f16, float *m,
			       const float *mask, const float *dmask, float *gf, float *gm, double scale, int64_t nvox,
			       ffdp_scalar *loss, ffdp_error *err);
/* The loss weights of this iteration on the level: the fixed mask (or
 * NULL), or with a moving mask that mask sampled through a (the moving
 * image's sampler arguments of this iteration) times the fixed mask, in
 * lv->wbuf. */
ffdp_status reg_level_weights(reg_domain *dm, const reg_level *lv, const ffdp_sample_args *a, const float **w,
			      ffdp_error *err);
/* ffdp_op_moments of src (the rank's planes of its grid). */
ffdp_status reg_dom_moments(reg_domain *dm, const ffdp_volume *src, double out[10], ffdp_error *err);
ffdp_status reg_dom_smooth_vec(reg_domain *dm, ffdp_vec x, const ffdp_smooth_opts *o, ffdp_error *err);
ffdp_status reg_dom_adam_moments(reg_domain *dm, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				 double *max_norm, ffdp_error *err);
ffdp_status reg_dom_warp_step(reg_domain *dm, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o,
			      ffdp_error *err);
/* The whole field f (the rank's planes of it) on rank 0, in place (one
 * process: nothing to do); other ranks' f is freed. */
/* The finish on the rank's planes (fields on the level's full grid, the
 * rank's planes only under MPI; other fields' planes are fetched as the
 * points reach them): d <- d + u o (Id + C d); up to iters Newton steps
 * per voxel of v towards the inverse of w (ffdp_op_invert_step, *resid
 * global); f <- A f;
 * the rank's planes to the host, on their slab grid (ffdp_grid_slab; *host
 * as reg_field_download's). */
ffdp_status reg_dom_compose(reg_domain *dm, const ffdp_field *u, ffdp_field *d, const double C[9], ffdp_error *err);
ffdp_status reg_dom_invert_step(reg_domain *dm, const ffdp_field *w, ffdp_field *v, ffdp_field *out, const double C[9],
				int iters, double tol, double *resid, ffdp_error *err);
ffdp_status reg_dom_vec_linear(reg_domain *dm, ffdp_field *f, const double A[9], ffdp_error *err);
ffdp_status reg_dom_field_download(reg_domain *dm, const ffdp_field *f, ffdp_field *host, ffdp_error *err);
/* The host grid of a download of f's level grid g: the rank's slab. */
ffdp_grid reg_dom_host_grid(const reg_domain *dm, const ffdp_grid *g);

/* Host fields allocated and zeroed on a helper thread while the device
 * iterates (host_fields.c; device backends only, else nothing starts).
 * _take joins the helper and moves field k into *out when it has grid g
 * and ncomp components (1), else leaves *out alone (0: the caller
 * allocates); _end joins and frees what was not taken. */
typedef struct reg_host_fields {
	ffdp_field f[2];
	ffdp_grid grid;
	int ncomp, n, started;
	ffdp_status st;
	ffdp_error err;
	pthread_t th;
} reg_host_fields;
void reg_host_fields_start(reg_host_fields *h, const ffdp_backend *be, const ffdp_grid *g, int ncomp, int n);
int reg_host_fields_take(reg_host_fields *h, int k, const ffdp_grid *g, int ncomp, ffdp_field *out);
void reg_host_fields_end(reg_host_fields *h);

/* Loss and gradients of metric mt between f and m; gf/gm may be NULL.
 * denom: the mean's denominator (0: the op's own, the voxel count or the
 * mask's sum); MI ignores it (its histogram's total).  The loss may come
 * pending (ffdp_scalar_get reads it). */
void reg_mi_opts(const ffdp_metric *mt, ffdp_mi_opts *o);
ffdp_status reg_similarity(ffdp_backend *be, const ffdp_metric *mt, ffdp_img f, const uint16_t *f16, ffdp_img m,
			   const float *mask, double denom, double mask_max, float *gf, float *gm, double scale,
			   ffdp_scalar *loss, ffdp_error *err);

/* ANTs-style convergence: plateau or rise of the loss over a window. */
typedef struct reg_convergence {
	double *hist;
	int window, count;
	double tol;
} reg_convergence;

void reg_convergence_init(reg_convergence *c, double *storage, int window, double tol);
/* Add a loss; returns 1 when the last `window` losses have converged. */
int reg_convergence_push(reg_convergence *c, double loss);

/* Start a stage's report and progress bar (total = all levels' iterations). */
void reg_stage_begin(const ffdp_stage *st, ffdp_stage_report *rep, ffdp_progress *pb);
/* Iterations of levels 0..l, for the progress bar after level l. */
int64_t reg_levels_done(const ffdp_stage *st, int l);

/* One level's loop bookkeeping under the lagged rule (convergence.c):
 * iteration it's loss is read, reported (debug log, progress) and tested
 * after iteration it + 1 has been issued.  Holds the convergence history:
 * not to be copied once initialised. */
typedef struct reg_iter {
	const ffdp_stage *st;
	ffdp_backend *be;
	ffdp_progress *pb;
	int64_t *done; /* the progress count */
	int64_t n[3];  /* the level's size, for the log */
	reg_convergence conv;
	double hist[64];
	ffdp_scalar prev; /* iteration prev_it's loss, not read yet */
	int prev_it;      /* -1: none */
} reg_iter;

void reg_iter_init(reg_iter *ri, const ffdp_stage *st, ffdp_backend *be, ffdp_progress *pb, int64_t *done,
		   const int64_t n[3]);
/* After iteration it (0-based) has been issued with its loss *cur (maybe
 * pending): reads, reports and tests iteration it - 1's; *stop = 1 when
 * the level ends after iteration it. */
ffdp_status reg_iter_end(reg_iter *ri, int it, const ffdp_scalar *cur, int *stop, ffdp_error *err);
/* After the level's loop: reads and reports its last iteration's loss into
 * *last (left alone when the level ran no iteration). */
ffdp_status reg_iter_finish(reg_iter *ri, double *last, ffdp_error *err);

/* Seconds since *t, with be drained first (its queued work counted where
 * it was issued), and *t set to now; 0 unless the debug log is on (the
 * per-level timings: a drain a phase, not worth paying otherwise). */
double reg_lap(ffdp_backend *be, double *t);
/* The debug log's line for a level: its set-up and iteration times. */
void reg_level_log(const ffdp_stage *st, int l, const int64_t n[3], double setup, int iters, double seconds);

/* Stages.  Linear stages refine *T; deformable stages fill res. */
ffdp_status reg_moments(const reg_pair *p, const ffdp_stage *st, ffdp_mat4 *T, ffdp_stage_report *rep,
			ffdp_error *err);
ffdp_status reg_linear(const reg_pair *p, const ffdp_stage *st, ffdp_mat4 *T, ffdp_stage_report *rep,
		       ffdp_error *err);
ffdp_status reg_deformable(const reg_pair *p, const ffdp_stage *st, const ffdp_mat4 *T, ffdp_reg_result *res,
			   int want_inverse, ffdp_stage_report *rep, ffdp_error *err);

/* Newton steps allowed per voxel for a field inverse; it stops earlier once
 * every voxel's residual is below 1e-4 of a voxel. */
#define REG_INVERT_ITERS 100

/* Inverse displacement: (Id + w_inv) = (Id + w)^-1 on w's grid, safeguarded
 * Newton steps (reg_dom_invert_step) on the domain's planes.  w and the new
 * w_inv are in backend memory (reg_field_free). */
ffdp_status reg_invert_field(reg_domain *dm, const ffdp_field *w, ffdp_field *w_inv, int iters, ffdp_error *err);

/* Symmetric 3x3 eigen-decomposition (Jacobi): A = V diag(e) V^T, e descending. */
void reg_sym3_eigen(const double A[9], double e[3], double V[9]);

#endif
