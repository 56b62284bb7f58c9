/* Local normalised cross-correlation on the GPU: one fused kernel.
 * Windows k = 3, 5, 7, 9 run the same scheme with the radius fixed at
 * compile time (cuda_lncc_fixed.cuh, 2.7x faster at k = 7); the general
 * kernel below takes any window and the cases whose shared memory does not
 * fit the fixed one (k = 9 with both gradients).
 *
 * Math (the same as cpu_lncc.c).  W(x) is the k^3 box centred at x clipped
 * to the image (k^2 in 2-D), n(x) its voxel count, Sf, Sm, Sff, Smm, Sfm
 * the window sums of f, m, f^2, m^2, f m:
 *     cov = Sfm - Sf Sm/n,  vf = Sff - Sf^2/n,  vm = Smm - Sm^2/n (both >= 0),
 *     D = vf vm + eps,  cc = cov^2/D,  L = -(1/denom) sum_x w(x) cc(x).
 * With a = 2 cov/D, b = 2 cc vf/D, b' = 2 cc vm/D, for y in W(x):
 *     dcc(x)/dm(y) = a f(y) - b m(y) + c,    c  = b mu_m - a mu_f
 *     dcc(x)/df(y) = a m(y) - b' f(y) + c',  c' = b' mu_f - a mu_m
 * (d cov/dm(y) = f(y) - mu_f, d vm/dm(y) = 2 (m(y) - mu_m)).  y is in W(x)
 * iff x is in W(y), so dL/dm(y) = -(scale/denom) [f(y) A(y) - m(y) B(y) + C(y)]
 * with A, B, C the same clipped box sums of w a, w b, w c.  exact_grad = 0
 * keeps only x = y (ANTs).  The mask weights the loss only.
 *
 * Kernel.  A block owns a 32 x OY column tile of the output and a chunk of
 * ZC planes, and marches along z.  With hc = r for the exact gradient (0
 * otherwise) it computes statistics on the tile grown by hc (the
 * "coefficient region", CX x CY) from inputs on the tile grown by hc + r
 * (IX x IY).  Per coefficient plane pc:
 *   A  Z += P(pc + r) - P(pc - r - 1) on each input column: Z is the
 *      z-window sum of the five products; P is recomputed from f and m
 *      (the plane leaving the window was read 2r + 1 steps ago: L1/L2), so
 *      no plane ring is kept.
 *   B  running sums along x (Z -> X), C running sums along y and the
 *      coefficients (a, b, c[, b', c'] times w), and the loss on the tile.
 *   D, E  (exact) running sums of the coefficients along x, then y into a
 *      ring of 2r + 2 planes, and per output column a running z sum
 *      A += Y(pc) - Y(pc - 2r - 1) that gives the gradient of plane pc - r.
 * Running sums make the work per voxel independent of k; only the halo
 * (2 hc + 2r per axis in x, y; 2 hc + 2r + 1 steps per chunk in z) grows.
 * Nothing is stored per voxel: f and m are read (once from DRAM, the halo
 * and the leaving plane again from L2), the gradient written once.  Extra
 * device memory: one double per block.
 *
 * Precision.  Products and all sums are double, on data shifted by one
 * voxel of the block's own tile (statistics and gradient are shift
 * invariant), so variances of intensities ~1000 keep their digits.  The
 * coefficients are rounded to float once before their box sums (relative
 * error ~1e-7 of terms that cancel by at most the ratio of local mean
 * offset to local spread); every running sum is double.
 *
 * Floor: read f and m (8 B/voxel, + 4 for a mask), write each requested
 * gradient (4 B): 12 B/voxel for the usual call, 0.068 ms at 256^3 on an
 * H100 (2.96 TB/s).  The kernel is compute and shared-memory bound instead:
 * all sums are FP64 (halo factor ~2.4 on the columns and ~1.6 on the
 * coefficients at k = 7 and a 32 x 16 tile, ~180 FP64 operations per
 * voxel): estimate 0.3-0.7 ms at 256^3, FP64 and shared-memory bound.
 */
#include <string.h>

#include "cuda_lncc_mi.cuh"

enum {
	LN_OX = 32,  /* tile width: one warp of output columns */
	LN_T = 512,  /* most threads per block: one per output column, 32 OY */
	LN_NQ = 5,   /* window sums */
};

typedef struct lncc_k {
	const float *f, *m, *w;
	const uint16_t *f16;  /* f as unorm16 (f NULL), or NULL */
	float *gm, *gf;
	double *part;         /* out: one partial sum of w cc per block */
	const uint8_t *flat;  /* fixed-window kernels: blocks that see no non-zero f, or NULL */
	int64_t nx, ny, nz;
	int64_t ntx, ntiles;  /* tiles along x; tiles per z chunk */
	int64_t zc;           /* planes per chunk */
	int64_t oz0, oz1;     /* planes that get loss and gradients (shards) */
	double eps, gscale;   /* gscale = -scale / denom */
	int r, hc, nq, exact; /* nq: coefficients (0: loss only, 3: gm, 5: gm and gf) */
	int oy;               /* tile height */
	int ix, iy, cx, cy;   /* input and coefficient region sizes */
	int o_r2, o_coef, o_ring, o_red; /* shared memory offsets in bytes (Z at 0) */
} lncc_k;

/* f at voxel v: floats, or unorm16 (F16, a compile-time choice: a
 * runtime branch on every load cost the float kernels 10 %).  The fixed-
 * window kernel reads f as raw bits instead (lf_fraw). */
template <bool F16> static __device__ __forceinline__ float ln_f(const lncc_k &k, int64_t v)
{
	return F16 ? cu_val(__ldg(k.f16 + v)) : k.f[v];
}

/* Voxels of the window along one axis (clipped to [0, n)). */
static __device__ __forceinline__ int64_t ln_count(int64_t i, int64_t n, int r)
{
	const int64_t lo = i - r < 0 ? 0 : i - r, hi = i + r > n - 1 ? n - 1 : i + r;
	return hi - lo + 1;
}

/* Items of a segmented running sum: nlines lines of nout outputs split
 * into segments so that the block has about one item per thread. */
static __device__ __forceinline__ void ln_segments(int nlines, int nout, int *nseg, int *len)
{
	int s = (int)blockDim.x / nlines;
	s = s < 1 ? 1 : (s > nout ? nout : s);
	*len = (nout + s - 1) / s;
	*nseg = (nout + *len - 1) / *len;
}

/* Stage A: Z += P(pa) - P(ps) on each input column in the image (planes
 * outside [0, nz) are skipped).  Column i always belongs to the same
 * thread, so successive calls need no barrier between them. */
template <bool F16>
static __device__ void ln_columns(const lncc_k &k, double *z, int64_t xs, int64_t ys, int64_t pa, int64_t ps,
				  double cf, double cm)
{
	const bool add = pa >= 0 && pa < k.nz, sub = ps >= 0 && ps < k.nz;
	const int n = k.ix * k.iy;
	const int64_t np = k.nx * k.ny;

	if (!add && !sub)
		return;
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		const int iy = i / k.ix, ix = i - iy * k.ix;
		const int64_t gx = xs + ix, gy = ys + iy;
		if (gx < 0 || gx >= k.nx || gy < 0 || gy >= k.ny)
			continue; /* outside the image: Z stays 0 */
		const int64_t col = gy * k.nx + gx;
		double d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0, d4 = 0.0;
		if (add) {
			const double a = (double)ln_f<F16>(k, pa * np + col) - cf, b = (double)k.m[pa * np + col] - cm;
			d0 += a, d1 += b, d2 += a * a, d3 += b * b, d4 += a * b;
		}
		if (sub) {
			const double a = (double)ln_f<F16>(k, ps * np + col) - cf, b = (double)k.m[ps * np + col] - cm;
			d0 -= a, d1 -= b, d2 -= a * a, d3 -= b * b, d4 -= a * b;
		}
		z[i] += d0, z[n + i] += d1, z[2 * n + i] += d2, z[3 * n + i] += d3, z[4 * n + i] += d4;
	}
}

/* dst[l][j] = sum_{i=j}^{j+2r} src[l][i], j < wo, for nl lines (rows of
 * src wo + 2r wide): segmented running sums in double. */
template <typename TS>
static __device__ void ln_box_rows(const TS *src, double *dst, int wo, int nl, int r)
{
	const int wi = wo + 2 * r;
	int nseg, len;
	ln_segments(nl, wo, &nseg, &len);
	for (int it = threadIdx.x; it < nl * nseg; it += blockDim.x) {
		const int l = it / nseg, j0 = (it - l * nseg) * len, j1 = j0 + len < wo ? j0 + len : wo;
		const TS *a = src + (int64_t)l * wi;
		double *o = dst + (int64_t)l * wo, acc = 0.0;
		for (int i = j0; i <= j0 + 2 * r; i++)
			acc += (double)a[i];
		o[j0] = acc;
		for (int j = j0 + 1; j < j1; j++) {
			acc += (double)a[j + 2 * r] - (double)a[j - 1];
			o[j] = acc;
		}
	}
}

/* dst[q][j][x] = sum_{i=j}^{j+2r} src[q][i][x], j < ho, x < wd, q < nq:
 * segmented running sums down columns, rounded to float for the ring. */
static __device__ void ln_box_cols(const double *src, float *dst, int wd, int ho, int nq, int r)
{
	const int hi = ho + 2 * r;
	int nseg, len;
	ln_segments(nq * wd, ho, &nseg, &len);
	for (int it = threadIdx.x; it < nq * wd * nseg; it += blockDim.x) {
		const int x = it % wd, rest = it / wd, q = rest % nq, j0 = rest / nq * len;
		const int j1 = j0 + len < ho ? j0 + len : ho;
		const double *a = src + (int64_t)q * hi * wd + x;
		float *o = dst + (int64_t)q * ho * wd + x;
		double acc = 0.0;
		for (int i = j0; i <= j0 + 2 * r; i++)
			acc += a[(int64_t)i * wd];
		o[(int64_t)j0 * wd] = (float)acc;
		for (int j = j0 + 1; j < j1; j++) {
			acc += a[(int64_t)(j + 2 * r) * wd] - a[(int64_t)(j - 1) * wd];
			o[(int64_t)j * wd] = (float)acc;
		}
	}
}

/* cc at one voxel from its window sums s = (Sf, Sm, Sff, Smm, Sfm), inv =
 * 1/n; with nq > 0 also the coefficients times w into c. */
template <int NQ>
static __device__ __forceinline__ double ln_cc(const double s[LN_NQ], double inv, double eps, double w, double c[LN_NQ])
{
	const double sf = s[0], sm = s[1];
	const double cov = s[4] - sf * sm * inv;
	/* clamps by select (fmax's NaN rules cost 7 instructions each; a NaN
	 * still gives 0) */
	const double vf0 = s[2] - sf * sf * inv, vm0 = s[3] - sm * sm * inv;
	const double vf = vf0 > 0.0 ? vf0 : 0.0, vm = vm0 > 0.0 ? vm0 : 0.0;
	const double rd = __drcp_rn(vf * vm + eps); /* = 1/D, without a division's slow path */
	const double cc = cov * cov * rd; /* a flat window scores 0 (cpu_lncc.c) */
	if (NQ) {
		const double a = 2.0 * cov * rd, b = 2.0 * cc * vf * rd;
		c[0] = w * a, c[1] = w * b, c[2] = w * (b * sm - a * sf) * inv;
		if (NQ == 5) {
			const double b2 = 2.0 * cc * vm * rd;
			c[3] = w * b2, c[4] = w * (b2 * sf - a * sm) * inv;
		}
	}
	return cc;
}

/* ANTs' gradient at voxel v (only the window centred on it): df, dm the
 * voxel's shifted intensities, c its coefficients times w. */
template <int NQ>
static __device__ __forceinline__ void ln_ants_grad(const lncc_k &k, int64_t v, double df, double dm, const double *c)
{
	k.gm[v] = (float)(k.gscale * (df * c[0] - dm * c[1] + c[2]));
	if (NQ == 5)
		k.gf[v] = (float)(k.gscale * (dm * c[0] - df * c[3] + c[4]));
}

/* Stage C: box the x-boxed sums X along y, then per voxel of the
 * coefficient region: the loss (tile voxels of planes in [z0, z1)), and
 * the coefficients into coef (exact) or ANTs' gradient (approximate).
 * Returns this thread's sum of w cc. */
template <int NQ, bool EXACT, bool F16>
static __device__ double ln_coefs(const lncc_k &k, const double *xb, float *coef, int64_t x0, int64_t y0,
				  int64_t pc, bool in_chunk, double cf, double cm)
{
	const int cx = k.cx, cy = k.cy, iy = k.iy, r = k.r, hc = k.hc;
	const int64_t np = k.nx * k.ny, cz = ln_count(pc, k.nz, r);
	const int nc = k.cx * k.cy;
	double lsum = 0.0;
	int nseg, len;

	ln_segments(cx, cy, &nseg, &len);
	for (int it = threadIdx.x; it < cx * nseg; it += blockDim.x) {
		const int xi = it % cx, j0 = it / cx * len, j1 = j0 + len < cy ? j0 + len : cy;
		const int64_t gx = x0 - hc + xi;
		const bool xin = gx >= 0 && gx < k.nx, xtile = xi >= hc && xi < hc + LN_OX;
		const int64_t ccx = xin ? ln_count(gx, k.nx, r) : 0;
		double s[LN_NQ];
#pragma unroll
		for (int q = 0; q < LN_NQ; q++) {
			const double *a = xb + (int64_t)q * iy * cx + xi;
			double acc = 0.0;
			for (int i = j0; i <= j0 + 2 * r; i++)
				acc += a[(int64_t)i * cx];
			s[q] = acc;
		}
		for (int j = j0; j < j1; j++) {
			if (j > j0)
#pragma unroll
				for (int q = 0; q < LN_NQ; q++) {
					const double *a = xb + (int64_t)q * iy * cx + xi;
					s[q] += a[(int64_t)(j + 2 * r) * cx] - a[(int64_t)(j - 1) * cx];
				}
			const int64_t gy = y0 - hc + j;
			double c[LN_NQ] = {0.0, 0.0, 0.0, 0.0, 0.0};
			if (xin && gy >= 0 && gy < k.ny) {
				const int64_t v = pc * np + gy * k.nx + gx;
				const double inv = __drcp_rn((double)(ccx * ln_count(gy, k.ny, r) * cz));
				const double w = k.w ? (double)k.w[v] : 1.0;
				const double cc = ln_cc<NQ>(s, inv, k.eps, w, c);
				if (in_chunk && xtile && j >= hc && j < hc + k.oy)
					lsum += w * cc;
				if (NQ && !EXACT && pc >= k.oz0 && pc < k.oz1)
					ln_ants_grad<NQ>(k, v, (double)ln_f<F16>(k, v) - cf, (double)k.m[v] - cm, c);
			}
			if (EXACT)
#pragma unroll
				for (int q = 0; q < NQ; q++)
					coef[q * nc + j * cx + xi] = (float)c[q];
		}
	}
	return lsum;
}

/* Stage E2: per output column, A += Y(new) - Y(old) from the ring, and the
 * gradient of plane pg when it is one of this chunk's. */
template <int NQ, bool F16>
static __device__ void ln_grad(const lncc_k &k, const float *ynew, const float *yold, double acc[LN_NQ], int64_t x0,
			       int64_t y0, int64_t pg, bool write, double cf, double cm)
{
	const int o = threadIdx.x, nt = LN_OX * k.oy; /* = blockDim.x */
#pragma unroll
	for (int q = 0; q < NQ; q++)
		acc[q] += (double)ynew[q * nt + o] - (double)yold[q * nt + o];
	const int64_t gx = x0 + o % LN_OX, gy = y0 + o / LN_OX;
	if (!write || gx >= k.nx || gy >= k.ny)
		return;
	const int64_t v = (pg * k.ny + gy) * k.nx + gx;
	const double df = (double)ln_f<F16>(k, v) - cf, dm = (double)k.m[v] - cm;
	k.gm[v] = (float)(k.gscale * (df * acc[0] - dm * acc[1] + acc[2]));
	if (NQ == 5)
		k.gf[v] = (float)(k.gscale * (dm * acc[0] - df * acc[3] + acc[4]));
}

/* One instance per (coefficients, exact): 0/3/5 and approximate, 3/5
 * exact, so that the per-voxel code has no mode branches. */
template <int NQ, bool EXACT, bool F16> static __global__ void __launch_bounds__(LN_T, 1) lncc_kernel(lncc_k k)
{
	extern __shared__ double ln_smem[];
	char *sm = (char *)ln_smem;
	double *z = ln_smem, *r2 = (double *)(sm + k.o_r2), *red = (double *)(sm + k.o_red);
	float *coef = (float *)(sm + k.o_coef), *ring = (float *)(sm + k.o_ring);
	const int r = k.r, hc = k.hc, nslot = 2 * r + 2, nt = LN_OX * k.oy;
	const int64_t chunk = blockIdx.x / k.ntiles, tile = blockIdx.x - chunk * k.ntiles;
	const int64_t ty = tile / k.ntx, tx = tile - ty * k.ntx;
	const int64_t x0 = tx * LN_OX, y0 = ty * k.oy, z0 = chunk * k.zc;
	const int64_t z1 = z0 + k.zc < k.nz ? z0 + k.zc : k.nz;
	const int64_t xs = x0 - hc - r, ys = y0 - hc - r;
	double acc[LN_NQ] = {0.0, 0.0, 0.0, 0.0, 0.0}, lsum = 0.0;

	/* The shift: one voxel of this tile (every thread reads the same). */
	const int64_t vref = (z0 * k.ny + (y0 + k.oy / 2 < k.ny ? y0 + k.oy / 2 : k.ny - 1)) * k.nx +
			     (x0 + LN_OX / 2 < k.nx ? x0 + LN_OX / 2 : k.nx - 1);
	const double cf = (double)ln_f<F16>(k, vref), cm = (double)k.m[vref];

	for (int i = threadIdx.x; i < LN_NQ * k.ix * k.iy; i += blockDim.x)
		z[i] = 0.0;
	if (EXACT)
		for (int i = threadIdx.x; i < nslot * NQ * nt; i += blockDim.x)
			ring[i] = 0.0f;
	__syncthreads(); /* zeroed by other threads than those that own the columns */

	/* Z := window of plane pc_lo - 1 (no barrier: columns are per thread). */
	const int64_t pc_lo = z0 - hc > 0 ? z0 - hc : 0, pc_hi = z1 - 1 + hc;
	for (int64_t p = pc_lo - 1 - r; p <= pc_lo - 1 + r; p++)
		ln_columns<F16>(k, z, xs, ys, p, -1, cf, cm);

	for (int64_t pc = pc_lo; pc <= pc_hi; pc++) {
		const bool inside = pc < k.nz;
		float *ynew = ring + (pc % nslot) * NQ * nt, *yold = ring + ((pc + 1) % nslot) * NQ * nt;
		if (inside)
			ln_columns<F16>(k, z, xs, ys, pc + r, pc - r - 1, cf, cm);
		__syncthreads();
		if (inside) {
			ln_box_rows<double>(z, r2, k.cx, LN_NQ * k.iy, r);
			__syncthreads();
			lsum += ln_coefs<NQ, EXACT, F16>(k, r2, coef, x0, y0, pc,
						    pc >= z0 && pc < z1 && pc >= k.oz0 && pc < k.oz1, cf, cm);
			__syncthreads();
		}
		if (!EXACT)
			continue;
		if (inside) {
			ln_box_rows<float>(coef, r2, LN_OX, NQ * k.cy, r);
			__syncthreads();
			ln_box_cols(r2, ynew, LN_OX, k.oy, NQ, r);
		} else {
			for (int i = threadIdx.x; i < NQ * nt; i += blockDim.x)
				ynew[i] = 0.0f; /* planes past the image add nothing */
		}
		__syncthreads();
		ln_grad<NQ, F16>(k, ynew, yold, acc, x0, y0, pc - r,
			    pc - r >= z0 && pc - r < z1 && pc - r >= k.oz0 && pc - r < k.oz1, cf, cm);
		/* the next write to yold's slot follows at least one barrier */
	}
	lsum = cu_tree_sum(lsum, red);
	if (threadIdx.x == 0)
		k.part[blockIdx.x] = lsum;
}

#include "cuda_lncc_fixed.cuh"

/* Shared memory of a tile height, in bytes (offsets into k). */
static size_t lncc_smem(lncc_k *k, int oy)
{
	const int r = k->r, hc = k->hc, nq = k->exact ? k->nq : 0;
	size_t zs, r2, coef, ring;
	k->oy = oy;
	k->cx = LN_OX + 2 * hc, k->cy = oy + 2 * hc;
	k->ix = k->cx + 2 * r, k->iy = k->cy + 2 * r;
	zs = (size_t)LN_NQ * k->iy * k->ix * sizeof(double);
	r2 = (size_t)LN_NQ * k->iy * k->cx;
	if ((size_t)nq * k->cy * LN_OX > r2)
		r2 = (size_t)nq * k->cy * LN_OX;
	r2 *= sizeof(double);
	coef = (size_t)nq * k->cy * k->cx * sizeof(float);
	ring = (size_t)(2 * r + 2) * nq * LN_OX * oy * sizeof(float);
	zs = (zs + 15) & ~(size_t)15, r2 = (r2 + 15) & ~(size_t)15;
	coef = (coef + 15) & ~(size_t)15, ring = (ring + 15) & ~(size_t)15;
	k->o_r2 = (int)zs;
	k->o_coef = (int)(zs + r2);
	k->o_ring = (int)(zs + r2 + coef);
	k->o_red = (int)(zs + r2 + coef + ring);
	return zs + r2 + coef + ring + (size_t)LN_OX * oy * sizeof(double);
}

/* The tile height OY (the block has 32 OY threads): at most 8 (<= the
 * image) with shared memory that fits one block.  Measured on an H100 at
 * 256^3 (docs/perf.md): 8 runs two blocks per SM and beats 16 by 21% on
 * the ANTs gradient and 2% on k = 3 exact, loses 2% on k = 7 exact; 4
 * doubles the k = 7 exact time. */
static int lncc_pick_tile(lncc_k *k, size_t *smem)
{
	const size_t cap = (size_t)lm_smem_optin();
	int top = LN_T / LN_OX < 8 ? LN_T / LN_OX : 8;
	while (top > 1 && top / 2 >= k->ny)
		top /= 2;
	for (int oy = top; oy >= 1; oy /= 2) {
		*smem = lncc_smem(k, oy);
		if (*smem <= cap)
			return oy;
	}
	return 0;
}

static ffdp_status lncc_launch(ffdp_backend *be, lncc_k &k, const ffdp_loss_args *a, const ffdp_lncc_opts *o,
			       double denom, ffdp_error *err);

ffdp_status ffdp_cuda_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err)
{
	lncc_k k;
	const int64_t n = a->f.n[0] * a->f.n[1] * a->f.n[2];
	double denom = a->denom;
	ffdp_status s;

	if (o->eps < 0.0 || !isfinite(o->eps))
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: eps %g is not a finite number >= 0", o->eps);
	if (!(denom > 0.0)) {
		denom = (double)n;
		if (a->mask && (s = lm_reduce_volume(a->mask, n, 0, &denom, err, "lncc mask sum")))
			return s;
		if (!(denom > 0.0))
			return ffdp_fail(err, FFDP_ERR_ARG,
					 "lncc: the mask sums to %g and no denominator was given", denom);
	}
	memset(&k, 0, sizeof(k));
	k.f = a->f.p, k.m = a->m.p, k.w = a->mask, k.f16 = a->f16;
	k.gm = a->gm, k.gf = a->gf;
	/* unorm16 f is read in place with gm alone (greedy's loss); any other
	 * use takes a float copy */
	float *ftmp = NULL;
	if (a->f16 && !(a->gm && !a->gf)) {
		ftmp = (float *)cu_scratch((size_t)(n + 1) * sizeof(float), 0, err, "lncc f");
		if (!ftmp || (s = ffdp_cuda_unorm16(be, ftmp, (uint16_t *)a->f16, n, 0, err))) {
			cu_scratch_free(ftmp);
			return ftmp ? s : FFDP_ERR_NOMEM;
		}
		k.f = ftmp, k.f16 = NULL;
	}
	if (!k.gm && k.gf) {
		/* cc is symmetric in f and m: gf alone is gm with the roles swapped */
		k.m = k.f, k.f = a->m.p;
		k.gm = a->gf, k.gf = NULL;
	}
	s = lncc_launch(be, k, a, o, denom, err);
	cu_scratch_free(ftmp);
	return s;
}

/* k's images and gradients set: tiles, chunks, the kernel and the sum. */
static ffdp_status lncc_launch(ffdp_backend *be, lncc_k &k, const ffdp_loss_args *a, const ffdp_lncc_opts *o,
			       double denom, ffdp_error *err)
{
	const int64_t nx = a->f.n[0], ny = a->f.n[1], nz = a->f.n[2];
	double sum = 0.0;
	size_t smem = 0;
	lf_flat_fn flatk = NULL;
	ffdp_status s;
	k.nx = nx, k.ny = ny, k.nz = nz;
	k.oz0 = o->z_full ? o->o_z0 : 0, k.oz1 = o->z_full ? o->o_z1 : nz;
	k.r = (o->k - 1) / 2;
	k.nq = k.gm ? (k.gf ? 5 : 3) : 0;
	k.exact = k.nq && o->exact_grad;
	k.hc = k.exact ? k.r : 0;
	k.eps = o->eps > 0.0 ? o->eps : 1e-5;
	k.gscale = -a->scale / denom;
	/* the fixed-window kernel where it fits, else the general one */
	void (*kern)(lncc_k) = nx * ny < INT32_MAX && nz < ((int64_t)1 << 30) /* its planes in int */
				       ? lf_pick(k.r, k.nq, k.exact, k.f16 != NULL, &smem, &flatk)
				       : NULL;
	if (kern && smem <= (size_t)lm_smem_optin()) {
		k.oy = 16;
	} else {
		flatk = NULL;
		if (!lncc_pick_tile(&k, &smem))
			return ffdp_fail(err, FFDP_ERR_UNSUPPORTED,
					 "lncc: window %d needs more shared memory than a block has", o->k);
		kern = k.f16 ? (k.exact ? lncc_kernel<3, true, true> : lncc_kernel<3, false, true>)
		       : !k.nq ? lncc_kernel<0, false, false>
		       : k.exact ? (k.nq == 5 ? lncc_kernel<5, true, false> : lncc_kernel<3, true, false>)
		       : (k.nq == 5 ? lncc_kernel<5, false, false> : lncc_kernel<3, false, false>);
	}
	cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
	if (e != cudaSuccess)
		return cu_status(e, err, "lncc shared memory");
	const int nthr = LN_OX * k.oy;
	int bps = 0;
	e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, kern, nthr, smem);
	if (e != cudaSuccess)
		return cu_status(e, err, "lncc occupancy");
	if (bps < 1)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "lncc: a %d-thread block with %zu bytes of shared memory "
				 "does not fit on this device", nthr, smem);

	/* z chunks: each block streams its chunk plus 2 hc + 2r + 3 steps of
	 * halo and pipeline; take the count with the least waves x steps
	 * (more chunks fill the SMs, fewer waste less on halos). */
	k.ntx = (nx + LN_OX - 1) / LN_OX;
	k.ntiles = k.ntx * ((ny + k.oy - 1) / k.oy);
	const int64_t slots = (int64_t)lm_sm_count() * bps, halo = 2 * k.hc + 2 * k.r + 3;
	const int64_t zmin = 8 * (int64_t)k.r > 16 ? 8 * k.r : 16, chmax = (nz + zmin - 1) / zmin;
	int64_t nch = 1, best = INT64_MAX;
	for (int64_t c = 1; c <= (chmax > 1 ? chmax : 1); c++) {
		const int64_t zc = (nz + c - 1) / c, nc = (nz + zc - 1) / zc;
		const int64_t cost = (k.ntiles * nc + slots - 1) / slots * (zc + halo);
		if (cost < best)
			best = cost, nch = nc;
	}
	k.zc = (nz + nch - 1) / nch;
	nch = (nz + k.zc - 1) / k.zc;
	const int64_t nb = k.ntiles * nch;
	if (nb > INT32_MAX)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED, "lncc: image too large for one launch");

	/* the partial sums, then one flag a block */
	k.part = (double *)cu_scratch((size_t)(nb + 1) * sizeof(double) + (flatk ? (size_t)nb : 0), 1, err, "lncc");
	if (!k.part)
		return FFDP_ERR_NOMEM;
	k.flat = NULL;
	if (flatk) {
		uint8_t *fl = (uint8_t *)(k.part + nb + 1);
		flatk<<<(unsigned)nb, nthr>>>(k, fl);
		k.flat = fl;
	}
	kern<<<(unsigned)nb, nthr, smem>>>(k);
	s = cu_launched(err, "lncc kernel");
	if (!s) {
		cu_sum_rows<<<1, CU_RED_T>>>(k.part, nb, k.part + nb);
		s = cu_launched(err, "lncc sum");
	}
	if (!s && a->later) /* the sum stays on its way (ops.h) */
		s = ffdp_cuda_scalar_later(be, k.part + nb, -1.0, denom, a->later, err);
	else if (!s)
		s = cu_status(cudaMemcpy(&sum, k.part + nb, sizeof(double), cudaMemcpyDeviceToHost), err, "lncc");
	cu_scratch_free(k.part);
	if (s || a->later)
		return s;
	*a->loss = -sum / denom;
	if (a->sum)
		*a->sum = -sum;
	return FFDP_OK;
}
