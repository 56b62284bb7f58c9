/* Safeguarded Newton steps of a field inverse (ops.h, "field inverse"):
 * per voxel p = i + C v, w and its exact trilinear derivative at p (the
 * sampler's taps, border pad), r = v + w(p), then the step shared with the
 * CPU (src/ops/newton_inverse.h), until |r| <= tol or iters steps.  One
 * thread per voxel; max |r| by block maxima (order-free, so deterministic).
 * IO floor: v 12 + out 12 + w ~12 (read about once) = 36 B/voxel.
 */
#include "../../ops/newton_inverse.h"
#include "cuda_common.cuh"

typedef struct inv_k {
	const float *w[3], *v[3];
	float *out[3];
	int64_t wn[3], wlo[3], lo[3], n[3];
	double C[9], tol;
	int nc, iters;
} inv_k;

/* One evaluation at x: returns |r|_inf (NaN: infinite, never converged)
 * and, where it is above tol, the step d. */
static __device__ double inv_eval(const inv_k &k, const double i[3], const double x[3], double d[3])
{
	const int64_t wnxy = k.wn[0] * k.wn[1];
	double p[3] = {i[0], i[1], i[2]}, r[3] = {0, 0, 0}, G[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0}, e = 0.0;
	cu_add_linear(p, k.C, x, k.nc);
	const cu_taps tx = cu_taps_make(p[0], k.wlo[0], k.wn[0], FFDP_PAD_BORDER);
	const cu_taps ty = cu_taps_make(p[1], k.wlo[1], k.wn[1], FFDP_PAD_BORDER);
	const cu_taps tz = k.nc == 3 ? cu_taps_make(p[2], k.wlo[2], k.wn[2], FFDP_PAD_BORDER) : cu_taps_flat();
#pragma unroll
	for (int c = 0; c < 3; c++)
		if (c < k.nc) {
			float g[3];
			cu_trilinear_grad(k.w[c], k.wn[0], wnxy, tx, ty, tz, g);
			r[c] = x[c] + (double)cu_trilinear(k.w[c], k.wn[0], wnxy, tx, ty, tz);
			G[3 * c] = g[0], G[3 * c + 1] = g[1], G[3 * c + 2] = k.nc == 3 ? g[2] : 0.0;
			const double ec = fabs(r[c]);
			e = fmax(e, ec <= 1e308 ? ec : INFINITY);
		}
	if (!(e <= k.tol))
		ffdp_newton_delta(r, G, k.C, k.nc, d);
	return e;
}

__global__ void invert_kernel(inv_k k, unsigned long long *worst)
{
	double m = 0.0;
	CU_FOR_VOXELS(k.n[0], k.n[1], k.n[2], x, y, z)
	{
		const int64_t j = (z * k.n[1] + y) * k.n[0] + x;
		const double i[3] = {(double)(k.lo[0] + x), (double)(k.lo[1] + y), (double)(k.lo[2] + z)};
		double v[3], d[3], e = 0.0;
#pragma unroll
		for (int c = 0; c < 3; c++)
			v[c] = c < k.nc ? (double)k.v[c][j] : 0.0;
		for (int it = 0; it < k.iters; it++) {
			if ((e = inv_eval(k, i, v, d)) <= k.tol)
				break;
#pragma unroll
			for (int c = 0; c < 3; c++)
				v[c] -= c < k.nc ? d[c] : 0.0;
		}
		m = fmax(m, e);
#pragma unroll
		for (int c = 0; c < 3; c++)
			if (c < k.nc)
				k.out[c][j] = (float)v[c];
	}
	cu_block_max_nonneg(m, worst);
}

ffdp_status ffdp_cuda_invert_step(ffdp_backend *be, const ffdp_invert_args *a, double *resid, ffdp_error *err)
{
	(void)be;
	inv_k k;
	k.nc = a->v.ncomp;
	k.iters = a->iters > 0 ? a->iters : 1;
	k.tol = a->tol;
	for (int r = 0; r < 3; r++) {
		k.wn[r] = a->w.n[r];
		k.wlo[r] = a->w_lo[r];
		k.lo[r] = a->lo[r];
		k.n[r] = a->v.n[r];
		k.w[r] = r < k.nc ? a->w.c[r] : NULL;
		k.v[r] = r < k.nc ? a->v.c[r] : NULL;
		k.out[r] = r < k.nc ? a->out.c[r] : NULL;
	}
	for (int e = 0; e < 9; e++)
		k.C[e] = a->C[e];
	unsigned long long *d = (unsigned long long *)cu_scratch(sizeof(*d), 1, err, "invert");
	if (!d)
		return FFDP_ERR_NOMEM;
	const cu_shape sh = cu_voxel_shape(k.n[0], k.n[1], k.n[2], 0);
	invert_kernel<<<sh.grid, sh.block>>>(k, d);
	ffdp_status s = cu_launched(err, "invert");
	unsigned long long bits = 0;
	if (!s)
		s = cu_fetch(&bits, d, sizeof(bits), err, "invert");
	cu_scratch_free(d);
	if (!s)
		*resid = cu_bits_double(bits);
	return s;
}
