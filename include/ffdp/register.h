/* Registration: stages, options, results.
 *
 * phi(x) = T(x) + u(x): T a 4x4 physical (LPS mm) matrix mapping fixed
 * points to moving points, u a displacement in moving-frame mm on the fixed
 * grid.  A pipeline runs stages in order (moments -> rigid -> affine ->
 * greedy or SyN); each linear stage refines T, a deformable stage
 * optimises u (and, for SyN, a second field on the fixed side).  Every stage
 * is written once against include/ffdp/ops.h, so any backend runs it.
 */
#ifndef FFDP_REGISTER_H
#define FFDP_REGISTER_H

#include "ffdp/mat4.h"
#include "ffdp/ops.h"
#include "ffdp/status.h"
#include "ffdp/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ffdp_dist; /* dist.h */

#define FFDP_MAX_LEVELS 8
#define FFDP_MAX_STAGES 8

typedef enum ffdp_metric_kind {
	FFDP_METRIC_LNCC = 0,
	FFDP_METRIC_MI,
	FFDP_METRIC_MSE,
} ffdp_metric_kind;

typedef struct ffdp_metric {
	ffdp_metric_kind kind;
	int lncc_k;             /* odd window (LNCC) */
	int lncc_exact;         /* 1: exact gradient, 0: ANTs' centre-window approximation */
	int mi_bins;            /* MI */
	ffdp_mi_kernel mi_kernel;
} ffdp_metric;

typedef enum ffdp_stage_kind {
	FFDP_STAGE_MOMENTS = 0,
	FFDP_STAGE_RIGID,
	FFDP_STAGE_AFFINE,
	FFDP_STAGE_GREEDY,
	FFDP_STAGE_SYN,
} ffdp_stage_kind;

typedef struct ffdp_stage {
	ffdp_stage_kind kind;
	ffdp_metric metric;
	int nlevels;
	double shrink[FFDP_MAX_LEVELS]; /* e.g. 4 2 1 */
	int iters[FFDP_MAX_LEVELS];
	double lr;          /* Adam learning rate (deformable: largest step = lr x half a voxel) */
	double sigma_grad;  /* deformable: gradient smoothing, voxels */
	double sigma_warp;  /* deformable: warp smoothing, voxels */
	double tol;         /* convergence: plateau when the fitted slope of the loss over */
	int window;         /* the last `window` iterations, relative to its mean, is below tol; */
			    /* tested one iteration late (the level runs one more: convergence.c) */
	int moments_order;  /* moments: 1 = centres only, 2 = also principal axes */
} ffdp_stage;

typedef struct ffdp_reg_opts {
	ffdp_stage stages[FFDP_MAX_STAGES];
	int nstages;
	ffdp_backend_kind backend;
	int device;
	const ffdp_volume *fixed_mask;  /* optional, on the fixed grid: loss weights */
	/* optional, on the moving grid: weights in the moving image's space
	 * (0 over what the fixed image lacks, e.g. a lesion), sampled through
	 * each iteration's transform and multiplied into the loss weights
	 * (src/reg/moving_mask.c); with dist and slab_inputs, the rank's planes
	 * of it, like the images */
	const ffdp_volume *moving_mask;
	ffdp_mat4 init;                 /* initial T (identity unless set) */
	int min_level_size;             /* coarsest level size per axis, default 32 */
	int want_inverse;               /* compute the inverse warp (SyN always can) */
	/* Adam's moments in the deformable stages: FFDP_MOMENTS_BF16 (ops.h;
	 * the presets' choice: 12 B a voxel less per side in 3-D), or
	 * FFDP_MOMENTS_F32 */
	ffdp_moment_store moments;
	/* 1: the normalised images kept as unorm16 (ops.h), 2 B a voxel each
	 * instead of 4 (the GPU reads them as they are; the CPU gets float
	 * copies per call).  Ignored under MPI. */
	int images16;
	/* Optional (built with MPI): spread the registration over the
	 * ranks of this context (dist.h) in z-slabs, with the single-process
	 * result's bits.  Every rank calls ffdp_register with the same inputs
	 * (each rank's level images and fields hold its planes only); every
	 * stage is distributed, the finish too (inverse, SyN's composition):
	 * each rank gets its planes of the fields (ffdp_slab_of), u and u_inv
	 * on their slab grid (ffdp_grid_slab).  3-D.  With a GPU
	 * backend each rank uses its device (o->device) and planes move with
	 * NCCL or through host memory (ffdp_dist_use_backend): the result then
	 * equals one process's to rounding. */
	struct ffdp_dist *dist;
	unsigned dist_flags; /* ffdp_dist_use_backend's flags (tests) */
	int slab_inputs; /* with dist: fixed and moving hold the rank's planes only (ffdp_slab_of) */
	/* Winsorising (ANTs' --winsorize-image-intensities): each image's
	 * intensities at quantiles winsorize[0] and [1] become 0 and 1 of the
	 * normalised range, those beyond are clipped.  {0, 0} (a zeroed struct)
	 * or {0, 1}: none, the range is min..max.  Else 0 <= [0] < [1] <= 1. */
	double winsorize[2];
} ffdp_reg_opts;

/* Presets: "rigid", "affine", "greedy", "syn", "default" (= moments, rigid,
 * affine, SyN).  FireANTs' defaults where they are sound (docs/registration.md). */
ffdp_status ffdp_reg_preset(const char *name, ffdp_reg_opts *o, ffdp_error *err);
/* A stage with the defaults of its kind. */
ffdp_stage ffdp_stage_default(ffdp_stage_kind kind);
const char *ffdp_stage_name(ffdp_stage_kind kind);

typedef struct ffdp_stage_report {
	ffdp_stage_kind kind;
	double seconds;
	int iters[FFDP_MAX_LEVELS]; /* iterations run per level */
	int nlevels;
	double final_loss;          /* at the finest level */
	/* distributed deformable stages: this rank's moving-plane fetches */
	uint64_t fetch_sent, fetch_recv; /* bytes */
	uint64_t fetch_ring;             /* bytes a ring would have brought this rank */
	int64_t fetches;
} ffdp_stage_report;

typedef struct ffdp_reg_result {
	ffdp_mat4 T;       /* fixed -> moving, LPS mm */
	int has_warp;
	ffdp_field u;      /* forward: phi(x) = T(x) + u(x), on the fixed grid */
	ffdp_field u_inv;  /* inverse (when computed): phi^-1(y) = z + u_inv(z), z = T^-1(y) */
	int has_inverse;
	ffdp_stage_report stages[FFDP_MAX_STAGES];
	int nstages;
	double seconds;
} ffdp_reg_result;

/* Register moving to fixed.  Images (and masks) are host data, not
 * modified: they are uploaded once to the backend, every level image,
 * field and optimiser state lives in the backend's memory, and only the
 * results come back.  res (host fields) is filled and owned by the caller
 * (ffdp_reg_result_free). */
ffdp_status ffdp_register(const ffdp_volume *fixed, const ffdp_volume *moving, const ffdp_reg_opts *o,
			  ffdp_reg_result *res, ffdp_error *err);
void ffdp_reg_result_free(ffdp_reg_result *res);

/* Resample `moving` on `ref`'s grid through phi = T + u (u may be NULL or on
 * ref's grid).  interp LINEAR, NEAREST or LABEL; zero padding.  moving, u
 * and out are host data whatever the backend: a backend with its own
 * memory gets them uploaded and the result downloaded. */
ffdp_status ffdp_warp_volume(ffdp_backend *be, const ffdp_volume *moving, const ffdp_grid *ref, const ffdp_mat4 *T,
			     const ffdp_field *u, ffdp_interp interp, ffdp_volume *out, ffdp_error *err);

/* The same over MPI ranks (built with MPI): moving's grid is the whole
 * image's and its data the rank's planes (ffdp_slab_of along its z); out
 * gets the rank's planes of ref; u (or NULL) is on the rank's slab of ref
 * (ffdp_grid_slab), as ffdp_register returns it.  Host memory and a CPU
 * backend.  Collective. */
ffdp_status ffdp_warp_volume_dist(struct ffdp_dist *d, ffdp_backend *be, const ffdp_volume *moving,
				  const ffdp_grid *ref, const ffdp_mat4 *T, const ffdp_field *u, ffdp_interp interp,
				  float *out, ffdp_error *err);

/* The ANTs displacement w = L^-1 u for phi(x) = T(x + w(x)); host fields,
 * computed on the CPU (w is new: ffdp_field_free). */
ffdp_status ffdp_warp_to_ants(const ffdp_field *u, const ffdp_mat4 *T, ffdp_field *w, ffdp_error *err);

#ifdef __cplusplus
}
#endif
#endif
