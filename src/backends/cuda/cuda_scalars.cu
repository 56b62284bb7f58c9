/* Pending scalars (ops.h, ffdp_scalar): a reduction's result copied into
 * pinned host memory behind the work that made it, so the op returns
 * without waiting for the GPU; the read waits on that copy's event alone.
 *
 * A ring of FFDP_SCALAR_RING slots (pinned doubles, one event each), made
 * on first use and kept with the backend.  A slot is reused every
 * FFDP_SCALAR_RING requests; each request has a number, and a read whose
 * slot has moved on to a later request fails instead of returning another
 * value.
 */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "cuda_common.cuh"

struct cuda_scalars {
	double *host; /* pinned, one per slot */
	cudaEvent_t done[FFDP_SCALAR_RING];
	uint64_t seq[FFDP_SCALAR_RING]; /* the request each slot holds */
	uint64_t next;
};

void ffdp_cuda_scalars_free(cuda_scalars *r)
{
	if (!r)
		return;
	for (int i = 0; i < FFDP_SCALAR_RING; i++)
		if (r->done[i])
			cudaEventDestroy(r->done[i]);
	if (r->host)
		cudaFreeHost(r->host);
	free(r);
}

/* The ring, made on first use; NULL when that fails (the caller then
 * copies synchronously). */
static cuda_scalars *cs_ring(ffdp_backend *be)
{
	cuda_ctx *cx = (cuda_ctx *)be->ctx;
	if (cx->scalars || cx->scalars_failed)
		return cx->scalars;
	cuda_scalars *r = (cuda_scalars *)calloc(1, sizeof(*r));
	int ok = r && cudaMallocHost(&r->host, FFDP_SCALAR_RING * sizeof(double)) == cudaSuccess;
	for (int i = 0; ok && i < FFDP_SCALAR_RING; i++)
		ok = cudaEventCreateWithFlags(&r->done[i], cudaEventDisableTiming) == cudaSuccess;
	if (!ok) {
		cudaGetLastError(); /* not sticky */
		ffdp_cuda_scalars_free(r);
		cx->scalars_failed = 1;
		return NULL;
	}
	cx->scalars = r;
	return r;
}

ffdp_status ffdp_cuda_scalar_later(ffdp_backend *be, const double *dev, double sign, double div, ffdp_scalar *x,
				   ffdp_error *err)
{
	cuda_scalars *r = cs_ring(be);
	double sum = 0.0;
	x->sign = sign, x->div = div;
	if (!r) {
		ffdp_status s = cu_fetch(&sum, dev, sizeof(sum), err, "scalar");
		x->value = sign * sum / div;
		x->ready = !s;
		return s;
	}
	const int slot = (int)(r->next % FFDP_SCALAR_RING);
	cudaError_t e = cudaMemcpyAsync(r->host + slot, dev, sizeof(double), cudaMemcpyDeviceToHost, 0);
	if (e == cudaSuccess)
		e = cudaEventRecord(r->done[slot], 0);
	if (e != cudaSuccess)
		return cu_status(e, err, "scalar copy");
	r->seq[slot] = ++r->next;
	x->slot = slot, x->seq = r->next;
	x->ready = 0;
	return FFDP_OK;
}

ffdp_status ffdp_cuda_scalar_wait(ffdp_backend *be, ffdp_scalar *x, ffdp_error *err)
{
	cuda_scalars *r = ((cuda_ctx *)be->ctx)->scalars;
	if (!r || x->slot < 0 || x->slot >= FFDP_SCALAR_RING || r->seq[x->slot] != x->seq)
		return ffdp_fail(err, FFDP_ERR_ARG, "scalar: a pending value was overwritten before it was read "
				 "(more than %d requests since)", FFDP_SCALAR_RING);
	ffdp_status s = cu_status(cudaEventSynchronize(r->done[x->slot]), err, "scalar wait");
	if (s)
		return s;
	x->value = x->sign * r->host[x->slot] / x->div;
	x->ready = 1;
	return FFDP_OK;
}
