/* CUDA backend: device, memory and the ops table.  Kernels arrive with
 * issue 5; until then each op reports that it is not implemented. */
#include <cuda_runtime.h>
#include <stdlib.h>

extern "C" {
#include "../../ops/backend.h"
#include "ffdp/ffdp.h"
}

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

static ffdp_status cuda_upload(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	(void)be;
	cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
	return e == cudaSuccess ? FFDP_OK : cuda_fail(err, e, "upload");
}

static ffdp_status cuda_download(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	(void)be;
	cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
	return e == cudaSuccess ? FFDP_OK : cuda_fail(err, e, "download");
}

static void cuda_close(ffdp_backend *be)
{
	free(be);
}

#define CUDA_TODO(name, ...)                                                                          \
	static ffdp_status name(__VA_ARGS__, ffdp_error *err)                                        \
	{                                                                                             \
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, #name " is not implemented on CUDA yet"); \
	}

CUDA_TODO(cuda_sample, ffdp_backend *, const ffdp_sample_args *)
CUDA_TODO(cuda_sample_grad, ffdp_backend *, const ffdp_sample_grad_args *)
CUDA_TODO(cuda_compose, ffdp_backend *, const ffdp_compose_args *)
CUDA_TODO(cuda_jacobian_det, ffdp_backend *, const ffdp_vec *, const double *, const double *, ffdp_img)
CUDA_TODO(cuda_moments, ffdp_backend *, ffdp_img, double *)
CUDA_TODO(cuda_mse, ffdp_backend *, const ffdp_loss_args *)
CUDA_TODO(cuda_lncc, ffdp_backend *, const ffdp_loss_args *, const ffdp_lncc_opts *)
CUDA_TODO(cuda_mi, ffdp_backend *, const ffdp_loss_args *, const ffdp_mi_opts *)
CUDA_TODO(cuda_smooth, ffdp_backend *, ffdp_img, const ffdp_smooth_opts *)
CUDA_TODO(cuda_adam_moments, ffdp_backend *, ffdp_vec, ffdp_vec, ffdp_vec, const ffdp_adam_opts *, double *)
CUDA_TODO(cuda_warp_step, ffdp_backend *, ffdp_vec, ffdp_vec, ffdp_vec, const ffdp_warp_step_opts *)

static ffdp_ops_table make_table(void)
{
	ffdp_ops_table t = {};
	t.name = "cuda";
	t.alloc = cuda_alloc;
	t.free = cuda_free;
	t.upload = cuda_upload;
	t.download = cuda_download;
	t.close = cuda_close;
	t.sample = cuda_sample;
	t.sample_grad = cuda_sample_grad;
	t.compose = cuda_compose;
	t.jacobian_det = cuda_jacobian_det;
	t.moments = cuda_moments;
	t.mse = cuda_mse;
	t.lncc = cuda_lncc;
	t.mi = cuda_mi;
	t.smooth = cuda_smooth;
	t.adam_moments = cuda_adam_moments;
	t.warp_step = cuda_warp_step;
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
	ffdp_backend *be = (ffdp_backend *)calloc(1, sizeof(*be));
	if (!be)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "cannot allocate the CUDA backend");
	be->kind = FFDP_BACKEND_CUDA;
	be->ops = &cuda_table;
	be->device = device;
	*out = be;
	return FFDP_OK;
}
