/* Adam moments and the fused greedy warp step (ops.h, "optimiser").
 *
 * d = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) is recomputed from
 * the stored float m and v by one function (adam_dir), so that max_norm
 * bounds exactly the |d| that warp_step sees.  The moments, d and the sum
 * of d^2 are the CPU's float operations, each rounded once: the same bits
 * on both backends (in double they had cost the bf16 moments and the
 * warp step a double sqrt and division a component).
 *
 * IO floors (float32, 3-D; 2-D is two thirds):
 *   adam_moments            read g, m, v, write m, v       60 B/voxel
 *   warp_step, compose = 0  read m, v, u, write u          48 B/voxel
 *   warp_step, compose = 1  the same 48 B/voxel, plus a copy of each old
 *                           slice into the ring (24 B/voxel, mostly L2:
 *                           the ring is a few slabs), plus 24 B/voxel to
 *                           measure the reach when no max_norm is given.
 *
 * In-place composition u <- delta + u o (Id + C delta) on the GPU.  The
 * new value at slice s (z plane; y row in 2-D) reads the old u at slices
 * s - R .. (anything above), R = ceil(max backward reach of (C delta) along
 * the slice axis).  Slices are processed in slabs of S, one launch each,
 * in increasing order, with a ring of cap = min(R + 2S, ns) old slices
 * (slice p in slot p mod cap).  Before launch k (slab [z0, z0 + S)) the
 * ring holds the old slices [z0 - R, z0 + S).  Launch k
 *   - computes slab k: old values at slices >= z0 + S come from u (nothing
 *     has written them), at slices in [z0 - R, z0 + S) from the ring;
 *   - writes the new values of slab k into u;
 *   - copies the old slab k + 1 from u into the ring.  Its slots held the
 *     slices [z0 - R - S, z0 - R), which no voxel of slab k reads; every
 *     slice slab k reads lies within cap - 1 of them, so no slot is read
 *     and written in the same launch.
 * Slab 0 is copied in before the first launch.  S is chosen so that a
 * slab has about 2^20 voxels (enough threads to fill the GPU), so the
 * extra memory is cap x slice x ncomp floats: about 24 MiB + 12 B x R
 * slices in 3-D, bounded by the field itself when it is smaller.
 * A voxel that would need a slice below z0 - R (only possible when the
 * caller's max_norm hint is below the truth) is flagged: FFDP_ERR_ARG
 * after the fact, as on the CPU.
 *
 * Out of place (warp_step's out, 3-D): no ring, one launch over the volume
 * (ws_out3_kernel), 36 B/voxel with bf16 words; registration writes into
 * its gradient field, dead at that point (docs/architecture.md).
 */
#include "cuda_smooth3.cuh"
#include "../../ops/bf16_moments.h"

/* WS_MINB: blocks an SM (Nsight at 4: 46 % occupancy, 13 cycles a warp
 * instruction waiting on L1; 6 forces 42 registers and ran 8 % slower) */
enum { WS_SLAB_VOXELS = 1 << 20, WS_MINB = 4 };
/* Blocks an SM of the out-of-place step (3: 85 registers, no spills; at 4
 * its z-march spilled 72 B: 256^3 0.376 -> 0.339 ms) and of the fused
 * moments (4: 64 registers; 1 let it take more and run 13 % slower, 3
 * 3 % slower; H100, docs/perf.md). */
enum { WS_OUT_MINB = 3, ADS_MINB = 4 };

/* The constants as the CPU rounds them (cpu_adam.c, adam_k_make). */
typedef struct adam_c {
	float b1, b2, ibc1, ibc2, eps;
} adam_c;

static ffdp_status adam_c_make(const ffdp_adam_opts *o, adam_c *k, ffdp_error *err)
{
	if (o->t < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: step count must start at 1");
	if (!(o->beta1 >= 0.0 && o->beta1 < 1.0 && o->beta2 >= 0.0 && o->beta2 < 1.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: betas (%g, %g) must lie in [0, 1)", o->beta1, o->beta2);
	if (!(o->eps >= 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "adam: eps %g is negative", o->eps);
	k->b1 = (float)o->beta1;
	k->b2 = (float)o->beta2;
	k->ibc1 = (float)(1.0 / (1.0 - pow(o->beta1, o->t)));
	k->ibc2 = (float)(1.0 / (1.0 - pow(o->beta2, o->t)));
	k->eps = (float)o->eps;
	return FFDP_OK;
}

/* d, the CPU's float definition (cpu_adam.c, adam_d) operation for
 * operation, each rounded once, never contracted: both backends step by
 * the same bits of d. */
__device__ __forceinline__ float adam_dir(float m, float v, const adam_c &k)
{
	return __fdiv_rn(__fmul_rn(m, k.ibc1), __fadd_rn(__fsqrt_rn(__fmul_rn(v, k.ibc2)), k.eps));
}

/* New moments from old m, v and the gradient g, as the CPU's loops. */
__device__ __forceinline__ float adam_m(float m, float g, const adam_c &k)
{
	return __fadd_rn(__fmul_rn(k.b1, m), __fmul_rn(1.0f - k.b1, g));
}

__device__ __forceinline__ float adam_v(float v, float g, const adam_c &k)
{
	return __fadd_rn(__fmul_rn(k.b2, v), __fmul_rn(__fmul_rn(1.0f - k.b2, g), g));
}

/* ---- moments ------------------------------------------------------------------- */

typedef struct adam_k {
	const float *g[3];
	float *m[3], *v[3];
	uint32_t *w[3]; /* bf16 words (FFDP_MOMENTS_BF16), else NULL */
	int64_t n, index0;
	int nc, t;
	adam_c a;
} adam_k;

typedef struct adam_out {
	unsigned long long max_bits; /* max |d|^2 over finite voxels, as double bits */
	int bad;                     /* some |d|^2 is NaN or infinite */
} adam_out;

/* Voxel i's stored moments (bf16 words in a[c], or m in a[c] and v in
 * b[c]), loaded apart from their use so that a caller can issue the loads
 * early (the fused pass: before its smoothing, not behind its barrier). */
template <bool BF16> struct adam_old {
	uint32_t a[3];
	float b[3];
};

template <bool BF16>
__device__ __forceinline__ void mom_fetch(const uint32_t *const w[3], const float *const m[3], const float *const v[3],
					  int nc, int64_t i, adam_old<BF16> &o)
{
#pragma unroll
	for (int c = 0; c < 3; c++) {
		if (c >= nc)
			break;
		if (BF16) {
			o.a[c] = w[c][i];
		} else {
			o.a[c] = __float_as_uint(m[c][i]);
			o.b[c] = v[c][i];
		}
	}
}

template <bool BF16> __device__ __forceinline__ void adam_fetch(const adam_k &k, int64_t i, adam_old<BF16> &o)
{
	mom_fetch<BF16>(k.w, k.m, k.v, k.nc, i, o);
}

/* d of component c from fetched moments. */
template <bool BF16> __device__ __forceinline__ float mom_dir(const adam_old<BF16> &o, int c, const adam_c &a)
{
	return BF16 ? adam_dir(ffdp_bm_m(o.a[c]), ffdp_bm_v(o.a[c]), a) : adam_dir(__uint_as_float(o.a[c]), o.b[c], a);
}

/* Voxel i's new moments from o and its gradient g[0..nc), and |d|^2.
 * BF16: the words of FFDP_MOMENTS_BF16 (a compile-time choice: a runtime
 * branch in the loop cost the float path 30 %). */
template <bool BF16>
__device__ __forceinline__ float adam_voxel(const adam_k &k, int64_t i, const adam_old<BF16> &o, const float *g)
{
	float s = 0.0f; /* sum of d^2 in component order, in float: the CPU's */
#pragma unroll
	for (int c = 0; c < 3; c++) {
		if (c >= k.nc)
			break;
		float d;
		if (BF16) {
			const uint32_t w = o.a[c];
			const uint32_t wi = ffdp_bm_word(adam_m(ffdp_bm_m(w), g[c], k.a), adam_v(ffdp_bm_v(w), g[c], k.a),
							 k.index0 + i, c, k.t);
			k.w[c][i] = wi;
			d = adam_dir(ffdp_bm_m(wi), ffdp_bm_v(wi), k.a);
		} else {
			const float mi = adam_m(__uint_as_float(o.a[c]), g[c], k.a), vi = adam_v(o.b[c], g[c], k.a);
			k.m[c][i] = mi;
			k.v[c][i] = vi;
			d = adam_dir(mi, vi, k.a);
		}
		s = __fadd_rn(s, __fmul_rn(d, d));
	}
	return s;
}

/* This block's max |d|^2 and NaN flag into out (uniform: every thread). */
__device__ __forceinline__ void adam_reduce(double mx, int bad, adam_out *out)
{
	if (!out)
		return;
	cu_block_max_nonneg(mx, &out->max_bits);
	if (__syncthreads_or(bad) && cu_tid() == 0)
		atomicOr(&out->bad, 1);
}

template <bool BF16>
__global__ void adam_moments_kernel(adam_k k, adam_out *out)
{
	float mx = 0.0f; /* the max of floats, exact; double for the reduction */
	int bad = 0;
	CU_FOR_FLAT(i, k.n)
	{
		float g[3];
#pragma unroll
		for (int c = 0; c < 3; c++)
			g[c] = c < k.nc ? k.g[c][i] : 0.0f;
		adam_old<BF16> o;
		adam_fetch<BF16>(k, i, o);
		const float s = adam_voxel<BF16>(k, i, o, g);
		if (isfinite(s))
			mx = fmaxf(mx, s);
		else
			bad = 1;
	}
	adam_reduce(mx, bad, out);
}

/* The moments of the smoothed gradient (ffdp_adam_opts.smooth, 3-D): the
 * three-axis march (cuda_smooth3.cuh) hands each voxel's smoothed g to
 * adam_voxel, so the smoothed field is never stored and g is only read:
 * 12 + 24 B/voxel with bf16 words, against 24 for smoothing in place
 * (three passes, 72 B) and 36 for the moments.  The march's values are
 * the in-place passes' bits. */
template <bool BF16> struct adam_sink {
	const adam_k &k;
	float mx; /* as adam_moments_kernel's */
	int bad;
	adam_old<BF16> o;
	__device__ void fetch(int64_t i) { adam_fetch<BF16>(k, i, o); }
	__device__ void operator()(int64_t i, const float g[3])
	{
		const float s = adam_voxel<BF16>(k, i, o, g);
		if (isfinite(s))
			mx = fmaxf(mx, s);
		else
			bad = 1;
	}
};

template <int R, bool BF16>
__global__ void __launch_bounds__(SM3_BX * SM3_BY, ADS_MINB) adam_smooth3_kernel(adam_k k, sm3_taps t, int64_t nx, int64_t ny,
									int64_t nz, adam_out *out)
{
	const float *const g[3] = {k.g[0], k.g[1], k.g[2]};
	const int64_t n[3] = {nx, ny, nz};
	adam_sink<BF16> sink = {k, 0.0f, 0, {}};
	sm3_march<R, 3>(g, n, t, sink);
	adam_reduce(sink.mx, sink.bad, out);
}

template <bool BF16> static void adam_smooth3_launch(const adam_k &k, const sm3_taps &t, int r, const int64_t n[3],
						      adam_out *d)
{
	dim3 grid, block;
	sm3_shape(n, t, &grid, &block);
	if (r == 1)
		adam_smooth3_kernel<1, BF16><<<grid, block>>>(k, t, n[0], n[1], n[2], d);
	else if (r == 2)
		adam_smooth3_kernel<2, BF16><<<grid, block>>>(k, t, n[0], n[1], n[2], d);
	else
		adam_smooth3_kernel<3, BF16><<<grid, block>>>(k, t, n[0], n[1], n[2], d);
}

/* The reduced maximum into the caller's state, on the device. */
__global__ void adam_state_kernel(const adam_out *d, ffdp_step_state *state)
{
	state->max_norm = d->bad ? nan("") : sqrt(__longlong_as_double((long long)d->max_bits));
	state->fault |= d->bad ? 1 : 0;
}

ffdp_status ffdp_cuda_adam_moments(ffdp_backend *be, ffdp_vec g, ffdp_vec m, ffdp_vec v, const ffdp_adam_opts *o,
				   double *max_norm, ffdp_error *err)
{
	adam_k k;
	ffdp_status s = adam_c_make(o, &k.a, err);
	if (s)
		return s;
	k.n = g.n[0] * g.n[1] * g.n[2];
	k.nc = g.ncomp;
	k.index0 = o->index0;
	k.t = o->t;
	const bool bf16 = o->store == FFDP_MOMENTS_BF16;
	for (int c = 0; c < 3; c++) {
		k.g[c] = c < k.nc ? g.c[c] : NULL;
		k.m[c] = c < k.nc && !bf16 ? m.c[c] : NULL;
		k.v[c] = c < k.nc && !bf16 ? v.c[c] : NULL;
		k.w[c] = c < k.nc && bf16 ? (uint32_t *)m.c[c] : NULL;
	}
	/* a smoothed gradient: the fused pass where it applies, else g
	 * smoothed in place first (the op's contract allows either) */
	sm3_taps taps;
	int r = 0;
	if (o->smooth && k.nc == 3 && ((r = ffdp_cuda_smooth3_plan(o->smooth, g.n, &taps, &s, err)), s))
		return s;
	for (int c = 0; c < k.nc && o->smooth && !r && !s; c++) {
		ffdp_img gc = {g.c[c], {g.n[0], g.n[1], g.n[2]}};
		s = ffdp_cuda_smooth(be, gc, o->smooth, err);
	}
	if (s)
		return s;
	adam_out *d = NULL;
	const bool reduce = max_norm || o->state;
	if (reduce && !(d = (adam_out *)cu_scratch(sizeof(adam_out), 1, err, "adam_moments")))
		return FFDP_ERR_NOMEM;
	const cu_shape sh = cu_flat_shape(k.n, reduce ? cu_reduce_blocks() : 0);
	if (r && bf16)
		adam_smooth3_launch<true>(k, taps, r, g.n, d);
	else if (r)
		adam_smooth3_launch<false>(k, taps, r, g.n, d);
	else if (bf16)
		adam_moments_kernel<true><<<sh.grid, sh.block>>>(k, d);
	else
		adam_moments_kernel<false><<<sh.grid, sh.block>>>(k, d);
	s = cu_launched(err, "adam_moments");
	if (!s && o->state) {
		adam_state_kernel<<<1, 1>>>(d, o->state);
		s = cu_launched(err, "adam_moments state");
	}
	if (!s && max_norm) {
		adam_out h;
		if (!(s = cu_fetch(&h, d, sizeof(h), err, "adam_moments")))
			*max_norm = h.bad ? NAN : sqrt(cu_bits_double(h.max_bits));
	}
	cu_scratch_free(d);
	return s;
}

/* ---- warp step ---------------------------------------------------------------------- */

typedef struct ws_k {
	float *u[3];
	const float *m[3], *v[3];
	const uint32_t *w[3]; /* bf16 words (FFDP_MOMENTS_BF16), else NULL */
	int64_t n[3];
	int nc;
	int sa;          /* slice axis: 2 (z) in 3-D, 1 (y) in 2-D */
	int64_t ns;      /* slices */
	int64_t slice;   /* voxels per slice */
	int64_t no;      /* rows per slice: ny in 3-D, 1 in 2-D */
	double C[9];     /* zero outside the first nc rows and columns */
	double step;
	const ffdp_step_state *state; /* or NULL: the step is step / max(1, state->max_norm) */
	adam_c a;
	int pad;
} ws_k;

/* The step of this launch (read once per thread: the state is the
 * device's, written by adam_moments).  Returned, not stored into k: a
 * written kernel parameter is copied to local memory, which had cost the
 * warp step 13 %. */
__device__ __forceinline__ double ws_step(const ws_k &k)
{
	return k.state ? k.step / fmax(1.0, k.state->max_norm) : k.step; /* NaN -> 1 */
}

typedef struct ws_ring {
	float *p; /* component c, slot t at p + (c * cap + t) * slice */
	int64_t cap;
	int64_t lo, slot_lo; /* this launch: slice z0 - R (clamped at 0) lives in slot slot_lo */
} ws_ring;

/* Slot of slice p, lo <= p < lo + cap: one subtraction instead of a 64-bit
 * modulo per corner. */
__device__ __forceinline__ int64_t ws_slot(const ws_ring &ring, int64_t p)
{
	const int64_t t = ring.slot_lo + (p - ring.lo);
	return t >= ring.cap ? t - ring.cap : t;
}

/* delta at voxel i from the stored moments: BF16 words or float planes (a
 * compile-time choice in the slab kernel); ws_delta picks at run time for
 * the other kernels. */
template <bool BF16>
__device__ __forceinline__ void ws_delta_of(const ws_k &k, double step, const adam_old<BF16> &o, double dl[3])
{
#pragma unroll
	for (int c = 0; c < 3; c++)
		dl[c] = c < k.nc ? step * (double)mom_dir<BF16>(o, c, k.a) : 0.0;
}

template <bool BF16> __device__ __forceinline__ void ws_delta_t(const ws_k &k, double step, int64_t i, double dl[3])
{
	adam_old<BF16> o;
	mom_fetch<BF16>(k.w, k.m, k.v, k.nc, i, o);
	ws_delta_of<BF16>(k, step, o, dl);
}

__device__ __forceinline__ void ws_delta(const ws_k &k, double step, int64_t i, double dl[3])
{
	if (k.w[0]) /* uniform */
		ws_delta_t<true>(k, step, i, dl);
	else
		ws_delta_t<false>(k, step, i, dl);
}

/* (C dl)_row, never contracted into FMAs: the reach measured here and the
 * sample points of ws_voxel must round the same way. */
__device__ __forceinline__ double ws_offset(const ws_k &k, int row, const double dl[3])
{
	const double *c = k.C + 3 * row;
	return __dadd_rn(__dadd_rn(__dmul_rn(c[0], dl[0]), __dmul_rn(c[1], dl[1])), __dmul_rn(c[2], dl[2]));
}

__global__ void ws_add_kernel(ws_k k, int64_t n)
{
	const double step = ws_step(k);
	CU_FOR_FLAT(i, n)
	{
		double dl[3];
		ws_delta(k, step, i, dl);
#pragma unroll
		for (int c = 0; c < 3; c++)
			if (c < k.nc)
				k.u[c][i] = (float)((double)k.u[c][i] + dl[c]);
	}
}

/* Largest backward reach max(0, -(C delta)_sa); NaN offsets are ignored. */
__global__ void ws_reach_kernel(ws_k k, int64_t n, unsigned long long *out)
{
	const double step = ws_step(k);
	double mx = 0.0;
	CU_FOR_FLAT(i, n)
	{
		double dl[3];
		ws_delta(k, step, i, dl);
		const double back = -ws_offset(k, k.sa, dl);
		mx = back > mx ? back : mx;
	}
	cu_block_max_nonneg(mx, out);
}

/* Base of old slice p for each component, for a voxel of slab [z0, z0 + S). */
__device__ __forceinline__ int ws_slice(const ws_k &k, const ws_ring &ring, int64_t z0, int64_t S, int64_t R,
					int64_t p, float w, const float *b[3])
{
	int bad = 0;
	if (p >= z0 + S) {
#pragma unroll
		for (int c = 0; c < 3; c++)
			b[c] = c < k.nc ? k.u[c] + p * k.slice : NULL; /* not written before a later launch */
		return 0;
	}
	if (p < z0 - R) { /* not in the ring: reach underestimated */
		bad = w != 0.0f;
		p = z0 - R;
	}
	const int64_t slot = ws_slot(ring, p);
#pragma unroll
	for (int c = 0; c < 3; c++)
		b[c] = c < k.nc ? ring.p + ((int64_t)c * ring.cap + slot) * k.slice : NULL;
	return bad;
}

/* New value of voxel (x, row o) of slice s. */
__device__ __forceinline__ int ws_voxel(const ws_k &k, double step, const ws_ring &ring, int64_t z0, int64_t S,
					int64_t R, int64_t s, int64_t x, int64_t o)
{
	const int64_t j = o * k.n[0] + x, i = s * k.slice + j;
	double pos[3];
	pos[0] = (double)x;
	pos[1] = (double)(k.sa == 2 ? o : s);
	pos[2] = (double)(k.sa == 2 ? s : 0);
	double dl[3], q[3];
	ws_delta(k, step, i, dl);
#pragma unroll
	for (int a = 0; a < 3; a++)
		q[a] = __dadd_rn(pos[a], ws_offset(k, a, dl));
	const cu_taps tx = cu_taps_make(q[0], 0, k.n[0], k.pad);
	const cu_taps to = k.sa == 2 ? cu_taps_make(q[1], 0, k.n[1], k.pad) : cu_taps_flat();
	const cu_taps ts = cu_taps_make(k.sa == 2 ? q[2] : q[1], 0, k.ns, k.pad);
	const float *b0[3], *b1[3];
	int bad = ws_slice(k, ring, z0, S, R, ts.i0, ts.w0, b0);
	bad |= ws_slice(k, ring, z0, S, R, ts.i1, ts.w1, b1);
#pragma unroll
	for (int c = 0; c < 3; c++) {
		if (c >= k.nc)
			break;
		const float old = ts.w0 * cu_bilinear(b0[c], k.n[0], tx, to) + ts.w1 * cu_bilinear(b1[c], k.n[0], tx, to);
		k.u[c][i] = (float)(dl[c] + (double)old);
	}
	return bad;
}

/* The old value at voxel j of slice sc (of the next slab) into the ring. */
__device__ __forceinline__ void ws_keep_old(const ws_k &k, const ws_ring &ring, int64_t sc, int64_t j)
{
	if (sc >= k.ns)
		return;
	const int64_t slot = ws_slot(ring, sc);
#pragma unroll
	for (int c = 0; c < 3; c++)
		if (c < k.nc)
			ring.p[((int64_t)c * ring.cap + slot) * k.slice + j] = k.u[c][sc * k.slice + j];
}

/* Slab [z0, z0 + S): new values into u, old slab z0 + S into the ring. */
__global__ void __launch_bounds__(CU_THREADS, WS_MINB) ws_slab_kernel(ws_k k, ws_ring ring, int64_t z0, int64_t S,
								      int64_t R, int *bad_out)
{
	const double step = ws_step(k);
	int bad = 0;
	CU_FOR_VOXELS(k.n[0], k.no, S, x, o, t)
	{
		const int64_t j = o * k.n[0] + x, s = z0 + t;
		ws_keep_old(k, ring, s + S, j);
		if (s < k.ns)
			bad |= ws_voxel(k, step, ring, z0, S, R, s, x, o);
	}
	if (bad)
		atomicOr(bad_out, 1);
}

/* The old u at the taps, each component from its planes b0 (tz.i0) and
 * b1 (tz.i1): the slab kernel's and the out-of-place kernel's arithmetic,
 * in one place so that both give the same bits. */
template <typename IDX>
__device__ __forceinline__ void ws_interp3(const float *const b0[3], const float *const b1[3], const cu_taps_t<IDX> &tx,
					   const cu_taps_t<IDX> &ty, const cu_taps_t<IDX> &tz, IDX nx, float val[3])
{
	const IDX y0 = ty.i0 * nx, y1 = ty.i1 * nx;
#pragma unroll
	for (int c = 0; c < 3; c++) {
		const float r0 = tx.w0 * b0[c][y0 + tx.i0] + tx.w1 * b0[c][y0 + tx.i1];
		const float r1 = tx.w0 * b0[c][y1 + tx.i0] + tx.w1 * b0[c][y1 + tx.i1];
		const float r2 = tx.w0 * b1[c][y0 + tx.i0] + tx.w1 * b1[c][y0 + tx.i1];
		const float r3 = tx.w0 * b1[c][y1 + tx.i0] + tx.w1 * b1[c][y1 + tx.i1];
		val[c] = tz.w0 * (ty.w0 * r0 + ty.w1 * r1) + tz.w1 * (ty.w0 * r2 + ty.w1 * r3);
	}
}

/* 3-D with every axis under 2^20 voxels and a slice under 2^31: as
 * ws_slab_kernel, but the point's offset C delta (formed in double, as the
 * reach) is rounded to float once and the taps are taken in the frame of
 * the voxel's integer position (cu_taps_int), with 32-bit in-plane
 * offsets shared by the components (composition3's treatment).  Rounding
 * is monotonic, so floor(offset) still never passes -R.
 * Two voxels a thread, 32 apart along x, in phases: every load of both
 * (the ring copy's old values, the words, the corner gathers) before any
 * store, so that the two chains of dependent loads overlap (Nsight: 57 %
 * of the one-voxel kernel's stalls waited on them; docs/perf.md).  Safe: a
 * voxel's gathers read the ring (slices below z0 + S) or u at slices >=
 * z0 + S, which no store of this launch touches, and the ring slots stored
 * (slices z0 + S ..) are not read by this launch. */
template <int PAD, bool BF16>
__global__ void __launch_bounds__(CU_THREADS, WS_MINB) ws_slab3_kernel(ws_k k, ws_ring ring, int64_t z0, int64_t S,
								       int64_t R, int *bad_out)
{
	typedef int32_t IDX;
	const double step = ws_step(k);
	const IDX nx = (IDX)k.n[0], ny = (IDX)k.n[1], nz = (IDX)k.ns;
	int bad = 0;
	for (int64_t t = blockIdx.z; t < S; t += gridDim.z)
	for (int64_t o = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; o < k.no; o += (int64_t)gridDim.y * blockDim.y)
	for (int64_t xb = (int64_t)blockIdx.x * blockDim.x * 2 + threadIdx.x; xb < k.n[0];
	     xb += (int64_t)gridDim.x * blockDim.x * 2) {
		const int64_t s = z0 + t, sc = s + S;
		bool in[2], kp[2];
		float old[2][3], val[2][3];
		double dl[2][3];
#pragma unroll
		for (int v = 0; v < 2; v++) {
			const int64_t x = xb + 32 * v, j = o * k.n[0] + x;
			in[v] = x < k.n[0] && s < k.ns;
			kp[v] = x < k.n[0] && sc < k.ns;
#pragma unroll
			for (int c = 0; c < 3; c++)
				old[v][c] = kp[v] ? k.u[c][sc * k.slice + j] : 0.0f;
			if (in[v])
				ws_delta_t<BF16>(k, step, s * k.slice + j, dl[v]);
		}
#pragma unroll
		for (int v = 0; v < 2; v++) {
			if (!in[v])
				continue;
			const int64_t x = xb + 32 * v;
			const cu_taps_t<IDX> tx = cu_taps_int<IDX, PAD>((IDX)x, (float)ws_offset(k, 0, dl[v]), nx);
			const cu_taps_t<IDX> ty = cu_taps_int<IDX, PAD>((IDX)o, (float)ws_offset(k, 1, dl[v]), ny);
			const cu_taps_t<IDX> tz = cu_taps_int<IDX, PAD>((IDX)s, (float)ws_offset(k, 2, dl[v]), nz);
			const float *b0[3], *b1[3];
			bad |= ws_slice(k, ring, z0, S, R, tz.i0, tz.w0, b0);
			bad |= ws_slice(k, ring, z0, S, R, tz.i1, tz.w1, b1);
			ws_interp3(b0, b1, tx, ty, tz, nx, val[v]);
		}
#pragma unroll
		for (int v = 0; v < 2; v++) {
			const int64_t j = o * k.n[0] + xb + 32 * v;
			if (kp[v]) {
				const int64_t slot = ws_slot(ring, sc);
#pragma unroll
				for (int c = 0; c < 3; c++)
					ring.p[((int64_t)c * ring.cap + slot) * k.slice + j] = old[v][c];
			}
			if (in[v])
#pragma unroll
				for (int c = 0; c < 3; c++)
					k.u[c][s * k.slice + j] = (float)(dl[v][c] + (double)val[v][c]);
		}
	}
	if (bad)
		atomicOr(bad_out, 1);
}

static void ws_k_make(ws_k *k, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o, const adam_c *a)
{
	k->nc = u.ncomp;
	const bool bf16 = o->adam.store == FFDP_MOMENTS_BF16;
	for (int c = 0; c < 3; c++) {
		k->n[c] = u.n[c];
		k->u[c] = c < k->nc ? u.c[c] : NULL;
		k->m[c] = c < k->nc && !bf16 ? m.c[c] : NULL;
		k->v[c] = c < k->nc && !bf16 ? v.c[c] : NULL;
		k->w[c] = c < k->nc && bf16 ? (const uint32_t *)m.c[c] : NULL;
	}
	k->sa = k->nc == 3 ? 2 : 1;
	k->ns = u.n[k->sa];
	k->slice = k->nc == 3 ? u.n[0] * u.n[1] : u.n[0];
	k->no = k->nc == 3 ? u.n[1] : 1;
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			k->C[3 * r + c] = r < k->nc && c < k->nc ? o->C[3 * r + c] : 0.0;
	k->step = o->step;
	k->state = o->adam.state;
	k->a = *a;
	k->pad = o->pad;
}

/* Out of place (warp_step's out): the new u into out, u only read, so the
 * gathers need no ring and the whole volume is one launch.  Per voxel the
 * slab kernel's arithmetic (ws_delta_of, ws_offset, cu_taps_int,
 * ws_interp3): the same bits.  Two voxels a thread, 32 apart along x, in
 * phases (both voxels' loads first), as there, over WS_ZT planes: the next
 * plane's moments are loaded while this plane gathers, so the two
 * dependent round trips a voxel (moments -> point -> corners) overlap. */
typedef struct ws_out {
	float *c[3];
} ws_out;

enum { WS_ZT = 4 }; /* planes a thread marches (8: 512^3 2.73 -> 2.69 ms but 256^3 0.335 -> 0.360; 2: 2.79) */

template <int PAD, bool BF16>
__global__ void __launch_bounds__(CU_THREADS, WS_OUT_MINB) ws_out3_kernel(ws_k k, ws_out out)
{
	/* ws_frame: every axis under 2^20 and a slice under 2^31, so rows,
	 * planes and in-plane offsets are 32-bit and a plane's start is the
	 * one 64-bit product (64-bit loop counters had spilled to local
	 * memory and were a fifth of the instructions) */
	typedef int32_t IDX;
	const double step = ws_step(k);
	const IDX nx = (IDX)k.n[0], ny = (IDX)k.n[1], nz = (IDX)k.ns;
	const int64_t slice = k.slice;
	const IDX xb = (IDX)(blockIdx.x * blockDim.x * 2 + threadIdx.x); /* the grid spans x */
	const bool in[2] = {xb < nx, xb + 32 < nx};
	for (IDX o = (IDX)(blockIdx.y * blockDim.y + threadIdx.y); o < ny; o += (IDX)(gridDim.y * blockDim.y))
	for (IDX sb = (IDX)blockIdx.z * WS_ZT; sb < nz; sb += (IDX)gridDim.z * WS_ZT) {
		const IDX se = sb + WS_ZT < nz ? sb + WS_ZT : nz, j = o * nx + xb;
		adam_old<BF16> cur[2], nxt[2];
#pragma unroll
		for (int v = 0; v < 2; v++)
			if (in[v])
				mom_fetch<BF16>(k.w, k.m, k.v, 3, (int64_t)sb * slice + (j + 32 * v), cur[v]);
		for (IDX s = sb; s < se; s++) {
			const int64_t p0 = (int64_t)s * slice;
#pragma unroll
			for (int v = 0; v < 2; v++)
				if (in[v] && s + 1 < se)
					mom_fetch<BF16>(k.w, k.m, k.v, 3, p0 + slice + (j + 32 * v), nxt[v]);
			float val[2][3];
			double dl[2][3];
#pragma unroll
			for (int v = 0; v < 2; v++) {
				if (!in[v])
					continue;
				ws_delta_of<BF16>(k, step, cur[v], dl[v]);
				const cu_taps_t<IDX> tx = cu_taps_int<IDX, PAD>(xb + 32 * v, (float)ws_offset(k, 0, dl[v]), nx);
				const cu_taps_t<IDX> ty = cu_taps_int<IDX, PAD>(o, (float)ws_offset(k, 1, dl[v]), ny);
				const cu_taps_t<IDX> tz = cu_taps_int<IDX, PAD>(s, (float)ws_offset(k, 2, dl[v]), nz);
				const float *b0[3], *b1[3];
#pragma unroll
				for (int c = 0; c < 3; c++)
					b0[c] = k.u[c] + tz.i0 * slice, b1[c] = k.u[c] + tz.i1 * slice;
				ws_interp3(b0, b1, tx, ty, tz, nx, val[v]);
			}
#pragma unroll
			for (int v = 0; v < 2; v++) {
				if (in[v])
#pragma unroll
					for (int c = 0; c < 3; c++)
						out.c[c][p0 + (j + 32 * v)] = (float)(dl[v][c] + (double)val[v][c]);
				cur[v] = nxt[v];
			}
		}
	}
}

/* Slices the ring must keep behind the current slab. */
static ffdp_status ws_reach(const ws_k *k, const ffdp_warp_step_opts *o, int64_t *R, ffdp_error *err)
{
	const double hint = o->max_norm; /* a bound on |d|, or 0: measure it */
	double reach = 0.0;
	if (k->state) { /* |step / max(1, max_norm) d| <= |step| */
		const double *cs = k->C + 3 * k->sa;
		reach = fabs(k->step) * sqrt(cs[0] * cs[0] + cs[1] * cs[1] + cs[2] * cs[2]) * (1.0 + 1e-9);
	} else if (hint > 0.0) {
		if (!isfinite(hint))
			return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: max_norm %g is not finite", hint);
		const double *cs = k->C + 3 * k->sa;
		reach = fabs(k->step) * hint * sqrt(cs[0] * cs[0] + cs[1] * cs[1] + cs[2] * cs[2]) * (1.0 + 1e-9);
	} else {
		const int64_t n = k->n[0] * k->n[1] * k->n[2];
		unsigned long long *d = (unsigned long long *)cu_scratch(sizeof(*d), 1, err, "warp_step reach");
		if (!d)
			return FFDP_ERR_NOMEM;
		const cu_shape sh = cu_flat_shape(n, cu_reduce_blocks());
		ws_reach_kernel<<<sh.grid, sh.block>>>(*k, n, d);
		ffdp_status s = cu_launched(err, "warp_step reach");
		unsigned long long bits = 0;
		if (!s)
			s = cu_fetch(&bits, d, sizeof(bits), err, "warp_step reach");
		cu_scratch_free(d);
		if (s)
			return s;
		reach = cu_bits_double(bits);
	}
	const double c = ceil(reach);
	*R = c < (double)(k->ns - 1) ? (int64_t)c : k->ns - 1; /* also for +inf */
	return FFDP_OK;
}

__global__ void ws_fault_kernel(const int *bad, ffdp_step_state *state)
{
	state->fault |= *bad ? 2 : 0;
}

/* The 32-bit integer frame of the slab3 and out3 kernels: 3-D, every axis
 * under 2^20 voxels (cu_taps_int), a slice under 2^31. */
static bool ws_frame(const ws_k *k)
{
	const int64_t lim = (int64_t)1 << 20;
	return k->nc == 3 && k->n[0] < lim && k->n[1] < lim && k->n[2] < lim && k->slice < ((int64_t)1 << 31);
}

static ffdp_status ws_compose_out(const ws_k *k, const ffdp_vec *out, ffdp_error *err)
{
	const ws_out o = {{out->c[0], out->c[1], out->c[2]}};
	/* two voxels a thread along x, WS_ZT planes a step */
	const cu_shape sh = cu_voxel_shape((k->n[0] + 1) / 2, k->no, (k->ns + WS_ZT - 1) / WS_ZT, 0);
	if (k->pad == FFDP_PAD_ZERO && k->w[0])
		ws_out3_kernel<FFDP_PAD_ZERO, true><<<sh.grid, sh.block>>>(*k, o);
	else if (k->pad == FFDP_PAD_ZERO)
		ws_out3_kernel<FFDP_PAD_ZERO, false><<<sh.grid, sh.block>>>(*k, o);
	else if (k->w[0])
		ws_out3_kernel<FFDP_PAD_BORDER, true><<<sh.grid, sh.block>>>(*k, o);
	else
		ws_out3_kernel<FFDP_PAD_BORDER, false><<<sh.grid, sh.block>>>(*k, o);
	return cu_launched(err, "warp_step");
}

static ffdp_status ws_compose(const ws_k *k, const ffdp_warp_step_opts *o, ffdp_error *err)
{
	int64_t R = 0;
	ffdp_status s = ws_reach(k, o, &R, err);
	if (s)
		return s;
	const int64_t S = cu_min64(cu_max64(1, (WS_SLAB_VOXELS + k->slice - 1) / k->slice), k->ns);
	ws_ring ring = {NULL, cu_min64(R + 2 * S, k->ns), 0, 0};
	const size_t slab_bytes = (size_t)(S * k->slice) * sizeof(float);
	int *bad = (int *)cu_scratch(sizeof(int), 1, err, "warp_step");
	if (!bad)
		return FFDP_ERR_NOMEM;
	ring.p = (float *)cu_scratch((size_t)(ring.cap * k->slice * k->nc) * sizeof(float), 0, err,
				     "warp_step ring");
	if (!ring.p) {
		cu_scratch_free(bad);
		return FFDP_ERR_NOMEM;
	}
	/* slab 0 into slots 0 .. S - 1 (S <= cap) */
	for (int c = 0; c < k->nc && !s; c++)
		s = cu_status(cudaMemcpyAsync(ring.p + (int64_t)c * ring.cap * k->slice, k->u[c], slab_bytes,
					      cudaMemcpyDeviceToDevice, 0),
			      err, "warp_step ring");
	const cu_shape sh = cu_voxel_shape(k->n[0], k->no, S, 0);
	const bool frame = ws_frame(k);
	const cu_shape sh2 = cu_voxel_shape((k->n[0] + 1) / 2, k->no, S, 0); /* two voxels a thread */
	for (int64_t z0 = 0; z0 < k->ns && !s; z0 += S) {
		/* the slices this launch touches, [z0 - R, z0 + 2S), span at most cap */
		ring.lo = z0 - R > 0 ? z0 - R : 0;
		ring.slot_lo = ring.lo % ring.cap;
		if (!frame)
			ws_slab_kernel<<<sh.grid, sh.block>>>(*k, ring, z0, S, R, bad);
		else if (k->pad == FFDP_PAD_ZERO && k->w[0])
			ws_slab3_kernel<FFDP_PAD_ZERO, true><<<sh2.grid, sh2.block>>>(*k, ring, z0, S, R, bad);
		else if (k->pad == FFDP_PAD_ZERO)
			ws_slab3_kernel<FFDP_PAD_ZERO, false><<<sh2.grid, sh2.block>>>(*k, ring, z0, S, R, bad);
		else if (k->w[0])
			ws_slab3_kernel<FFDP_PAD_BORDER, true><<<sh2.grid, sh2.block>>>(*k, ring, z0, S, R, bad);
		else
			ws_slab3_kernel<FFDP_PAD_BORDER, false><<<sh2.grid, sh2.block>>>(*k, ring, z0, S, R, bad);
		s = cu_launched(err, "warp_step");
	}
	int hbad = 0;
	if (!s && k->state) { /* recorded, not fetched */
		ws_fault_kernel<<<1, 1>>>(bad, (ffdp_step_state *)k->state);
		s = cu_launched(err, "warp_step state");
	} else if (!s) {
		s = cu_fetch(&hbad, bad, sizeof(int), err, "warp_step");
	}
	cu_scratch_free(ring.p);
	cu_scratch_free(bad);
	if (!s && hbad)
		s = ffdp_fail(err, FFDP_ERR_ARG,
			      "warp_step: max_norm %g is below the field's own; u was only partly updated",
			      o->max_norm);
	return s;
}

ffdp_status ffdp_cuda_warp_step(ffdp_backend *be, ffdp_vec u, ffdp_vec m, ffdp_vec v, const ffdp_warp_step_opts *o,
				ffdp_error *err)
{
	(void)be;
	adam_c a;
	ffdp_status s = adam_c_make(&o->adam, &a, err);
	if (s)
		return s;
	if (!isfinite(o->step))
		return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: step %g is not finite", o->step);
	if (o->compose && o->pad != FFDP_PAD_ZERO && o->pad != FFDP_PAD_BORDER)
		return ffdp_fail(err, FFDP_ERR_ARG, "warp_step: unknown padding %d", (int)o->pad);
	ws_k k;
	ws_k_make(&k, u, m, v, o, &a);
	const int64_t n = k.n[0] * k.n[1] * k.n[2];
	if (o->out && o->compose && ws_frame(&k))
		return ws_compose_out(&k, o->out, err);
	if (o->out) /* the step in place on a copy of u */
		return ffdp_warp_step_by_copy(be, u, m, v, o, err);
	if (!o->compose) {
		const cu_shape sh = cu_flat_shape(n, 0);
		ws_add_kernel<<<sh.grid, sh.block>>>(k, n);
		return cu_launched(err, "warp_step");
	}
	return ws_compose(&k, o, err);
}

/* ---- bf16 words to and from float planes ------------------------------------------- */

__global__ void moments_half_kernel(uint32_t *w, float *x, int64_t n, int half, int put)
{
	const uint32_t keep = half ? 0xffff0000u : 0x0000ffffu;
	const int sh = half ? 0 : 16;
	CU_FOR_FLAT(i, n)
	{
		if (put)
			w[i] = (w[i] & keep) | ffdp_bm_rne(x[i]) << sh;
		else
			x[i] = half ? ffdp_bm_v(w[i]) : ffdp_bm_m(w[i]);
	}
}

ffdp_status ffdp_cuda_moments_half(ffdp_backend *be, ffdp_img words, int half, ffdp_img x, int put, ffdp_error *err)
{
	(void)be;
	const int64_t n = x.n[0] * x.n[1] * x.n[2];
	const cu_shape sh = cu_flat_shape(n, 0);
	moments_half_kernel<<<sh.grid, sh.block>>>((uint32_t *)words.p, x.p, n, half, put);
	return cu_launched(err, put ? "moments_put" : "moments_get");
}
