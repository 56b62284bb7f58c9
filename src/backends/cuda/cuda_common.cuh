/* Private helpers shared by the CUDA kernels, one piece of code per idea:
 * status codes from CUDA errors, O(blocks) scratch, launch shapes and the
 * 64-bit voxel loops, block reductions, and the trilinear taps used by the
 * sampler, the composition and the warp step.
 *
 * Every op runs on the legacy default stream (0), so ops are ordered with
 * each other and with the synchronous copies of ffdp_buf_upload/download.
 */
#ifndef FFDP_CUDA_COMMON_CUH
#define FFDP_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_ops.h"
#include "../../ops/unorm16.h"

/* ---- errors and scratch -------------------------------------------------- */

static inline ffdp_status cu_status(cudaError_t e, ffdp_error *err, const char *what)
{
	if (e == cudaSuccess)
		return FFDP_OK;
	return ffdp_fail(err, FFDP_ERR_BACKEND, "CUDA %s: %s", what, cudaGetErrorString(e));
}

/* After a launch: configuration errors show now, execution errors at the
 * next synchronising call (a download), which reports them as well. */
static inline ffdp_status cu_launched(ffdp_error *err, const char *what)
{
	return cu_status(cudaGetLastError(), err, what);
}

/* Stream-ordered scratch, zero-filled when asked; small (O(blocks),
 * O(slab)) by contract. */
static inline void *cu_scratch(size_t bytes, int zero, ffdp_error *err, const char *what)
{
	void *p = NULL;
	cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 1, 0);
	if (e != cudaSuccess) {
		cudaGetLastError(); /* not sticky: clear it for the next op */
		ffdp_fail(err, FFDP_ERR_NOMEM, "%s: cannot allocate %zu bytes of GPU scratch: %s", what, bytes,
			  cudaGetErrorString(e));
		return NULL;
	}
	e = zero ? cudaMemsetAsync(p, 0, bytes, 0) : cudaSuccess;
	if (e != cudaSuccess) {
		cudaFreeAsync(p, 0);
		cu_status(e, err, what);
		return NULL;
	}
	return p;
}

/* A double from the bits cu_block_max_nonneg leaves (host side). */
static inline double cu_bits_double(unsigned long long b)
{
	double d;
	memcpy(&d, &b, sizeof(d));
	return d;
}

static inline void cu_scratch_free(void *p)
{
	if (p)
		cudaFreeAsync(p, 0);
}

/* Copy a small device result to the host (waits for the kernels before it). */
static inline ffdp_status cu_fetch(void *host, const void *dev, size_t bytes, ffdp_error *err, const char *what)
{
	return cu_status(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), err, what);
}

/* ---- launch shapes ----------------------------------------------------------- */

enum { CU_BX = 32, CU_BY = 8, CU_THREADS = CU_BX * CU_BY };

typedef struct cu_shape {
	dim3 grid, block;
} cu_shape;

static inline int cu_sm_count(void)
{
	int dev = 0, n = 0;
	if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
		n = 1;
	return n > 0 ? n : 1;
}

/* Blocks for a reduction: two full waves of 256-thread blocks (8 per SM),
 * so that one atomic per block and entry stays cheap. */
static inline int64_t cu_reduce_blocks(void)
{
	return (int64_t)cu_sm_count() * 16;
}

static inline int64_t cu_min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static inline int64_t cu_max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* Blocks of 32 x 8 threads over an nx x ny x nz box, x fastest (a warp
 * covers 32 consecutive x).  Grid y and z are capped at 65535 and, when
 * max_blocks > 0, the whole grid at max_blocks: CU_FOR_VOXELS loops over
 * what the grid does not cover. */
static inline cu_shape cu_voxel_shape(int64_t nx, int64_t ny, int64_t nz, int64_t max_blocks)
{
	int64_t gx = cu_min64((nx + CU_BX - 1) / CU_BX, INT32_MAX);
	int64_t gy = cu_min64((ny + CU_BY - 1) / CU_BY, 65535);
	int64_t gz = cu_min64(nz, 65535);
	if (max_blocks > 0) {
		if (gx * gy * gz > max_blocks)
			gz = cu_max64(1, max_blocks / (gx * gy));
		if (gx * gy * gz > max_blocks)
			gy = cu_max64(1, max_blocks / gx);
		if (gx * gy * gz > max_blocks)
			gx = cu_max64(1, max_blocks);
	}
	cu_shape s;
	s.grid = dim3((unsigned)gx, (unsigned)gy, (unsigned)gz);
	s.block = dim3(CU_BX, CU_BY, 1);
	return s;
}

/* 1-D blocks of 256 over n elements (CU_FOR_FLAT), capped like the above. */
static inline cu_shape cu_flat_shape(int64_t n, int64_t max_blocks)
{
	int64_t g = cu_min64((n + CU_THREADS - 1) / CU_THREADS, INT32_MAX);
	if (max_blocks > 0)
		g = cu_min64(g, max_blocks);
	cu_shape s;
	s.grid = dim3((unsigned)cu_max64(g, 1), 1, 1);
	s.block = dim3(CU_THREADS, 1, 1);
	return s;
}

/* Voxel loops with 64-bit coordinates and no divisions (grid-stride on
 * each axis; a full grid runs each body once). */
#define CU_FOR_VOXELS(NX, NY, NZ, X, Y, Z)                                                               \
	for (int64_t Z = blockIdx.z; Z < (NZ); Z += gridDim.z)                                           \
		for (int64_t Y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; Y < (NY);               \
		     Y += (int64_t)gridDim.y * blockDim.y)                                               \
			for (int64_t X = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; X < (NX);       \
			     X += (int64_t)gridDim.x * blockDim.x)

#define CU_FOR_FLAT(I, N)                                                                                \
	for (int64_t I = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; I < (N);                        \
	     I += (int64_t)gridDim.x * blockDim.x)

/* ---- block reductions ---------------------------------------------------------
 * Called once per kernel, after the loops, by every thread of the block
 * (block size a multiple of 32, at most 1024). */

__device__ __forceinline__ int cu_tid(void)
{
	return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int cu_nwarps(void)
{
	return (blockDim.x * blockDim.y * blockDim.z + 31) >> 5;
}

/* Deterministic sums.  A launch's grid is fixed by its shape, so each
 * block reduces its share in a fixed order (shuffle tree, then the warps in
 * order) and stores one partial per entry; cu_sums_fetch adds the partials
 * in block order.  No floating-point atomics: the same bits on every run,
 * which keeps whole registrations reproducible (Adam turns last-bit
 * differences into visible ones over hundreds of iterations). */
__device__ __forceinline__ int64_t cu_block_id(void)
{
	return ((int64_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
}

/* slots[k * blocks + block] = sum over the block of v[k]. */
template <int K> __device__ void cu_block_sum_store(double (&v)[K], double *slots)
{
	__shared__ double part[K][32];
	const int tid = cu_tid(), lane = tid & 31, warp = tid >> 5;
#pragma unroll
	for (int k = 0; k < K; k++)
		for (int off = 16; off > 0; off >>= 1)
			v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
	if (lane == 0)
#pragma unroll
		for (int k = 0; k < K; k++)
			part[k][warp] = v[k];
	__syncthreads();
	if (tid < K) {
		double s = 0.0;
		for (int w = 0; w < cu_nwarps(); w++)
			s += part[tid][w];
		slots[(int64_t)tid * gridDim.x * gridDim.y * gridDim.z + cu_block_id()] = s;
	}
}

enum { CU_RED_T = 256 }; /* threads of cu_sum_rows (a power of two) */

/* Sum (or, with MAX, maximum) of v over a 1-D block, returned to every
 * thread; red: blockDim.x doubles of shared memory, blockDim.x a power of
 * two.  Fixed tree: the same bits on every run. */
template <bool MAX = false> static __device__ double cu_tree_reduce(double v, double *red)
{
	const int t = threadIdx.x;
	red[t] = v;
	__syncthreads();
	for (int s = blockDim.x >> 1; s > 0; s >>= 1) {
		if (t < s)
			red[t] = MAX ? fmax(red[t], red[t + s]) : red[t] + red[t + s];
		__syncthreads();
	}
	v = red[0];
	__syncthreads(); /* red may be reused at once */
	return v;
}

static __device__ double cu_tree_sum(double v, double *red)
{
	return cu_tree_reduce<false>(v, red);
}

/* out[b] = sum of row b of x (rows of n), one block per row, fixed order. */
static __global__ void __launch_bounds__(CU_RED_T) cu_sum_rows(const double *x, int64_t n, double *out)
{
	__shared__ double red[CU_RED_T];
	const double *row = x + (int64_t)blockIdx.x * n;
	double s = 0.0;
	for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
		s += row[i];
	s = cu_tree_sum(s, red);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

/* Host side: slots for K entries of a launch with `grid`, then the sums. */
typedef struct cu_sums {
	double *slots; /* K rows of one partial per block, then the K sums */
	int64_t nb;
	int k;
} cu_sums;

static inline double *cu_sums_alloc(cu_sums *s, int k, dim3 grid, ffdp_error *err, const char *what)
{
	s->nb = (int64_t)grid.x * grid.y * grid.z;
	s->k = k;
	s->slots = (double *)cu_scratch((size_t)(s->nb * k + k) * sizeof(double), 0, err, what);
	return s->slots;
}

/* The K sums, in device memory once the queued work has run. */
static inline double *cu_sums_total(const cu_sums *s)
{
	return s->slots + s->nb * s->k;
}

/* Queues the K sums' reduction (after the kernel that stored the partials). */
static inline ffdp_status cu_sums_reduce(const cu_sums *s, ffdp_error *err, const char *what)
{
	cu_sum_rows<<<(unsigned)s->k, CU_RED_T>>>(s->slots, s->nb, cu_sums_total(s));
	return cu_launched(err, what);
}

/* The K sums to the host (waits for the kernel that stored them). */
static inline ffdp_status cu_sums_fetch(const cu_sums *s, double *host, ffdp_error *err, const char *what)
{
	ffdp_status st = cu_sums_reduce(s, err, what);
	return st ? st : cu_fetch(host, cu_sums_total(s), (size_t)s->k * sizeof(double), err, what);
}

static inline void cu_sums_free(cu_sums *s)
{
	cu_scratch_free(s->slots);
	s->slots = NULL;
}

/* *dst = max(*dst, block max of v) for v >= 0 (+inf allowed, no NaN):
 * the bits of non-negative doubles order like their values. */
__device__ inline void cu_block_max_nonneg(double v, unsigned long long *dst)
{
	__shared__ double part[32];
	const int tid = cu_tid(), lane = tid & 31, warp = tid >> 5;
	for (int off = 16; off > 0; off >>= 1)
		v = fmax(v, __shfl_down_sync(0xffffffffu, v, off));
	if (lane == 0)
		part[warp] = v;
	__syncthreads();
	if (tid == 0) {
		double m = 0.0;
		for (int w = 0; w < cu_nwarps(); w++)
			m = fmax(m, part[w]);
		atomicMax(dst, (unsigned long long)__double_as_longlong(m));
	}
}

/* ---- interpolation -------------------------------------------------------------
 * Linear taps along one axis at continuous index p, for a box of n voxels
 * starting at global index off; the same rules (and arithmetic) as the CPU
 * (cpu_trilinear.h), used by the sampler, the composition and the warp step:
 *   BORDER: p is clamped to [off, off+n-1]; the derivative is 0 where the
 *           clamp is active (NaN included).  At a knot the cell to the right
 *           is used (floor), so at the last knot both corners are n-1 and
 *           the one-sided derivative is 0.
 *   ZERO:   corners outside the box get weight 0 and derivative 0; points
 *           further out than two voxels (or NaN) are pulled in to two voxels
 *           outside, which changes nothing and keeps the cast defined.
 * The floor and fraction are taken in the global frame and only the
 * integer index moves into the box, so a shard (a box with halo) gets the
 * same bits as the whole grid.  Indices always lie in [0, n-1] (a dropped
 * corner is a safe address); d0, d1 = d(w0, w1)/dp. */
typedef struct cu_taps {
	int64_t i0, i1;
	float w0, w1;
	float d0, d1;
} cu_taps;

__device__ __forceinline__ cu_taps cu_taps_make(double p, int64_t off, int64_t n, int pad)
{
	cu_taps t;
	const bool border = pad == FFDP_PAD_BORDER;
	const double lo = border ? (double)off : (double)off - 2.0;
	const double hi = border ? (double)(off + n - 1) : (double)(off + n) + 1.0;
	double q = p > lo ? p : lo; /* NaN -> lo */
	q = q < hi ? q : hi;
	const double fl = floor(q);
	const int64_t i0 = (int64_t)fl - off;
	const float f = (float)(q - fl);
	if (border) {
		const float in = p >= lo && p <= hi ? 1.0f : 0.0f;
		t.i0 = i0, t.i1 = i0 + (i0 < n - 1);
		t.w0 = 1.0f - f, t.w1 = f;
		t.d0 = -in, t.d1 = in;
		return t;
	}
	const int64_t i1 = i0 + 1;
	const float v0 = i0 >= 0 && i0 < n ? 1.0f : 0.0f, v1 = i1 >= 0 && i1 < n ? 1.0f : 0.0f;
	t.w0 = (1.0f - f) * v0, t.w1 = f * v1;
	t.d0 = -v0, t.d1 = v1;
	t.i0 = i0 < 0 ? 0 : (i0 >= n ? n - 1 : i0);
	t.i1 = i1 < 0 ? 0 : (i1 >= n ? n - 1 : i1);
	return t;
}

/* cu_taps_make's taps with padding fixed at compile time and indices in
 * IDX: 32 bits where a box has fewer than 2^31 voxels, which saves the
 * 64-bit conversions and products that dominate the gathering kernels
 * (Nsight: the sampler was instruction-bound).  d0, d1 as in cu_taps. */
template <typename IDX> struct cu_taps_t {
	IDX i0, i1;
	float w0, w1;
	float d0, d1;
};

/* The taps of first corner i0 (n voxels along the axis), fraction f and
 * border derivative in (1 inside, 0 where the point was clamped): the tail
 * the constructors below share.  Under BORDER, i0 lies in [0, n - 1]. */
template <typename IDX, int PAD> __device__ __forceinline__ cu_taps_t<IDX> cu_taps_finish(IDX i0, float f, IDX n, float in)
{
	cu_taps_t<IDX> t;
	if (PAD == FFDP_PAD_BORDER) {
		t.i0 = i0, t.i1 = i0 + (i0 < n - 1);
		t.w0 = 1.0f - f, t.w1 = f;
		t.d0 = -in, t.d1 = in;
		return t;
	}
	const IDX i1 = i0 + 1;
	const float v0 = i0 >= 0 && i0 < n ? 1.0f : 0.0f, v1 = i1 >= 0 && i1 < n ? 1.0f : 0.0f;
	t.w0 = (1.0f - f) * v0, t.w1 = f * v1;
	t.d0 = -v0, t.d1 = v1;
	t.i0 = i0 < 0 ? 0 : (i0 >= n ? n - 1 : i0);
	t.i1 = i1 < 0 ? 0 : (i1 >= n ? n - 1 : i1);
	return t;
}

/* Largest |off| cu_taps_int takes as it is; the magic floor below is exact
 * for |off| < 2^22. */
#define CU_TAPS_REACH 2097152.0f /* 2^21 */

/* Taps at index base + off, base an integer and off a float (the
 * sampler's fraction plus B u, the warp step's C d), on an axis of n <=
 * 2^21 voxels.  The same values as cu_taps_make at base + off, without a
 * conversion instruction (those issue at a quarter of the FMA rate and
 * bound the sampler): floor(off) is formed by adding 1.5 * 2^23 rounding
 * down, which leaves it in the low mantissa bits, and the clamps act on
 * the integer index.  off is first clamped to +-2^21 (NaN to the low end,
 * as cu_taps_make): a point base + off then moves only where it lies more
 * than 2^21 voxels out, where both paddings give what they give at that
 * distance, as long as base is within the axis. */
template <typename IDX, int PAD> __device__ __forceinline__ cu_taps_t<IDX> cu_taps_int(IDX base, float off, IDX n)
{
	const float magic = 12582912.0f; /* 1.5 * 2^23 */
	off = fminf(fmaxf(off, -CU_TAPS_REACH), CU_TAPS_REACH);
	const float t = __fadd_rd(off, magic);
	IDX i0 = base + (IDX)(__float_as_int(t) - 0x4b400000);
	float f = off - (t - magic);
	float in = 1.0f;
	if (PAD == FFDP_PAD_BORDER && (i0 < 0 || i0 > n - 1 || (i0 == n - 1 && f > 0.0f)))
		i0 = i0 < 0 ? 0 : n - 1, f = 0.0f, in = 0.0f;
	return cu_taps_finish<IDX, PAD>(i0, f, n, in);
}

/* cu_taps_int's taps with the clamps in float, in the frame of base:
 * integers below 2^24 are exact there.  The same values; the composition
 * keeps this form, which ran 13 % faster there than cu_taps_int (the
 * scheduling of its gathers; docs/perf.md, "Sampler, round 5"). */
template <typename IDX, int PAD> __device__ __forceinline__ cu_taps_t<IDX> cu_taps_frame(IDX base, float off, IDX n)
{
	const bool border = PAD == FFDP_PAD_BORDER;
	const float lo = (float)((border ? 0 : -2) - base), hi = (float)((border ? n - 1 : n + 1) - base);
	float q = off > lo ? off : lo; /* NaN -> lo */
	q = q < hi ? q : hi;
	const float fl = floorf(q);
	return cu_taps_finish<IDX, PAD>(base + (IDX)fl, q - fl, n, q == off ? 1.0f : 0.0f);
}

/* A source voxel as float: floats as they are, unorm16 scaled (ops.h). */
__device__ __forceinline__ float cu_val(float x)
{
	return x;
}

__device__ __forceinline__ float cu_val(uint16_t q)
{
	return ffdp_unorm16_value(q);
}

/* Trilinear from the four row offsets of a box (planes z0, z1 by rows y0,
 * y1): cu_trilinear's arithmetic in its order. */
template <typename IDX, typename T, typename TP>
__device__ __forceinline__ float cu_trilinear_rows(const TP *__restrict__ p, IDX o0, IDX o1, IDX o2, IDX o3,
						   const T &tx, const T &ty, const T &tz)
{
	const IDX x0 = (IDX)tx.i0, x1 = (IDX)tx.i1;
	const float r0 = tx.w0 * cu_val(p[o0 + x0]) + tx.w1 * cu_val(p[o0 + x1]);
	const float r1 = tx.w0 * cu_val(p[o1 + x0]) + tx.w1 * cu_val(p[o1 + x1]);
	const float r2 = tx.w0 * cu_val(p[o2 + x0]) + tx.w1 * cu_val(p[o2 + x1]);
	const float r3 = tx.w0 * cu_val(p[o3 + x0]) + tx.w1 * cu_val(p[o3 + x1]);
	return tz.w0 * (ty.w0 * r0 + ty.w1 * r1) + tz.w1 * (ty.w0 * r2 + ty.w1 * r3);
}

/* cu_trilinear_grad from the four row offsets of a box (as
 * cu_trilinear_rows): the same arithmetic in the same order. */
template <typename IDX, typename T, typename TP>
__device__ __forceinline__ void cu_trilinear_grad_rows(const TP *__restrict__ p, IDX o0, IDX o1, IDX o2, IDX o3,
						       const T &tx, const T &ty, const T &tz, float g[3])
{
	const IDX x0 = (IDX)tx.i0, x1 = (IDX)tx.i1;
	float pv[2], pdx[2], pdy[2];
#pragma unroll
	for (int s = 0; s < 2; s++) {
		const IDX r0 = s ? o2 : o0, r1 = s ? o3 : o1;
		const float a0 = cu_val(p[r0 + x0]), a1 = cu_val(p[r0 + x1]), b0 = cu_val(p[r1 + x0]),
			    b1 = cu_val(p[r1 + x1]);
		const float va = tx.w0 * a0 + tx.w1 * a1, vb = tx.w0 * b0 + tx.w1 * b1;
		pv[s] = ty.w0 * va + ty.w1 * vb;
		pdx[s] = ty.w0 * (tx.d0 * a0 + tx.d1 * a1) + ty.w1 * (tx.d0 * b0 + tx.d1 * b1);
		pdy[s] = ty.d0 * va + ty.d1 * vb;
	}
	g[0] = tz.w0 * pdx[0] + tz.w1 * pdx[1];
	g[1] = tz.w0 * pdy[0] + tz.w1 * pdy[1];
	g[2] = tz.d0 * pv[0] + tz.d1 * pv[1];
}

/* The taps of an axis that does not exist (z of a 2-D image). */
__device__ __forceinline__ cu_taps cu_taps_flat(void)
{
	cu_taps t;
	t.i0 = t.i1 = 0;
	t.w0 = 1.0f, t.w1 = 0.0f;
	t.d0 = t.d1 = 0.0f;
	return t;
}

/* Nearest neighbour index: rounds half up.  The one place to change it. */
/* p += C x for the first nc rows and columns of the 3x3 row-major C: a
 * displacement turned into an index offset (composition, inverse). */
__device__ __forceinline__ void cu_add_linear(double p[3], const double C[9], const double x[3], int nc)
{
#pragma unroll
	for (int r = 0; r < 3; r++)
#pragma unroll
		for (int c = 0; c < 3; c++)
			if (r < nc && c < nc)
				p[r] += C[3 * r + c] * x[c];
}

__device__ __forceinline__ double cu_nearest(double q)
{
	return floor(q + 0.5);
}

template <typename TP> __device__ __forceinline__ float cu_lerp_row(const TP *row, const cu_taps &tx)
{
	return tx.w0 * cu_val(row[tx.i0]) + tx.w1 * cu_val(row[tx.i1]);
}

/* Bilinear in one plane (rows of nx voxels). */
template <typename TP>
__device__ __forceinline__ float cu_bilinear(const TP *plane, int64_t nx, const cu_taps &tx, const cu_taps &ty)
{
	return ty.w0 * cu_lerp_row(plane + ty.i0 * nx, tx) + ty.w1 * cu_lerp_row(plane + ty.i1 * nx, tx);
}

template <typename TP>
__device__ __forceinline__ float cu_trilinear(const TP *p, int64_t nx, int64_t nxy, const cu_taps &tx,
					      const cu_taps &ty, const cu_taps &tz)
{
	return tz.w0 * cu_bilinear(p + tz.i0 * nxy, nx, tx, ty) + tz.w1 * cu_bilinear(p + tz.i1 * nxy, nx, tx, ty);
}

/* The trilinear interpolant's gradient with respect to the continuous
 * index (value not needed by the callers). */
template <typename TP>
__device__ __forceinline__ void cu_trilinear_grad(const TP *p, int64_t nx, int64_t nxy, const cu_taps &tx,
						  const cu_taps &ty, const cu_taps &tz, float g[3])
{
	const float wx0 = tx.w0, wx1 = tx.w1, wy0 = ty.w0, wy1 = ty.w1;
	float pv[2], pdx[2], pdy[2];
#pragma unroll
	for (int s = 0; s < 2; s++) {
		const TP *pl = p + (s ? tz.i1 : tz.i0) * nxy;
		const TP *r0 = pl + ty.i0 * nx, *r1 = pl + ty.i1 * nx;
		const float a0 = cu_val(r0[tx.i0]), a1 = cu_val(r0[tx.i1]), b0 = cu_val(r1[tx.i0]), b1 = cu_val(r1[tx.i1]);
		const float va = wx0 * a0 + wx1 * a1, vb = wx0 * b0 + wx1 * b1;
		pv[s] = wy0 * va + wy1 * vb;
		pdx[s] = wy0 * (tx.d0 * a0 + tx.d1 * a1) + wy1 * (tx.d0 * b0 + tx.d1 * b1);
		pdy[s] = ty.d0 * va + ty.d1 * vb;
	}
	const float wz0 = tz.w0, wz1 = tz.w1;
	g[0] = wz0 * pdx[0] + wz1 * pdx[1];
	g[1] = wz0 * pdy[0] + wz1 * pdy[1];
	g[2] = tz.d0 * pv[0] + tz.d1 * pv[1];
}

#endif
