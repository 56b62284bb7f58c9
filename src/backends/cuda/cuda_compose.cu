/* Composition of displacements (ops.h, "composition"):
 *     out(j) = d(j) + u(q),  q = (lo + j) + C d(j) - u_lo
 * u sampled trilinearly (bilinearly in 2-D) with the sampler's taps.
 *
 * One thread per voxel of the d box, x fastest.  A thread reads d(j)
 * completely before it writes out(j), so out may alias d; u is never
 * written.
 *
 * IO floor (3-D, float32): d 12 + u 12 (read about once at small
 * displacements) + out 12 = 36 B/voxel; 2-D: 24.
 */
#include "cuda_common.cuh"

typedef struct comp_k {
	const float *u[3];
	int64_t un[3], ulo[3];
	int64_t lo[3];
	const float *d[3];
	float *out[3];
	int64_t n[3];
	double C[9];
	int nc, pad;
} comp_k;

__global__ void compose_kernel(comp_k k)
{
	const int64_t unxy = k.un[0] * k.un[1];
	CU_FOR_VOXELS(k.n[0], k.n[1], k.n[2], x, y, z)
	{
		const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
		/* fixed trip counts with guards keep dl and q in registers */
		double dl[3];
#pragma unroll
		for (int c = 0; c < 3; c++)
			dl[c] = c < k.nc ? (double)k.d[c][i] : 0.0;
		/* q in the global frame: a shard of u gives the whole grid's bits */
		double q[3] = {(double)(k.lo[0] + x), (double)(k.lo[1] + y), (double)(k.lo[2] + z)};
#pragma unroll
		for (int r = 0; r < 3; r++)
#pragma unroll
			for (int c = 0; c < 3; c++)
				if (r < k.nc && c < k.nc)
					q[r] += k.C[3 * r + c] * dl[c];
		const cu_taps tx = cu_taps_make(q[0], k.ulo[0], k.un[0], k.pad);
		const cu_taps ty = cu_taps_make(q[1], k.ulo[1], k.un[1], k.pad);
		const cu_taps tz = k.nc == 3 ? cu_taps_make(q[2], k.ulo[2], k.un[2], k.pad) : cu_taps_flat();
#pragma unroll
		for (int c = 0; c < 3; c++)
			if (c < k.nc)
				k.out[c][i] = (float)(dl[c] + (double)cu_trilinear(k.u[c], k.un[0], unxy, tx, ty, tz));
	}
}

ffdp_status ffdp_cuda_compose(ffdp_backend *be, const ffdp_compose_args *a, ffdp_error *err)
{
	(void)be;
	if (a->pad != FFDP_PAD_ZERO && a->pad != FFDP_PAD_BORDER)
		return ffdp_fail(err, FFDP_ERR_ARG, "compose: unknown padding %d", (int)a->pad);
	comp_k k;
	k.nc = a->d.ncomp;
	k.pad = a->pad;
	for (int r = 0; r < 3; r++) {
		k.un[r] = a->u.n[r];
		k.ulo[r] = a->u_lo[r];
		k.lo[r] = a->lo[r];
		k.n[r] = a->d.n[r];
		k.u[r] = r < k.nc ? a->u.c[r] : NULL;
		k.d[r] = r < k.nc ? a->d.c[r] : NULL;
		k.out[r] = r < k.nc ? a->out.c[r] : NULL;
	}
	for (int e = 0; e < 9; e++)
		k.C[e] = a->C[e];
	const cu_shape sh = cu_voxel_shape(k.n[0], k.n[1], k.n[2], 0);
	compose_kernel<<<sh.grid, sh.block>>>(k);
	return cu_launched(err, "compose");
}
