/* The three-axis Gaussian in one pass (cuda_smooth.cu's smooth_to, and
 * Adam's moments of a smoothed gradient in cuda_adam.cu).
 *
 * A block owns a 32 x 8 column tile of NC channels and marches along z
 * through a chunk of SM3_ZC planes (plus R planes either side).  Per plane:
 * each channel's tile and halo into shared memory (zero outside the
 * volume), the x pass over the tile's rows and halo rows, the y pass for
 * the thread's column, whose result enters the thread's window of 2R + 1
 * planes, and the z pass of the plane R behind, handed to the caller's
 * sink with the voxel's linear index.  Each pass is the in-place passes'
 * sum in their order, rounded to float between passes as they store: the
 * same bits.  IO: the input once (plus the halo, mostly from L2, and 2R
 * planes a chunk); the sink does the rest.
 */
#ifndef FFDP_CUDA_SMOOTH3_CUH
#define FFDP_CUDA_SMOOTH3_CUH

#include "cuda_common.cuh"

enum { SM3_BX = 32, SM3_BY = 8, SM3_ZC = 32, SM3_MAX_R = 3 };

typedef struct sm3_taps {
	float w[3][SM3_MAX_R + 1]; /* each axis's taps w[0..R] */
} sm3_taps;

/* This thread's elements of the haloed tile: their in-plane offsets
 * (-1 outside the volume or past the tile), the same on every plane and
 * channel, so that a plane's loads are one add and one test each. */
template <int R, int NE>
__device__ __forceinline__ void sm3_offsets(const int64_t n[3], int64_t x0, int64_t y0, int tid, int off[NE])
{
	const int HX = SM3_BX + 2 * R, HY = SM3_BY + 2 * R, NT = SM3_BX * SM3_BY;
#pragma unroll
	for (int q = 0; q < NE; q++) {
		const int e = tid + q * NT, hy = e / HX, hx = e - hy * HX;
		const int64_t gx = x0 - R + hx, gy = y0 - R + hy;
		off[q] = e < HX * HY && gx >= 0 && gx < n[0] && gy >= 0 && gy < n[1] ? (int)(gy * n[0] + gx) : -1;
	}
}

/* This thread's elements of channel x's tile of plane p (zero outside). */
template <int NE>
__device__ __forceinline__ void sm3_load(const float *x, const int64_t n[3], int64_t p, const int off[NE], float v[NE])
{
	const bool pin = p >= 0 && p < n[2];
	const float *plane = x + (pin ? p : 0) * n[0] * n[1];
#pragma unroll
	for (int q = 0; q < NE; q++)
		v[q] = pin && off[q] >= 0 ? __ldg(plane + off[q]) : 0.0f;
}

/* The march (blockDim SM3_BX x SM3_BY, grid over x and y tiles and z
 * chunks): sink(i, v) for each voxel of the block's chunk, v[c] the
 * smoothed channel c at linear index i; sink.fetch(i) before the plane's
 * passes, for loads the sink can issue early. */
template <int R, int NC, typename Sink>
__device__ __forceinline__ void sm3_march(const float *const x[NC], const int64_t n[3], const sm3_taps &k, Sink &sink)
{
	const int HX = SM3_BX + 2 * R, HY = SM3_BY + 2 * R, NT = SM3_BX * SM3_BY;
	const int NE = (HX * HY + NT - 1) / NT; /* tile elements a thread */
	__shared__ float tile[NC][HY * HX];
	__shared__ float xs[NC][HY][SM3_BX];
	const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * SM3_BX + tx;
	const int64_t nx = n[0], ny = n[1], nz = n[2], nxy = nx * ny;
	const int64_t x0 = (int64_t)blockIdx.x * SM3_BX, y0 = (int64_t)blockIdx.y * SM3_BY;
	const int64_t zb = (int64_t)blockIdx.z * SM3_ZC, ze = zb + SM3_ZC < nz ? zb + SM3_ZC : nz;
	const int64_t gx = x0 + tx, gy = y0 + ty;
	float win[NC][2 * R + 1];
#pragma unroll
	for (int c = 0; c < NC; c++)
#pragma unroll
		for (int i = 0; i < 2 * R + 1; i++)
			win[c][i] = 0.0f;
	int off[NE];
	sm3_offsets<R, NE>(n, x0, y0, tid, off);
	float pre[NC][NE];
#pragma unroll
	for (int c = 0; c < NC; c++) {
		sm3_load<NE>(x[c], n, zb - R, off, pre[c]);
#pragma unroll
		for (int q = 0; q < NE; q++)
			if (tid + q * NT < HX * HY)
				tile[c][tid + q * NT] = pre[c][q];
	}
	__syncthreads();
	for (int64_t p = zb - R; p < ze + R; p++) {
		/* the next plane's tiles in flight while this one is smoothed
		 * (past the chunk's last plane: a plane the test skips) */
#pragma unroll
		for (int c = 0; c < NC; c++)
			sm3_load<NE>(x[c], n, p + 1 < ze + R ? p + 1 : -1, off, pre[c]);
		const int64_t z = p - R, i = z * nxy + gy * nx + gx;
		const bool own = z >= zb && gx < nx && gy < ny;
		if (own)
			sink.fetch(i);
#pragma unroll
		for (int c = 0; c < NC; c++)
			for (int e = tid; e < HY * SM3_BX; e += NT) {
				const int hy = e / SM3_BX, ox = e - hy * SM3_BX;
				const float *row = tile[c] + hy * HX + ox + R;
				float acc = k.w[0][0] * row[0];
#pragma unroll
				for (int t = 1; t <= R; t++)
					acc += k.w[0][t] * (row[-t] + row[t]);
				xs[c][hy][ox] = acc;
			}
		__syncthreads(); /* xs complete; every x pass done with the tiles */
		float v[NC];
#pragma unroll
		for (int c = 0; c < NC; c++) {
			float a = k.w[1][0] * xs[c][ty + R][tx];
#pragma unroll
			for (int t = 1; t <= R; t++)
				a += k.w[1][t] * (xs[c][ty + R - t][tx] + xs[c][ty + R + t][tx]);
#pragma unroll
			for (int q = 0; q < NE; q++)
				if (tid + q * NT < HX * HY)
					tile[c][tid + q * NT] = pre[c][q];
#pragma unroll
			for (int i = 0; i < 2 * R; i++)
				win[c][i] = win[c][i + 1];
			win[c][2 * R] = a;
			float s = k.w[2][0] * win[c][R];
#pragma unroll
			for (int t = 1; t <= R; t++)
				s += k.w[2][t] * (win[c][R - t] + win[c][R + t]);
			v[c] = s;
		}
		if (own)
			sink(i, v);
		__syncthreads(); /* the next tiles stored; every y pass done with xs */
	}
}

/* Host: the fused pass's radius for o on a volume of size n, its taps in
 * *t; 0 when it does not apply (2-D, unequal radii, radius > SM3_MAX_R,
 * renormalised faces, a grid too tall, planes of 2^31 voxels or more) and
 * on error (then *s is set). */
int ffdp_cuda_smooth3_plan(const ffdp_smooth_opts *o, const int64_t n[3], sm3_taps *t, ffdp_status *s,
			   ffdp_error *err);

/* The launch shape of the march over a volume of size n. */
static inline void sm3_shape(const int64_t n[3], dim3 *grid, dim3 *block)
{
	*block = dim3(SM3_BX, SM3_BY, 1);
	*grid = dim3((unsigned)((n[0] + SM3_BX - 1) / SM3_BX), (unsigned)((n[1] + SM3_BY - 1) / SM3_BY),
		     (unsigned)((n[2] + SM3_ZC - 1) / SM3_ZC));
}

#endif
