/* The z extent of the sampler's points (ops.h, ffdp_op_sample_zrange): one
 * (min, max, nan) triple per block, finished on the host.  The point is
 * formed as the CPU forms it (cpu_zrange.c), without fused multiply-adds. */
#include <stdlib.h>

#include "cuda_common.cuh"

typedef struct zr_k {
	const float *u0, *u1, *u2;
	double w8, w9, w10, w11, b6, b7, b8;
	int64_t nx, ny, nz, lx, ly, lz;
} zr_k;

__global__ void zrange_kernel(zr_k k, double *part)
{
	__shared__ double slo[32], shi[32], snan[32];
	double lo = INFINITY, hi = -INFINITY, bad = 0.0;
	const int64_t n = k.nx * k.ny * k.nz;
	CU_FOR_FLAT(j, n)
	{
		const int64_t x = j % k.nx, r = j / k.nx, y = r % k.ny, z = r / k.ny;
		const double base = __dadd_rn(__dadd_rn(__dmul_rn(k.w9, (double)(k.ly + y)),
							__dmul_rn(k.w10, (double)(k.lz + z))), k.w11);
		double p = __dadd_rn(base, __dmul_rn(k.w8, (double)(k.lx + x)));
		if (k.u0) {
			const double u2 = k.u2 ? (double)k.u2[j] : 0.0;
			const double bu = __dadd_rn(__dadd_rn(__dmul_rn(k.b6, (double)k.u0[j]),
							      __dmul_rn(k.b7, (double)k.u1[j])), __dmul_rn(k.b8, u2));
			p = __dadd_rn(p, bu);
		}
		if (p != p)
			bad = 1.0;
		else
			lo = fmin(lo, p), hi = fmax(hi, p);
	}
	const int tid = cu_tid(), lane = tid & 31, warp = tid >> 5;
	for (int off = 16; off > 0; off >>= 1) {
		lo = fmin(lo, __shfl_down_sync(0xffffffffu, lo, off));
		hi = fmax(hi, __shfl_down_sync(0xffffffffu, hi, off));
		bad = fmax(bad, __shfl_down_sync(0xffffffffu, bad, off));
	}
	if (lane == 0)
		slo[warp] = lo, shi[warp] = hi, snan[warp] = bad;
	__syncthreads();
	if (tid == 0) {
		for (int w = 1; w < cu_nwarps(); w++)
			lo = fmin(lo, slo[w]), hi = fmax(hi, shi[w]), bad = fmax(bad, snan[w]);
		part[3 * blockIdx.x] = lo, part[3 * blockIdx.x + 1] = hi, part[3 * blockIdx.x + 2] = bad;
	}
}

ffdp_status ffdp_cuda_sample_zrange(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				    ffdp_error *err)
{
	(void)be;
	zr_k k;
	const int64_t n = a->out.n[0] * a->out.n[1] * a->out.n[2];
	k.u0 = a->u ? a->u->c[0] : NULL, k.u1 = a->u ? a->u->c[1] : NULL;
	k.u2 = a->u && a->u->ncomp == 3 ? a->u->c[2] : NULL;
	k.w8 = a->W[8], k.w9 = a->W[9], k.w10 = a->W[10], k.w11 = a->W[11];
	k.b6 = a->B[6], k.b7 = a->B[7], k.b8 = a->B[8];
	k.nx = a->out.n[0], k.ny = a->out.n[1], k.nz = a->out.n[2];
	k.lx = a->lo[0], k.ly = a->lo[1], k.lz = a->lo[2];
	const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
	const size_t nb = sh.grid.x, bytes = 3 * nb * sizeof(double);
	double *d = (double *)cu_scratch(bytes, 0, err, "sample_zrange");
	if (!d)
		return FFDP_ERR_NOMEM;
	double *h = (double *)malloc(bytes);
	ffdp_status s = h ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "sample_zrange: no host memory");
	if (!s) {
		zrange_kernel<<<sh.grid, sh.block>>>(k, d);
		s = cu_launched(err, "sample_zrange");
	}
	if (!s)
		s = cu_fetch(h, d, bytes, err, "sample_zrange");
	if (!s) {
		double l = INFINITY, u = -INFINITY;
		int bad = 0;
		for (size_t b = 0; b < nb; b++)
			l = fmin(l, h[3 * b]), u = fmax(u, h[3 * b + 1]), bad |= h[3 * b + 2] != 0.0;
		*lo = l, *hi = u, *nan = bad;
	}
	free(h);
	cu_scratch_free(d);
	return s;
}
