/* CUDA backend: device, memory and the ops table (kernels: one file each). */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "../../ops/backend.h"
#include "ffdp/ffdp.h"
}
#include "cuda_ops.h"

static ffdp_status cuda_fail(ffdp_error *err, cudaError_t e, const char *what)
{
	return ffdp_fail(err, FFDP_ERR_BACKEND, "CUDA %s: %s", what, cudaGetErrorString(e));
}

static void *cuda_alloc(ffdp_backend *be, size_t bytes, ffdp_error *err)
{
	(void)be;
	void *p = NULL;
	cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
	if (e != cudaSuccess) {
		ffdp_fail(err, FFDP_ERR_NOMEM, "cannot allocate %zu bytes on the GPU: %s", bytes,
			  cudaGetErrorString(e));
		return NULL;
	}
	e = cudaMemset(p, 0, bytes);
	if (e != cudaSuccess) {
		cudaFree(p);
		cuda_fail(err, e, "memset");
		return NULL;
	}
	return p;
}

static void cuda_free(ffdp_backend *be, void *p)
{
	(void)be;
	cudaFree(p);
}

static ffdp_status cuda_copy(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	(void)be;
	cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
	return e == cudaSuccess ? FFDP_OK : cuda_fail(err, e, "device copy");
}

static ffdp_status cuda_zero(ffdp_backend *be, void *dst, size_t bytes, ffdp_error *err)
{
	(void)be;
	cudaError_t e = cudaMemset(dst, 0, bytes);
	return e == cudaSuccess ? FFDP_OK : cuda_fail(err, e, "memset");
}

static ffdp_status cuda_sync(ffdp_backend *be, ffdp_error *err)
{
	(void)be;
	cudaError_t e = cudaDeviceSynchronize();
	return e == cudaSuccess ? FFDP_OK : cuda_fail(err, e, "synchronize");
}

static void cuda_close(ffdp_backend *be)
{
	cuda_ctx *cx = (cuda_ctx *)be->ctx;
	ffdp_cuda_staging_free(cx->staging);
	ffdp_cuda_scalars_free(cx->scalars);
	free(cx);
	free(be);
}

static ffdp_ops_table make_table(void)
{
	ffdp_ops_table t = {};
	t.name = "cuda";
	t.alloc = cuda_alloc;
	t.free = cuda_free;
	t.upload = ffdp_cuda_upload;
	t.download = ffdp_cuda_download;
	t.copy = cuda_copy;
	t.zero = cuda_zero;
	t.host_memory = 0;
	t.close = cuda_close;
	t.sync = cuda_sync;
	t.scalar_wait = ffdp_cuda_scalar_wait;
	t.sample = ffdp_cuda_sample;
	t.sample_zrange = ffdp_cuda_sample_zrange;
	t.sample_grad = ffdp_cuda_sample_grad;
	t.compose = ffdp_cuda_compose;
	t.invert_step = ffdp_cuda_invert_step;
	t.jacobian_det = ffdp_cuda_jacobian_det;
	t.moments = ffdp_cuda_moments;
	t.mse = ffdp_cuda_mse;
	t.lncc = ffdp_cuda_lncc;
	t.mi = ffdp_cuda_mi;
	t.smooth = ffdp_cuda_smooth;
	t.smooth_to = ffdp_cuda_smooth_to;
	t.smooth_vec_to = ffdp_cuda_smooth_vec_to;
	t.adam_moments = ffdp_cuda_adam_moments;
	t.warp_step = ffdp_cuda_warp_step;
	t.warp_out = 1;
	t.adam_smooth = 1;
	t.moments_half = ffdp_cuda_moments_half;
	t.unorm16 = ffdp_cuda_unorm16;
	t.native16 = FFDP_NATIVE16_SAMPLE | FFDP_NATIVE16_LNCC;
	t.affine_scalar = ffdp_cuda_affine_scalar;
	t.clamp = ffdp_cuda_clamp;
	t.mul = ffdp_cuda_mul;
	t.minmax = ffdp_cuda_minmax;
	t.vec_linear = ffdp_cuda_vec_linear;
	t.vec_max_abs_diff = ffdp_cuda_vec_max_abs_diff;
	t.linear_step = ffdp_cuda_linear_step;
	return t;
}

static const ffdp_ops_table cuda_table = make_table();

extern "C" int ffdp_cuda_device_count(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess)
		return 0;
	return n;
}

/* Device memory in use now (all processes), from cudaMemGetInfo on the
 * current device. */
extern "C" ffdp_status ffdp_cuda_mem_used(size_t *used, ffdp_error *err)
{
	size_t free_b = 0, total_b = 0;
	cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
	if (e != cudaSuccess)
		return cuda_fail(err, e, "memory info");
	*used = total_b - free_b;
	return FFDP_OK;
}

extern "C" ffdp_status ffdp_cuda_backend_open(int device, ffdp_backend **out, ffdp_error *err)
{
	*out = NULL;
	int n = ffdp_cuda_device_count();
	if (n == 0)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "no CUDA device is visible");
	if (device < 0 || device >= n)
		return ffdp_fail(err, FFDP_ERR_ARG, "CUDA device %d does not exist (%d visible)", device, n);
	cudaError_t e = cudaSetDevice(device);
	if (e != cudaSuccess)
		return cuda_fail(err, e, "set device");
	/* Ops take their scratch (reductions, O(slab) rings) from the stream-
	 * ordered pool on every call; by default the pool hands freed memory
	 * back at each synchronisation and maps it again on the next call.
	 * Keep up to 64 MiB of it instead. */
	cudaMemPool_t pool;
	if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
		uint64_t keep = (uint64_t)64 << 20;
		cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
	}
	ffdp_backend *be = (ffdp_backend *)calloc(1, sizeof(*be));
	cuda_ctx *cx = (cuda_ctx *)calloc(1, sizeof(*cx));
	if (!be || !cx) {
		free(be), free(cx);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot allocate the CUDA backend");
	}
	be->ctx = cx;
	be->kind = FFDP_BACKEND_CUDA;
	be->ops = &cuda_table;
	be->device = device;
	*out = be;
	return FFDP_OK;
}
