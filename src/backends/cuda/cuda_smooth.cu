/* In-place separable Gaussian (ops.h, "smoothing"), the CPU's kernel and
 * face rule: sampled Gaussian of radius ceil(truncate sigma) (truncate
 * 0 -> 2) normalised to 1 over the full radius, taps beyond n - 1 dropped,
 * outside the box zero, optionally divided by the kernel mass inside the
 * box.  An axis with sigma 0 or size 1 is skipped.
 *
 * One pass per axis.  A block owns TX whole lines and streams along them
 * in chunks of T outputs through a shared-memory ring of W = T + 2r slots
 * per line (line position l lives in slot (l + r) mod W):
 *   1. load positions [-r, T + r) (zero outside the box);
 *   2. for each chunk [l0, l0 + T): convolve from shared memory and write
 *      the outputs in place; sync; load positions [l0 + T + r, l0 + 2T + r)
 *      into the slots of [l0 - r, l0 + T - r), which no output needs any
 *      more; sync.
 * Every input is read from global memory before its position is written,
 * and only the block that owns a line touches it, so in place is exact.
 * Layout follows the coalesced direction: along x (contiguous lines) the
 * threads walk positions; along y and z they walk 32 adjacent x columns.
 *
 * IO floor: one read and one write per voxel, 8 B/voxel for the whole op;
 * this does 8 B/voxel per smoothed axis (24 in 3-D).  The taps of radii up
 * to SM_PARAM_R travel in the kernel's parameters; larger ones and the face
 * factors (r + 1 + n floats an axis) are uploaded once before the passes.
 * Measured (H100, 256^3, Nsight): each pass at 25-30 % of DRAM bandwidth,
 * bound by latency (load, barrier, convolve, barrier per chunk), not bytes.
 */
#include "cuda_smooth3.cuh"

/* Along y and z a block takes SM_TX_ACROSS columns (64 measured slower:
 * half the blocks) in chunks of SM_T_ACROSS positions (32 before: 6 %
 * slower). */
enum { SM_THREADS = 256, SM_MAX_TX = 64, SM_T_ACROSS = 128, SM_TX_ACROSS = 32 };

/* Radii beyond this are a caller error (sigma in voxels, not mm?), as on the CPU. */
#define SM_MAX_RADIUS ((int64_t)1 << 20)

enum { SM_PARAM_R = 48 }; /* radii up to this pass their taps by value */

typedef struct sm_k {
	float *p;
	int64_t nl, ls;                 /* line length, element stride */
	int64_t ncol, cdiv, cs_hi, cs_lo; /* line c starts at (c / cdiv) cs_hi + (c % cdiv) cs_lo */
	const float *w;                 /* taps w[0..r] in device memory, or NULL: wv */
	const float *scale;             /* nl face factors, or NULL */
	int r, T, TX;                   /* radius, chunk, lines per block (a power of 2 unless LFAST) */
	float wv[SM_PARAM_R + 1];       /* the taps, when w is NULL */
} sm_k;

template <bool LFAST> __device__ __forceinline__ int sm_idx(const sm_k &k, int W, int col, int slot)
{
	return LFAST ? col * W + slot : slot * k.TX + col;
}

/* The elements of a chunk of cnt positions of every line, e = threadIdx.x,
 * threadIdx.x + blockDim.x, ...: line col, offset j.  Along the line
 * (LFAST) e = col cnt + j, advanced without a division per element;
 * across lines e = j TX + col with TX a power of 2 dividing blockDim.x, so
 * a thread keeps its col. */
typedef struct sm_walk {
	int col, j, dcol, dj;
} sm_walk;

template <bool LFAST> __device__ __forceinline__ sm_walk sm_walk_start(const sm_k &k, int cnt)
{
	sm_walk w;
	if (LFAST) {
		w.col = (int)threadIdx.x / cnt, w.j = (int)threadIdx.x % cnt;
		w.dcol = (int)blockDim.x / cnt, w.dj = (int)blockDim.x % cnt;
	} else {
		w.col = (int)threadIdx.x & (k.TX - 1), w.j = (int)threadIdx.x / k.TX;
		w.dcol = 0, w.dj = (int)blockDim.x / k.TX;
	}
	return w;
}

template <bool LFAST> __device__ __forceinline__ void sm_walk_next(sm_walk *w, int cnt)
{
	w->col += w->dcol, w->j += w->dj;
	if (LFAST && w->j >= cnt)
		w->j -= cnt, w->col++;
}

/* Positions [p0, p0 + cnt) of every line into their slots (cnt <= W). */
template <bool LFAST>
__device__ void sm_load(const sm_k &k, float *tile, const int64_t *base, int64_t p0, int cnt, int W)
{
	const int s0 = (int)((p0 + k.r) % W); /* p0 >= -r */
#pragma unroll 8 /* several loads in flight before their shared-memory stores */
	for (sm_walk it = sm_walk_start<LFAST>(k, cnt); it.col < k.TX && it.j < cnt; sm_walk_next<LFAST>(&it, cnt)) {
		const int col = it.col, j = it.j;
		const int64_t pos = p0 + j;
		float v = 0.0f;
		if (base[col] >= 0 && pos >= 0 && pos < k.nl)
			v = k.p[base[col] + pos * k.ls];
		int slot = s0 + j;
		if (slot >= W)
			slot -= W;
		tile[sm_idx<LFAST>(k, W, col, slot)] = v;
	}
}

/* Outputs [l0, l0 + T) of every line, written in place. */
template <bool LFAST>
__device__ void sm_store(const sm_k &k, const float *tile, const float *w, const int64_t *base, int64_t l0, int W)
{
	const int c0 = (int)((l0 + k.r) % W);
	for (sm_walk it = sm_walk_start<LFAST>(k, k.T); it.col < k.TX && it.j < k.T; sm_walk_next<LFAST>(&it, k.T)) {
		const int col = it.col, j = it.j;
		const int64_t l = l0 + j;
		if (base[col] < 0 || l >= k.nl)
			continue;
		int cs = c0 + j;
		if (cs >= W)
			cs -= W;
		float acc = w[0] * tile[sm_idx<LFAST>(k, W, col, cs)];
		int lo = cs, hi = cs;
		for (int t = 1; t <= k.r; t++) {
			lo = lo == 0 ? W - 1 : lo - 1;
			hi = hi == W - 1 ? 0 : hi + 1;
			acc += w[t] * (tile[sm_idx<LFAST>(k, W, col, lo)] + tile[sm_idx<LFAST>(k, W, col, hi)]);
		}
		if (k.scale)
			acc *= k.scale[l];
		k.p[base[col] + l * k.ls] = acc;
	}
}

template <bool LFAST> __global__ void smooth_kernel(sm_k k)
{
	extern __shared__ float sh[]; /* TX * W ring slots, then r + 1 taps */
	__shared__ int64_t base[SM_MAX_TX];
	const int W = k.T + 2 * k.r;
	float *tile = sh, *w = sh + (size_t)W * k.TX;
	for (int t = threadIdx.x; t <= k.r; t += blockDim.x)
		w[t] = k.w ? k.w[t] : k.wv[t];
	const int64_t ngroups = (k.ncol + k.TX - 1) / k.TX;
	for (int64_t g = blockIdx.x; g < ngroups; g += gridDim.x) {
		__syncthreads(); /* taps visible; the previous group is done with base and tile */
		for (int t = threadIdx.x; t < k.TX; t += blockDim.x) {
			const int64_t c = g * k.TX + t;
			base[t] = c < k.ncol ? (c / k.cdiv) * k.cs_hi + (c % k.cdiv) * k.cs_lo : -1;
		}
		__syncthreads();
		sm_load<LFAST>(k, tile, base, -(int64_t)k.r, W, W);
		__syncthreads();
		for (int64_t l0 = 0; l0 < k.nl; l0 += k.T) {
			sm_store<LFAST>(k, tile, w, base, l0, W);
			__syncthreads();
			if (l0 + k.T < k.nl) {
				sm_load<LFAST>(k, tile, base, l0 + k.T + k.r, k.T, W);
				__syncthreads();
			}
		}
	}
}

/* Along y or z with the taps by value and a radius up to SM_MARCH_R: a
 * thread owns one column and marches along its line, the 2R + 1 inputs of
 * the current output and the next P inputs in registers.  Only the thread
 * touches its column, and it reads every position before it writes it, so
 * in place is exact with no shared memory and no barrier; P loads a
 * thread are in flight (the tiled kernel above waits at a barrier per
 * chunk: ~30 % of DRAM bandwidth).  The sum is sm_store's, in its order. */
enum { SM_MARCH_R = 6, SM_MARCH_P = 12 }; /* sm_by_radius lists the radii 1 .. 6 */

template <int R> __global__ void __launch_bounds__(SM_THREADS) smooth_march_kernel(sm_k k)
{
	const int P = SM_MARCH_P;
	const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= k.ncol)
		return;
	float *p = k.p + (c / k.cdiv) * k.cs_hi + (c % k.cdiv) * k.cs_lo;
	const int64_t ls = k.ls, nl = k.nl;
	float w[R + 1], win[2 * R + 1], pre[P];
#pragma unroll
	for (int t = 0; t <= R; t++)
		w[t] = k.wv[t];
#pragma unroll
	for (int i = 0; i <= 2 * R; i++) /* positions -R .. R */
		win[i] = i >= R && i - R < nl ? p[(i - R) * ls] : 0.0f;
#pragma unroll
	for (int q = 0; q < P; q++) /* positions R + 1 .. R + P */
		pre[q] = R + 1 + q < nl ? p[(R + 1 + q) * ls] : 0.0f;
	for (int64_t l = 0; l < nl; l++) {
		float acc = w[0] * win[R];
#pragma unroll
		for (int t = 1; t <= R; t++)
			acc += w[t] * (win[R - t] + win[R + t]);
		p[l * ls] = acc;
#pragma unroll
		for (int i = 0; i < 2 * R; i++)
			win[i] = win[i + 1];
		win[2 * R] = pre[0];
#pragma unroll
		for (int q = 0; q < P - 1; q++)
			pre[q] = pre[q + 1];
		const int64_t next = l + R + 1 + P;
		pre[P - 1] = next < nl ? p[next * ls] : 0.0f;
	}
}

/* Along x with the taps by value, lines of at most 32 NI voxels: a warp
 * owns a line, lane l holds voxels 32 i + l (all NI loads in flight at
 * once), and the neighbours come from other lanes by shuffles (the next or
 * previous register across the warp's edge).  The warp has read the whole
 * line before it writes, so in place is exact; no shared memory, no
 * barrier (the tiled kernel ran at ~25 % of DRAM bandwidth here). */
template <int R, int NI> __global__ void __launch_bounds__(SM_THREADS) smooth_xwarp_kernel(sm_k k)
{
	const unsigned full = 0xffffffffu;
	const int lane = (int)(threadIdx.x & 31);
	const int64_t line = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
	if (line >= k.ncol) /* whole warps leave together: ncol counts lines */
		return;
	float *p = k.p + line * k.cs_hi;
	const int nl = (int)k.nl;
	float v[NI];
#pragma unroll
	for (int i = 0; i < NI; i++)
		v[i] = 32 * i + lane < nl ? p[32 * i + lane] : 0.0f;
	float out[NI];
#pragma unroll
	for (int i = 0; i < NI; i++) {
		float acc = k.wv[0] * v[i];
#pragma unroll
		for (int t = 1; t <= R; t++) {
			/* voxel e + t: lane + t of register i, or lane + t - 32 of i + 1 */
			const float up_same = __shfl_down_sync(full, v[i], t);
			const float up_next = __shfl_up_sync(full, i + 1 < NI ? v[i + 1] : 0.0f, 32 - t);
			const float hi = lane + t < 32 ? up_same : up_next;
			/* voxel e - t: lane - t of register i, or lane - t + 32 of i - 1 */
			const float dn_same = __shfl_up_sync(full, v[i], t);
			const float dn_prev = __shfl_down_sync(full, i > 0 ? v[i - 1] : 0.0f, 32 - t);
			const float lo = lane >= t ? dn_same : dn_prev;
			acc += k.wv[t] * (lo + hi);
		}
		out[i] = acc;
	}
#pragma unroll
	for (int i = 0; i < NI; i++)
		if (32 * i + lane < nl)
			p[32 * i + lane] = out[i];
}

/* Launchers of the register kernels, one radius each (R <= SM_MARCH_R). */
struct sm_xwarp_launch {
	template <int R, int NI> static ffdp_status line(const sm_k &k, ffdp_error *err)
	{
		const int64_t threads = k.ncol * 32;
		smooth_xwarp_kernel<R, NI><<<(unsigned)((threads + SM_THREADS - 1) / SM_THREADS), SM_THREADS>>>(k);
		return cu_launched(err, "smooth");
	}
	template <int R> static ffdp_status run(const sm_k &k, ffdp_error *err)
	{
		if (k.nl <= 128)
			return line<R, 4>(k, err);
		if (k.nl <= 256)
			return line<R, 8>(k, err);
		if (k.nl <= 512)
			return line<R, 16>(k, err);
		return line<R, 32>(k, err);
	}
};

struct sm_march_launch {
	template <int R> static ffdp_status run(const sm_k &k, ffdp_error *err)
	{
		smooth_march_kernel<R><<<(unsigned)((k.ncol + SM_THREADS - 1) / SM_THREADS), SM_THREADS>>>(k);
		return cu_launched(err, "smooth");
	}
};

/* The radius k.r (1 .. SM_MARCH_R) as L's template argument: the one list
 * of radii the register kernels are built for. */
template <typename L> static ffdp_status sm_by_radius(const sm_k &k, ffdp_error *err)
{
	switch (k.r) {
	case 1: return L::template run<1>(k, err);
	case 2: return L::template run<2>(k, err);
	case 3: return L::template run<3>(k, err);
	case 4: return L::template run<4>(k, err);
	case 5: return L::template run<5>(k, err);
	default: return L::template run<SM_MARCH_R>(k, err);
	}
}

/* ---- out of place, the three axes in one pass (cuda_smooth3.cuh) ------------------- */

struct sm3_store {
	float *out;
	__device__ void fetch(int64_t) {}
	__device__ void operator()(int64_t i, const float v[1]) { out[i] = v[0]; }
};

/* The three components of a field in one march (their loads and sums
 * side by side): registration's warp smoothing. */
struct sm3_store3 {
	float *out[3];
	__device__ void fetch(int64_t) {}
	__device__ void operator()(int64_t i, const float v[3])
	{
		out[0][i] = v[0], out[1][i] = v[1], out[2][i] = v[2];
	}
};

template <int R>
__global__ void __launch_bounds__(SM3_BX * SM3_BY) smooth3v_kernel(ffdp_vec x, ffdp_vec out, sm3_taps k)
{
	const float *const xc[3] = {x.c[0], x.c[1], x.c[2]};
	const int64_t n[3] = {x.n[0], x.n[1], x.n[2]};
	sm3_store3 sink = {{out.c[0], out.c[1], out.c[2]}};
	sm3_march<R, 3>(xc, n, k, sink);
}

template <int R> __global__ void __launch_bounds__(SM3_BX * SM3_BY) smooth3_kernel(const float *x, float *out,
										 sm3_taps k, int64_t nx, int64_t ny,
										 int64_t nz)
{
	const float *const xc[1] = {x};
	const int64_t n[3] = {nx, ny, nz};
	sm3_store sink = {out};
	sm3_march<R, 1>(xc, n, k, sink);
}

/* ---- host side ------------------------------------------------------------------ */

typedef struct sm_axis {
	int on;
	int r;
	float *host; /* taps w[0..r], then n face factors when renormalising */
	int renorm;
} sm_axis;

/* The CPU's kernel (cpu_smooth.c, sm_axis_init), to the same bits. */
static ffdp_status sm_axis_init(sm_axis *ax, double sigma, double truncate, int renorm, int64_t n,
				ffdp_error *err)
{
	ax->on = 0, ax->r = 0, ax->host = NULL, ax->renorm = renorm;
	if (sigma == 0.0 || n == 1)
		return FFDP_OK;
	const double rr = ceil(truncate * sigma);
	if (!(rr <= (double)SM_MAX_RADIUS))
		return ffdp_fail(err, FFDP_ERR_ARG, "smooth: kernel radius %.3g voxels is too large (sigma %g)", rr,
				 sigma);
	const int64_t radius = (int64_t)rr, r = radius < n - 1 ? radius : n - 1;
	ax->host = (float *)malloc((size_t)(r + 1 + (renorm ? n : 0)) * sizeof(float));
	double *wd = (double *)malloc((size_t)(r + 1) * sizeof(double));
	if (!ax->host || !wd) {
		free(wd);
		free(ax->host);
		ax->host = NULL;
		return ffdp_fail(err, FFDP_ERR_NOMEM, "smooth: cannot allocate the kernel");
	}
	double sum = 0.0, s2 = 2.0 * sigma * sigma;
	for (int64_t t = 0; t <= radius; t++) {
		double e = exp(-(double)t * (double)t / s2);
		if (t <= r)
			wd[t] = e;
		sum += t ? 2.0 * e : e;
	}
	for (int64_t t = 0; t <= r; t++)
		ax->host[t] = (float)(wd[t] / sum), wd[t] /= sum;
	for (int64_t i = 0; renorm && i < n; i++) {
		double mass = 0.0;
		if (i < r || i >= n - r)
			for (int64_t t = -r; t <= r; t++)
				if (i + t >= 0 && i + t < n)
					mass += wd[t < 0 ? -t : t];
		ax->host[r + 1 + i] = mass > 0.0 ? (float)(1.0 / mass) : 1.0f;
	}
	free(wd);
	ax->on = 1;
	ax->r = (int)r;
	return FFDP_OK;
}

static int sm_max_shared(void)
{
	int dev = 0, b = 0;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&b, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess || b <= 0)
		b = 48 * 1024;
	return b;
}

template <bool LFAST> static ffdp_status sm_launch(sm_k k, ffdp_error *err)
{
	const int limit = sm_max_shared();
	size_t bytes = 0;
	for (;;) {
		bytes = ((size_t)(k.T + 2 * k.r) * (size_t)k.TX + (size_t)k.r + 1) * sizeof(float);
		if (bytes <= (size_t)limit || k.TX == 1)
			break;
		k.TX /= 2; /* fewer lines per block for wide kernels */
	}
	if (bytes > (size_t)limit)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED,
				 "smooth: radius %d needs %zu bytes of shared memory per line (limit %d)", k.r, bytes,
				 limit);
	if (bytes > 48 * 1024) {
		cudaError_t e = cudaFuncSetAttribute(smooth_kernel<LFAST>, cudaFuncAttributeMaxDynamicSharedMemorySize,
						     (int)bytes);
		if (e != cudaSuccess)
			return cu_status(e, err, "smooth shared memory");
	}
	const int64_t ngroups = (k.ncol + k.TX - 1) / k.TX;
	smooth_kernel<LFAST><<<(unsigned)cu_min64(ngroups, 1 << 22), SM_THREADS, bytes>>>(k);
	return cu_launched(err, "smooth");
}

/* Taps in the kernel's parameters: no upload, so no wait for the stream
 * (a pageable copy waits for the work before it: twice an iteration in
 * registration, where radii are a few voxels and nothing is renormalised). */
static int sm_by_value(const sm_axis *ax)
{
	return ax->on && !ax->renorm && ax->r <= SM_PARAM_R;
}

/* One axis pass: line geometry per axis, chunk shapes per layout (dev:
 * the axis's uploaded table, NULL when sm_by_value). */
static ffdp_status sm_pass(ffdp_img x, int axis, const sm_axis *ax, const float *dev, ffdp_error *err)
{
	const int64_t nx = x.n[0], ny = x.n[1], nz = x.n[2];
	sm_k k;
	k.p = x.p;
	k.r = ax->r;
	k.w = dev;
	k.scale = ax->renorm ? dev + ax->r + 1 : NULL;
	if (sm_by_value(ax))
		memcpy(k.wv, ax->host, (size_t)(ax->r + 1) * sizeof(float));
	if (axis == 0) {
		k.nl = nx, k.ls = 1, k.ncol = ny * nz, k.cdiv = 1, k.cs_hi = nx, k.cs_lo = 0;
		if (sm_by_value(ax) && ax->r <= SM_MARCH_R && nx <= 1024 && k.ncol <= ((int64_t)1 << 33))
			return sm_by_radius<sm_xwarp_launch>(k, err);
		k.T = (int)cu_min64(nx, 256);
		k.TX = (int)cu_max64(1, cu_min64(2048 / k.T, SM_MAX_TX)); /* 8 loads a thread in flight */
		return sm_launch<true>(k, err);
	}
	if (axis == 1)
		k.nl = ny, k.ls = nx, k.ncol = nx * nz, k.cdiv = nx, k.cs_hi = nx * ny, k.cs_lo = 1;
	else
		k.nl = nz, k.ls = nx * ny, k.ncol = nx * ny, k.cdiv = nx * ny, k.cs_hi = 0, k.cs_lo = 1;
	if (sm_by_value(ax) && ax->r <= SM_MARCH_R && k.ncol <= ((int64_t)1 << 38))
		return sm_by_radius<sm_march_launch>(k, err);
	k.T = (int)cu_min64(k.nl, SM_T_ACROSS);
	k.TX = SM_TX_ACROSS;
	return sm_launch<false>(k, err);
}

/* Floats of an axis's host table (taps, then face factors). */
static size_t sm_axis_len(const sm_axis *ax, int64_t n)
{
	return ax->on ? (size_t)(ax->r + 1 + (ax->renorm ? n : 0)) : 0;
}

ffdp_status ffdp_cuda_smooth(ffdp_backend *be, ffdp_img x, const ffdp_smooth_opts *o, ffdp_error *err)
{
	(void)be;
	const double trunc = o->truncate > 0.0 ? o->truncate : 2.0;
	sm_axis ax[3] = {};
	ffdp_status s = FFDP_OK;
	for (int a = 0; a < 3 && !s; a++)
		s = sm_axis_init(&ax[a], o->sigma[a], trunc, o->renormalize, x.n[a], err);
	size_t off[4] = {0, 0, 0, 0};
	for (int a = 0; a < 3; a++)
		off[a + 1] = off[a] + (sm_by_value(&ax[a]) ? 0 : sm_axis_len(&ax[a], x.n[a]));
	/* the other axes' tables in one upload, before the passes: a pageable
	 * copy waits for the stream, so one between passes would stall it */
	float *host = NULL, *dev = NULL;
	if (!s && off[3] > 0) {
		host = (float *)malloc(off[3] * sizeof(float));
		if (!host)
			s = ffdp_fail(err, FFDP_ERR_NOMEM, "smooth: cannot allocate the kernel tables");
		for (int a = 0; a < 3 && !s; a++)
			if (ax[a].on && !sm_by_value(&ax[a]))
				memcpy(host + off[a], ax[a].host, sm_axis_len(&ax[a], x.n[a]) * sizeof(float));
		if (!s && !(dev = (float *)cu_scratch(off[3] * sizeof(float), 0, err, "smooth")))
			s = FFDP_ERR_NOMEM;
		if (!s) /* returns once the pageable source is staged */
			s = cu_status(cudaMemcpy(dev, host, off[3] * sizeof(float), cudaMemcpyHostToDevice), err,
				      "smooth taps");
	}
	for (int a = 0; a < 3 && !s; a++)
		if (ax[a].on)
			s = sm_pass(x, a, &ax[a], sm_by_value(&ax[a]) ? NULL : dev + off[a], err);
	cu_scratch_free(dev);
	free(host);
	for (int a = 0; a < 3; a++)
		free(ax[a].host);
	return s;
}

/* The fused pass applies: 3-D, every axis smoothed with the same radius
 * R <= SM3_MAX_R, taps by value (no face factors), a grid that fits. */
int ffdp_cuda_smooth3_plan(const ffdp_smooth_opts *o, const int64_t n[3], sm3_taps *t, ffdp_status *s,
			   ffdp_error *err)
{
	const double trunc = o->truncate > 0.0 ? o->truncate : 2.0;
	sm_axis ax[3] = {};
	int r = 0;
	*s = FFDP_OK;
	for (int a = 0; a < 3 && !*s; a++)
		*s = sm_axis_init(&ax[a], o->sigma[a], trunc, o->renormalize, n[a], err);
	if (!*s) {
		r = ax[0].r;
		for (int a = 0; a < 3; a++)
			if (!sm_by_value(&ax[a]) || ax[a].r != r)
				r = 0;
		if (r > SM3_MAX_R || n[1] > 65535 * (int64_t)SM3_BY || (n[2] + SM3_ZC - 1) / SM3_ZC > 65535 ||
		    n[0] * n[1] >= INT32_MAX) /* in-plane offsets in int */
			r = 0;
		for (int a = 0; a < 3 && r; a++)
			memcpy(t->w[a], ax[a].host, (size_t)(r + 1) * sizeof(float));
		/* planes a block marches: twice SM3_ZC (half the chunks' 2R halo
		 * planes: the fused Adam pass 2.88 -> 2.76 ms at 512^3) where
		 * that still gives two waves of 4 blocks an SM */
		const int64_t bxy = ((n[0] + SM3_BX - 1) / SM3_BX) * ((n[1] + SM3_BY - 1) / SM3_BY);
		t->zc = bxy * ((n[2] + 2 * SM3_ZC - 1) / (2 * SM3_ZC)) >= 8 * (int64_t)cu_sm_count() ? 2 * SM3_ZC : SM3_ZC;
	}
	for (int a = 0; a < 3; a++)
		free(ax[a].host);
	return r;
}

static ffdp_status sm3_launch(ffdp_img x, ffdp_img out, const sm3_taps &t, int r, ffdp_error *err)
{
	dim3 grid, block;
	sm3_shape(x.n, t, &grid, &block);
	if (r == 1)
		smooth3_kernel<1><<<grid, block>>>(x.p, out.p, t, x.n[0], x.n[1], x.n[2]);
	else if (r == 2)
		smooth3_kernel<2><<<grid, block>>>(x.p, out.p, t, x.n[0], x.n[1], x.n[2]);
	else
		smooth3_kernel<3><<<grid, block>>>(x.p, out.p, t, x.n[0], x.n[1], x.n[2]);
	return cu_launched(err, "smooth_to");
}

ffdp_status ffdp_cuda_smooth_to(ffdp_backend *be, ffdp_img x, ffdp_img out, const ffdp_smooth_opts *o, ffdp_error *err)
{
	sm3_taps t;
	ffdp_status s;
	const int r = ffdp_cuda_smooth3_plan(o, x.n, &t, &s, err);
	if (s)
		return s;
	return r > 0 ? sm3_launch(x, out, t, r, err) : ffdp_smooth_to_by_copy(be, x, out, o, err);
}

ffdp_status ffdp_cuda_smooth_vec_to(ffdp_backend *be, ffdp_vec x, ffdp_vec out, const ffdp_smooth_opts *o,
				    ffdp_error *err)
{
	sm3_taps t;
	ffdp_status s = FFDP_OK;
	const int r = x.ncomp == 3 ? ffdp_cuda_smooth3_plan(o, x.n, &t, &s, err) : 0;
	if (s)
		return s;
	if (!r) {
		for (int c = 0; c < x.ncomp && !s; c++) {
			ffdp_img a = {x.c[c], {x.n[0], x.n[1], x.n[2]}}, b = {out.c[c], {x.n[0], x.n[1], x.n[2]}};
			s = ffdp_cuda_smooth_to(be, a, b, o, err);
		}
		return s;
	}
	dim3 grid, block;
	sm3_shape(x.n, t, &grid, &block);
	if (r == 1)
		smooth3v_kernel<1><<<grid, block>>>(x, out, t);
	else if (r == 2)
		smooth3v_kernel<2><<<grid, block>>>(x, out, t);
	else
		smooth3v_kernel<3><<<grid, block>>>(x, out, t);
	return cu_launched(err, "smooth_vec_to");
}
