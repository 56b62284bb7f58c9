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
 * Passes.  1: a padded histogram (doubles) per z plane (per row in 2-D),
 * its voxels added in order, each its W x W outer product (W = 7 Gaussian,
 * 4 B-spline) with the moving window widened to whole 16-byte pairs so
 * that consecutive voxels hitting the same bins load exactly what the
 * previous one stored; planes are done in chunks of 2 per thread, in
 * parallel, and added to the joint in plane order: the same bits for any
 * thread count and for z-slabs adding their planes in order (ops.h).  Host:
 * marginals, MI and G, O(B^2).  2: recompute each voxel's windows and
 * derivatives, write gf and gm.  hist_in replaces pass 1 (only its joint
 * part is read; the marginals are recomputed from it).
 * Scratch: (tables + 1) (B+6)(B+8) + B^2 + 2B doubles, independent of N;
 * tables = 2 per thread, fewer when B is so large that they would pass
 * 64 MiB.
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

enum { MI_CPAD = 4 }; /* even column margin: pair-aligned scatter */

typedef struct mi_plan {
	const float *f, *m, *mask;
	int64_t n;
	int bins, stride; /* a padded table's row: even, >= bins + 2 MI_CPAD */
	parzen_map fmap, mmap;
} mi_plan;

/* Windows of a batch; the kernel is a constant at every call site so the
 * loops below specialise to a fixed width. */
static inline void mi_window(int kernel, const parzen_map *p, const float *x, int n, int want_dw,
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

/* Pass 1 over voxels [i0, i1) into the padded table H, in order. */
static inline void mi_hist_loop(const mi_plan *p, double *H, int64_t i0, int64_t i1, const int kernel,
				const int W)
{
	const int st = p->stride;
	parzen_batch bf, bm;
	for (int64_t b0 = i0; b0 < i1; b0 += PARZEN_BATCH) {
		int n = i1 - b0 < PARZEN_BATCH ? (int)(i1 - b0) : PARZEN_BATCH;
		mi_window(kernel, &p->fmap, p->f + b0, n, 0, &bf);
		mi_window(kernel, &p->mmap, p->m + b0, n, 0, &bm);
		for (int v = 0; v < n; v++) {
			double val = p->mask ? (double)p->mask[b0 + v] : 1.0;
			if (val == 0)
				continue;
			int col = bm.j0[v] + MI_CPAD, sh = col & 1;
			double wa[PARZEN_WMAX + 1] = {0};
			for (int b = 0; b < W; b++)
				wa[sh + b] = bm.w[b][v];
			double *row = H + (int64_t)(bf.j0[v] + PARZEN_PAD) * st + (col - sh);
			const int WA = (W + 2) & ~1;
			for (int a = 0; a < W; a++, row += st) {
				double vf = val * bf.w[a][v];
#pragma omp simd
				for (int b = 0; b < WA; b++)
					row[b] += vf * wa[b];
			}
		}
	}
}

static void mi_hist_gauss(const mi_plan *p, double *H, int64_t i0, int64_t i1)
{
	mi_hist_loop(p, H, i0, i1, FFDP_MI_GAUSSIAN, PARZEN_GW);
}

static void mi_hist_bspline(const mi_plan *p, double *H, int64_t i0, int64_t i1)
{
	mi_hist_loop(p, H, i0, i1, FFDP_MI_BSPLINE3, PARZEN_BW);
}

/* Pass 1: the histogram of each unit (plane; row in 2-D) of `unit` voxels
 * in a table of its own (nt tables, tab doubles apart), chunk by chunk,
 * added into the unpadded joint h (B x B, zeroed) in unit order; hz
 * (optional) gets each unit's joint. */
static void mi_hist(const mi_plan *p, ffdp_mi_kernel kernel, double *priv, int nt, int64_t tab, int64_t unit,
		    double *h, double *hz)
{
	const int B = p->bins, st = p->stride;
	const int64_t nu = p->n / unit;
	for (int64_t u0 = 0; u0 < nu; u0 += nt) {
		const int64_t cnt = nu - u0 < nt ? nu - u0 : nt;
#pragma omp parallel for schedule(static) if (cnt > 1)
		for (int64_t k = 0; k < cnt; k++) {
			double *H = priv + k * tab;
			memset(H, 0, (size_t)tab * sizeof(double));
			if (kernel == FFDP_MI_GAUSSIAN)
				mi_hist_gauss(p, H, (u0 + k) * unit, (u0 + k + 1) * unit);
			else
				mi_hist_bspline(p, H, (u0 + k) * unit, (u0 + k + 1) * unit);
		}
		for (int64_t k = 0; k < cnt; k++) {
			const double *H = priv + k * tab;
			double *z = hz ? hz + (u0 + k) * B * B : NULL;
			for (int j = 0; j < B; j++)
				for (int l = 0; l < B; l++) {
					double x = H[(int64_t)(j + PARZEN_PAD) * st + l + MI_CPAD];
					h[j * B + l] += x;
					if (z)
						z[j * B + l] = x;
				}
		}
	}
}

/* Pass 2: gf = c v (ds/df) sum_b wm_b sum_a dwf_a G_ab and
 * gm = c v (ds/dm) sum_b dwm_b sum_a wf_a G_ab, c = -scale / V.  The sums
 * over a are axpys along G's rows (vectorisable without reassociating);
 * only the final W-term dot products are serial. */
static inline void mi_grad_loop(const mi_plan *p, const double *G, double c, float *gf, float *gm,
				const int kernel, const int W)
{
	const int st = p->stride;
	parzen_batch bf, bm;
#pragma omp for schedule(static)
	for (int64_t ib = 0; ib < mi_nbatch(p); ib++) {
		int64_t i0 = ib * PARZEN_BATCH;
		int n = p->n - i0 < PARZEN_BATCH ? (int)(p->n - i0) : PARZEN_BATCH;
		mi_window(kernel, &p->fmap, p->f + i0, n, 1, &bf);
		mi_window(kernel, &p->mmap, p->m + i0, n, 1, &bm);
		for (int v = 0; v < n; v++) {
			double val = p->mask ? (double)p->mask[i0 + v] : 1.0, sf = 0, sm = 0;
			double cw[PARZEN_WMAX] = {0}, cd[PARZEN_WMAX] = {0};
			if (val != 0) {
				const double *row = G + (int64_t)(bf.j0[v] + PARZEN_PAD) * st + bm.j0[v] + MI_CPAD;
				for (int a = 0; a < W; a++, row += st) {
					double wa = bf.w[a][v], da = bf.dw[a][v];
#pragma omp simd
					for (int b = 0; b < W; b++)
						cw[b] += wa * row[b], cd[b] += da * row[b];
				}
				for (int b = 0; b < W; b++)
					sf += bm.w[b][v] * cd[b], sm += bm.dw[b][v] * cw[b];
				sf *= c * val * bf.ds[v];
				sm *= c * val * bm.ds[v];
			}
			if (gf)
				gf[i0 + v] = (float)sf;
			if (gm)
				gm[i0 + v] = (float)sm;
		}
	}
}

static void mi_grad(const mi_plan *p, ffdp_mi_kernel kernel, const double *G, double c, float *gf, float *gm)
{
#pragma omp parallel
	{
		if (kernel == FFDP_MI_GAUSSIAN)
			mi_grad_loop(p, G, c, gf, gm, FFDP_MI_GAUSSIAN, PARZEN_GW);
		else
			mi_grad_loop(p, G, c, gf, gm, FFDP_MI_BSPLINE3, PARZEN_BW);
	}
}

/* Unit tables: two per thread, fewer when they would pass 64 MiB. */
static int mi_tables(int64_t tab)
{
	int64_t cap = ((int64_t)64 << 20) / (tab * (int64_t)sizeof(double));
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
	double *scratch = ffdp_alloc(((size_t)(nt + 1) * tab + (size_t)B * B + 4 * (size_t)B) * sizeof(double),
				     err);
	if (!scratch)
		return FFDP_ERR_NOMEM;
	double *priv = scratch, *G = priv + nt * tab, *h = G + tab, *lg = h + B * B + 2 * B, V = 0, mi = 0;

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
