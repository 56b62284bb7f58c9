/* The table each backend fills in.  Private to the library: callers use
 * include/ffdp/ops.h, which validates arguments once and dispatches here. */
#ifndef FFDP_OPS_BACKEND_H
#define FFDP_OPS_BACKEND_H

#include "ffdp/ops.h"

typedef struct ffdp_ops_table {
	const char *name;
	void *(*alloc)(ffdp_backend *be, size_t bytes, ffdp_error *err);
	void (*free)(ffdp_backend *be, void *p);
	ffdp_status (*upload)(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err);
	ffdp_status (*download)(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err);
	ffdp_status (*copy)(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err);
	ffdp_status (*zero)(ffdp_backend *be, void *dst, size_t bytes, ffdp_error *err);
	int host_memory; /* buffers are host memory */
	void (*close)(ffdp_backend *be);
	ffdp_status (*sync)(ffdp_backend *be, ffdp_error *err); /* NULL: synchronous */
	/* waits for a pending scalar and sets its value (NULL: the backend's
	 * scalars are always ready) */
	ffdp_status (*scalar_wait)(ffdp_backend *be, ffdp_scalar *x, ffdp_error *err);

	ffdp_status (*sample)(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err);
	ffdp_status (*sample_zrange)(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				     ffdp_error *err);
	ffdp_status (*sample_grad)(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err);
	ffdp_status (*compose)(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err);
	ffdp_status (*invert_step)(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err);
	ffdp_status (*jacobian_det)(ffdp_backend *be, const ffdp_vec *u, const double A[9],
				    const double G[9], ffdp_img out, ffdp_error *err);
	ffdp_status (*moments)(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err);
	ffdp_status (*moments_planes)(ffdp_backend *be, ffdp_img x, int64_t z_lo, double *out_z,
				      ffdp_error *err); /* NULL: unsupported */
	ffdp_status (*mse)(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err);
	ffdp_status (*lncc)(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o,
			    ffdp_error *err);
	ffdp_status (*mi)(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o, ffdp_error *err);
	ffdp_status (*smooth)(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err);
	/* out of place, or NULL: ops.c copies x into out and smooths out in place */
	ffdp_status (*smooth_to)(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o,
				 ffdp_error *err);
	/* optional: all components in one pass (else smooth_to per component) */
	ffdp_status (*smooth_vec_to)(ffdp_backend *be, ffdp_vec x, ffdp_vec out, const ffdp_smooth_opts *o,
				     ffdp_error *err);
	ffdp_status (*adam_moments)(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v,
				    const ffdp_adam_opts *o, double *max_norm, ffdp_error *err);
	ffdp_status (*warp_step)(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
				 const ffdp_warp_step_opts *o, ffdp_error *err);
	int warp_out; /* warp_step writes o->out itself; else ops.c copies u there and steps in place */
	int adam_smooth; /* adam_moments takes o->smooth itself; else ops.c smooths g in place first */
	ffdp_status (*moments_half)(ffdp_backend *be, ffdp_img words, int half, ffdp_img x, int put,
				    ffdp_error *err);
	/* unorm16 images: x -> q (pack) or q -> x, n voxels */
	ffdp_status (*unorm16)(ffdp_backend *be, float *x, uint16_t *q, int64_t n, int pack, ffdp_error *err);
	unsigned native16; /* FFDP_NATIVE16_* : ops that read unorm16 sources themselves */
	ffdp_status (*affine_scalar)(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err);
	ffdp_status (*clamp)(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err);
	ffdp_status (*mul)(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err);
	ffdp_status (*minmax)(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err);
	ffdp_status (*vec_linear)(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out, ffdp_error *err);
	ffdp_status (*vec_max_abs_diff)(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out, ffdp_error *err);
	/* NULL on host-memory backends: ops.c runs linear_step.h itself */
	ffdp_status (*linear_step)(ffdp_backend *be, const ffdp_linear_step_args *a, ffdp_error *err);
} ffdp_ops_table;

enum {
	FFDP_NATIVE16_SAMPLE = 1, /* sample and sample_grad: moving16 */
	FFDP_NATIVE16_LNCC = 2,   /* lncc: f16 */
};

struct ffdp_backend {
	ffdp_backend_kind kind;
	const ffdp_ops_table *ops;
	int device;
	void *ctx; /* backend private (streams, scratch) */
};

/* The out-of-place forms by a copy and the in-place op (ops.c): what ops.c
 * does for a backend without them, and what a backend with them does
 * where its own kernel does not apply.  Arguments already checked. */
ffdp_status ffdp_warp_step_by_copy(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o,
				   ffdp_error *err);
ffdp_status ffdp_smooth_to_by_copy(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o,
				   ffdp_error *err);

/* Each backend's constructor. */
ffdp_status ffdp_cpu_backend_open(ffdp_backend **out, ffdp_error *err);
ffdp_status ffdp_cuda_backend_open(int device, ffdp_backend **out, ffdp_error *err);

/* The reproducible LNCC's plane ranges (lncc_rules.c), global planes of a
 * z_full-plane volume, radius r (clipped), anchor spacing b: to produce
 * planes [o0, o1), rng = scored [s0, s1) and read [v0, v1). */
void ffdp_lncc_ranges(int64_t r, int64_t b, int exact, int64_t z_full, int64_t o0, int64_t o1, int64_t rng[4]);

#endif
