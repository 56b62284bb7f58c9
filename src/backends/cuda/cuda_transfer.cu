/* Host <-> device copies of large buffers through pinned staging.
 *
 * cudaMemcpy from or to pageable memory stages through one driver buffer
 * with one host thread: 4-7 GB/s on the H100 host, so the 728x872x728
 * pair's images (2.9 GB up) and its warp (5.5 GB down) took 0.46 s and
 * 0.8-1.4 s of a 7 s registration (docs/perf.md).  Here two pinned
 * chunks alternate: the DMA of one overlaps the host copy of the other,
 * and the host copy runs on every OpenMP thread (a fresh destination's
 * page faults are most of a download's host time, and they scale with
 * threads).  Copies under 256 MiB keep cudaMemcpy: pinning the chunks
 * costs tens of ms a backend (with 16 MiB as the bar, the 1 mm pair's
 * registration went from 0.150 to 0.186 s), more than it saves there.
 */
#include <cuda_runtime.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../ops/backend.h"
#include "ffdp/ffdp.h"
}
#include "cuda_ops.h"

enum {
	XF_CHUNK = 32 << 20, /* bytes a stage */
	XF_MIN = 256 << 20,  /* smaller copies go through cudaMemcpy */
	XF_SLICE = 1 << 20,  /* host-copy work item */
};

struct cuda_staging {
	void *buf[2];
	cudaEvent_t done[2];
	int ready;
};

static ffdp_status xf_fail(ffdp_error *err, cudaError_t e, const char *what)
{
	return ffdp_fail(err, FFDP_ERR_BACKEND, "CUDA %s: %s", what, cudaGetErrorString(e));
}

void ffdp_cuda_staging_free(cuda_staging *st)
{
	if (!st)
		return;
	for (int i = 0; i < 2; i++) {
		if (st->buf[i])
			cudaFreeHost(st->buf[i]);
		if (st->done[i])
			cudaEventDestroy(st->done[i]);
	}
	free(st);
}

/* The two pinned chunks, made on first use; NULL when pinned memory is
 * short (the caller then copies through cudaMemcpy). */
static cuda_staging *xf_staging(ffdp_backend *be)
{
	cuda_ctx *cx = (cuda_ctx *)be->ctx;
	cuda_staging *st = cx->staging;
	if (st)
		return st->ready ? st : NULL;
	if (!(st = (cuda_staging *)calloc(1, sizeof(*st))))
		return NULL;
	cx->staging = st;
	for (int i = 0; i < 2; i++)
		if (cudaMallocHost(&st->buf[i], XF_CHUNK) != cudaSuccess ||
		    cudaEventCreateWithFlags(&st->done[i], cudaEventDisableTiming) != cudaSuccess) {
			cudaGetLastError(); /* not sticky: stay on the plain path */
			return NULL;
		}
	st->ready = 1;
	return st;
}

/* memcpy on every thread, in slices. */
static void xf_host_copy(char *dst, const char *src, size_t bytes)
{
	const int64_t n = (int64_t)((bytes + XF_SLICE - 1) / XF_SLICE);
#pragma omp parallel for schedule(static)
	for (int64_t i = 0; i < n; i++) {
		const size_t o = (size_t)i * XF_SLICE, len = bytes - o < (size_t)XF_SLICE ? bytes - o : (size_t)XF_SLICE;
		memcpy(dst + o, src + o, len);
	}
}

static size_t xf_len(size_t bytes, size_t c)
{
	const size_t o = c * XF_CHUNK;
	return bytes - o < (size_t)XF_CHUNK ? bytes - o : (size_t)XF_CHUNK;
}

ffdp_status ffdp_cuda_upload(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	cuda_staging *st = bytes >= XF_MIN ? xf_staging(be) : NULL;
	cudaError_t e;
	if (!st) {
		e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
		return e == cudaSuccess ? FFDP_OK : xf_fail(err, e, "upload");
	}
	const size_t nc = (bytes + XF_CHUNK - 1) / XF_CHUNK;
	for (size_t c = 0; c < nc; c++) {
		const int b = (int)(c & 1);
		/* chunk c - 2 has left this buffer */
		if (c >= 2 && (e = cudaEventSynchronize(st->done[b])) != cudaSuccess)
			return xf_fail(err, e, "upload");
		xf_host_copy((char *)st->buf[b], (const char *)src + c * XF_CHUNK, xf_len(bytes, c));
		if ((e = cudaMemcpyAsync((char *)dst + c * XF_CHUNK, st->buf[b], xf_len(bytes, c),
					 cudaMemcpyHostToDevice, 0)) != cudaSuccess ||
		    (e = cudaEventRecord(st->done[b], 0)) != cudaSuccess)
			return xf_fail(err, e, "upload");
	}
	/* the caller may free or change src, and expects dst complete */
	e = cudaStreamSynchronize(0);
	return e == cudaSuccess ? FFDP_OK : xf_fail(err, e, "upload");
}

ffdp_status ffdp_cuda_download(ffdp_backend *be, void *dst, const void *src, size_t bytes, ffdp_error *err)
{
	cuda_staging *st = bytes >= XF_MIN ? xf_staging(be) : NULL;
	cudaError_t e;
	if (!st) {
		e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
		return e == cudaSuccess ? FFDP_OK : xf_fail(err, e, "download");
	}
	const size_t nc = (bytes + XF_CHUNK - 1) / XF_CHUNK;
	for (size_t c = 0; c <= nc; c++) {
		/* chunk c's DMA in flight while chunk c - 1 is copied out */
		if (c < nc && ((e = cudaMemcpyAsync(st->buf[c & 1], (const char *)src + c * XF_CHUNK, xf_len(bytes, c),
						    cudaMemcpyDeviceToHost, 0)) != cudaSuccess ||
			       (e = cudaEventRecord(st->done[c & 1], 0)) != cudaSuccess))
			return xf_fail(err, e, "download");
		if (!c)
			continue;
		const int b = (int)((c - 1) & 1);
		if ((e = cudaEventSynchronize(st->done[b])) != cudaSuccess)
			return xf_fail(err, e, "download");
		xf_host_copy((char *)dst + (c - 1) * XF_CHUNK, (const char *)st->buf[b], xf_len(bytes, c - 1));
	}
	return FFDP_OK;
}
