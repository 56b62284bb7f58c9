/* The fused sampler and its backward pass (ops.h, "fused sampler").
 *
 * One thread per output voxel, x fastest (a warp reads 32 consecutive u
 * values and writes 32 consecutive outputs).  The sample point
 *     p = W [lo + j; 1] + B u(j)
 * is recomputed from the voxel index in double, never stored; the backward
 * pass recomputes it too.  A 2-D problem (moving and output n[2] == 1)
 * ignores the z row and column of W and B.
 *
 * IO floors (float32, bytes per output voxel; the moving image is counted
 * once per output voxel, which it is at equal sizes):
 *   forward            M 4 + out 4 = 8, + 4 with accumulate, + 12 with u
 *   backward to u      gout 4 + u 12 + M 4 + gu 12 = 32 (+12 accumulate_gu)
 *   backward to W      gout 4 + M 4 (+12 u), 12 doubles per block
 *   backward to M      gout 4 + 8 float atomics into gM
 *
 * gW: each thread accumulates its 12 products in double registers over a
 * grid-stride loop, the block reduces them and stores one partial per entry
 * (cu_sums: added in block order, the same bits on every run); the sums are
 * added to the caller's gW.  gM alone uses float atomics (its order varies
 * between runs); registration never asks for it.
 */
#include "cuda_common.cuh"

typedef struct samp_k {
	const float *M;
	const uint16_t *M16; /* the moving image as unorm16 (M NULL), or NULL */
	int64_t mn[3];  /* the whole moving volume (clamping, padding) */
	int64_t mlo[3]; /* the box's origin in it */
	int64_t bx, bxy; /* the box's strides */
	double W[12], B[9];
	long long Wq[12]; /* W in 32.32 fixed point, when samp_fixed_ok */
	/* W_dev (device memory), or NULL: W and Wq above.  The kernels built
	 * with WD read its Wq (fast) or W (general) */
	const ffdp_linear_w *wd;
	float Bf[9];      /* B rounded to float, for the fast kernels */
	const float *u[3];
	int uc; /* components of u; 0 without u */
	int64_t lo[3];
	int64_t n[3]; /* output box */
	int pad;
	int flat_z; /* a 2-D problem (moving and output): z row and column of W, B ignored */
	int64_t gate[2]; /* z gate (ops.h), or gate[1] <= gate[0] */
} samp_k;

static void samp_k_make(const ffdp_sample_args *a, const int64_t box[3], samp_k *k)
{
	const bool sub = a->m_full[0] || a->m_full[1] || a->m_full[2];
	k->M = a->moving.p;
	k->M16 = a->moving16;
	k->bx = a->moving.n[0], k->bxy = a->moving.n[0] * a->moving.n[1];
	for (int r = 0; r < 3; r++) {
		k->mn[r] = sub ? a->m_full[r] : a->moving.n[r];
		k->mlo[r] = sub ? a->m_lo[r] : 0;
		k->lo[r] = a->lo[r];
		k->n[r] = box[r];
		k->u[r] = NULL;
	}
	k->gate[0] = a->gate[0], k->gate[1] = a->gate[1];
	/* with W_dev the host knows no W: the fast kernels read Wq there */
	k->wd = a->W_dev;
	for (int r = 0; r < 12; r++) {
		k->W[r] = a->W_dev ? 0.0 : a->W[r];
		k->Wq[r] = fabs(k->W[r]) < 0x1p30 ? llrint(ldexp(k->W[r], 32)) : 0;
	}
	for (int r = 0; r < 9; r++)
		k->B[r] = a->B[r], k->Bf[r] = (float)a->B[r];
	k->uc = a->u ? a->u->ncomp : 0;
	for (int c = 0; c < k->uc; c++)
		k->u[c] = a->u->c[c];
	k->pad = a->pad;
	k->flat_z = k->mn[2] == 1 && box[2] == 1;
}

/* The moving image's voxels as TM (float, or uint16_t for unorm16): each
 * kernel is built for both, the launch picks by k.M16. */
template <typename TM> __device__ __forceinline__ const TM *samp_src(const samp_k &k);
template <> __device__ __forceinline__ const float *samp_src<float>(const samp_k &k)
{
	return k.M;
}
template <> __device__ __forceinline__ const uint16_t *samp_src<uint16_t>(const samp_k &k)
{
	return k.M16;
}

/* Entry i of W: the kernel's (WD false) or W_dev's. */
template <bool WD> __device__ __forceinline__ double samp_w(const samp_k &k, int i)
{
	return WD ? __ldg(k.wd->W + i) : k.W[i];
}

/* gi: the global fixed index of voxel (x, y, z); p: the moving index. */
template <bool WD = false>
__device__ __forceinline__ void samp_point(const samp_k &k, int64_t x, int64_t y, int64_t z, int64_t i,
					   double gi[3], double p[3])
{
	gi[0] = (double)(k.lo[0] + x);
	gi[1] = (double)(k.lo[1] + y);
	gi[2] = k.flat_z ? 0.0 : (double)(k.lo[2] + z);
#pragma unroll
	for (int r = 0; r < 3; r++)
		p[r] = samp_w<WD>(k, 4 * r) * gi[0] + samp_w<WD>(k, 4 * r + 1) * gi[1] + samp_w<WD>(k, 4 * r + 2) * gi[2] +
		       samp_w<WD>(k, 4 * r + 3);
#pragma unroll
	for (int c = 0; c < 3; c++) {
		if (c >= k.uc)
			break;
		const double uv = k.u[c][i];
#pragma unroll
		for (int r = 0; r < 3; r++)
			p[r] += k.B[3 * r + c] * uv;
	}
}

/* The fixed-point frame of the fast kernels: the affine part of the point,
 * W [lo + j; 1], summed exactly in 32.32 fixed point, so that it depends on
 * the global index alone (any box or shard gets the same bits) and no
 * conversion instruction is spent on it (the double form took a dozen a
 * voxel, at a quarter of the FMA rate).  W rounds to 2^-33, so a point is
 * within 3 * 2^-33 * index of the double form's (3.5e-7 voxel at index
 * 1000); its fraction is truncated to float's 23 bits.  samp_fixed_ok
 * bounds the sums: |p| < 2^30. */
static bool samp_fixed_ok(const samp_k &k)
{
	for (int r = 0; r < 3; r++) {
		if (k.lo[r] < 0 || k.lo[r] + k.n[r] > ((int64_t)1 << 20))
			return false;
		/* W_dev's W: checked by the step that wrote it (w->fault) */
		if (!k.wd && (fabs(k.W[4 * r]) + fabs(k.W[4 * r + 1]) + fabs(k.W[4 * r + 2]) > 256.0 ||
			      !(fabs(k.W[4 * r + 3]) <= 0x1p28)))
			return false;
	}
	return true;
}

/* Entry i of the fixed-point W: the kernel's (WD false) or W_dev's. */
template <bool WD> __device__ __forceinline__ long long samp_wq(const samp_k &k, int i)
{
	return WD ? (long long)__ldg((const long long *)k.wd->Wq + i) : k.Wq[i];
}

/* The affine point of box voxel (x, y, z) in fixed point, per axis. */
template <bool WD = false>
__device__ __forceinline__ void samp_fixed_start(const samp_k &k, int64_t x, int64_t y, int64_t z, long long q[3])
{
	const long long gx = k.lo[0] + x, gy = k.lo[1] + y, gz = k.lo[2] + z;
#pragma unroll
	for (int r = 0; r < 3; r++)
		q[r] = samp_wq<WD>(k, 4 * r) * gx + samp_wq<WD>(k, 4 * r + 1) * gy + samp_wq<WD>(k, 4 * r + 2) * gz +
		       samp_wq<WD>(k, 4 * r + 3);
}

/* A fixed-point coordinate as base, its integer part, and l, its fraction
 * in [0, 1): the low word's top 23 bits as the mantissa of a float in
 * [1, 2), minus 1. */
__device__ __forceinline__ void samp_fixed_split(long long q, int32_t &base, float &l)
{
	base = (int32_t)(q >> 32);
	l = __uint_as_float(0x3f800000u | ((uint32_t)q >> 9)) - 1.0f;
}

/* Inside the z gate (or no gate): the point's first z corner (nearest
 * plane for NEAREST), clamped into the volume as padding clamps: the CPU's
 * rule (cpu_sample.c), so a ring of moving slabs samples each point once. */
__device__ __forceinline__ bool samp_gated_in(const samp_k &k, const double p[3], int interp)
{
	if (k.gate[1] <= k.gate[0])
		return true;
	const bool border = k.pad == FFDP_PAD_BORDER;
	const double n = (double)k.mn[2], lo = border ? 0.0 : -2.0, hi = border ? n - 1.0 : n + 1.0;
	double q = p[2] > lo ? p[2] : lo; /* NaN -> lo */
	q = q < hi ? q : hi;
	int64_t z = (int64_t)floor(interp == FFDP_INTERP_NEAREST ? q + 0.5 : q);
	z = z > 0 ? z : 0;
	z = z < k.mn[2] - 1 ? z : k.mn[2] - 1;
	return z >= k.gate[0] && z < k.gate[1];
}

__device__ __forceinline__ void samp_taps(const samp_k &k, const double p[3], cu_taps t[3])
{
	t[0] = cu_taps_make(p[0], 0, k.mn[0], k.pad);
	t[1] = cu_taps_make(p[1], 0, k.mn[1], k.pad);
	t[2] = k.flat_z ? cu_taps_flat() : cu_taps_make(p[2], 0, k.mn[2], k.pad);
	/* whole-volume corners into the box: only the integer indices move */
#pragma unroll
	for (int r = 0; r < 3; r++) {
		if (r == 2 && k.flat_z)
			break;
		t[r].i0 -= k.mlo[r];
		t[r].i1 -= k.mlo[r];
	}
}

/* Nearest index along one axis (the CPU's clamps, NaN to the low end);
 * -1 when outside under zero padding. */
__device__ __forceinline__ int64_t samp_nearest_axis(double p, int64_t n, int pad)
{
	const bool border = pad == FFDP_PAD_BORDER;
	const double lo = border ? 0.0 : -2.0, hi = border ? (double)(n - 1) : (double)(n + 1);
	double q = p > lo ? p : lo;
	q = q < hi ? q : hi;
	const int64_t i = (int64_t)cu_nearest(q);
	return i >= 0 && i < n ? i : -1; /* border: always inside */
}

template <typename TM> __device__ __forceinline__ float samp_nearest(const samp_k &k, const double p[3])
{
	const int64_t ix = samp_nearest_axis(p[0], k.mn[0], k.pad);
	const int64_t iy = samp_nearest_axis(p[1], k.mn[1], k.pad);
	const int64_t iz = k.flat_z ? 0 : samp_nearest_axis(p[2], k.mn[2], k.pad);
	if (ix < 0 || iy < 0 || iz < 0)
		return 0.0f;
	return cu_val(samp_src<TM>(k)[(iz - k.mlo[2]) * k.bxy + (iy - k.mlo[1]) * k.bx + ix - k.mlo[0]]);
}

/* LABEL: the corner label with the largest summed trilinear weight; ties
 * go to the smallest label.  Corners of weight 0 (outside under zero
 * padding, or opposite a knot the point lies on) are not candidates; with
 * none left the result is 0.  Labels are equal when their floats are.
 * Float weights summed in the CPU's order, so ties break alike. */
template <typename TM> __device__ __forceinline__ float samp_label(const samp_k &k, const cu_taps t[3])
{
	float lab[8], w[8];
#pragma unroll
	for (int c = 0; c < 8; c++) {
		const int64_t ix = c & 1 ? t[0].i1 : t[0].i0, iy = c & 2 ? t[1].i1 : t[1].i0,
			      iz = c & 4 ? t[2].i1 : t[2].i0;
		w[c] = (c & 4 ? t[2].w1 : t[2].w0) * ((c & 2 ? t[1].w1 : t[1].w0) * (c & 1 ? t[0].w1 : t[0].w0));
		lab[c] = w[c] > 0.0f ? cu_val(samp_src<TM>(k)[iz * k.bxy + iy * k.bx + ix]) : 0.0f;
	}
	float best = 0.0f, bw = 0.0f;
#pragma unroll
	for (int a = 0; a < 8; a++) {
		if (!(w[a] > 0.0f))
			continue;
		float s = 0.0f;
#pragma unroll
		for (int b = 0; b < 8; b++)
			s += lab[b] == lab[a] ? w[b] : 0.0f; /* absent corners have w = 0 */
		if (s > bw || (s == bw && lab[a] < best))
			bw = s, best = lab[a];
	}
	return best;
}

template <int INTERP, typename TM, bool WD = false>
__global__ void __launch_bounds__(CU_THREADS, INTERP == FFDP_INTERP_LABEL ? 2 : 4) sample_fwd_kernel(samp_k k, float *out, int accumulate)
{
	CU_FOR_VOXELS(k.n[0], k.n[1], k.n[2], x, y, z)
	{
		const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
		double gi[3], p[3];
		samp_point<WD>(k, x, y, z, i, gi, p);
		if (!samp_gated_in(k, p, INTERP))
			continue; /* another slab of the ring samples it */
		float v;
		if (INTERP == FFDP_INTERP_NEAREST) {
			v = samp_nearest<TM>(k, p);
		} else {
			cu_taps t[3];
			samp_taps(k, p, t);
			v = INTERP == FFDP_INTERP_LABEL ? samp_label<TM>(k, t)
							: cu_trilinear(samp_src<TM>(k), k.bx, k.bxy, t[0], t[1], t[2]);
		}
		out[i] = accumulate ? out[i] + v : v;
	}
}

/* The fast kernels: LINEAR in 3-D, the padding fixed at compile time, the
 * box's offsets in 32 bits (boxes under 2^31 voxels), the point in the
 * fixed-point frame (samp_fixed_start; samp_fixed_ok) and its fraction
 * plus B u and the taps in float (cu_taps_int): the generic kernels'
 * points to ~1e-7 of a voxel.  A thread takes SL_NV voxels 32 apart along
 * x (their gathers in flight together) on zt consecutive planes, stepping
 * the fixed point exactly along z, SL_MINB blocks an SM.  H100, 256^3 with
 * u: 0.35 ms (one voxel a thread) -> 0.26 (two) -> 0.168 (fixed point, zt
 * planes; docs/perf.md, "Sampler, round 5"). */
enum { SL_NV = 2, SL_MINB = 4, SG_MINB = 4 };

/* The fast kernels' taps of the voxel at fixed-point point q with
 * displacement uv (k.uc == 3) or none (k.uc == 0). */
template <int PAD>
__device__ __forceinline__ void samp_taps_int(const samp_k &k, const long long q[3],
					      const float uv[3], cu_taps_t<int32_t> t[3])
{
	int32_t base[3];
	float l[3];
#pragma unroll
	for (int r = 0; r < 3; r++)
		samp_fixed_split(q[r], base[r], l[r]);
	if (k.uc) {
		const float *B = k.Bf;
		l[0] += B[0] * uv[0] + B[1] * uv[1] + B[2] * uv[2];
		l[1] += B[3] * uv[0] + B[4] * uv[1] + B[5] * uv[2];
		l[2] += B[6] * uv[0] + B[7] * uv[1] + B[8] * uv[2];
	}
#pragma unroll
	for (int r = 0; r < 3; r++)
		t[r] = cu_taps_int<int32_t, PAD>(base[r], l[r], (int32_t)k.mn[r]);
}

/* u at voxel i of the box (zeros without u). */
__device__ __forceinline__ void samp_u_at(const samp_k &k, int64_t i, float uv[3])
{
#pragma unroll
	for (int c = 0; c < 3; c++)
		uv[c] = k.uc ? k.u[c][i] : 0.0f;
}

/* The z gate on the taps' first z corner (clamped into the volume: the
 * gate's rule), so a ring slab holds what it reads; then the whole-volume
 * corners into the box (only the integer indices move): the four row
 * offsets for cu_trilinear_rows.  PLAIN: no gate, the whole volume. */
template <bool PLAIN> __device__ __forceinline__ bool samp_rows_int(const samp_k &k, cu_taps_t<int32_t> t[3], int32_t o[4])
{
	if (!PLAIN && k.gate[1] > k.gate[0] && !(t[2].i0 >= k.gate[0] && t[2].i0 < k.gate[1]))
		return false; /* another slab of the ring samples it */
	const int32_t bx = (int32_t)k.bx, bxy = (int32_t)k.bxy;
	const int32_t mx = PLAIN ? 0 : (int32_t)k.mlo[0], my = PLAIN ? 0 : (int32_t)k.mlo[1],
		      mz = PLAIN ? 0 : (int32_t)k.mlo[2];
	t[0].i0 -= mx, t[0].i1 -= mx;
	const int32_t z0 = (t[2].i0 - mz) * bxy, z1 = (t[2].i1 - mz) * bxy, y0 = (t[1].i0 - my) * bx,
		      y1 = (t[1].i1 - my) * bx;
	o[0] = z0 + y0, o[1] = z0 + y1, o[2] = z1 + y0, o[3] = z1 + y1;
	return true;
}

template <int PAD, typename TM, bool PLAIN, bool WD = false>
__global__ void __launch_bounds__(CU_THREADS, SL_MINB) sample_lin3_kernel(samp_k k, float *out, int accumulate, int zt)
{
	const TM *__restrict__ M = samp_src<TM>(k);
	const int64_t xb = (int64_t)blockIdx.x * blockDim.x * SL_NV + threadIdx.x;
	const int64_t y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y;
	if (y >= k.n[1])
		return;
	const int64_t nxy = k.n[0] * k.n[1];
	for (int64_t zb = (int64_t)blockIdx.z * zt; zb < k.n[2]; zb += (int64_t)gridDim.z * zt) {
		long long q[SL_NV][3];
#pragma unroll
		for (int e = 0; e < SL_NV; e++)
			samp_fixed_start<WD>(k, xb + 32 * e, y, zb, q[e]);
		int64_t i = (zb * k.n[1] + y) * k.n[0] + xb;
		const int64_t ze = zb + zt < k.n[2] ? zb + zt : k.n[2];
		for (int64_t z = zb; z < ze; z++, i += nxy) {
			float uv[SL_NV][3];
#pragma unroll
			for (int e = 0; e < SL_NV; e++)
				if (xb + 32 * e < k.n[0])
					samp_u_at(k, i + 32 * e, uv[e]);
#pragma unroll
			for (int e = 0; e < SL_NV; e++) {
				if (xb + 32 * e >= k.n[0])
					break;
				cu_taps_t<int32_t> t[3];
				int32_t o[4];
				samp_taps_int<PAD>(k, q[e], uv[e], t);
				if (!samp_rows_int<PLAIN>(k, t, o))
					continue;
				const float v = cu_trilinear_rows(M, o[0], o[1], o[2], o[3], t[0], t[1], t[2]);
				out[i + 32 * e] = !PLAIN && accumulate ? out[i + 32 * e] + v : v;
			}
#pragma unroll
			for (int e = 0; e < SL_NV; e++)
#pragma unroll
				for (int r = 0; r < 3; r++)
					q[e][r] += samp_wq<WD>(k, 4 * r + 2);
		}
	}
}

/* The fast kernels' grid: 32 SL_NV x 8 voxels a block in x and y, zt
 * planes a thread (the per-thread set-up spread over zt voxels). */
static dim3 samp_fast_grid(const samp_k &k, int zt)
{
	return dim3((unsigned)((k.n[0] + 32 * SL_NV - 1) / (32 * SL_NV)), (unsigned)((k.n[1] + CU_BY - 1) / CU_BY),
		    (unsigned)cu_min64((k.n[2] + zt - 1) / zt, 65535));
}

/* Planes a thread: 4, or 8 for boxes of 2^27 voxels or more (H100, with u:
 * 256^3 0.168 ms at 4, 0.170 at 8; 512^3 1.355 and 1.302 ms). */
static int samp_zt(const samp_k &k)
{
	return k.n[0] * k.n[1] * k.n[2] >= ((int64_t)1 << 27) ? 8 : 4;
}

/* No gate, no accumulation, the whole moving volume: registration's call. */
static bool samp_plain(const samp_k &k, int accumulate)
{
	return !accumulate && !(k.gate[1] > k.gate[0]) && !k.mlo[0] && !k.mlo[1] && !k.mlo[2];
}

/* The fast kernels apply: 3-D, 32-bit box offsets, the fixed-point frame,
 * whole-volume axes under 2^20 voxels, u of 3 components.  (cu_taps_int
 * clamps B u to 2^21 voxels: a point whose displacement alone is larger
 * is sampled as if it were 2^21 voxels away, outside the volume unless
 * the affine part had put it further than 2^20 voxels out.) */
static bool samp_fast(const samp_k &k, int64_t box_nz)
{
	return !k.flat_z && k.n[1] <= 65535 * CU_BY && k.bxy * box_nz < ((int64_t)1 << 31) && k.mn[0] < (1 << 20) &&
	       k.mn[1] < (1 << 20) && k.mn[2] < (1 << 20) && (!k.uc || k.uc == 3) && samp_fixed_ok(k);
}

/* W_dev's calls (ops.c: plain, linear, no u): the fast kernels read its Wq
 * (the step that wrote it checked W against their frame: w->fault), the
 * general ones (2-D, large boxes) its W. */
static ffdp_status samp_wdev_ok(const samp_k &k, ffdp_error *err)
{
	if (k.wd && (!samp_plain(k, 0) || k.uc))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample: W_dev is for plain linear sampling without u");
	return FFDP_OK;
}

static ffdp_status check_common(const ffdp_sample_args *a, const int64_t box[3], ffdp_error *err)
{
	if (a->pad != FFDP_PAD_ZERO && a->pad != FFDP_PAD_BORDER)
		return ffdp_fail(err, FFDP_ERR_ARG, "sample: unknown padding %d", (int)a->pad);
	if (a->u && (a->u->n[0] != box[0] || a->u->n[1] != box[1] || a->u->n[2] != box[2]))
		return ffdp_fail(err, FFDP_ERR_ARG, "sample: u and the output box differ in size");
	return FFDP_OK;
}

template <typename TM> static void sample_launch(const samp_k &k, const ffdp_sample_args *a, const cu_shape &sh, bool fast)
{
	const int zt = samp_zt(k);
	const bool plain = samp_plain(k, a->accumulate);
	const dim3 g2 = samp_fast_grid(k, zt), b2(CU_BX, CU_BY, 1);
	switch (a->interp) {
	case FFDP_INTERP_LINEAR:
		if (k.wd && fast && k.pad == FFDP_PAD_ZERO) /* (samp_wdev_ok: plain) */
			sample_lin3_kernel<FFDP_PAD_ZERO, TM, true, true><<<g2, b2>>>(k, a->out.p, 0, zt);
		else if (k.wd && fast)
			sample_lin3_kernel<FFDP_PAD_BORDER, TM, true, true><<<g2, b2>>>(k, a->out.p, 0, zt);
		else if (k.wd)
			sample_fwd_kernel<FFDP_INTERP_LINEAR, TM, true><<<sh.grid, sh.block>>>(k, a->out.p, 0);
		else if (fast && k.pad == FFDP_PAD_ZERO && plain)
			sample_lin3_kernel<FFDP_PAD_ZERO, TM, true><<<g2, b2>>>(k, a->out.p, a->accumulate, zt);
		else if (fast && k.pad == FFDP_PAD_ZERO)
			sample_lin3_kernel<FFDP_PAD_ZERO, TM, false><<<g2, b2>>>(k, a->out.p, a->accumulate, zt);
		else if (fast && plain)
			sample_lin3_kernel<FFDP_PAD_BORDER, TM, true><<<g2, b2>>>(k, a->out.p, a->accumulate, zt);
		else if (fast)
			sample_lin3_kernel<FFDP_PAD_BORDER, TM, false><<<g2, b2>>>(k, a->out.p, a->accumulate, zt);
		else
			sample_fwd_kernel<FFDP_INTERP_LINEAR, TM><<<sh.grid, sh.block>>>(k, a->out.p, a->accumulate);
		break;
	case FFDP_INTERP_NEAREST:
		sample_fwd_kernel<FFDP_INTERP_NEAREST, TM><<<sh.grid, sh.block>>>(k, a->out.p, a->accumulate);
		break;
	default:
		sample_fwd_kernel<FFDP_INTERP_LABEL, TM><<<sh.grid, sh.block>>>(k, a->out.p, a->accumulate);
		break;
	}
}

ffdp_status ffdp_cuda_sample(ffdp_backend *be, const ffdp_sample_args *a, ffdp_error *err)
{
	(void)be;
	ffdp_status s = check_common(a, a->out.n, err);
	if (s)
		return s;
	samp_k k;
	samp_k_make(a, a->out.n, &k);
	const cu_shape sh = cu_voxel_shape(k.n[0], k.n[1], k.n[2], 0);
	const bool fast = samp_fast(k, a->moving.n[2]);
	if (a->interp != FFDP_INTERP_LINEAR && a->interp != FFDP_INTERP_NEAREST && a->interp != FFDP_INTERP_LABEL)
		return ffdp_fail(err, FFDP_ERR_ARG, "sample: unknown interpolation %d", (int)a->interp);
	if ((s = samp_wdev_ok(k, err)))
		return s;
	if (k.M16)
		sample_launch<uint16_t>(k, a, sh, fast);
	else
		sample_launch<float>(k, a, sh, fast);
	return cu_launched(err, "sample");
}

/* ---- backward --------------------------------------------------------------- */

typedef struct sgrad_k {
	const float *gout;
	float *gu[3];
	int acc_gu;
	double *gW; /* device, 12 entries, or NULL */
	float *gM;  /* or NULL */
} sgrad_k;

/* gM += gout * weight at the (up to 8) corners of non-zero weight. */
__device__ __forceinline__ void samp_scatter(const samp_k &k, const cu_taps t[3], float go, float *gM)
{
#pragma unroll
	for (int c = 0; c < 8; c++) {
		const float w = (c & 4 ? t[2].w1 : t[2].w0) * (c & 2 ? t[1].w1 : t[1].w0) * (c & 1 ? t[0].w1 : t[0].w0);
		if (w == 0.0f)
			continue;
		const int64_t ix = c & 1 ? t[0].i1 : t[0].i0, iy = c & 2 ? t[1].i1 : t[1].i0,
			      iz = c & 4 ? t[2].i1 : t[2].i0;
		atomicAdd(gM + iz * k.bxy + iy * k.bx + ix, w * go);
	}
}

/* GW: reduce the affine gradient (12 double accumulators per thread; a
 * separate instance keeps the plain gu / gM pass lean). */
template <bool GW, typename TM, bool WD = false>
__global__ void __launch_bounds__(CU_THREADS, GW ? 2 : 3) sample_grad_kernel(samp_k k, sgrad_k g)
{
	double aw[12];
#pragma unroll
	for (int e = 0; e < 12; e++)
		aw[e] = 0.0;
	CU_FOR_VOXELS(k.n[0], k.n[1], k.n[2], x, y, z)
	{
		const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
		double gi[3], p[3];
		samp_point<WD>(k, x, y, z, i, gi, p);
		if (!samp_gated_in(k, p, FFDP_INTERP_LINEAR))
			continue;
		cu_taps t[3];
		samp_taps(k, p, t);
		const float go = g.gout[i];
		float dv[3];
		cu_trilinear_grad(samp_src<TM>(k), k.bx, k.bxy, t[0], t[1], t[2], dv);
		const double gq[3] = {(double)go * dv[0], (double)go * dv[1], (double)go * dv[2]};
		if (g.gu[0]) {
#pragma unroll
			for (int c = 0; c < 3; c++) {
				if (c >= k.uc)
					break;
				const double s = k.B[c] * gq[0] + k.B[3 + c] * gq[1] + k.B[6 + c] * gq[2];
				g.gu[c][i] = g.acc_gu ? (float)((double)g.gu[c][i] + s) : (float)s;
			}
		}
		if (GW) {
#pragma unroll
			for (int r = 0; r < 3; r++) {
				aw[4 * r] += gq[r] * gi[0];
				aw[4 * r + 1] += gq[r] * gi[1];
				aw[4 * r + 2] += gq[r] * gi[2];
				aw[4 * r + 3] += gq[r];
			}
		}
		if (g.gM && go != 0.0f)
			samp_scatter(k, t, go, g.gM);
	}
	if (GW)
		cu_block_sum_store<12>(aw, g.gW);
}

/* The registration's backward (3-D, u, gu only: no gW, no gM) in the fast
 * kernels' frame (samp_taps_int): two voxels a thread, 32 apart along x,
 * with both voxels' loads (u, gout, the corner gathers) before either's
 * stores, so that their chains overlap (the warp step's treatment,
 * docs/perf.md), four blocks an SM: 256^3 fwd+bwd 0.777 -> 0.635 ms.
 * B^T gq in double, as sample_grad_kernel. */
template <int PAD, typename TM, bool PLAIN>
__global__ void __launch_bounds__(CU_THREADS, SG_MINB) sample_gu2_kernel(samp_k k, sgrad_k g, int zt)
{
	const TM *__restrict__ M = samp_src<TM>(k);
	const int64_t xb = (int64_t)blockIdx.x * blockDim.x * 2 + threadIdx.x;
	const int64_t y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y;
	if (y >= k.n[1])
		return;
	for (int64_t zb = (int64_t)blockIdx.z * zt; zb < k.n[2]; zb += (int64_t)gridDim.z * zt) {
		long long q[2][3];
#pragma unroll
		for (int v = 0; v < 2; v++)
			samp_fixed_start(k, xb + 32 * v, y, zb, q[v]);
		int64_t i0 = (zb * k.n[1] + y) * k.n[0] + xb;
		const int64_t ze = zb + zt < k.n[2] ? zb + zt : k.n[2];
		for (int64_t z = zb; z < ze; z++, i0 += k.n[0] * k.n[1]) {
			bool in[2];
			double sv[2][3];
#pragma unroll
			for (int v = 0; v < 2; v++) {
				const int64_t i = i0 + 32 * v;
				in[v] = xb + 32 * v < k.n[0];
				if (!in[v])
					continue;
				cu_taps_t<int32_t> t[3];
				int32_t o[4];
				float uv[3];
				const float go = g.gout[i];
				samp_u_at(k, i, uv);
				samp_taps_int<PAD>(k, q[v], uv, t);
				in[v] = samp_rows_int<PLAIN>(k, t, o);
				if (!in[v])
					continue;
				if (go == 0.0f) { /* no gather: the loss is flat here (background) */
#pragma unroll
					for (int c = 0; c < 3; c++)
						sv[v][c] = g.acc_gu ? (double)g.gu[c][i] : 0.0;
					continue;
				}
				float dv[3];
				cu_trilinear_grad_rows(M, o[0], o[1], o[2], o[3], t[0], t[1], t[2], dv);
				const double gq[3] = {(double)go * dv[0], (double)go * dv[1], (double)go * dv[2]};
#pragma unroll
				for (int c = 0; c < 3; c++) {
					sv[v][c] = k.B[c] * gq[0] + k.B[3 + c] * gq[1] + k.B[6 + c] * gq[2];
					if (g.acc_gu)
						sv[v][c] += (double)g.gu[c][i];
				}
			}
#pragma unroll
			for (int v = 0; v < 2; v++) {
				if (in[v])
#pragma unroll
					for (int c = 0; c < 3; c++)
						g.gu[c][i0 + 32 * v] = (float)sv[v][c];
#pragma unroll
				for (int r = 0; r < 3; r++)
					q[v][r] += k.Wq[4 * r + 2];
			}
		}
	}
}

/* The affine stage's backward (3-D, gW alone) in the fast kernels' frame:
 * the fixed-point point stepped along z, integer taps, two voxels a thread
 * 32 apart along x, zt planes a step; each thread's 12 products in double
 * and the block's sums stored as sample_grad_kernel's (its order of terms
 * differs: the last bits of gW).  Every thread reaches the block sum. */
template <int PAD, typename TM, bool PLAIN, bool WD = false>
__global__ void __launch_bounds__(CU_THREADS, SG_MINB) sample_gw3_kernel(samp_k k, sgrad_k g, int zt)
{
	const TM *__restrict__ M = samp_src<TM>(k);
	const int64_t xb = (int64_t)blockIdx.x * blockDim.x * 2 + threadIdx.x;
	const int64_t y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y;
	double aw[12];
#pragma unroll
	for (int e = 0; e < 12; e++)
		aw[e] = 0.0;
	const double gy = (double)(k.lo[1] + y);
	for (int64_t zb = (int64_t)blockIdx.z * zt; y < k.n[1] && zb < k.n[2]; zb += (int64_t)gridDim.z * zt) {
		long long q[2][3];
#pragma unroll
		for (int v = 0; v < 2; v++)
			samp_fixed_start<WD>(k, xb + 32 * v, y, zb, q[v]);
		int64_t i0 = (zb * k.n[1] + y) * k.n[0] + xb;
		const int64_t ze = zb + zt < k.n[2] ? zb + zt : k.n[2];
		for (int64_t z = zb; z < ze; z++, i0 += k.n[0] * k.n[1]) {
			const double gz = (double)(k.lo[2] + z);
#pragma unroll
			for (int v = 0; v < 2; v++) {
				const int64_t i = i0 + 32 * v;
				if (xb + 32 * v >= k.n[0])
					continue;
				const float go = g.gout[i];
				if (go == 0.0f) /* adds +-0: skipped (the loss is flat here) */
					continue;
				cu_taps_t<int32_t> t[3];
				int32_t o[4];
				float uv[3];
				samp_u_at(k, i, uv);
				samp_taps_int<PAD>(k, q[v], uv, t);
				if (!samp_rows_int<PLAIN>(k, t, o))
					continue;
				float dv[3];
				cu_trilinear_grad_rows(M, o[0], o[1], o[2], o[3], t[0], t[1], t[2], dv);
				const double gx = (double)(k.lo[0] + xb + 32 * v);
#pragma unroll
				for (int r = 0; r < 3; r++) {
					const double gq = (double)go * dv[r];
					aw[4 * r] += gq * gx;
					aw[4 * r + 1] += gq * gy;
					aw[4 * r + 2] += gq * gz;
					aw[4 * r + 3] += gq;
				}
			}
#pragma unroll
			for (int v = 0; v < 2; v++)
#pragma unroll
				for (int r = 0; r < 3; r++)
					q[v][r] += samp_wq<WD>(k, 4 * r + 2);
		}
	}
	cu_block_sum_store<12>(aw, g.gW);
}

/* Its grid: the fast kernels' in x and y, z layers capped so that the
 * partial sums stay a few per SM slot (each thread strides over z). */
static dim3 samp_gw3_grid(const samp_k &k, int zt)
{
	dim3 gr = samp_fast_grid(k, zt);
	const int64_t layer = (int64_t)gr.x * gr.y, cap = (8 * cu_reduce_blocks() + layer - 1) / layer;
	gr.z = (unsigned)cu_max64(1, cu_min64(gr.z, cap));
	return gr;
}

/* The fast backward kernels by padding and plainness (one dispatch for
 * both): L::go<PAD, TM, PLAIN> launches L's kernel. */
struct samp_gu2_l {
	template <int PAD, typename TM, bool PLAIN>
	static void go(dim3 gr, const samp_k &k, const sgrad_k &g, int zt)
	{
		sample_gu2_kernel<PAD, TM, PLAIN><<<gr, dim3(CU_BX, CU_BY, 1)>>>(k, g, zt);
	}
};

struct samp_gw3_l {
	template <int PAD, typename TM, bool PLAIN>
	static void go(dim3 gr, const samp_k &k, const sgrad_k &g, int zt)
	{
		if (PLAIN && k.wd)
			sample_gw3_kernel<PAD, TM, true, true><<<gr, dim3(CU_BX, CU_BY, 1)>>>(k, g, zt);
		else
			sample_gw3_kernel<PAD, TM, PLAIN><<<gr, dim3(CU_BX, CU_BY, 1)>>>(k, g, zt);
	}
};

template <class L, typename TM> static void samp_grad_fast_launch(const samp_k &k, const sgrad_k &g, dim3 gr, int zt)
{
	const bool plain = samp_plain(k, 0);
	if (k.pad == FFDP_PAD_ZERO && plain)
		L::template go<FFDP_PAD_ZERO, TM, true>(gr, k, g, zt);
	else if (k.pad == FFDP_PAD_ZERO)
		L::template go<FFDP_PAD_ZERO, TM, false>(gr, k, g, zt);
	else if (plain)
		L::template go<FFDP_PAD_BORDER, TM, true>(gr, k, g, zt);
	else
		L::template go<FFDP_PAD_BORDER, TM, false>(gr, k, g, zt);
}

ffdp_status ffdp_cuda_sample_grad(ffdp_backend *be, const ffdp_sample_grad_args *a, ffdp_error *err)
{
	(void)be;
	const ffdp_sample_args *f = a->fwd;
	ffdp_status s = check_common(f, a->gout.n, err);
	if (s)
		return s;
	if (a->gu && a->gu->ncomp != f->u->ncomp)
		return ffdp_fail(err, FFDP_ERR_ARG, "sample_grad: gu and u differ in components");
	if (!a->gu && !a->gW && !a->gW_dev && !a->gM)
		return FFDP_OK;
	samp_k k;
	samp_k_make(f, a->gout.n, &k);
	const bool want_gw = a->gW || a->gW_dev;
	sgrad_k g = {a->gout.p, {NULL, NULL, NULL}, a->accumulate_gu, NULL, a->gM ? a->gM->p : NULL};
	if (a->gu)
		for (int c = 0; c < a->gu->ncomp; c++)
			g.gu[c] = a->gu->c[c];
	/* a capped grid when reducing gW: one stored partial per block and entry */
	const cu_shape sh = cu_voxel_shape(k.n[0], k.n[1], k.n[2], want_gw ? cu_reduce_blocks() : 0);
	const bool fast = samp_fast(k, f->moving.n[2]);
	const bool gw3 = want_gw && !g.gM && !g.gu[0] && fast; /* the affine stage's call */
	if ((s = samp_wdev_ok(k, err)))
		return s;
	if (k.wd && (!want_gw || g.gM || g.gu[0]))
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "sample_grad: W_dev gives gW alone");
	const int zt = samp_zt(k);
	const dim3 grw = gw3 ? samp_gw3_grid(k, zt) : sh.grid;
	cu_sums gw = {NULL, 0, 0};
	if (want_gw && !(g.gW = cu_sums_alloc(&gw, 12, grw, err, "sample_grad")))
		return FFDP_ERR_NOMEM;
	const bool two = !want_gw && !g.gM && g.gu[0] && k.uc == 3 && fast;
	if (gw3 && k.M16)
		samp_grad_fast_launch<samp_gw3_l, uint16_t>(k, g, grw, zt);
	else if (gw3)
		samp_grad_fast_launch<samp_gw3_l, float>(k, g, grw, zt);
	else if (two && k.M16)
		samp_grad_fast_launch<samp_gu2_l, uint16_t>(k, g, samp_fast_grid(k, zt), zt);
	else if (two)
		samp_grad_fast_launch<samp_gu2_l, float>(k, g, samp_fast_grid(k, zt), zt);
	else if (k.wd && k.M16) /* gW alone, the general kernel */
		sample_grad_kernel<true, uint16_t, true><<<sh.grid, sh.block>>>(k, g);
	else if (k.wd)
		sample_grad_kernel<true, float, true><<<sh.grid, sh.block>>>(k, g);
	else if (want_gw && k.M16)
		sample_grad_kernel<true, uint16_t><<<sh.grid, sh.block>>>(k, g);
	else if (want_gw)
		sample_grad_kernel<true, float><<<sh.grid, sh.block>>>(k, g);
	else if (k.M16)
		sample_grad_kernel<false, uint16_t><<<sh.grid, sh.block>>>(k, g);
	else
		sample_grad_kernel<false, float><<<sh.grid, sh.block>>>(k, g);
	s = cu_launched(err, "sample_grad");
	if (!s && a->gW_dev) { /* stays on the device: no wait */
		s = cu_sums_reduce(&gw, err, "sample_grad gW");
		if (!s)
			s = cu_status(cudaMemcpyAsync(a->gW_dev, cu_sums_total(&gw), 12 * sizeof(double),
						      cudaMemcpyDeviceToDevice, 0),
				      err, "sample_grad gW");
	} else if (!s && a->gW) {
		double h[12];
		s = cu_sums_fetch(&gw, h, err, "sample_grad gW");
		for (int e = 0; e < 12 && !s; e++)
			a->gW[e] += h[e];
	}
	cu_sums_free(&gw);
	return s;
}
