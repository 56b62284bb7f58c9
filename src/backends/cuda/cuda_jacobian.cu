/* Jacobian determinant of x -> A x + u(x) (ops.h):
 *     out = det(A + (du/di) G)
 * du/di by central differences, one-sided at the box faces, 0 along an
 * axis of size 1; 2-D uses the top-left 2 x 2 blocks of A and G.
 *
 * One thread per voxel; the six neighbours come from cache.  IO floor
 * (3-D): u 12 + out 4 = 16 B/voxel; 2-D: 12.
 */
#include "cuda_common.cuh"

typedef struct jac_k {
	const float *u[3];
	int64_t n[3];
	double A[9], G[9];
	int nc;
	float *out;
} jac_k;

/* d p / d i along one axis at position pos (element i, neighbours at +-stride). */
__device__ __forceinline__ double jac_diff(const float *p, int64_t i, int64_t pos, int64_t n, int64_t stride)
{
	if (n == 1)
		return 0.0;
	if (pos == 0)
		return (double)p[i + stride] - (double)p[i];
	if (pos == n - 1)
		return (double)p[i] - (double)p[i - stride];
	return 0.5 * ((double)p[i + stride] - (double)p[i - stride]);
}

__global__ void jacobian_kernel(jac_k k)
{
	const int64_t stride[3] = {1, k.n[0], k.n[0] * k.n[1]};
	CU_FOR_VOXELS(k.n[0], k.n[1], k.n[2], x, y, z)
	{
		const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
		const int64_t pos[3] = {x, y, z};
		/* fixed trip counts with guards keep J and M in registers */
		double J[3][3], M[3][3];
#pragma unroll
		for (int c = 0; c < 3; c++)
#pragma unroll
			for (int a = 0; a < 3; a++)
				J[c][a] = c < k.nc && a < k.nc ? jac_diff(k.u[c], i, pos[a], k.n[a], stride[a]) : 0.0;
#pragma unroll
		for (int r = 0; r < 3; r++)
#pragma unroll
			for (int b = 0; b < 3; b++) {
				double s = k.A[3 * r + b];
#pragma unroll
				for (int a = 0; a < 3; a++)
					s += J[r][a] * k.G[3 * a + b];
				M[r][b] = s;
			}
		double det;
		if (k.nc == 2)
			det = M[0][0] * M[1][1] - M[0][1] * M[1][0];
		else
			det = M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1]) -
			      M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0]) +
			      M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
		k.out[i] = (float)det;
	}
}

ffdp_status ffdp_cuda_jacobian_det(ffdp_backend *be, const ffdp_vec *u, const double A[9], const double G[9],
				   ffdp_img out, ffdp_error *err)
{
	(void)be;
	jac_k k;
	k.nc = u->ncomp;
	k.out = out.p;
	for (int r = 0; r < 3; r++) {
		k.n[r] = u->n[r];
		k.u[r] = r < k.nc ? u->c[r] : NULL;
	}
	for (int e = 0; e < 9; e++)
		k.A[e] = A[e], k.G[e] = G[e];
	const cu_shape sh = cu_voxel_shape(k.n[0], k.n[1], k.n[2], 0);
	jacobian_kernel<<<sh.grid, sh.block>>>(k);
	return cu_launched(err, "jacobian_det");
}
