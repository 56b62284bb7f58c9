/* Mattes mutual information with Parzen windows: exact forward and backward.
 *
 * Math.  With v(x) the voxel weight (mask, or 1) and w_j the normalised
 * window weights of cpu_parzen.h,
 *     h(j,l) = sum_x v(x) w_j(f(x)) w_l(m(x)),  hf(j) = sum_l h(j,l),  hm(l) = sum_j h(j,l),
 * p = h/V, pf = hf/V, pm = hm/V, with V = denom when given, else sum h
 * (= sum v up to rounding: each voxel carries mass v).  Then
 *     MI = sum_{jl} p log(p / (pf pm)) = (1/V) sum_{jl} h log(h V / (hf hm)),   0 log 0 = 0,
 * and loss = -MI.  Differentiating with the marginals as functions of h,
 *     dMI/dh(j,l) = (1/V) [log(h V/(hf hm)) + 1 - sum_l' h(j,l')/hf(j) - sum_j' h(j',l)/hm(l)]
 *                 = (1/V) [G(j,l) - 1],   G = log(h V / (hf hm)).
 * dh(j,l)/dm(x) = v w_j(f) dw_l/dm and sum_l dw_l/dm = 0 (weights sum to 1),
 * so the -1 drops out:
 *     dL/dm(x) = -(v/V) (ds/dm) sum_l (dw_l/ds)(m) sum_j w_j(f) G(j,l),   ds/dm = B/(hi - lo),
 * and symmetrically for f.  Where h(j,l) = 0 no voxel has w_j(f) w_l(m) > 0,
 * and both kernels have dw = 0 wherever w = 0 (the B-spline vanishes to
 * third order at its support end, the windowed Gaussian is positive on its
 * window), so G = 0 there is exact.  No epsilon is needed: pf, pm >= p > 0
 * wherever a log is taken.  V never depends on the images.
 *
 * Passes.  1: padded histograms (doubles) per z plane (per row in 2-D):
 * the plane's voxel i goes to table i mod 4, added in order, each its W x
 * W outer product (W = 7 Gaussian, 4 B-spline; the moving window padded
 * with zero weights to 8 and 4 bins, whole vectors); the four tables are
 * summed in a fixed order; planes are done in chunks of 2 per thread, in parallel, and added
 * to the joint in plane order: the same bits for any thread count and for
 * z-slabs adding their planes in order (ops.h).  Host: marginals, MI and
 * G, O(B^2).  2: recompute each voxel's windows and derivatives, write gf
 * and gm.  hist_in replaces pass 1 (only its joint part is read; the
 * marginals are recomputed from it).
 * Scratch: (4 units + 1) (B+6)(B+8) + B^2 + 2B doubles, independent of N;
 * units = 2 per thread, fewer when B is so large that their tables would
 * pass 64 MiB.
 *
 * IO floor: the gradient needs the global histogram, so two passes over
 * f and m are unavoidable: 8 B/voxel (+4 mask) in pass 1, 8 (+4) read and
 * 8 written in pass 2, i.e. 24 (32 with mask) B/voxel, ~1 ms at 128^3 on
 * a 50 GB/s socket.  On a CPU the op is compute-bound instead: per voxel
 * four windows (~2 dozen flops each, one division) and ~W^2 multiply-adds
 * in pass 1, ~2 W^2 in pass 2.
 */
#include <omp.h>
#include <string.h>

#include "../../ops/mi_table.h"
#include "cpu_ops.h"
#include "cpu_parzen.h"
#include "ffdp/volume.h"

enum {
	MI_CPAD = 4, /* column margin: j0 >= -PARZEN_PAD, and rows end >= 7 past bin B - 4 */
	MI_NSUB = 4, /* tables a unit (mi_hist_loop); a power of 2 */
};

typedef struct mi_plan {
	const float *f, *m, *mask;
	int64_t n;
	int bins, stride; /* a padded table's row: even, >= bins + 2 MI_CPAD */
	parzen_map fmap, mmap;
} mi_plan;

/* Windows of a batch; the kernel is a constant at every call site so the
 * loops below specialise to a fixed width. */
static inline __attribute__((always_inline)) void mi_window(int kernel, const parzen_map *p, const float *x, int n, int want_dw,
			     parzen_batch *o)
{
	if (kernel == FFDP_MI_GAUSSIAN)
		parzen_gauss(p, x, n, want_dw, o);
	else
		parzen_bspline(p, x, n, want_dw, o);
}

static inline int64_t mi_nbatch(const mi_plan *p)
{
	return (p->n + PARZEN_BATCH - 1) / PARZEN_BATCH;
}

/* A window's weights in 4-lane groups: the Gaussian's 7 bins as 8 (the
 * last weight 0), the B-spline's 4. */
#define MI_WV(W) (((W) + 3) & ~3)

/* 4 doubles as one value (GCC's vector extension: elementwise IEEE
 * operations, so both compilations below give the same bits). */
#pragma GCC diagnostic ignored "-Wpsabi" /* mi_v4 never crosses a call: always inlined */
typedef double mi_v4 __attribute__((vector_size(32)));
typedef long long mi_i4 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) mi_v4 mi_ld(const double *p)
{
	mi_v4 x;
	memcpy(&x, p, sizeof(x));
	return x;
}

static inline __attribute__((always_inline)) void mi_st(double *p, mi_v4 x)
{
	memcpy(p, &x, sizeof(x));
}

/* The batch's windows of one kind, voxel by voxel, zero-padded to
 * MI_WV(W): the per-voxel loops below read them as whole vectors.  4 x 4
 * blocks transposed in registers: element stores read back as a vector
 * would stall the load. */
static inline __attribute__((always_inline)) void mi_by_voxel(const double w[][PARZEN_BATCH], int W,
							    double out[][MI_WV(PARZEN_WMAX)])
{
	const mi_v4 zero = {0.0, 0.0, 0.0, 0.0};
	for (int h = 0; h < MI_WV(W); h += 4)
		for (int g = 0; g < PARZEN_BATCH; g += 4) {
			mi_v4 r[4];
			for (int i = 0; i < 4; i++)
				r[i] = h + i < W ? mi_ld(&w[h + i][g]) : zero;
			const mi_v4 t0 = __builtin_shuffle(r[0], r[1], (mi_i4){0, 4, 2, 6});
			const mi_v4 t1 = __builtin_shuffle(r[0], r[1], (mi_i4){1, 5, 3, 7});
			const mi_v4 t2 = __builtin_shuffle(r[2], r[3], (mi_i4){0, 4, 2, 6});
			const mi_v4 t3 = __builtin_shuffle(r[2], r[3], (mi_i4){1, 5, 3, 7});
			mi_st(&out[g][h], __builtin_shuffle(t0, t2, (mi_i4){0, 1, 4, 5}));
			mi_st(&out[g + 1][h], __builtin_shuffle(t1, t3, (mi_i4){0, 1, 4, 5}));
			mi_st(&out[g + 2][h], __builtin_shuffle(t0, t2, (mi_i4){2, 3, 6, 7}));
			mi_st(&out[g + 3][h], __builtin_shuffle(t1, t3, (mi_i4){2, 3, 6, 7}));
		}
}

/* sum_b x_b y_b over WV = 4 or 8 terms, in a fixed tree order (a 4-lane
 * reduction's). */
static inline __attribute__((always_inline)) double mi_dot(const double *x, const double *y, const int WV)
{
	mi_v4 q = mi_ld(x) * mi_ld(y);
	if (WV == 8)
		q += mi_ld(x + 4) * mi_ld(y + 4);
	return (q[0] + q[2]) + (q[1] + q[3]);
}

/* Pass 1 over voxels [i0, i1) (one unit) into MI_NSUB padded tables tab
 * doubles apart, voxel i into table (i - i0) mod MI_NSUB, each in order.
 * Neighbouring voxels mostly hit the same bins: into one table, each
 * voxel's loads waited for the previous voxel's stores (a chain through
 * memory); four tables keep four chains in flight, and a store is
 * written to L1 before the next voxel of its table reads it. */
static inline __attribute__((always_inline)) void mi_hist_loop(const mi_plan *p, double *H, int64_t tab, int64_t i0,
							     int64_t i1, const int kernel, const int W)
{
	const int st = p->stride, WV = MI_WV(W);
	parzen_batch bf, bm;
	double wm[PARZEN_BATCH][MI_WV(PARZEN_WMAX)];
	for (int64_t b0 = i0; b0 < i1; b0 += PARZEN_BATCH) {
		int n = i1 - b0 < PARZEN_BATCH ? (int)(i1 - b0) : PARZEN_BATCH;
		mi_window(kernel, &p->fmap, p->f + b0, n, 0, &bf);
		mi_window(kernel, &p->mmap, p->m + b0, n, 0, &bm);
		mi_by_voxel(bm.w, W, wm);
		for (int v = 0; v < n; v++) {
			double val = p->mask ? (double)p->mask[b0 + v] : 1.0;
			if (val == 0)
				continue;
			double *row = H + ((b0 + v - i0) & (MI_NSUB - 1)) * tab + (int64_t)(bf.j0[v] + PARZEN_PAD) * st +
				      bm.j0[v] + MI_CPAD;
			for (int a = 0; a < W; a++, row += st) {
				double vf = val * bf.w[a][v];
#pragma omp simd
				for (int b = 0; b < WV; b++)
					row[b] += vf * wm[v][b];
			}
		}
	}
}

/* Pass 2: gf = c v (ds/df) sum_b wm_b sum_a dwf_a G_ab and
 * gm = c v (ds/dm) sum_b dwm_b sum_a wf_a G_ab, c = -scale / V.  The sums
 * over a are axpys along G's rows (vectorisable without reassociating),
 * the sums over b mi_dot's. */
static inline __attribute__((always_inline)) void mi_grad_loop(const mi_plan *p, const double *G, double c, float *gf,
							     float *gm, const int kernel, const int W)
{
	const int st = p->stride, WV = MI_WV(W);
	parzen_batch bf, bm;
	double wm[PARZEN_BATCH][MI_WV(PARZEN_WMAX)], dm[PARZEN_BATCH][MI_WV(PARZEN_WMAX)];
#pragma omp for schedule(static)
	for (int64_t ib = 0; ib < mi_nbatch(p); ib++) {
		int64_t i0 = ib * PARZEN_BATCH;
		int n = p->n - i0 < PARZEN_BATCH ? (int)(p->n - i0) : PARZEN_BATCH;
		mi_window(kernel, &p->fmap, p->f + i0, n, 1, &bf);
		mi_window(kernel, &p->mmap, p->m + i0, n, 1, &bm);
		mi_by_voxel(bm.w, W, wm);
		mi_by_voxel(bm.dw, W, dm);
		for (int v = 0; v < n; v++) {
			double val = p->mask ? (double)p->mask[i0 + v] : 1.0, sf = 0, sm = 0;
			if (val != 0) {
				/* the sums start from row 0's terms, not from 0 in memory:
				 * a zeroed array is stored in halves and read whole, which
				 * stalls the load */
				double cw[MI_WV(PARZEN_WMAX)], cd[MI_WV(PARZEN_WMAX)];
				const double *row = G + (int64_t)(bf.j0[v] + PARZEN_PAD) * st + bm.j0[v] + MI_CPAD;
#pragma omp simd
				for (int b = 0; b < WV; b++)
					cw[b] = bf.w[0][v] * row[b], cd[b] = bf.dw[0][v] * row[b];
				row += st;
				for (int a = 1; a < W; a++, row += st) {
					double wa = bf.w[a][v], da = bf.dw[a][v];
#pragma omp simd
					for (int b = 0; b < WV; b++)
						cw[b] += wa * row[b], cd[b] += da * row[b];
				}
				sf = mi_dot(wm[v], cd, WV) * (c * val * bf.ds[v]);
				sm = mi_dot(dm[v], cw, WV) * (c * val * bm.ds[v]);
			}
			if (gf)
				gf[i0 + v] = (float)sf;
			if (gm)
				gm[i0 + v] = (float)sm;
		}
	}
}

/* Both passes' loops for each kernel, compiled twice: for any x86-64 and
 * with AVX2 (the windows' batch loops and the table rows in 4 lanes).
 * Without contraction (-ffp-contract=off) the two give the same bits. */
#define MI_LOOPS(SUFFIX, ATTR)                                                                             \
	ATTR static void mi_hist_units##SUFFIX(const mi_plan *p, ffdp_mi_kernel kernel, double *H, int64_t tab, \
					       int64_t i0, int64_t i1)                                      \
	{                                                                                                   \
		if (kernel == FFDP_MI_GAUSSIAN)                                                             \
			mi_hist_loop(p, H, tab, i0, i1, FFDP_MI_GAUSSIAN, PARZEN_GW);                       \
		else                                                                                        \
			mi_hist_loop(p, H, tab, i0, i1, FFDP_MI_BSPLINE3, PARZEN_BW);                       \
	}                                                                                                   \
	ATTR static void mi_grad_units##SUFFIX(const mi_plan *p, ffdp_mi_kernel kernel, const double *G,      \
					       double c, float *gf, float *gm)                              \
	{                                                                                                   \
		if (kernel == FFDP_MI_GAUSSIAN)                                                             \
			mi_grad_loop(p, G, c, gf, gm, FFDP_MI_GAUSSIAN, PARZEN_GW);                         \
		else                                                                                        \
			mi_grad_loop(p, G, c, gf, gm, FFDP_MI_BSPLINE3, PARZEN_BW);                         \
	}

MI_LOOPS(_any, )
#if defined(__GNUC__) && defined(__x86_64__)
#define MI_AVX2 1
MI_LOOPS(_avx2, __attribute__((target("avx2,fma"))))
#endif

static void mi_hist_units(const mi_plan *p, ffdp_mi_kernel kernel, double *H, int64_t tab, int64_t i0, int64_t i1,
			  int avx2)
{
#ifdef MI_AVX2
	if (avx2) {
		mi_hist_units_avx2(p, kernel, H, tab, i0, i1);
		return;
	}
#endif
	(void)avx2;
	mi_hist_units_any(p, kernel, H, tab, i0, i1);
}

/* Pass 1: the histogram of each unit (plane; row in 2-D) of `unit` voxels
 * in MI_NSUB tables of its own (nt units' tables, tab doubles apart),
 * chunk by chunk, added into the unpadded joint h (B x B, zeroed) in unit
 * order; hz (optional) gets each unit's joint. */
static void mi_hist(const mi_plan *p, ffdp_mi_kernel kernel, double *priv, int nt, int64_t tab, int64_t unit,
		    double *h, double *hz)
{
	const int B = p->bins, st = p->stride, avx2 = ffdp_cpu_use_avx2();
	const int64_t nu = p->n / unit;
	for (int64_t u0 = 0; u0 < nu; u0 += nt) {
		const int64_t cnt = nu - u0 < nt ? nu - u0 : nt;
#pragma omp parallel for schedule(static) if (cnt > 1)
		for (int64_t k = 0; k < cnt; k++) {
			double *H = priv + k * MI_NSUB * tab;
			memset(H, 0, (size_t)(MI_NSUB * tab) * sizeof(double));
			mi_hist_units(p, kernel, H, tab, (u0 + k) * unit, (u0 + k + 1) * unit, avx2);
		}
		for (int64_t k = 0; k < cnt; k++) {
			const double *H = priv + k * MI_NSUB * tab;
			double *z = hz ? hz + (u0 + k) * B * B : NULL;
			for (int j = 0; j < B; j++)
				for (int l = 0; l < B; l++) {
					const int64_t o = (int64_t)(j + PARZEN_PAD) * st + l + MI_CPAD;
					const double x = (H[o] + H[o + tab]) + (H[o + 2 * tab] + H[o + 3 * tab]);
					h[j * B + l] += x;
					if (z)
						z[j * B + l] = x;
				}
		}
	}
}

static void mi_grad(const mi_plan *p, ffdp_mi_kernel kernel, const double *G, double c, float *gf, float *gm)
{
	const int avx2 = ffdp_cpu_use_avx2();
	(void)avx2;
#pragma omp parallel
	{
#ifdef MI_AVX2
		if (avx2)
			mi_grad_units_avx2(p, kernel, G, c, gf, gm);
		else
#endif
			mi_grad_units_any(p, kernel, G, c, gf, gm);
	}
}

/* Units in flight: two per thread, fewer when their tables would pass
 * 64 MiB. */
static int mi_tables(int64_t tab)
{
	int64_t cap = ((int64_t)64 << 20) / (MI_NSUB * tab * (int64_t)sizeof(double));
	int nt = 2 * omp_get_max_threads();
	return nt < cap ? nt : cap > 1 ? (int)cap : 1;
}

ffdp_status ffdp_cpu_mi(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_mi_opts *o, ffdp_error *err)
{
	(void)be;
	const int B = o->bins, st = (B + 2 * MI_CPAD + 1) & ~1;
	const int64_t tab = ((int64_t)(B + 2 * PARZEN_PAD) * st + 7) & ~(int64_t)7; /* 64-byte aligned tables */
	const int nt = o->hist_in ? 0 : mi_tables(tab);
	mi_plan p = {a->f.p, a->m.p, a->mask, a->f.n[0] * a->f.n[1] * a->f.n[2], B, st,
		     parzen_map_make(o->f_lo, o->f_hi, B), parzen_map_make(o->m_lo, o->m_hi, B)};
	double *scratch = ffdp_alloc(((size_t)(MI_NSUB * nt + 1) * tab + (size_t)B * B + 4 * (size_t)B) * sizeof(double),
				     err);
	if (!scratch)
		return FFDP_ERR_NOMEM;
	double *priv = scratch, *G = priv + MI_NSUB * nt * tab, *h = G + tab, *lg = h + B * B + 2 * B, V = 0, mi = 0;

	/* units: z planes, or rows of a 2-D image (reproducible sums) */
	const int64_t unit = a->f.n[2] > 1 ? a->f.n[0] * a->f.n[1] : a->f.n[0];
	if (o->hist_in)
		memcpy(h, o->hist_in, (size_t)B * B * sizeof(double));
	else
		mi_hist(&p, o->kernel, priv, nt, tab, unit, h, a->f.n[2] > 1 ? o->hist_z : NULL);
	if (o->hist_z && a->f.n[2] == 1)
		memcpy(o->hist_z, h, (size_t)B * B * sizeof(double));
	ffdp_status s = ffdp_mi_table(h, B, a->denom, G, B + 2 * PARZEN_PAD, st, PARZEN_PAD, MI_CPAD, lg, &V, &mi, err);
	if (s == FFDP_OK) {
		if (o->hist)
			memcpy(o->hist, h, ((size_t)B * B + 2 * (size_t)B) * sizeof(double));
		*a->loss = -mi;
		if (a->sum)
			*a->sum = -mi * V; /* keeps loss = sum / V; ranks combine hist, not sum */
		if (a->gf || a->gm)
			mi_grad(&p, o->kernel, G, -a->scale / V, a->gf, a->gm);
	}
	ffdp_free(scratch);
	return s;
}
