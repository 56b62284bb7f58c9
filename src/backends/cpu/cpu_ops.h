/* CPU kernels, one file each; the table is in cpu_backend.c. */
#ifndef FFDP_CPU_OPS_H
#define FFDP_CPU_OPS_H

#include "../../ops/backend.h"

/* Set by tests to force the scalar paths (1), or AVX2 at most (2), which
 * the wider ones must match bit for bit.  The library itself never changes
 * it. */
extern int ffdp_cpu_force_scalar;

/* 1 when kernels may take their AVX2+FMA paths: the CPU has both and the
 * scalar paths are not forced.  Checked once per op call. */
int ffdp_cpu_use_avx2(void);
/* 1 when they may also take AVX-512 (F, VL, DQ, BW) clones of those paths:
 * the same operations on 32 registers (LNCC's stream: 6-10 % faster on
 * Zen 4).  Not when ffdp_cpu_force_scalar is set. */
int ffdp_cpu_use_avx512(void);

ffdp_status ffdp_cpu_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err);
ffdp_status ffdp_cpu_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err);
ffdp_status ffdp_cpu_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err);
ffdp_status ffdp_cpu_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err);
ffdp_status ffdp_cpu_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9],
				  ffdp_img out, ffdp_error *err);
ffdp_status ffdp_cpu_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err);
ffdp_status ffdp_cpu_sample_zrange(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				   ffdp_error *err);
ffdp_status ffdp_cpu_moments_planes(ffdp_backend *be, ffdp_img x, int64_t z_lo, double *out_z, ffdp_error *err);
ffdp_status ffdp_cpu_mse(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err);
ffdp_status ffdp_cpu_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err);
ffdp_status ffdp_cpu_mi(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o, ffdp_error *err);
ffdp_status ffdp_cpu_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err);
ffdp_status ffdp_cpu_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				  double *max_norm, ffdp_error *err);
ffdp_status ffdp_cpu_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v,
			       const ffdp_warp_step_opts *o, ffdp_error *err);
ffdp_status ffdp_cpu_unorm16(ffdp_backend *be, float *x, uint16_t *q, int64_t n, int pack, ffdp_error *err);
ffdp_status ffdp_cpu_moments_half(ffdp_backend *be, ffdp_img words, int half, ffdp_img x, int put, ffdp_error *err);
ffdp_status ffdp_cpu_affine_scalar(ffdp_backend *be, ffdp_img x, double a, double b, ffdp_error *err);
ffdp_status ffdp_cpu_clamp(ffdp_backend *be, ffdp_img x, double lo, double hi, ffdp_error *err);
ffdp_status ffdp_cpu_mul(ffdp_backend *be, ffdp_img x, ffdp_img y, ffdp_error *err);
ffdp_status ffdp_cpu_minmax(ffdp_backend *be, ffdp_img x, double *lo, double *hi, ffdp_error *err);
ffdp_status ffdp_cpu_vec_linear(ffdp_backend *be, ffdp_vec in, const double A[9], ffdp_vec out, ffdp_error *err);
ffdp_status ffdp_cpu_vec_max_abs_diff(ffdp_backend *be, ffdp_vec a, ffdp_vec b, double *out, ffdp_error *err);

#endif
