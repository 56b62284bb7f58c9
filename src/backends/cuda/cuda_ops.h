/* CUDA kernels, one file each; the table is in cuda_backend.cu. */
#ifndef FFDP_CUDA_OPS_H
#define FFDP_CUDA_OPS_H

extern "C" {
#include "../../ops/backend.h"
}

typedef struct cuda_staging cuda_staging;
typedef struct cuda_scalars cuda_scalars;

/* The backend's own state (be->ctx), each part made on first use. */
typedef struct cuda_ctx {
	cuda_staging *staging; /* cuda_transfer.cu */
	cuda_scalars *scalars; /* cuda_scalars.cu */
	int scalars_failed;    /* no pinned ring: pending scalars are fetched at once */
} cuda_ctx;

/* Large host <-> device copies through pinned staging (cuda_transfer.cu). */
ffdp_status ffdp_cuda_upload(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err);
ffdp_status ffdp_cuda_download(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err);
void ffdp_cuda_staging_free(cuda_staging *st);

/* Pending scalars (cuda_scalars.cu): x becomes sign * (the double at dev,
 * device memory, once the queued work has written it) / div, copied
 * behind that work; _wait waits for it (the table's scalar_wait). */
ffdp_status ffdp_cuda_scalar_later(ffdp_backend *be, const double *dev, double sign, double div, ffdp_scalar *x,
				   ffdp_error *err);
ffdp_status ffdp_cuda_scalar_wait(ffdp_backend *be, ffdp_scalar *x, ffdp_error *err);
void ffdp_cuda_scalars_free(cuda_scalars *r);

ffdp_status ffdp_cuda_sample_zrange(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				    ffdp_error *err);
ffdp_status ffdp_cuda_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err);
ffdp_status ffdp_cuda_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err);
ffdp_status ffdp_cuda_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err);
ffdp_status ffdp_cuda_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err);
ffdp_status ffdp_cuda_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9], ffdp_img out, ffdp_error *err);
ffdp_status ffdp_cuda_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err);
ffdp_status ffdp_cuda_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err);
ffdp_status ffdp_cuda_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err);
ffdp_status ffdp_cuda_mi(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o, ffdp_error *err);
ffdp_status ffdp_cuda_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err);
ffdp_status ffdp_cuda_smooth_to(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o,
				ffdp_error *err);
ffdp_status ffdp_cuda_smooth_vec_to(ffdp_backend *be, ffdp_vec x, ffdp_vec out, const ffdp_smooth_opts *o,
				    ffdp_error *err);
ffdp_status ffdp_cuda_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o, double *max_norm, ffdp_error *err);
ffdp_status ffdp_cuda_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o, ffdp_error *err);
ffdp_status ffdp_cuda_unorm16(ffdp_backend *be, float *x, uint16_t *q, int64_t n, int pack, ffdp_error *err);
ffdp_status ffdp_cuda_moments_half(ffdp_backend *be, ffdp_img words, int half, ffdp_img x, int put, ffdp_error *err);

ffdp_status ffdp_cuda_affine_scalar(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err);
ffdp_status ffdp_cuda_clamp(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err);
ffdp_status ffdp_cuda_mul(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err);
ffdp_status ffdp_cuda_minmax(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err);
ffdp_status ffdp_cuda_linear_step(ffdp_backend *be, const ffdp_linear_step_args *a, ffdp_error *err);
ffdp_status ffdp_cuda_vec_linear(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out, ffdp_error *err);
ffdp_status ffdp_cuda_vec_max_abs_diff(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out, ffdp_error *err);

#endif
