/* Intensity moments (ops.h): sums of w, w i, w i_a i_b with w = max(x, 0)
 * (NaN counts as 0), in double.
 *
 * A capped grid of 32 x 8 blocks walks the volume (64-bit coordinates, no
 * divisions); each thread keeps its 10 sums in registers, each block
 * reduces them and stores one partial per sum (cu_sums: fixed order).
 * IO floor: one read of x, 4 B/voxel.
 */
#include "cuda_common.cuh"

__global__ void moments_kernel(const float *p, int64_t nx, int64_t ny, int64_t nz, double *out)
{
	double s[10];
#pragma unroll
	for (int e = 0; e < 10; e++)
		s[e] = 0.0;
	CU_FOR_VOXELS(nx, ny, nz, x, y, z)
	{
		const float v = p[(z * ny + y) * nx + x];
		const double w = v > 0.0f ? (double)v : 0.0;
		const double fx = (double)x, fy = (double)y, fz = (double)z;
		const double wx = w * fx, wy = w * fy, wz = w * fz;
		s[0] += w;
		s[1] += wx, s[2] += wy, s[3] += wz;
		s[4] += wx * fx, s[5] += wx * fy, s[6] += wx * fz;
		s[7] += wy * fy, s[8] += wy * fz, s[9] += wz * fz;
	}
	cu_block_sum_store<10>(s, out);
}

ffdp_status ffdp_cuda_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err)
{
	(void)be;
	const cu_shape sh = cu_voxel_shape(x.n[0], x.n[1], x.n[2], cu_reduce_blocks());
	cu_sums d;
	if (!cu_sums_alloc(&d, 10, sh.grid, err, "moments"))
		return FFDP_ERR_NOMEM;
	moments_kernel<<<sh.grid, sh.block>>>(x.p, x.n[0], x.n[1], x.n[2], d.slots);
	ffdp_status s = cu_launched(err, "moments");
	if (!s)
		s = cu_sums_fetch(&d, out, err, "moments");
	cu_sums_free(&d);
	return s;
}
