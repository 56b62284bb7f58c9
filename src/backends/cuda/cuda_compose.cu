/* Composition of displacements (ops.h, "composition"):
 *     out(j) = d(j) + u(q),  q = (lo + j) + C d(j) - u_lo
 * u sampled trilinearly (bilinearly in 2-D) with the sampler's taps.
 *
 * One thread per voxel of the d box, x fastest; 3-D fields share the
 * corners' offsets between components (compose3_kernel).  A thread reads d(j)
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
		cu_add_linear(q, k.C, dl, k.nc);
		const cu_taps tx = cu_taps_make(q[0], k.ulo[0], k.un[0], k.pad);
		const cu_taps ty = cu_taps_make(q[1], k.ulo[1], k.un[1], k.pad);
		const cu_taps tz = k.nc == 3 ? cu_taps_make(q[2], k.ulo[2], k.un[2], k.pad) : cu_taps_flat();
#pragma unroll
		for (int c = 0; c < 3; c++)
			if (c < k.nc)
				k.out[c][i] = (float)(dl[c] + (double)cu_trilinear(k.u[c], k.un[0], unxy, tx, ty, tz));
	}
}

/* A thread computes CMP_NV voxels 32 apart along x, their gathers in
 * flight together; blocks of 32 CMP_NV x 8 x 1 voxels, CMP_MINB blocks an SM
 * (64 registers).  512^3, random +-2 voxel displacements (docs/perf.md):
 * 3.76 ms with one voxel a thread (32 x 4 x 2, 6 blocks), 2.53 ms so. */
enum { CMP_NV = 2, CMP_BZ = 1, CMP_MINB = 4 };

/* 3-D, u's box under 2^24 voxels an axis and 2^31 in all: the offset C d
 * and the taps in float around the voxel's integer position, the padding
 * fixed at compile time, the corners' row offsets shared by the three
 * components (32-bit). */
template <int PAD> __global__ void __launch_bounds__(CU_THREADS, CMP_MINB) compose3_kernel(comp_k k)
{
	typedef int32_t IDX;
	const IDX unx = (IDX)k.un[0], unxy = (IDX)(k.un[0] * k.un[1]);
	const IDX nx = (IDX)k.un[0], ny = (IDX)k.un[1], nz = (IDX)k.un[2];
	const float *__restrict__ u0 = k.u[0], *__restrict__ u1 = k.u[1], *__restrict__ u2 = k.u[2];
	const float *d0 = k.d[0], *d1 = k.d[1], *d2 = k.d[2]; /* out may alias d */
	float C[9];
#pragma unroll
	for (int e = 0; e < 9; e++)
		C[e] = (float)k.C[e];
	const int64_t xb = (int64_t)blockIdx.x * blockDim.x * CMP_NV + threadIdx.x;
	const int64_t y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y;
	for (int64_t z = (int64_t)blockIdx.z * blockDim.z + threadIdx.z; z < k.n[2] && y < k.n[1];
	     z += (int64_t)gridDim.z * blockDim.z) {
#pragma unroll
		for (int v = 0; v < CMP_NV; v++) {
			const int64_t x = xb + 32 * v;
			if (x >= k.n[0])
				break;
			const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
			const float a = d0[i], b = d1[i], c = d2[i];
			const cu_taps_t<IDX> tx = cu_taps_frame<IDX, PAD>((IDX)(k.lo[0] + x - k.ulo[0]), C[0] * a + C[1] * b + C[2] * c, nx);
			const cu_taps_t<IDX> ty = cu_taps_frame<IDX, PAD>((IDX)(k.lo[1] + y - k.ulo[1]), C[3] * a + C[4] * b + C[5] * c, ny);
			const cu_taps_t<IDX> tz = cu_taps_frame<IDX, PAD>((IDX)(k.lo[2] + z - k.ulo[2]), C[6] * a + C[7] * b + C[8] * c, nz);
			const IDX z0 = tz.i0 * unxy, z1 = tz.i1 * unxy, y0 = ty.i0 * unx, y1 = ty.i1 * unx;
			const IDX o0 = z0 + y0, o1 = z0 + y1, o2 = z1 + y0, o3 = z1 + y1;
			k.out[0][i] = a + cu_trilinear_rows(u0, o0, o1, o2, o3, tx, ty, tz);
			k.out[1][i] = b + cu_trilinear_rows(u1, o0, o1, o2, o3, tx, ty, tz);
			k.out[2][i] = c + cu_trilinear_rows(u2, o0, o1, o2, o3, tx, ty, tz);
		}
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
	/* the float frame: box indices (and the voxel's, relative to u_lo)
	 * exact in float and 32-bit */
	const int64_t lim = (int64_t)1 << 24;
	bool fast = k.nc == 3 && k.un[0] * k.un[1] * k.un[2] < ((int64_t)1 << 31);
	for (int r = 0; r < 3; r++)
		fast = fast && k.un[r] < lim && k.lo[r] - k.ulo[r] > -lim && k.lo[r] + k.n[r] - k.ulo[r] < lim;
	const dim3 b3(CU_BX, CU_THREADS / CU_BX / CMP_BZ, CMP_BZ);
	const dim3 g3((unsigned)((k.n[0] + b3.x * CMP_NV - 1) / (b3.x * CMP_NV)), (unsigned)((k.n[1] + b3.y - 1) / b3.y),
		      (unsigned)cu_min64((k.n[2] + CMP_BZ - 1) / CMP_BZ, 65535));
	if (!fast || k.n[1] > 65535 * (int64_t)b3.y)
		compose_kernel<<<sh.grid, sh.block>>>(k);
	else if (k.pad == FFDP_PAD_ZERO)
		compose3_kernel<FFDP_PAD_ZERO><<<g3, b3>>>(k);
	else
		compose3_kernel<FFDP_PAD_BORDER><<<g3, b3>>>(k);
	return cu_launched(err, "compose");
}
