/* The three-axis Gaussian in one pass (cuda_smooth.cu's smooth_to, and
 * Adam's moments of a smoothed gradient in cuda_adam.cu).
 *
 * A block owns a 32 x 8 column tile of NC channels and marches along z
 * through a chunk of zc planes (plus R planes either side).  Per plane:
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
	int zc;                    /* planes a block marches: SM3_ZC or twice that (the plan's) */
} sm3_taps;

/* This thread's elements of the haloed tile: their in-plane offsets, the
 * same on every plane and channel.  Elements before the last always lie in
 * the tile ((NE - 1) NT <= HX HY); the last may lie past it, and at the
 * volume's faces (EDGE) any may lie outside it: -1 then. */
template <int R, int NE, bool EDGE>
__device__ __forceinline__ void sm3_offsets(const int64_t n[3], int64_t x0, int64_t y0, int tid, int off[NE])
{
	const int HX = SM3_BX + 2 * R, HY = SM3_BY + 2 * R, NT = SM3_BX * SM3_BY;
#pragma unroll
	for (int q = 0; q < NE; q++) {
		const int e = tid + q * NT, hy = e / HX, hx = e - hy * HX;
		const int64_t gx = x0 - R + hx, gy = y0 - R + hy;
		const bool in = (q < NE - 1 || e < HX * HY) && (!EDGE || (gx >= 0 && gx < n[0] && gy >= 0 && gy < n[1]));
		off[q] = in ? (int)(gy * n[0] + gx) : -1;
	}
}

/* This thread's elements of a channel's tile from plane pointer pl (NULL:
 * a plane outside the volume, zeros).  Only elements that may lie outside
 * (see sm3_offsets) are tested: the loads are an add and a load each. */
template <int NE, bool EDGE>
__device__ __forceinline__ void sm3_load(const float *pl, const int off[NE], float v[NE])
{
	if (!pl) {
#pragma unroll
		for (int q = 0; q < NE; q++)
			v[q] = 0.0f;
		return;
	}
#pragma unroll
	for (int q = 0; q < NE; q++)
		v[q] = (EDGE || q == NE - 1) && off[q] < 0 ? 0.0f : __ldg(pl + off[q]);
}

/* Plane p of channel x, or NULL outside the volume (its tiles are zeros). */
__device__ __forceinline__ const float *sm3_plane(const float *x, int64_t p, int64_t nz, int64_t nxy)
{
	return p >= 0 && p < nz ? x + p * nxy : NULL;
}

template <int R, int NC, bool EDGE, typename Sink>
__device__ __forceinline__ void sm3_march_tile(const float *const x[NC], const int64_t n[3], const sm3_taps &k,
					       Sink &sink, float (*tile)[(SM3_BY + 2 * R) * (SM3_BX + 2 * R)],
					       float (*xs)[SM3_BY + 2 * R][SM3_BX])
{
	const int HX = SM3_BX + 2 * R, HY = SM3_BY + 2 * R, NT = SM3_BX * SM3_BY;
	const int NE = (HX * HY + NT - 1) / NT; /* tile elements a thread */
	const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * SM3_BX + tx;
	const int64_t nx = n[0], ny = n[1], nz = n[2], nxy = nx * ny;
	const int64_t x0 = (int64_t)blockIdx.x * SM3_BX, y0 = (int64_t)blockIdx.y * SM3_BY;
	const int64_t zb = (int64_t)blockIdx.z * k.zc, ze = zb + k.zc < nz ? zb + k.zc : nz;
	const int64_t gx = x0 + tx, gy = y0 + ty;
	const bool inxy = !EDGE || (gx < nx && gy < ny);
	const bool last = tid + (NE - 1) * NT < HX * HY;
	float win[NC][2 * R + 1];
#pragma unroll
	for (int c = 0; c < NC; c++)
#pragma unroll
		for (int i = 0; i < 2 * R + 1; i++)
			win[c][i] = 0.0f;
	int off[NE];
	sm3_offsets<R, NE, EDGE>(n, x0, y0, tid, off);
	float pre[NC][NE];
#pragma unroll
	for (int c = 0; c < NC; c++) {
		sm3_load<NE, EDGE>(sm3_plane(x[c], zb - R, nz, nxy), off, pre[c]);
#pragma unroll
		for (int q = 0; q < NE; q++)
			if (q < NE - 1 || last)
				tile[c][tid + q * NT] = pre[c][q];
	}
	__syncthreads();
	int64_t i = (zb - 2 * R - 1) * nxy + gy * nx + gx; /* voxel (gx, gy, p - R) after the add */
	for (int64_t p = zb - R; p < ze + R; p++) {
		i += nxy;
		/* the next plane's tiles in flight while this one is smoothed
		 * (past the chunk's last plane or the volume: zeros) */
#pragma unroll
		for (int c = 0; c < NC; c++)
			sm3_load<NE, EDGE>(p + 1 < ze + R ? sm3_plane(x[c], p + 1, nz, nxy) : NULL, off, pre[c]);
		const bool own = p - R >= zb && inxy;
		if (own)
			sink.fetch(i);
		/* x pass: rows ty and ty + BY, ... of the haloed tile (the rows
		 * a thread takes are fixed: no index division) */
#pragma unroll
		for (int c = 0; c < NC; c++)
#pragma unroll
			for (int h = 0; h < (HY + SM3_BY - 1) / SM3_BY; h++) {
				const int hy = ty + h * SM3_BY;
				if ((h + 1) * SM3_BY <= HY || hy < HY) {
					const float *row = tile[c] + hy * HX + tx + R;
					float acc = k.w[0][0] * row[0];
#pragma unroll
					for (int t = 1; t <= R; t++)
						acc += k.w[0][t] * (row[-t] + row[t]);
					xs[c][hy][tx] = acc;
				}
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
				if (q < NE - 1 || last)
					tile[c][tid + q * NT] = pre[c][q];
#pragma unroll
			for (int j = 0; j < 2 * R; j++)
				win[c][j] = win[c][j + 1];
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

/* The march (blockDim SM3_BX x SM3_BY, grid over x and y tiles and z
 * chunks): sink(i, v) for each voxel of the block's chunk, v[c] the
 * smoothed channel c at linear index i; sink.fetch(i) before the plane's
 * passes, for loads the sink can issue early.  Blocks whose haloed tile
 * lies inside the volume's x and y extent (most) take a path without
 * per-element bounds tests: Nsight counted 6 of the fused Adam pass's 24
 * warp instructions a voxel in the loads' address and bounds arithmetic. */
template <int R, int NC, typename Sink>
__device__ __forceinline__ void sm3_march(const float *const x[NC], const int64_t n[3], const sm3_taps &k, Sink &sink)
{
	__shared__ float tile[NC][(SM3_BY + 2 * R) * (SM3_BX + 2 * R)];
	__shared__ float xs[NC][SM3_BY + 2 * R][SM3_BX];
	const int64_t x0 = (int64_t)blockIdx.x * SM3_BX, y0 = (int64_t)blockIdx.y * SM3_BY;
	if (x0 >= R && y0 >= R && x0 + SM3_BX + R <= n[0] && y0 + SM3_BY + R <= n[1])
		sm3_march_tile<R, NC, false>(x, n, k, sink, tile, xs);
	else
		sm3_march_tile<R, NC, true>(x, n, k, sink, tile, xs);
}

/* Host: the fused pass's radius for o on a volume of size n, its taps in
 * *t; 0 when it does not apply (2-D, unequal radii, radius > SM3_MAX_R,
 * renormalised faces, a grid too tall, planes of 2^31 voxels or more) and
 * on error (then *s is set). */
int ffdp_cuda_smooth3_plan(const ffdp_smooth_opts *o, const int64_t n[3], sm3_taps *t, ffdp_status *s,
			   ffdp_error *err);

/* The launch shape of the march over a volume of size n, t.zc planes a block. */
static inline void sm3_shape(const int64_t n[3], const sm3_taps &t, dim3 *grid, dim3 *block)
{
	*block = dim3(SM3_BX, SM3_BY, 1);
	*grid = dim3((unsigned)((n[0] + SM3_BX - 1) / SM3_BX), (unsigned)((n[1] + SM3_BY - 1) / SM3_BY),
		     (unsigned)((n[2] + t.zc - 1) / t.zc));
}

#endif
