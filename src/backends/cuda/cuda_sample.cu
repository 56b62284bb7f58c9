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
	for (int r = 0; r < 12; r++)
		k->W[r] = a->W[r];
	for (int r = 0; r < 9; r++)
		k->B[r] = a->B[r];
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

/* gi: the global fixed index of voxel (x, y, z); p: the moving index. */
__device__ __forceinline__ void samp_point(const samp_k &k, int64_t x, int64_t y, int64_t z, int64_t i,
					   double gi[3], double p[3])
{
	gi[0] = (double)(k.lo[0] + x);
	gi[1] = (double)(k.lo[1] + y);
	gi[2] = k.flat_z ? 0.0 : (double)(k.lo[2] + z);
#pragma unroll
	for (int r = 0; r < 3; r++)
		p[r] = k.W[4 * r] * gi[0] + k.W[4 * r + 1] * gi[1] + k.W[4 * r + 2] * gi[2] + k.W[4 * r + 3];
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

template <int INTERP, typename TM>
__global__ void __launch_bounds__(CU_THREADS, INTERP == FFDP_INTERP_LABEL ? 2 : 4) sample_fwd_kernel(samp_k k, float *out, int accumulate)
{
	CU_FOR_VOXELS(k.n[0], k.n[1], k.n[2], x, y, z)
	{
		const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
		double gi[3], p[3];
		samp_point(k, x, y, z, i, gi, p);
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

/* LINEAR in 3-D, with the padding fixed at compile time and the
 * box's offsets in 32 bits (boxes under 2^31 voxels).  The affine part of
 * the point is formed in double as samp_point forms it and split into an
 * integer and a fraction; the fraction plus B u (a few voxels) and the taps
 * are float (cu_taps_frame): positions to float rounding of that sum, the
 * same values as sample_fwd_kernel to ~1e-7 of a voxel, and far fewer
 * double and 64-bit instructions (the generic kernel is instruction-bound:
 * Nsight, docs/perf.md).  Points further than 2^22 voxels out (or NaN)
 * take the double taps. */
/* A thread samples SL_NV voxels 32 apart along x (their gathers in flight
 * together), SL_MINB blocks an SM: 256^3 with u 0.35 -> 0.26 ms on one
 * H100 (docs/perf.md, "Sampler, round 4"). */
enum { SL_NV = 2, SL_MINB = 4, SG_MINB = 4 };

template <int PAD, typename TM>
__global__ void __launch_bounds__(CU_THREADS, SL_MINB) sample_lin3_kernel(samp_k k, float *out, int accumulate)
{
	typedef int32_t IDX;
	const TM *__restrict__ M = samp_src<TM>(k);
	const IDX bx = (IDX)k.bx, bxy = (IDX)k.bxy;
	const IDX mx = (IDX)k.mlo[0], my = (IDX)k.mlo[1], mz = (IDX)k.mlo[2];
	const IDX nx = (IDX)k.mn[0], ny = (IDX)k.mn[1], nz = (IDX)k.mn[2];
	float B[9];
#pragma unroll
	for (int e = 0; e < 9; e++)
		B[e] = (float)k.B[e];
	for (int64_t z = blockIdx.z; z < k.n[2]; z += gridDim.z)
	for (int64_t y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; y < k.n[1]; y += (int64_t)gridDim.y * blockDim.y)
	for (int64_t xb = (int64_t)blockIdx.x * blockDim.x * SL_NV + threadIdx.x; xb < k.n[0];
	     xb += (int64_t)gridDim.x * blockDim.x * SL_NV)
#pragma unroll
	for (int e = 0; e < SL_NV; e++) {
		const int64_t x = xb + 32 * e;
		if (x >= k.n[0])
			break;
		const int64_t i = (z * k.n[1] + y) * k.n[0] + x;
		const double g0 = (double)(k.lo[0] + x), g1 = (double)(k.lo[1] + y), g2 = (double)(k.lo[2] + z);
		const double p0 = k.W[0] * g0 + k.W[1] * g1 + k.W[2] * g2 + k.W[3];
		const double p1 = k.W[4] * g0 + k.W[5] * g1 + k.W[6] * g2 + k.W[7];
		const double p2 = k.W[8] * g0 + k.W[9] * g1 + k.W[10] * g2 + k.W[11];
		cu_taps_t<IDX> tx, ty, tz;
		if (fabs(p0) < 4.2e6 && fabs(p1) < 4.2e6 && fabs(p2) < 4.2e6) {
			const double f0 = floor(p0), f1 = floor(p1), f2 = floor(p2);
			float l0 = (float)(p0 - f0), l1 = (float)(p1 - f1), l2 = (float)(p2 - f2);
			if (k.uc) {
				const float a = k.u[0][i], b = k.u[1][i], c = k.u[2][i];
				l0 += B[0] * a + B[1] * b + B[2] * c;
				l1 += B[3] * a + B[4] * b + B[5] * c;
				l2 += B[6] * a + B[7] * b + B[8] * c;
			}
			tx = cu_taps_frame<IDX, PAD>((IDX)f0, l0, nx);
			ty = cu_taps_frame<IDX, PAD>((IDX)f1, l1, ny);
			tz = cu_taps_frame<IDX, PAD>((IDX)f2, l2, nz);
		} else {
			double gi[3], p[3];
			samp_point(k, x, y, z, i, gi, p);
			tx = cu_taps_fast<IDX, PAD>(p[0], 0, k.mn[0]);
			ty = cu_taps_fast<IDX, PAD>(p[1], 0, k.mn[1]);
			tz = cu_taps_fast<IDX, PAD>(p[2], 0, k.mn[2]);
		}
		/* the z gate on these taps' first z corner (clamped into the
		 * volume: the gate's rule), so a ring slab holds what it reads */
		if (k.gate[1] > k.gate[0] && !(tz.i0 >= k.gate[0] && tz.i0 < k.gate[1]))
			continue; /* another slab of the ring samples it */
		/* whole-volume corners into the box: only the integer indices move */
		tx.i0 -= mx, tx.i1 -= mx;
		const IDX z0 = (tz.i0 - mz) * bxy, z1 = (tz.i1 - mz) * bxy, y0 = (ty.i0 - my) * bx, y1 = (ty.i1 - my) * bx;
		const float v = cu_trilinear_rows(M, z0 + y0, z0 + y1, z1 + y0, z1 + y1, tx, ty, tz);
		out[i] = accumulate ? out[i] + v : v;
	}
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
	const cu_shape sh2 = cu_voxel_shape((k.n[0] + SL_NV - 1) / SL_NV, k.n[1], k.n[2], 0);
	switch (a->interp) {
	case FFDP_INTERP_LINEAR:
		if (fast && k.pad == FFDP_PAD_ZERO)
			sample_lin3_kernel<FFDP_PAD_ZERO, TM><<<sh2.grid, sh2.block>>>(k, a->out.p, a->accumulate);
		else if (fast)
			sample_lin3_kernel<FFDP_PAD_BORDER, TM><<<sh2.grid, sh2.block>>>(k, a->out.p, a->accumulate);
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
	/* the float frame: 32-bit box offsets, whole-volume sizes below 2^22
	 * (exact clamps) */
	const bool fast = !k.flat_z && k.bxy * a->moving.n[2] < ((int64_t)1 << 31) && k.mn[0] < (1 << 22) &&
			  k.mn[1] < (1 << 22) && k.mn[2] < (1 << 22) && (!k.uc || k.uc == 3);
	if (a->interp != FFDP_INTERP_LINEAR && a->interp != FFDP_INTERP_NEAREST && a->interp != FFDP_INTERP_LABEL)
		return ffdp_fail(err, FFDP_ERR_ARG, "sample: unknown interpolation %d", (int)a->interp);
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
template <bool GW, typename TM>
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
		samp_point(k, x, y, z, i, gi, p);
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

/* The registration's backward (3-D, u, gu only: no gW, no gM): two voxels
 * a thread, 32 apart along x, with both voxels' loads (u, gout, the corner
 * gathers) before either's stores, so that their chains overlap (the warp
 * step's treatment, docs/perf.md), four blocks an SM: 256^3 fwd+bwd 0.777
 * -> 0.635 ms.  Per voxel the arithmetic of sample_grad_kernel, so the
 * same bits. */
template <typename TM> __global__ void __launch_bounds__(CU_THREADS, SG_MINB) sample_gu2_kernel(samp_k k, sgrad_k g)
{
	for (int64_t z = blockIdx.z; z < k.n[2]; z += gridDim.z)
	for (int64_t y = (int64_t)blockIdx.y * blockDim.y + threadIdx.y; y < k.n[1]; y += (int64_t)gridDim.y * blockDim.y)
	for (int64_t xb = (int64_t)blockIdx.x * blockDim.x * 2 + threadIdx.x; xb < k.n[0];
	     xb += (int64_t)gridDim.x * blockDim.x * 2) {
		bool in[2];
		double sv[2][3];
#pragma unroll
		for (int v = 0; v < 2; v++) {
			const int64_t x = xb + 32 * v, i = (z * k.n[1] + y) * k.n[0] + x;
			double gi[3], p[3];
			in[v] = x < k.n[0];
			if (!in[v])
				continue;
			samp_point(k, x, y, z, i, gi, p);
			in[v] = samp_gated_in(k, p, FFDP_INTERP_LINEAR);
			if (!in[v])
				continue;
			cu_taps t[3];
			samp_taps(k, p, t);
			const float go = g.gout[i];
			float dv[3];
			cu_trilinear_grad(samp_src<TM>(k), k.bx, k.bxy, t[0], t[1], t[2], dv);
			const double gq[3] = {(double)go * dv[0], (double)go * dv[1], (double)go * dv[2]};
#pragma unroll
			for (int c = 0; c < 3; c++) {
				sv[v][c] = k.B[c] * gq[0] + k.B[3 + c] * gq[1] + k.B[6 + c] * gq[2];
				if (g.acc_gu)
					sv[v][c] += (double)g.gu[c][i];
			}
		}
#pragma unroll
		for (int v = 0; v < 2; v++)
			if (in[v]) {
				const int64_t i = (z * k.n[1] + y) * k.n[0] + xb + 32 * v;
#pragma unroll
				for (int c = 0; c < 3; c++)
					g.gu[c][i] = (float)sv[v][c];
			}
	}
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
	if (!a->gu && !a->gW && !a->gM)
		return FFDP_OK;
	samp_k k;
	samp_k_make(f, a->gout.n, &k);
	sgrad_k g = {a->gout.p, {NULL, NULL, NULL}, a->accumulate_gu, NULL, a->gM ? a->gM->p : NULL};
	if (a->gu)
		for (int c = 0; c < a->gu->ncomp; c++)
			g.gu[c] = a->gu->c[c];
	/* a capped grid when reducing gW: one stored partial per block and entry */
	const cu_shape sh = cu_voxel_shape(k.n[0], k.n[1], k.n[2], a->gW ? cu_reduce_blocks() : 0);
	cu_sums gw = {NULL, 0, 0};
	if (a->gW && !(g.gW = cu_sums_alloc(&gw, 12, sh.grid, err, "sample_grad")))
		return FFDP_ERR_NOMEM;
	const bool two = !a->gW && !g.gM && g.gu[0] && k.uc == 3 && !k.flat_z;
	const cu_shape sh2 = cu_voxel_shape((k.n[0] + 1) / 2, k.n[1], k.n[2], 0); /* two voxels a thread */
	if (two && k.M16)
		sample_gu2_kernel<uint16_t><<<sh2.grid, sh2.block>>>(k, g);
	else if (two)
		sample_gu2_kernel<float><<<sh2.grid, sh2.block>>>(k, g);
	else if (a->gW && k.M16)
		sample_grad_kernel<true, uint16_t><<<sh.grid, sh.block>>>(k, g);
	else if (a->gW)
		sample_grad_kernel<true, float><<<sh.grid, sh.block>>>(k, g);
	else if (k.M16)
		sample_grad_kernel<false, uint16_t><<<sh.grid, sh.block>>>(k, g);
	else
		sample_grad_kernel<false, float><<<sh.grid, sh.block>>>(k, g);
	s = cu_launched(err, "sample_grad");
	if (!s && a->gW) {
		double h[12];
		s = cu_sums_fetch(&gw, h, err, "sample_grad gW");
		for (int e = 0; e < 12 && !s; e++)
			a->gW[e] += h[e];
	}
	cu_sums_free(&gw);
	return s;
}
