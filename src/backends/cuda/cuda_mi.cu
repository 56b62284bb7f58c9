/* Mattes mutual information with Parzen windows on the GPU: exact forward
 * and backward, never a B x N array.
 *
 * Math (the same as cpu_mi.c and cpu_parzen.h).  A voxel of intensity x
 * sits at bin coordinate s = clamp((x - lo) B/(hi - lo), 0, B) (ds/dx = 0
 * where clamped; NaN -> 0); bin j is centred at j + 0.5.  Its window is W
 * consecutive bins from j0 with weights normalised to sum 1 over the bins
 * inside [0, B), and their derivatives dw/ds:
 *   Gaussian, sigma = 1/2 bin, W = 7: the bin holding s and 3 each side
 *     (dropped bins are >= 7 sigma away), k_{b+i} = exp(4 t i - 2 i^2) with
 *     t = s - c_b (the common factor exp(-2 t^2) cancels), dk/ds = 4 i k;
 *   cubic B-spline, W = 4: beta3(s - c_j), renormalised only where bins
 *     fall outside [0, B).
 * With v the mask (or 1): h(j,l) = sum_x v w_j(f) w_l(m), hf, hm its
 * marginals, V = denom or sum h,
 *     MI = (1/V) sum h log(h V/(hf hm))  (0 log 0 = 0),  loss = -MI,
 *     dL/dm(x) = -(scale/V) v (ds/dm) sum_l (dw_l/ds)(m) sum_j w_j(f) G(j,l),
 *     G = log(h V/(hf hm)) (0 where h = 0),
 * the marginal terms dropping out because the weights sum to 1; gf alike.
 *
 * Pass 1: each block adds its voxels' W x W outer products into a private
 * padded (B+6)^2 table in shared memory of 64-bit fixed-point counters
 * (quantum 2^-e, see mi_histogram; products rounded on the FP64 pipe, added
 * with 32-bit atomics and a carry), then adds the table into a global one.
 * Integer sums do not depend on order: histogram, loss and gradient are the
 * same bits on every run.  Lanes of a warp start their W x W loops at
 * different (row, column) offsets, so lanes with equal windows (flat
 * regions, background) never hit the same address at once.  Then one
 * block makes the marginals, MI and the padded G table, O(B^2), in
 * mi_table.h's order (the CPU's, on the host): without a mask nothing
 * crosses to the host inside the op, and with a->later the loss arrives
 * later.  Pass 2 recomputes each voxel's windows and derivatives and reads
 * G from shared memory.  Tables over MI_SMEM_MAX (B > ~100) stay in global
 * memory.  Extra device memory: the counters, the histogram and the G
 * table, O(B^2), independent of N.  Weights are float (relative error
 * ~1e-7), G and its sums double.
 *
 * Floor: the gradient needs the global histogram, so f and m are read
 * twice: 8 B/voxel (+4 mask) in pass 1, 8 (+4) read and 4 per gradient
 * written in pass 2.  Anchors count 12 B/voxel (read once, write once):
 * 0.068 ms at 256^3.  A mask costs one more read (its maximum sets the
 * quantum).  Pass 1 is bound by 49 (Gaussian) or 16 shared atomics per
 * voxel, pass 2 by 49 or 16 shared double loads and ~100 FP64 FMAs;
 * estimate 0.3-0.8 ms at 256^3 (Gaussian, both passes), 8x at 512^3.
 */
#include <math.h>
#include <string.h>

#include "../../ops/mi_table.h"
#include "cuda_lncc_mi.cuh"

enum {
	MI_P = 3,       /* margin bins each side of a padded table */
	MI_T = 256,     /* threads per block */
	MI_GW = 7,      /* Gaussian window */
	MI_BW = 4,      /* B-spline window */
};

#define MI_SMEM_MAX (96 << 10) /* largest table kept in shared memory */

typedef struct mi_map {
	double lo, scale, top; /* s = (x - lo) scale clamped to [0, top]; top = B */
} mi_map;

typedef struct mi_k {
	const float *f, *m, *w;
	float *gf, *gm;
	int64_t n;
	int bins, sp;           /* sp = B + 2 MI_P: padded row */
	int smem;               /* table in shared memory */
	mi_map fm, mm;
	double qscale;          /* pass 1: 2^e */
	unsigned long long *h;  /* pass 1: padded global histogram (integers) */
	const double *g;        /* pass 2: padded G table */
	double c;               /* pass 2: -scale; the factor is c / V */
	const double *V;        /* pass 2: V, on the device (mi_table_kernel's) */
} mi_k;

/* Bin coordinate and ds/dx of x. */
static __device__ __forceinline__ double mi_coord(const mi_map &p, float x, double *ds)
{
	double s = ((double)x - p.lo) * p.scale;
	*ds = s > 0.0 && s < p.top ? p.scale : 0.0;
	s = s > 0.0 ? s : 0.0; /* NaN -> 0 */
	return s < p.top ? s : p.top;
}

/* w = k / sum k, dw = (dk - w sum dk) / sum k. */
template <int W> static __device__ __forceinline__ void mi_normalise(float k[W], float dk[W])
{
	float sum = 0.0f, dsum = 0.0f;
#pragma unroll
	for (int a = 0; a < W; a++)
		sum += k[a], dsum += dk[a];
	const float inv = 1.0f / sum;
#pragma unroll
	for (int a = 0; a < W; a++) {
		k[a] *= inv;
		dk[a] = (dk[a] - k[a] * dsum) * inv;
	}
}

/* Window of x: j0, w and dw/ds (W = MI_GW or MI_BW by kernel); returns
 * ds/dx. */
template <int KER>
static __device__ __forceinline__ double mi_window(const mi_map &p, int bins, float x, int *j0, float *w, float *dw)
{
	double ds;
	const double s = mi_coord(p, x, &ds);
	if (KER == FFDP_MI_GAUSSIAN) {
		/* exp(-2 i^2), i = 1..3 */
		const float c1 = 0.1353352832366127f, c2 = 3.3546262790251185e-4f, c3 = 1.522997974471263e-8f;
		int b = (int)s;
		b = b < bins - 1 ? b : bins - 1;
		*j0 = b - 3;
		const float t = (float)(s - (double)b - 0.5); /* in [-1/2, 1/2] */
		const float up = expf(4.0f * t), dn = expf(-4.0f * t);
		w[3] = 1.0f;
		w[4] = up * c1, w[2] = dn * c1;
		w[5] = up * up * c2, w[1] = dn * dn * c2;
		w[6] = up * up * up * c3, w[0] = dn * dn * dn * c3;
#pragma unroll
		for (int a = 0; a < MI_GW; a++)
			dw[a] = 4.0f * (float)(a - 3) * w[a];
		if (*j0 < 0 || *j0 + MI_GW > bins)
#pragma unroll
			for (int a = 0; a < MI_GW; a++)
				if (*j0 + a < 0 || *j0 + a >= bins)
					w[a] = dw[a] = 0.0f;
		mi_normalise<MI_GW>(w, dw);
	} else {
		const float sixth = 1.0f / 6.0f;
		const double u = s + 0.5; /* >= 1/2: truncation is floor */
		const int i = (int)u;
		const float f = (float)(u - (double)i), g = 1.0f - f, f2 = f * f, f3 = f2 * f;
		*j0 = i - 2;
		/* beta3 at distances f+1, f, 1-f, 2-f from the centres of bins i-2 .. i+1 */
		w[0] = g * g * g * sixth;
		w[1] = (3.0f * f3 - 6.0f * f2 + 4.0f) * sixth;
		w[2] = (-3.0f * f3 + 3.0f * f2 + 3.0f * f + 1.0f) * sixth;
		w[3] = f3 * sixth;
		dw[0] = -0.5f * g * g;
		dw[1] = 0.5f * (3.0f * f2 - 4.0f * f);
		dw[2] = 0.5f * (-3.0f * f2 + 2.0f * f + 1.0f);
		dw[3] = 0.5f * f2;
		if (*j0 < 0 || *j0 + MI_BW > bins) {
#pragma unroll
			for (int a = 0; a < MI_BW; a++)
				if (*j0 + a < 0 || *j0 + a >= bins)
					w[a] = dw[a] = 0.0f;
			mi_normalise<MI_BW>(w, dw);
		}
	}
	return ds;
}

/* x[a] <- x[(a + s) % W], s in [0, W): a barrel shifter on registers. */
template <int W> static __device__ __forceinline__ void mi_rotate(float *x, int s)
{
#pragma unroll
	for (int bit = 1; bit < W; bit <<= 1) {
		float t[W];
#pragma unroll
		for (int a = 0; a < W; a++)
			t[a] = x[(a + bit) % W];
		if (s & bit)
#pragma unroll
			for (int a = 0; a < W; a++)
				x[a] = t[a];
	}
}

/* *p += v (a 64-bit two's complement counter) with 32-bit integer atomics,
 * native in shared memory: the low word, then the high word plus the carry
 * out of the low word, which only the thread whose addition overflowed it
 * sees.  Contributions are small, so the second atomic is rare. */
static __device__ __forceinline__ void mi_add(unsigned long long *p, int v)
{
	unsigned *w = (unsigned *)p; /* little endian: w[0] low, w[1] high */
	const unsigned lo = (unsigned)v, old = atomicAdd(w, lo);
	const unsigned up = (v < 0 ? 0xffffffffu : 0u) + (old + lo < old ? 1u : 0u);
	if (up)
		atomicAdd(w + 1, up);
}

/* Pass 1: block-private padded histogram, then one integer atomic per
 * non-zero bin into the global one.  Floor 8 B/voxel (+4 mask). */
template <int KER> static __global__ void __launch_bounds__(MI_T) mi_hist_kernel(mi_k k)
{
	enum { W = KER == FFDP_MI_GAUSSIAN ? MI_GW : MI_BW };
	extern __shared__ unsigned long long mi_hs[];
	unsigned long long *H = k.smem ? mi_hs : k.h;
	const int sp = k.sp, ntab = sp * sp, lane = threadIdx.x & 31;
	/* this lane's start: distinct (row, column) for up to W^2 lanes */
	const int ra = lane % W, rb = lane / W % W;

	if (k.smem) {
		for (int i = threadIdx.x; i < ntab; i += blockDim.x)
			mi_hs[i] = 0ull;
		__syncthreads();
	}
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < k.n; i += (int64_t)gridDim.x * blockDim.x) {
		const float v = k.w ? k.w[i] : 1.0f;
		if (v == 0.0f)
			continue;
		int jf, jm;
		float wf[W], wm[W], d[W];
		double df[W], dm[W];
		mi_window<KER>(k.fm, k.bins, k.f[i], &jf, wf, d);
		mi_window<KER>(k.mm, k.bins, k.m[i], &jm, wm, d);
		mi_rotate<W>(wf, ra);
		mi_rotate<W>(wm, rb);
#pragma unroll
		for (int b = 0; b < W; b++)
			df[b] = wf[b], dm[b] = (double)wm[b] * ((double)v * k.qscale);
#pragma unroll
		for (int a = 0; a < W; a++) {
			const int ar = a + ra < W ? a + ra : a + ra - W;
			unsigned long long *row = H + (int64_t)(jf + ar + MI_P) * sp + jm + MI_P;
#pragma unroll
			for (int b = 0; b < W; b++) {
				const int br = b + rb < W ? b + rb : b + rb - W;
				/* round(x) in the low word of x + 1.5 2^52, one rounding
				 * (|x| < 2^30): FP64 pipe, not the slower conversions */
				const double t = fma(df[a], dm[b], 6755399441055744.0);
				mi_add(row + br, __double2loint(t));
			}
		}
	}
	if (!k.smem)
		return;
	__syncthreads();
	for (int i = threadIdx.x; i < ntab; i += blockDim.x)
		if (mi_hs[i])
			atomicAdd(k.h + i, mi_hs[i]);
}

/* Pass 2: gf = c v (ds/df) sum_b wm_b sum_a dwf_a G_ab,
 *         gm = c v (ds/dm) sum_b dwm_b sum_a wf_a G_ab.
 * Floor 8 B/voxel read (+4 mask), 4 written per gradient.  Three blocks
 * per SM: 80 registers, 8 bytes spilled. */
template <int KER> static __global__ void __launch_bounds__(MI_T, 3) mi_grad_kernel(mi_k k)
{
	enum { W = KER == FFDP_MI_GAUSSIAN ? MI_GW : MI_BW };
	extern __shared__ double mi_gs[];
	const double *G = k.smem ? mi_gs : k.g;
	const int sp = k.sp;
	const double c = k.c / *k.V;

	if (k.smem) {
		for (int i = threadIdx.x; i < sp * sp; i += blockDim.x)
			mi_gs[i] = k.g[i];
		__syncthreads();
	}
	for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < k.n; i += (int64_t)gridDim.x * blockDim.x) {
		const float v = k.w ? k.w[i] : 1.0f;
		double sf = 0.0, sm = 0.0;
		if (v != 0.0f) {
			int jf, jm;
			float wf[W], dwf[W], wm[W], dwm[W];
			const double dsf = mi_window<KER>(k.fm, k.bins, k.f[i], &jf, wf, dwf);
			const double dsm = mi_window<KER>(k.mm, k.bins, k.m[i], &jm, wm, dwm);
			double cw[W], cd[W];
#pragma unroll
			for (int b = 0; b < W; b++)
				cw[b] = cd[b] = 0.0;
#pragma unroll
			for (int a = 0; a < W; a++) {
				const double *row = G + (int64_t)(jf + a + MI_P) * sp + jm + MI_P;
				const double wa = wf[a], da = dwf[a];
#pragma unroll
				for (int b = 0; b < W; b++) {
					const double g = row[b];
					cw[b] += wa * g, cd[b] += da * g;
				}
			}
#pragma unroll
			for (int b = 0; b < W; b++)
				sf += (double)wm[b] * cd[b], sm += (double)dwm[b] * cw[b];
			sf *= c * (double)v * dsf;
			sm *= c * (double)v * dsm;
		}
		if (k.gf)
			k.gf[i] = (float)sf;
		if (k.gm)
			k.gm[i] = (float)sm;
	}
}

/* The table (mi_table.h: its order of sums and per-bin values) in one
 * block, so that neither the histogram nor G crosses to the host.  raw
 * (or NULL: h holds the histogram already): pass 1's padded fixed-point
 * counters, quantum 2^-e.  h: B^2 + 2B doubles (the histogram, then hf,
 * hm) and 3B of scratch.  G: the padded table, written whole.  out: MI,
 * V, a status (0; 1 a negative bin, the first in out[3] as j B + l; 2 no
 * positive weight) and that bin. */
enum { MI_TT = 256 }; /* threads of the table's block */

static __global__ void __launch_bounds__(MI_TT) mi_table_kernel(const long long *raw, int e, int B, int sp,
								  double denom, double *h, double *G, double *out)
{
	double *hf = h + B * B, *hm = hf + B, *lg = hm + B, *row = lg + 2 * B;
	__shared__ int bad;
	__shared__ double V, lv;
	const int t = threadIdx.x, nb = B * B;
	if (t == 0)
		bad = nb;
	for (int i = t; i < nb; i += MI_TT)
		if (raw) {
			const int j = i / B, l = i - j * B;
			h[i] = ldexp((double)raw[(j + MI_P) * sp + l + MI_P], -e);
		}
	for (int i = t; i < sp * sp; i += MI_TT)
		G[i] = 0.0;
	__syncthreads();
	for (int q = t; q < 2 * B; q += MI_TT) {
		double a = 0.0;
		for (int r = 0; r < B; r++) {
			const double x = q < B ? h[q * B + r] : h[r * B + q - B];
			if (x < 0)
				atomicMin(&bad, q < B ? q * B + r : r * B + q - B);
			a += x;
		}
		hf[q] = a; /* hm follows hf */
	}
	__syncthreads();
	if (t == 0) {
		double v = 0.0;
		for (int j = 0; j < B; j++)
			v += hf[j];
		V = denom > 0 ? denom : v;
		lv = log(V);
	}
	for (int q = t; q < 2 * B; q += MI_TT)
		lg[q] = ffdp_mi_log0(hf[q]);
	__syncthreads();
	for (int j = t; j < B; j += MI_TT) {
		double a = 0.0;
		for (int l = 0; l < B; l++) {
			const double x = h[j * B + l];
			if (x > 0) {
				const double g = ffdp_mi_g(x, lv, lg[j], lg[B + l]);
				G[(j + MI_P) * sp + l + MI_P] = g;
				a += x * g;
			}
		}
		row[j] = a;
	}
	__syncthreads();
	if (t == 0) {
		double mi = 0.0;
		for (int j = 0; j < B; j++)
			mi += row[j];
		out[0] = mi / V, out[1] = V;
		out[2] = bad < nb ? 1.0 : !(V > 0) ? 2.0 : 0.0;
		out[3] = bad < nb ? (double)bad : 0.0;
	}
}

/* Blocks for a grid-stride pass: enough for every SM at the occupancy the
 * table allows. */
template <typename K> static int64_t mi_blocks(K kern, size_t smem, int64_t n)
{
	int bps = 0;
	if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, kern, MI_T, smem) != cudaSuccess || bps < 1)
		bps = 1;
	int64_t nb = (int64_t)lm_sm_count() * bps, need = (n + MI_T - 1) / MI_T;
	return nb < need ? nb : (need > 0 ? need : 1);
}

static ffdp_status mi_launch_hist(mi_k *k, ffdp_mi_kernel kern, size_t smem, ffdp_error *err)
{
	cudaError_t e;
	if (kern == FFDP_MI_GAUSSIAN) {
		e = cudaFuncSetAttribute(mi_hist_kernel<FFDP_MI_GAUSSIAN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					 (int)smem);
		if (e == cudaSuccess)
			mi_hist_kernel<FFDP_MI_GAUSSIAN><<<(unsigned)mi_blocks(mi_hist_kernel<FFDP_MI_GAUSSIAN>, smem, k->n),
							   MI_T, smem>>>(*k);
	} else {
		e = cudaFuncSetAttribute(mi_hist_kernel<FFDP_MI_BSPLINE3>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					 (int)smem);
		if (e == cudaSuccess)
			mi_hist_kernel<FFDP_MI_BSPLINE3><<<(unsigned)mi_blocks(mi_hist_kernel<FFDP_MI_BSPLINE3>, smem, k->n),
							   MI_T, smem>>>(*k);
	}
	return e != cudaSuccess ? cu_status(e, err, "mi histogram") : cu_launched(err, "mi histogram");
}

static ffdp_status mi_launch_grad(mi_k *k, ffdp_mi_kernel kern, size_t smem, ffdp_error *err)
{
	cudaError_t e;
	if (kern == FFDP_MI_GAUSSIAN) {
		e = cudaFuncSetAttribute(mi_grad_kernel<FFDP_MI_GAUSSIAN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					 (int)smem);
		if (e == cudaSuccess)
			mi_grad_kernel<FFDP_MI_GAUSSIAN><<<(unsigned)mi_blocks(mi_grad_kernel<FFDP_MI_GAUSSIAN>, smem, k->n),
							   MI_T, smem>>>(*k);
	} else {
		e = cudaFuncSetAttribute(mi_grad_kernel<FFDP_MI_BSPLINE3>, cudaFuncAttributeMaxDynamicSharedMemorySize,
					 (int)smem);
		if (e == cudaSuccess)
			mi_grad_kernel<FFDP_MI_BSPLINE3><<<(unsigned)mi_blocks(mi_grad_kernel<FFDP_MI_BSPLINE3>, smem, k->n),
							   MI_T, smem>>>(*k);
	}
	return e != cudaSuccess ? cu_status(e, err, "mi gradient") : cu_launched(err, "mi gradient");
}

static mi_map mi_map_make(double lo, double hi, int bins)
{
	mi_map p = {lo, (double)bins / (hi - lo), (double)bins};
	return p;
}

/* Pass 1 into k->h (padded fixed-point counters, device); *e: the
 * quantum's exponent.  The quantum 2^-e keeps each contribution below
 * max|v| 2^e < 2^30 (an int; the low word of a bin carries into the high
 * one only every ~100 adds of typical weight, so one atomic a bin nearly
 * always) and any bin's total n max|v| 2^e below 2^62: e = 29 (quantum
 * 2e-9 of a voxel's mass, finer than the float weights) for a 0/1 mask up
 * to 2^33 voxels, coarser beyond.  Without a mask max|v| = 1 and nothing
 * is read back; with one, its maximum is, unless the caller knows it
 * (ffdp_mi_opts.mask_max). */
static ffdp_status mi_histogram(mi_k *k, ffdp_mi_kernel kern, double mask_max, int *e, ffdp_error *err)
{
	const size_t tab = (size_t)k->sp * k->sp;
	double vmax = mask_max > 0 ? mask_max : 1.0;
	ffdp_status s;

	if (k->w && !(mask_max > 0) && (s = lm_reduce_volume(k->w, k->n, 1, &vmax, err, "mi mask")))
		return s;
	if (!isfinite(vmax))
		return ffdp_fail(err, FFDP_ERR_DATA, "mi: the mask holds a NaN or infinite weight");
	if (vmax == 0.0)
		vmax = 1.0; /* nothing to add: the table will report it */
	int e1, e2;
	frexp(vmax, &e1);                /* vmax < 2^e1 */
	frexp((double)k->n * vmax, &e2); /* n vmax < 2^e2 */
	*e = 30 - e1 < 62 - e2 ? 30 - e1 : 62 - e2;
	k->qscale = ldexp(1.0, *e);
	if ((s = cu_status(cudaMemsetAsync(k->h, 0, tab * sizeof(unsigned long long), 0), err, "mi histogram")))
		return s;
	const size_t smem = tab * sizeof(unsigned long long);
	k->smem = smem <= MI_SMEM_MAX && smem <= (size_t)lm_smem_optin();
	return mi_launch_hist(k, kern, k->smem ? smem : 0, err);
}

/* The table's status (out[2], out[3]) in mi_table.c's words. */
static ffdp_status mi_table_status(const double *out, int B, ffdp_error *err)
{
	const int bin = (int)out[3];
	return out[2] == 1.0 ? ffdp_mi_table_error(bin / B, bin % B, err)
	       : out[2] == 2.0 ? ffdp_mi_table_error(-1, 0, err)
			       : FFDP_OK;
}

/* Pass 1, the table and pass 2, all on the device.  What the host reads:
 * the mask's maximum (with a mask, unless o->mask_max gives it), the
 * histogram when o->hist asks for it, and MI, V and the table's status,
 * unless the loss is wanted later (a->later, no mask or one of known
 * maximum, no histogram in or out: then no table error can arise and
 * nothing is read). */
ffdp_status ffdp_cuda_mi(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o, ffdp_error *err)
{
	const int B = o->bins, sp = B + 2 * MI_P;
	const size_t tab = (size_t)sp * sp, nh = (size_t)B * B + 5 * (size_t)B;
	mi_k k;
	ffdp_status s = FFDP_OK;

	memset(&k, 0, sizeof(k));
	k.f = a->f.p, k.m = a->m.p, k.w = a->mask;
	k.gf = a->gf, k.gm = a->gm;
	k.n = a->f.n[0] * a->f.n[1] * a->f.n[2];
	k.bins = B, k.sp = sp;
	k.fm = mi_map_make(o->f_lo, o->f_hi, B);
	k.mm = mi_map_make(o->m_lo, o->m_hi, B);

	/* one scratch: counters, h (+ marginals, scratch), G, out */
	const size_t bytes = tab * sizeof(unsigned long long) + (nh + tab + 4) * sizeof(double);
	char *scr = (char *)cu_scratch(bytes, 0, err, "mi");
	if (!scr)
		return FFDP_ERR_NOMEM;
	k.h = (unsigned long long *)scr;
	double *h = (double *)(scr + tab * sizeof(unsigned long long)), *G = h + nh, *out = G + tab;
	int e = 0;
	if (o->hist_in)
		s = cu_status(cudaMemcpy(h, o->hist_in, (size_t)B * B * sizeof(double), cudaMemcpyHostToDevice), err,
			      "mi histogram in");
	else
		s = mi_histogram(&k, o->kernel, o->mask_max, &e, err);
	if (!s) {
		mi_table_kernel<<<1, MI_TT>>>(o->hist_in ? NULL : (const long long *)k.h, e, B, sp, a->denom, h, G,
					      out);
		s = cu_launched(err, "mi table");
	}
	if (!s && o->hist)
		s = cu_fetch(o->hist, h, ((size_t)B * B + 2 * (size_t)B) * sizeof(double), err, "mi histogram");
	const bool later = a->later && (!k.w || o->mask_max > 0) && !o->hist_in && !o->hist && k.n > 0;
	if (!s && later) {
		s = ffdp_cuda_scalar_later(be, out, -1.0, 1.0, a->later, err);
	} else if (!s) {
		double r[4];
		s = cu_fetch(r, out, sizeof(r), err, "mi");
		if (!s)
			s = mi_table_status(r, B, err);
		if (!s) {
			*a->loss = -r[0]; /* (later's value, made ready by ffdp_op_mi) */
			if (a->sum)
				*a->sum = -r[0] * r[1]; /* keeps loss = sum / V; ranks combine hist, not sum */
		}
	}
	if (!s && (a->gf || a->gm)) {
		const size_t smem = tab * sizeof(double);
		k.g = G;
		k.c = -a->scale;
		k.V = out + 1;
		k.smem = smem <= MI_SMEM_MAX && smem <= (size_t)lm_smem_optin();
		s = mi_launch_grad(&k, o->kernel, k.smem ? smem : 0, err);
	}
	cu_scratch_free(scr);
	return s;
}
