/* Private helpers of cuda_lncc.cu and cuda_mi.cu: device attributes and a
 * whole-volume sum or max |x| (the mask's sum and maximum).  Sums use the
 * deterministic reductions of cuda_common.cuh (per-block partials of a
 * fixed grid, added in block order): no floating-point atomics.
 *
 * Every op runs on the legacy default stream (0), ordered with the
 * synchronous copies of ffdp_buf_upload/download.
 */
#ifndef FFDP_CUDA_LNCC_MI_CUH
#define FFDP_CUDA_LNCC_MI_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cuda_common.cuh"


static inline int lm_device_attr(cudaDeviceAttr attr, int fallback)
{
	int dev = 0, v = 0;
	if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, attr, dev) != cudaSuccess || v <= 0)
		return fallback;
	return v;
}

static inline int lm_sm_count(void)
{
	return lm_device_attr(cudaDevAttrMultiProcessorCount, 1);
}

/* Largest dynamic shared memory one block may opt in to. */
static inline int lm_smem_optin(void)
{
	return lm_device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin, 48 << 10);
}

/* out[blockIdx.x] = sum (or max |x| when amax; NaN counts as +inf) over a
 * grid-stride share. */
static __global__ void __launch_bounds__(CU_RED_T) lm_reduce_f32(const float *x, int64_t n, int amax, double *out)
{
	__shared__ double red[CU_RED_T];
	double s = 0.0;
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
		const double a = fabs((double)x[i]);
		s = amax ? fmax(s, a <= 1e308 ? a : INFINITY) : s + (double)x[i];
	}
	s = amax ? cu_tree_reduce<true>(s, red) : cu_tree_sum(s, red);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

/* Sum (amax = 0) or max |x| (amax = 1, NaN -> +inf) of a float volume,
 * to the host.  Reads it once: 4 B/voxel. */
static inline ffdp_status lm_reduce_volume(const float *x, int64_t n, int amax, double *res, ffdp_error *err,
					   const char *what)
{
	int64_t nb = (n + CU_RED_T - 1) / CU_RED_T, cap = (int64_t)lm_sm_count() * 8;
	nb = nb < cap ? nb : cap;
	nb = nb > 0 ? nb : 1;
	double *part = (double *)cu_scratch((size_t)(nb + 1) * sizeof(double), 1, err, what);
	if (!part)
		return FFDP_ERR_NOMEM;
	lm_reduce_f32<<<(unsigned)nb, CU_RED_T, 0>>>(x, n, amax, part);
	ffdp_status s = cu_launched(err, what);
	if (!s && !amax) {
		cu_sum_rows<<<1, CU_RED_T>>>(part, nb, part + nb);
		s = cu_launched(err, what);
	}
	double *h = (double *)malloc((size_t)nb * sizeof(double));
	if (!s && !h)
		s = ffdp_fail(err, FFDP_ERR_NOMEM, "%s: host scratch", what);
	if (!s && !amax)
		s = cu_status(cudaMemcpy(res, part + nb, sizeof(double), cudaMemcpyDeviceToHost), err, what);
	if (!s && amax) {
		/* max is order-free: combine the partials here */
		s = cu_status(cudaMemcpy(h, part, (size_t)nb * sizeof(double), cudaMemcpyDeviceToHost), err, what);
		*res = 0.0;
		for (int64_t i = 0; !s && i < nb; i++)
			*res = fmax(*res, h[i]);
	}
	free(h);
	cu_scratch_free(part);
	return s;
}

#endif
