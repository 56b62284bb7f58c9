/* Local normalised cross-correlation on the CPU, streaming z-planes.
 *
 * Math.  W(x) is the k^3 box centred at x clipped to the image (k^2 in 2-D:
 * each radius is clipped to n - 1 on its axis), n(x) its voxel count, and
 * Sf, Sm, Sff, Smm, Sfm the window sums of f, m, f^2, m^2, f m:
 *     cov = Sfm - Sf Sm/n,  vf = Sff - Sf^2/n,  vm = Smm - Sm^2/n,
 *     D = vf vm + eps,  cc = cov^2 / D,
 *     L = -(1/denom) sum_x w(x) cc(x).
 * A window where either image is flat scores 0, as in ANTs.  FFDP and
 * FireANTs put eps in the numerator too, so there it scores 1: moving
 * the moving image off a zero background is then a perfect score, and
 * the affine stage of the 4x up-sampled 1 mm pair (728x872x728, k = 5)
 * slid there (loss -1.000, global NCC -0.05 against identity's 0.58);
 * without it, NCC 0.966 (docs/perf.md, "A flat window scores 0").
 * The mask w weights the loss only; window statistics use every voxel.
 * With a = 2 cov/D, b = 2 cc vf/D, b' = 2 cc vm/D, for y in W(x):
 *     dcc(x)/dm(y) = a f(y) - b m(y) + c,    c  = (b Sm - a Sf)/n
 *     dcc(x)/df(y) = a m(y) - b' f(y) + c',  c' = (b' Sf - a Sm)/n
 * y is in W(x) iff x is in W(y), so the adjoint of the clipped box sum is the
 * same box sum:  dL/dm(y) = -(1/denom) [f(y) A(y) - m(y) B(y) + C(y)] with
 * A, B, C the box sums of w a, w b, w c (likewise for f).  ANTs'
 * approximation (exact_grad = 0) keeps only the window x = y.
 *
 * Precision: products are formed in double from f - cf and m - cm (cf, cm a
 * sampled mean of each image) and every sum is double, so Sff - Sf^2/n keeps
 * the variance of intensities ~1000.  vf, vm are clamped at 0 against
 * rounding.  cc and its gradient are shift invariant.
 *
 * Streaming.  Z(t) holds the products boxed along z only, a running sum
 * per voxel,
 *     Z(t) = (Z(t-1) + P(t+r)) - P(t-r-1),
 * P(p) the products of plane p.  A group of rows of plane t is scored when
 * Z's rows around it are in: its rows of T (boxed along y and z) are a
 * running y sum of Z's rows restarted every 32 rows (the y anchors; the
 * last row is carried from group to group), then boxed along x.  From
 * the sums of plane t come its loss and its coefficient planes, which are
 * boxed along x, then along y into a running z sum G that yields the
 * gradient of plane t - r.  G must drop the
 * coefficients of plane t - 2r - 1, kept in a ring of 2r + 1 coefficient
 * planes when memory allows (ring_planes), or else recomputed by a lag
 * copy of Z that replays the same increments 2r + 1 planes behind (the
 * same bits, so the ring and the lag give the same results).  Scratch:
 * Z (5 planes; at an anchor recomputed from its 2r + 1 planes), the ring
 * (ncoef (2r + 1) float planes: ncoef = 3 for one gradient, 5 for both)
 * or Z_lag (5), G and its restart (ncoef each), in double, and a few rows
 * per thread; the team stream also keeps the x-boxed coefficients as
 * planes.  Loss only or ANTs' gradient: Z alone.
 *
 * Threads: a thread streams its own z-range (a part, starting up to one
 * anchor block and 2r planes early) with no barrier, when z is long enough
 * and all parts' scratch fits in one float volume or 1 MiB (choose_parts); it
 * sweeps each plane once, row by row (lncc_stream_fused).  Otherwise a
 * team splits each plane (column strips for the y passes, rows for the x
 * passes, two barriers per plane).  Every value has the same bits either
 * way and for any thread count: the running sums restart at global
 * anchors (z) and y anchors, the x sums and G's y sums start at the
 * faces, and each plane's loss is its rows' sums in order.
 *
 * SIMD: groups of 4 rows are x-boxed and scored with the rows transposed
 * into the lanes of AVX2 vectors (cpu_boxsum.c), everything else is
 * vectorised along x; the AVX2 clone of the stream does every operation of
 * the scalar one in its order (no contraction), so the bits agree.
 *
 * Floor: read f and m once (8 B/voxel), the mask once (4 B), write the
 * gradients (4 B each): 12-20 B/voxel.  A fused step reads and writes Z
 * (80 B/voxel), G (24-40 B each way) and the ring (12-20 B each way) once,
 * and f and m rows 3 times (4 with the lag) within the last ~2r planes.
 * Per voxel the work does not depend on k; the ring's traffic does.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu_boxsum.h"
#include "cpu_lossutil.h"
#include "cpu_ops.h"
#include "ffdp/volume.h"

enum { NQ = 5, STRIP = FFDP_CPU_BOX_CHUNK, MAX_PARTS = 64 };

/* Hot helpers are inlined into loops whose variants must not branch. */
#if defined(__GNUC__)
#define LNCC_INLINE static inline __attribute__((always_inline))
#else
#define LNCC_INLINE static inline
#endif

typedef struct lncc_ctx {
	int64_t nx, ny, nz, np; /* np = nx * ny */
	int64_t rx, ry, rz;
	int64_t strip;          /* columns per y-pass work item */
	const float *f, *m, *w;
	float cf, cm; /* shifts for precision */
	float *gm, *gf;
	double eps, gscale; /* gscale = -scale / denom */
	int ncoef;          /* 0: loss only, 3: gm, 5: gm and gf */
	int exact;          /* exact gradient wanted (ncoef > 0) */
	double *icx, *icy, *icz;  /* 1 / window count per axis */
	int avx2;           /* take the AVX2 clone of the stream (2: its AVX-512 clone) */
	int64_t zoff;       /* global plane of box plane 0 (the streamed axis) */
	int64_t zfull;      /* planes of the whole volume */
	int64_t o0, o1;     /* box planes with loss and gradients */
	int64_t blk;        /* anchor spacing (ffdp_lncc_anchor_block) */
	int64_t ya;         /* y anchor spacing (y_anchor_spacing) */
	double *zs;         /* loss sum of each output plane */
	double *zsum_out;   /* the caller's zsum, or NULL */
	int d3;             /* 0: a 2-D image streamed as rows */
} lncc_ctx;

/* A z-range streamed by one team of nth threads.  Planes [v0, v1) exist for
 * its window sums, [s0, s1) are scored, [o0, o1) give loss and gradients; a
 * part of a cut volume reaches 2r planes past its outputs (r for ANTs). */
typedef struct lncc_part {
	int64_t v0, v1, s0, s1, o0, o1;
	int nth;           /* threads it has rows for */
	double *tl, *tg;   /* Z (lead) and Z_lag, NQ planes each */
	double *xc, *gsum; /* x-boxed coefficients and G, ncoef planes each */
	double *xc2, *g2;  /* G's restart: x-boxed coefficients (no lag) and their sum */
	int fused;         /* carved for the fused stream (one thread, 3-D) */
	int64_t kring;     /* fused, exact: planes of the coefficient ring (2 rz + 1), or 0: Z_lag */
	float *kr;         /* the ring: each scored plane's coefficients (float-valued), kept to be subtracted */
	int64_t ring;      /* fused stream: xc and xc2 are rings of this many rows */
	double *rg;        /* fused stream: the y sums of xc and xc2, ncoef rows each */
	double *rows;      /* scoring scratch per thread (rows_doubles) */
	double *lrow;      /* loss per row of the plane being scored */
} lncc_part;

/* ---- window sums -------------------------------------------------------------
 * Z(t) is the products boxed along z only: a running sum per voxel,
 *     Z(t) = (Z(t-1) + P(t + r)) - P(t - r - 1),
 * P(p) the products of plane p (f - cf, m - cm, their squares and their
 * product).  A row of T (boxed along z and y, not x) is the running y sum
 * of Z's rows restarted from zero at every y anchor (rows divisible by
 * c->ya), so it needs only Z and is formed where it is scored (t_rows);
 * between anchors the previous row is carried from group to group. */

/* y anchor spacing: 32 rows (a restart adds 2 ry + 1 rows, a carried row
 * two, even at ry = 1: 79.5 -> 75.6 instructions a voxel at k = 3); every
 * group where a row is its own window (ry = 0: 2-D images), which needs
 * no carried rows. */
static int64_t y_anchor_spacing(int64_t ry)
{
	return ry < 1 ? 4 : 32;
}

/* Z = Z + P(e) - P(l) on one row (e, l: whether the planes exist; fe ..:
 * the row in each plane), as (Z + e) - l. */
LNCC_INLINE void z_row(const lncc_ctx *c, double *Z, int64_t w, const float *fe, const float *me, const float *fl,
		       const float *ml, const int e, const int l)
{
	int64_t np = c->np;
	double cf = c->cf, cm = c->cm;

#pragma omp simd
	for (int64_t j = 0; j < w; j++) {
		double a = e ? (double)fe[j] - cf : 0.0, b = e ? (double)me[j] - cm : 0.0;
		double a2 = l ? (double)fl[j] - cf : 0.0, b2 = l ? (double)ml[j] - cm : 0.0;
		double pe[NQ] = {a, b, a * a, b * b, a * b}, pl[NQ] = {a2, b2, a2 * a2, b2 * b2, a2 * b2};
		for (int q = 0; q < NQ; q++) {
			double v = Z[q * np + j];
			if (e)
				v = v + pe[q];
			if (l)
				v = v - pl[q];
			Z[q * np + j] = v;
		}
	}
}

/* z_row for planes pe (entering, ue: it exists) and pl (leaving) at the
 * row offset o. */
LNCC_INLINE void z_move(const lncc_ctx *c, double *Z, int64_t o, int64_t w, int64_t pe, int64_t pl, int ue, int ul)
{
	const float *fe = c->f + pe * c->np + o, *me = c->m + pe * c->np + o;
	const float *fl = c->f + pl * c->np + o, *ml = c->m + pl * c->np + o;

	if (ue && ul)
		z_row(c, Z, w, fe, me, fl, ml, 1, 1);
	else if (ue)
		z_row(c, Z, w, fe, me, fl, ml, 1, 0);
	else if (ul)
		z_row(c, Z, w, fe, me, fl, ml, 0, 1);
}

/* ---- anchors ------------------------------------------------------------------
 * The running z sums Z (and Z_lag, which replays it) restart at global
 * planes a with a + rz = 0 (mod blk): Z(a) is then P(a - rz) .. P(a + rz)
 * added from zero in order, computed at step a (z_anchor).  G restarts
 * likewise at output planes a = 0 (mod blk) from g2, the x- and y-boxed
 * coefficients of planes a - rz .. a + rz, collected during the 2 rz + 1
 * steps before.  So each plane's sums depend only on the planes around it,
 * never on where the stream started (ops.h). */

/* Smallest a >= g with a + off = 0 (mod b). */
static int64_t anchor_from(int64_t g, int64_t off, int64_t b)
{
	int64_t m = (g + off) % b;
	if (m < 0)
		m += b;
	return m ? g + (b - m) : g;
}

static int t_anchor(const lncc_ctx *c, int64_t t)
{
	return anchor_from(t + c->zoff, c->rz, c->blk) == t + c->zoff;
}

/* The coefficients of plane p belong to the collection of the next G anchor. */
static int g_collects(const lncc_ctx *c, int64_t p)
{
	int64_t a = anchor_from(p + c->zoff - c->rz, 0, c->blk);
	return a <= p + c->zoff + c->rz;
}

static int g_anchor(const lncc_ctx *c, int64_t z)
{
	return anchor_from(z + c->zoff, 0, c->blk) == z + c->zoff;
}

/* The restart: run = col, col = 0, on rows [y0, y1) of nq planes, the
 * strip's columns. */
static void restart(const lncc_ctx *c, double *run, double *col, int nq, int64_t y0, int64_t y1, int64_t x0,
		    int64_t w)
{
	for (int q = 0; q < nq; q++)
		for (int64_t y = y0; y < y1; y++) {
			double *r = run + q * c->np + y * c->nx + x0, *k = col + q * c->np + y * c->nx + x0;
			for (int64_t j = 0; j < w; j++)
				r[j] = k[j], k[j] = 0.0;
		}
}

/* Step t on columns [x0, x0 + w):
 *     lead:  Z     = Z     + P(t + r) - P(t - r - 1)
 *     lag:   Z_lag = Z_lag + P(t - r - 1) - P(t - 3r - 2)
 * The lag update is the lead update of step t - 2r - 1, operation for
 * operation, so Z_lag there equals that step's Z bit for bit. */
typedef struct lncc_step {
	int64_t pl[3];          /* planes that enter the lead, leave it (and enter the lag), leave the lag */
	int use[3];             /* which of them exist and are needed */
	int lead, lag;          /* update Z, Z_lag */
	int rlead, rlag;        /* recompute them instead: an anchor */
	int64_t anc[2];         /* the anchor planes of the lead and the lag */
} lncc_step;

static lncc_step step_plan(const lncc_ctx *c, const lncc_part *pt, int64_t t, int lead, int lag)
{
	int64_t rz = c->rz;
	lncc_step s = {{t + rz, t - rz - 1, t - 3 * rz - 2}, {0, 0, 0}, lead, lag, 0, 0, {t, t - 2 * rz - 1}};

	s.rlead = lead && t_anchor(c, t), s.rlag = lag && t_anchor(c, t - 2 * rz - 1);
	s.lead = lead && !s.rlead, s.lag = lag && !s.rlag;
	s.use[0] = s.lead, s.use[1] = s.lead || s.lag, s.use[2] = s.lag;
	for (int i = 0; i < 3; i++)
		s.use[i] = s.use[i] && s.pl[i] >= pt->v0 && s.pl[i] < pt->v1;
	return s;
}

/* Z at its anchor a on one row (offset o): P(a - rz) .. P(a + rz) (those
 * of the part) added in order from zero. */
LNCC_INLINE void z_anchor(const lncc_ctx *c, const lncc_part *pt, double *Z, int64_t a, int64_t o, int64_t w)
{
	for (int q = 0; q < NQ; q++)
		for (int64_t j = 0; j < w; j++)
			Z[q * c->np + j] = 0.0;
	for (int64_t p = a - c->rz; p <= a + c->rz; p++)
		if (p >= pt->v0 && p < pt->v1)
			z_move(c, Z, o, w, p, p, 1, 0);
}

/* Row y of step t, columns [x0, x0 + w): Z and Z_lag move (or restart). */
LNCC_INLINE void stats_row(const lncc_ctx *c, const lncc_part *pt, const lncc_step *s, int64_t y, int64_t x0,
			   int64_t w)
{
	int64_t o = y * c->nx + x0;

	if (s->rlead)
		z_anchor(c, pt, pt->tl + o, s->anc[0], o, w);
	else if (s->lead)
		z_move(c, pt->tl + o, o, w, s->pl[0], s->pl[1], s->use[0], s->use[1]);
	if (s->rlag)
		z_anchor(c, pt, pt->tg + o, s->anc[1], o, w);
	else if (s->lag)
		z_move(c, pt->tg + o, o, w, s->pl[1], s->pl[2], s->use[1], s->use[2]);
}

static void stats_strip(const lncc_ctx *c, const lncc_part *pt, int64_t t, int lead, int lag, int64_t x0,
			     int64_t w)
{
	lncc_step s = step_plan(c, pt, t, lead, lag);

	for (int64_t y = 0; y < c->ny; y++)
		stats_row(c, pt, &s, y, x0, w);
}

/* One row of T: o = (p + Z row e) - Z row l (either may be absent). */
LNCC_INLINE void t_step(const double *p, const double *ze, const double *zl, double *o, int64_t nx)
{
	if (ze && zl) {
#pragma omp simd
		for (int64_t j = 0; j < nx; j++)
			o[j] = (p[j] + ze[j]) - zl[j];
	} else if (ze) {
#pragma omp simd
		for (int64_t j = 0; j < nx; j++)
			o[j] = p[j] + ze[j];
	} else if (zl) {
#pragma omp simd
		for (int64_t j = 0; j < nx; j++)
			o[j] = p[j] - zl[j];
	} else {
		for (int64_t j = 0; j < nx; j++)
			o[j] = p[j];
	}
}

/* T at the y anchor a from one quantity's Z plane z: its window's rows
 * added in order. */
LNCC_INLINE void t_anchor_row(const lncc_ctx *c, const double *z, int64_t a, double *o)
{
	int64_t nx = c->nx, lo = a - c->ry > 0 ? a - c->ry : 0, hi = a + c->ry < c->ny ? a + c->ry : c->ny - 1;
	const double *z0 = z + lo * nx;

	for (int64_t j = 0; j < nx; j++)
		o[j] = z0[j];
	for (int64_t y = lo + 1; y <= hi; y++) {
		const double *zy = z + y * nx;
#pragma omp simd
		for (int64_t j = 0; j < nx; j++)
			o[j] += zy[j];
	}
}

/* T row yy from row yy - 1 (p) of the same quantity. */
LNCC_INLINE void t_next(const lncc_ctx *c, const double *z, int64_t yy, const double *p, double *o)
{
	int64_t nx = c->nx, e = yy + c->ry, l = yy - c->ry - 1;
	t_step(p, e < c->ny ? z + e * nx : NULL, l >= 0 ? z + l * nx : NULL, o, nx);
}

/* T rows y .. y + nr - 1 from the z sums Z (NQ planes): row j of quantity
 * q into out + j nx + q oqs.  With y anchors further apart than a group,
 * carry (row q at q nx; NULL otherwise) holds T row y - 1 when y is not a
 * y anchor, and gets row y + nr - 1: callers take a plane's rows in order
 * from an anchor.  A row's bits depend only on its position. */
LNCC_INLINE void t_rows(const lncc_ctx *c, const double *Z, int64_t y, int nr, double *out, int64_t oqs,
			double *carry)
{
	int64_t nx = c->nx;

	for (int q = 0; q < NQ; q++) {
		const double *z = Z + q * c->np;
		double *o = out + q * oqs, *cq = carry ? carry + q * nx : NULL;
		for (int j = 0; j < nr; j++) {
			int64_t yy = y + j;
			if (yy % c->ya == 0) {
				t_anchor_row(c, z, yy, o + j * nx);
			} else if (j || cq) {
				t_next(c, z, yy, j ? o + (j - 1) * nx : cq, o + j * nx);
			} else {
				/* nothing carried: from the anchor below */
				int64_t a = yy - yy % c->ya;
				t_anchor_row(c, z, a, o);
				for (int64_t k = a + 1; k <= yy; k++)
					t_next(c, z, k, o, o);
			}
		}
		if (cq)
			memcpy(cq, o + (nr - 1) * nx, (size_t)nx * sizeof(double));
	}
}

/* cc from the window sums at one voxel (s[q * ss]), inv = 1/n; when nc > 0
 * also the gradient coefficients times w into k[q * ks],
 * q = (w a, w b, w c[, w b', w c']): mode KSET stores them, KSUB
 * subtracts them (the lag), KRING stores them and into the ring kr (stride
 * ks) too, KSWAP stores them less the ring's and puts them in the ring
 * (ring_swap's operations).  Lead and lag run this same code on the same
 * bits, so their coefficients agree. */
enum { KSET, KSUB, KRING, KSWAP };

LNCC_INLINE void k_put(double *k, float *kr, double v, const int mode)
{
	if (mode == KSUB) {
		*k -= v;
	} else if (mode == KSWAP) {
		double old = (double)*kr;
		*kr = (float)v;
		*k = v - old;
	} else {
		*k = v;
		if (mode == KRING)
			*kr = (float)v;
	}
}

LNCC_INLINE double voxel_cc(const double *s, int64_t ss, double inv, double eps, double w, int nc, double *k,
			    float *kr, int64_t ks, const int mode)
{
	double sf = s[0], sm = s[ss];
	double cov = s[4 * ss] - sf * sm * inv;
	double vf = s[2 * ss] - sf * sf * inv, vm = s[3 * ss] - sm * sm * inv;
	vf = vf > 0.0 ? vf : 0.0;
	vm = vm > 0.0 ? vm : 0.0;
	double rd = 1.0 / (vf * vm + eps);
	double cc = cov * cov * rd;
	if (nc) {
		/* rounded to float: the ring keeps them in float, and the lag
		 * must subtract what was added */
		double a = 2.0 * cov * rd, b = 2.0 * cc * vf * rd;
		double v0 = (float)(w * a), v1 = (float)(w * b), v2 = (float)(w * (b * sm - a * sf) * inv);
		double v3 = 0.0, v4 = 0.0;
		if (nc == 5) {
			double b2 = 2.0 * cc * vm * rd;
			v3 = (float)(w * b2), v4 = (float)(w * (b2 * sf - a * sm) * inv);
		}
		double v[5] = {v0, v1, v2, v3, v4};
		for (int q = 0; q < nc; q++)
			k_put(k + q * ks, mode >= KRING ? kr + q * ks : NULL, v[q], mode);
	}
	return cc;
}

/* The scoring loop with nc, mode and masked constant after inlining: each
 * variant is branch-free and vectorises.  n voxels, sums and coefficients
 * (and the ring's) of stride ss, inverse counts icx[x] icyz; lc[x] = w cc. */
LNCC_INLINE void score_span(const double *S, int64_t ss, int64_t n, const double *icx, double icyz, double eps,
			    const float *w, double *k, float *kr, double *lc, const int nc, const int mode,
			    const int masked)
{
#pragma omp simd
	for (int64_t x = 0; x < n; x++) {
		double wx = masked ? (double)w[x] : 1.0;
		float *kx = mode >= KRING ? kr + x : NULL;
		lc[x] = wx * voxel_cc(S + x, ss, icx[x] * icyz, eps, wx, nc, k + x, kx, ss, mode);
	}
}

/* A row's loss: sum of v[x st] over its n voxels, as four sums by x mod 4
 * added pairwise: one order for the row-by-row and the transposed scoring,
 * and whatever the ISA. */
static double row_sum(const double *v, int64_t st, int64_t n)
{
	double p0 = 0.0, p1 = 0.0, p2 = 0.0, p3 = 0.0;
	int64_t x = 0;
	for (; x + 4 <= n; x += 4) {
		p0 += v[x * st], p1 += v[(x + 1) * st];
		p2 += v[(x + 2) * st], p3 += v[(x + 3) * st];
	}
	p0 += x < n ? v[x * st] : 0.0;
	p1 += x + 1 < n ? v[(x + 1) * st] : 0.0;
	p2 += x + 2 < n ? v[(x + 2) * st] : 0.0;
	return (p0 + p1) + (p2 + p3);
}

/* row_sum of the 4 rows of transposed values v (element 4 x + j: row j)
 * into out[j]: the same operations per row, the rows in the lanes. */
static void row_sum4(const double *v, int64_t n, double out[4])
{
	double p[4][4] = {{0}};
	int64_t x = 0;
	for (; x + 4 <= n; x += 4)
		for (int k = 0; k < 4; k++)
			for (int j = 0; j < 4; j++)
				p[k][j] += v[4 * (x + k) + j];
	for (int k = 0; k < 3; k++)
		for (int j = 0; j < 4; j++)
			p[k][j] += x + k < n ? v[4 * (x + k) + j] : 0.0;
	for (int j = 0; j < 4; j++)
		out[j] = (p[0][j] + p[1][j]) + (p[2][j] + p[3][j]);
}

/* Rows per group of the scoring pass: 4 share one AVX2 pass of x-boxing. */
static int group_rows(const lncc_ctx *c)
{
	return c->ny >= 4 ? 4 : 1;
}

/* x-box nq quantities of nr rows: row j of quantity q at in + j irs + q iqs,
 * out likewise.  Four rows at once on AVX2 (the same bits as one by one). */
static void box_x(const lncc_ctx *c, const double *in, int64_t irs, int64_t iqs, double *out, int64_t ors,
		  int64_t oqs, int nq, int nr, double *tmp)
{
#ifdef __x86_64__
	if (nr == 4 && c->avx2) {
		ffdp_cpu_box_rows4_avx2(in, irs, iqs, out, ors, oqs, nq, c->nx, c->rx, tmp);
		return;
	}
#endif
	for (int j = 0; j < nr; j++)
		ffdp_cpu_box_rows(in + j * irs, iqs, out + j * ors, oqs, nq, c->nx, c->rx);
}

/* Scoring of n voxels (score_span) in the variant of this call. */
#define SCORE_NC(nc, mode, masked)                                                                         \
	score_span(S, ss, n, icx, icyz, c->eps, w, k, kr, lc, nc, mode, masked)
#define SCORE_MODE(mode, masked)                                                                           \
	(c->ncoef == 5 ? SCORE_NC(5, mode, masked) : SCORE_NC(3, mode, masked))
#define SCORE_MASK(masked)                                                                                 \
	(!c->ncoef ? SCORE_NC(0, KSET, masked)                                                             \
	 : mode == KSET ? SCORE_MODE(KSET, masked)                                                        \
	 : mode == KSUB ? SCORE_MODE(KSUB, masked)                                                        \
	 : mode == KRING ? SCORE_MODE(KRING, masked) : SCORE_MODE(KSWAP, masked))
static void score(const lncc_ctx *c, const double *S, int64_t ss, int64_t n, const double *icx, double icyz,
		  const float *w, double *k, float *kr, double *lc, int mode)
{
	if (w)
		SCORE_MASK(1);
	else
		SCORE_MASK(0);
}
#undef SCORE_MASK
#undef SCORE_MODE
#undef SCORE_NC

/* Row y of plane p scored from its x-boxed sums S (stride nx): cc and the
 * coefficients into k (stride nx; sub: subtracted), w cc into lc. */
static void score_row(const lncc_ctx *c, int64_t p, int64_t y, const double *S, double *k, float *kr, double *lc,
		      int mode)
{
	const float *w = c->w ? c->w + p * c->np + y * c->nx : NULL;
	score(c, S, c->nx, c->nx, c->icx, c->icy[y] * c->icz[p], w, k, kr, lc, mode);
}

/* Gradients at row y of plane z, columns [x0, x0 + w), from coefficient sums
 * k (k[q * ks + j] for column x0 + j). */
static void grad_span(const lncc_ctx *c, int64_t z, int64_t y, int64_t x0, int64_t w, const double *k,
			   int64_t ks)
{
	int64_t o = z * c->np + y * c->nx + x0;
	const float *f = c->f + o, *m = c->m + o;
	float *gm = c->gm + o;
	double g = c->gscale, cf = c->cf, cm = c->cm;

	if (c->ncoef == 5) {
		float *gf = c->gf + o;
#pragma omp simd
		for (int64_t j = 0; j < w; j++) {
			double fv = (double)f[j] - cf, mv = (double)m[j] - cm;
			gm[j] = (float)(g * (fv * k[j] - mv * k[ks + j] + k[2 * ks + j]));
			gf[j] = (float)(g * (mv * k[j] - fv * k[3 * ks + j] + k[4 * ks + j]));
		}
		return;
	}
#pragma omp simd
	for (int64_t j = 0; j < w; j++) {
		double fv = (double)f[j] - cf, mv = (double)m[j] - cm;
		gm[j] = (float)(g * (fv * k[j] - mv * k[ks + j] + k[2 * ks + j]));
	}
}

/* The scoring scratch of a thread (rows_doubles), for groups of g rows:
 * sums S and coefficients k of each row (NQ rows each; transposed: NQ
 * blocks of 4 nx), w cc (lc), and for g = 4 the transposed inverse counts
 * and weights and the x-boxing's scratch. */
typedef struct lncc_rows {
	double *S, *k, *lc, *inv4, *tmp, *T;
	double *key; /* the 4 rows' y-z inverse counts that inv4 holds */
	double *cl, *cg; /* T rows carried for the lead and the lag (t_rows) */
	float *w4;
} lncc_rows;

static lncc_rows rows_at(const lncc_ctx *c, double *rows)
{
	int64_t nx = c->nx, g = group_rows(c);
	lncc_rows r;
	r.S = rows, r.k = rows + g * NQ * nx, r.lc = r.k + g * NQ * nx;
	r.inv4 = r.lc + 4 * nx, r.w4 = (float *)(r.inv4 + 4 * nx), r.tmp = r.inv4 + 6 * nx;
	r.T = g > 1 ? r.tmp + 8 * nx : r.lc + nx;
	r.key = r.T + g * NQ * nx;
	/* carried rows: only with y anchors further apart than a group */
	r.cl = c->ya > 4 ? r.key + 4 : NULL, r.cg = c->ya > 4 ? r.cl + NQ * nx : NULL;
	return r;
}

/* The coefficient ring instead of the lag: kr holds plane p's coefficients
 * (the values the lag would recompute, bit for bit), k plane t's, and p
 * and t share the ring's slot: k = k - kr where p is scored (the lag's
 * subtraction), and kr = plane t's. */
static void ring_swap(double *k, float *kr, int64_t n, int sub)
{
	if (sub) {
#pragma omp simd
		for (int64_t e = 0; e < n; e++) {
			double v = k[e];
			k[e] = v - (double)kr[e];
			kr[e] = (float)v;
		}
		return;
	}
#pragma omp simd
	for (int64_t e = 0; e < n; e++)
		kr[e] = (float)k[e];
}

/* How step t's scoring writes its coefficients: with the ring, into it
 * too (ring_swap's operations, fused), unless plane t is not scored or
 * G collects k(t) itself first. */
static int ring_mode(const lncc_ctx *c, const lncc_part *pt, int64_t t, const float *kr)
{
	int64_t p = t - 2 * c->rz - 1;
	if (!kr || !c->exact || t < pt->s0 || t >= pt->s1 || g_collects(c, t))
		return KSET;
	return p >= pt->s0 && p < pt->s1 ? KSWAP : KRING;
}

/* Rows y .. y + nr - 1 at step t, row by row (x-boxed four at once on
 * AVX2): loss of plane t (when an output), and ANTs' gradient, or the
 * x-boxed coefficient difference k(t) - k(t - 2r - 1) into xc (and k(t)
 * into xc2 when G collects), their row y there, rows of stride nx,
 * coefficients of stride xqs; kr: the ring's rows, or NULL for the lag. */
static void coef_rows_n(const lncc_ctx *c, lncc_part *pt, int64_t t, int64_t y, int nr, lncc_rows *b, double *xc,
			double *xc2, int64_t xqs, float *kr)
{
	int64_t nx = c->nx, p = t - 2 * c->rz - 1, rs = NQ * nx, tqs = group_rows(c) * nx;
	int nc = c->ncoef, mode = ring_mode(c, pt, t, kr);

	if (t >= pt->s0 && t < pt->s1) {
		t_rows(c, pt->tl, y, nr, b->T, tqs, b->cl);
		box_x(c, b->T, nx, tqs, b->S, rs, nx, NQ, nr, b->tmp);
		for (int j = 0; j < nr; j++) {
			score_row(c, t, y + j, b->S + j * rs, b->k + j * rs, mode == KSET ? NULL : kr + j * nc * nx,
				  b->lc, mode);
			if (t >= pt->o0 && t < pt->o1)
				pt->lrow[y + j] = row_sum(b->lc, 1, nx);
			if (nc && !c->exact)
				grad_span(c, t, y + j, 0, nx, b->k + j * rs, nx);
		}
	} else {
		for (int64_t x = 0; x < nr * rs; x++)
			b->k[x] = 0.0;
	}
	if (!c->exact)
		return;
	if (g_collects(c, t))
		box_x(c, b->k, rs, nx, xc2, nx, xqs, nc, nr, b->tmp);
	if (kr && mode == KSET) {
		for (int j = 0; j < nr; j++)
			ring_swap(b->k + j * rs, kr + j * nc * nx, nc * nx, p >= pt->s0 && p < pt->s1);
	} else if (!kr && p >= pt->s0 && p < pt->s1) {
		t_rows(c, pt->tg, y, nr, b->T, tqs, b->cg);
		box_x(c, b->T, nx, tqs, b->S, rs, nx, NQ, nr, b->tmp);
		for (int j = 0; j < nr; j++)
			score_row(c, p, y + j, b->S + j * rs, b->k + j * rs, NULL, b->lc, KSUB);
	}
	box_x(c, b->k, rs, nx, xc, nx, xqs, nc, nr, b->tmp);
}

#ifdef __x86_64__
/* Rows y .. y + 3 of plane p scored in transposed form (element 4 x + j:
 * row y + j, column x), from transposed sums St into transposed kt and lc:
 * each voxel's operations are score_row's. */
static void score_t4(const lncc_ctx *c, int64_t p, int64_t y, lncc_rows *b, float *kr, int mode)
{
	int64_t nx = c->nx;
	double icyz[4];
	const float *w = NULL;

	for (int j = 0; j < 4; j++)
		icyz[j] = c->icy[y + j] * c->icz[p];
	/* interior rows of interior planes all have the same counts */
	if (memcmp(icyz, b->key, sizeof(icyz))) {
		for (int64_t x = 0; x < nx; x++)
			for (int j = 0; j < 4; j++)
				b->inv4[4 * x + j] = c->icx[x] * icyz[j];
		memcpy(b->key, icyz, sizeof(icyz));
	}
	if (c->w) {
		const float *w0 = c->w + p * c->np + y * nx;
		for (int64_t x = 0; x < nx; x++)
			for (int j = 0; j < 4; j++)
				b->w4[4 * x + j] = w0[j * nx + x];
		w = b->w4;
	}
	score(c, b->S, 4 * nx, 4 * nx, b->inv4, 1.0, w, b->k, kr, b->lc, mode);
}

/* coef_rows_n for 4 rows on AVX2 with the exact gradient or none: sums,
 * coefficients and their x-boxing stay transposed between the passes, so
 * only T, T_lag (formed from Z, Z_lag in registers) going in and xc
 * coming out are transposed. */
static void coef_rows_t4(const lncc_ctx *c, lncc_part *pt, int64_t t, int64_t y, lncc_rows *b, double *xc,
			 double *xc2, int64_t xqs, float *kr)
{
	int64_t nx = c->nx, p = t - 2 * c->rz - 1, n4 = 4 * nx;
	int nc = c->ncoef, mode = ring_mode(c, pt, t, kr);

	if (t >= pt->s0 && t < pt->s1) {
		ffdp_cpu_box_yx4_to_t(pt->tl, c->np, nx, c->ny, y, c->ry, c->rx, b->S, n4, NQ, b->tmp,
				      y % c->ya ? b->cl : NULL, b->cl);
		score_t4(c, t, y, b, kr, mode);
		if (t >= pt->o0 && t < pt->o1)
			row_sum4(b->lc, nx, pt->lrow + y);
	} else {
		for (int64_t x = 0; x < nc * n4; x++)
			b->k[x] = 0.0;
	}
	if (!c->exact)
		return;
	if (g_collects(c, t))
		ffdp_cpu_box_t_to_rows4(b->k, n4, xc2, nx, xqs, nc, nx, c->rx, b->tmp);
	if (kr && mode == KSET)
		ring_swap(b->k, kr, nc * n4, p >= pt->s0 && p < pt->s1);
	else if (!kr && p >= pt->s0 && p < pt->s1) {
		ffdp_cpu_box_yx4_to_t(pt->tg, c->np, nx, c->ny, y, c->ry, c->rx, b->S, n4, NQ, b->tmp,
				      y % c->ya ? b->cg : NULL, b->cg);
		score_t4(c, p, y, b, NULL, KSUB);
	}
	ffdp_cpu_box_t_to_rows4(b->k, n4, xc, nx, xqs, nc, nx, c->rx, b->tmp);
}
#endif

static void coef_rows(const lncc_ctx *c, lncc_part *pt, int64_t t, int64_t y, int nr, double *rows, double *xc,
		      double *xc2, int64_t xqs, float *kr)
{
	lncc_rows b = rows_at(c, rows);
#ifdef __x86_64__
	if (nr == 4 && y % 4 == 0 && c->avx2 && (c->exact || !c->ncoef)) {
		coef_rows_t4(c, pt, t, y, &b, xc, xc2, xqs, kr);
		return;
	}
#endif
	coef_rows_n(c, pt, t, y, nr, &b, xc, xc2, xqs, kr);
}

/* One running y sum of ring rows (xc: one coefficient's ring) moved to
 * output row yo, added to G's row: ffdp_cpu_box_cols_add's operations in
 * its order. */
LNCC_INLINE void g_run(const lncc_ctx *c, const lncc_part *pt, const double *xc, double *run, double *G, int64_t yo)
{
	int64_t nx = c->nx, ny = c->ny, ry = c->ry, R = pt->ring;

	if (yo == 0) {
		for (int64_t j = 0; j < nx; j++)
			run[j] = 0.0;
		for (int64_t y = 0; y < ry && y < ny; y++) {
			const double *a = xc + (y % R) * nx;
			for (int64_t j = 0; j < nx; j++)
				run[j] += a[j];
		}
	}
	if (yo + ry < ny && yo - ry - 1 >= 0) {
		const double *a = xc + ((yo + ry) % R) * nx, *b = xc + ((yo - ry - 1) % R) * nx;
#pragma omp simd
		for (int64_t j = 0; j < nx; j++) {
			run[j] = (run[j] + a[j]) - b[j];
			G[j] += run[j];
		}
		return;
	}
	if (yo + ry < ny) {
		const double *a = xc + ((yo + ry) % R) * nx;
		for (int64_t j = 0; j < nx; j++)
			run[j] += a[j];
	}
	if (yo - ry - 1 >= 0) {
		const double *b = xc + ((yo - ry - 1) % R) * nx;
		for (int64_t j = 0; j < nx; j++)
			run[j] -= b[j];
	}
#pragma omp simd
	for (int64_t j = 0; j < nx; j++)
		G[j] += run[j];
}

/* Fused stream, step t: on output rows [y0, y1) of plane z = t - rz,
 * G += the y-boxed coefficient rows of the ring (and G's restart
 * collection likewise), the restart, then the gradients.  The running y
 * sums (rg) do ffdp_cpu_box_cols_add's operations in its order, so G has
 * the team stream's bits. */
/* g_rows' inner output row yo of an output plane z when G neither
 * collects nor restarts: g_run of the nc coefficients and grad_span in one
 * loop, their operations in their order. */
LNCC_INLINE void g_grad_inner(const lncc_ctx *c, const lncc_part *pt, int64_t z, int64_t yo, const int nc)
{
	int64_t nx = c->nx, np = c->np, R = pt->ring, o = z * np + yo * nx;
	const double *a[5], *b[5];
	double *run[5], *G[5], g = c->gscale, cf = c->cf, cm = c->cm;
	const float *f = c->f + o, *m = c->m + o;
	float *gm = c->gm + o, *gf = nc == 5 ? c->gf + o : NULL;

	for (int q = 0; q < nc; q++) {
		a[q] = pt->xc + q * R * nx + ((yo + c->ry) % R) * nx;
		b[q] = pt->xc + q * R * nx + ((yo - c->ry - 1) % R) * nx;
		run[q] = pt->rg + q * nx, G[q] = pt->gsum + q * np + yo * nx;
	}
#pragma omp simd
	for (int64_t j = 0; j < nx; j++) {
		double k[5];
		for (int q = 0; q < nc; q++) {
			double r = (run[q][j] + a[q][j]) - b[q][j];
			run[q][j] = r;
			G[q][j] = k[q] = G[q][j] + r;
		}
		double fv = (double)f[j] - cf, mv = (double)m[j] - cm;
		gm[j] = (float)(g * (fv * k[0] - mv * k[1] + k[2]));
		if (nc == 5)
			gf[j] = (float)(g * (mv * k[0] - fv * k[3] + k[4]));
	}
}

static void g_rows(const lncc_ctx *c, const lncc_part *pt, int64_t t, int64_t y0, int64_t y1)
{
	int64_t nx = c->nx, np = c->np, z = t - c->rz;
	int nc = c->ncoef, coll = g_collects(c, t), anchor = g_anchor(c, z);
	int out = z >= pt->o0 && z < pt->o1;

	for (int64_t yo = y0; yo < y1; yo++) {
		if (out && !coll && !anchor && yo + c->ry < c->ny && yo - c->ry - 1 >= 0) {
			if (nc == 5)
				g_grad_inner(c, pt, z, yo, 5);
			else
				g_grad_inner(c, pt, z, yo, 3);
			continue;
		}
		for (int q = 0; q < nc; q++) {
			double *G = pt->gsum + q * np + yo * nx, *G2 = pt->g2 + q * np + yo * nx;
			g_run(c, pt, pt->xc + q * pt->ring * nx, pt->rg + q * nx, G, yo);
			if (coll)
				g_run(c, pt, pt->xc2 + q * pt->ring * nx, pt->rg + (nc + q) * nx, G2, yo);
			for (int64_t j = 0; j < nx && anchor; j++)
				G[j] = G2[j], G2[j] = 0.0;
		}
		if (z >= pt->o0 && z < pt->o1)
			grad_span(c, z, yo, 0, nx, pt->gsum + yo * nx, np);
	}
}

/* G += ybox(xc) on a strip, then the gradient of plane z there when it is
 * an output. */
static void grad_strip(const lncc_ctx *c, const lncc_part *pt, int64_t z, int64_t x0, int64_t w)
{
	for (int q = 0; q < c->ncoef; q++)
		ffdp_cpu_box_cols_add(pt->xc + q * c->np, pt->gsum + q * c->np, c->nx, c->ny, c->ry, x0, x0 + w);
	if (g_collects(c, z + c->rz))
		for (int q = 0; q < c->ncoef; q++)
			ffdp_cpu_box_cols_add(pt->xc2 + q * c->np, pt->g2 + q * c->np, c->nx, c->ny, c->ry, x0,
					      x0 + w);
	if (g_anchor(c, z))
		restart(c, pt->gsum, pt->g2, c->ncoef, 0, c->ny, x0, w);
	if (z < pt->o0 || z >= pt->o1)
		return;
	for (int64_t y = 0; y < c->ny; y++)
		grad_span(c, z, y, x0, w, pt->gsum + y * c->nx + x0, c->np);
}

/* Scoring scratch of one thread (lncc_rows): S and k of each row of a
 * group, lc, and for groups of 4 the transposed inverse counts (4 rows),
 * weights (2) and the x-boxing's scratch (8). */
static size_t rows_doubles(const lncc_ctx *c)
{
	int g = group_rows(c);
	return ((size_t)g * 3 * NQ + (c->ya > 4 ? 2 * NQ : 0) + (g > 1 ? 18 : 1)) * (size_t)c->nx + 4;
}

LNCC_INLINE void team_sync(int nth)
{
	if (nth > 1) {
#pragma omp barrier
	}
}

/* Thread tid's share [lo, hi) of n items, the same split on every call. */
static void share(int64_t n, int tid, int nth, int64_t *lo, int64_t *hi)
{
	*lo = n * tid / nth;
	*hi = n * (tid + 1) / nth;
}

/* The plane's loss, its rows in order. */
static void plane_loss(const lncc_ctx *c, const lncc_part *pt, int64_t t)
{
	double sum = 0.0;
	for (int64_t y = 0; y < c->ny; y++)
		sum += pt->lrow[y];
	c->zs[t] = sum;
}

/* A part, run by each thread of its team in lockstep.  A strip pass does
 * step t's window sums and step t-1's gradient (disjoint data), a row pass
 * scores step t: two barriers per plane. */
static void lncc_stream_team(const lncc_ctx *c, lncc_part *pt, int tid, int nth)
{
	int64_t rz = c->rz, tend = c->exact ? pt->o1 + rz : pt->o1;
	int64_t nstrip = (c->nx + c->strip - 1) / c->strip, s0, s1, y0, y1;
	double *rows = pt->rows + (size_t)tid * rows_doubles(c);
	int g = group_rows(c);

	share(nstrip, tid, nth, &s0, &s1);
	/* from y anchors, so that T rows carry (t_rows) */
	share((c->ny + c->ya - 1) / c->ya, tid, nth, &y0, &y1);
	y0 *= c->ya, y1 = y1 * c->ya < c->ny ? y1 * c->ya : c->ny;
	for (int64_t t = pt->v0 - rz; t <= tend; t++) {
		int64_t p = t - 2 * rz - 1;
		int lead = t < pt->s1, lag = c->exact && p >= pt->v0 - rz && p < pt->s1 && t < tend;
		int grad = c->exact && t - 1 >= pt->s0;
		for (int64_t s = s0; s < s1 && (lead || lag || grad); s++) {
			int64_t x0 = s * c->strip, w = x0 + c->strip < c->nx ? c->strip : c->nx - x0;
			if (lead || lag)
				stats_strip(c, pt, t, lead, lag, x0, w);
			if (grad)
				grad_strip(c, pt, t - 1 - rz, x0, w);
		}
		team_sync(nth);
		if (t < pt->s0 || t >= tend)
			continue;
		for (int64_t y = y0; y < y1;) {
			int nr = y + g <= y1 ? g : 1;
			coef_rows(c, pt, t, y, nr, rows, c->exact ? pt->xc + y * c->nx : NULL,
				  c->exact ? pt->xc2 + y * c->nx : NULL, c->np, NULL);
			y += nr;
		}
		team_sync(nth);
		/* lrow is next written after the next step's first barrier */
		if (tid == 0 && t >= pt->o0 && t < pt->o1)
			plane_loss(c, pt, t);
	}
}

/* A part streamed by one thread, each step one sweep down the plane: row y
 * of Z moves, each group of rows is scored as soon as Z's rows around it
 * are in, and G and the gradient follow ry rows behind.  Z, Z_lag and G
 * are read and written once a step, while they are in cache, and the
 * x-boxed coefficients live in rings of rows.  Every value gets the
 * team stream's operations in its order: the same bits. */
static void lncc_stream_fused(const lncc_ctx *c, lncc_part *pt)
{
	int64_t rz = c->rz, ny = c->ny, nx = c->nx, R = pt->ring, tend = c->exact ? pt->o1 + rz : pt->o1;
	int g = group_rows(c);

	for (int64_t t = pt->v0 - rz; t < tend; t++) {
		int64_t p = t - 2 * rz - 1, yg = 0, yo = 0, K = pt->kring;
		int lead = t < pt->s1, lag = !K && c->exact && p >= pt->v0 - rz && p < pt->s1, score = t >= pt->s0;
		lncc_step s = step_plan(c, pt, t, lead, lag);
		/* planes t and p share a slot of the ring */
		float *kr = K ? pt->kr + ((t % K + K) % K) * c->ncoef * c->np : NULL;

		for (int64_t y = 0; y < ny; y++) {
			if (lead || lag)
				stats_row(c, pt, &s, y, 0, nx);
			if (!score)
				continue;
			/* groups whose T rows have their Z rows in */
			while (yg < ny) {
				int nr = yg + g <= ny ? g : 1;
				int64_t last = yg + nr - 1 + c->ry;
				if ((last < ny ? last : ny - 1) > y)
					break;
				coef_rows(c, pt, t, yg, nr, pt->rows, c->exact ? pt->xc + (yg % R) * nx : NULL,
					  c->exact ? pt->xc2 + (yg % R) * nx : NULL, R * nx,
					  kr ? kr + yg * c->ncoef * nx : NULL);
				yg += nr;
				/* output rows whose window's last coefficient row is in,
				 * before the next group reuses the ring's rows */
				int64_t y1 = yg == ny ? ny : yg - c->ry;
				if (c->exact && y1 > yo) {
					g_rows(c, pt, t, yo, y1);
					yo = y1;
				}
			}
		}
		if (score && t >= pt->o0 && t < pt->o1)
			plane_loss(c, pt, t);
	}
}

/* A part for one thread streams fused; 2-D images (one row a plane) and
 * teams (even when given fewer threads than asked) take the strip passes. */
static void lncc_stream_body(const lncc_ctx *c, lncc_part *pt, int tid, int nth)
{
	if (pt->fused)
		lncc_stream_fused(c, pt);
	else
		lncc_stream_team(c, pt, tid, nth);
}

/* The stream compiled twice: for the baseline ISA and, everything above
 * inlined into it (flatten), for AVX2 (4 doubles a vector).  Without
 * contraction (-ffp-contract=off) each value gets the same bits;
 * only the loss sum, a vectorised reduction, may differ in its last bits. */
static void lncc_stream_base(const lncc_ctx *c, lncc_part *pt, int tid, int nth)
{
	lncc_stream_body(c, pt, tid, nth);
}

#if defined(__GNUC__) && defined(__x86_64__)
#define LNCC_AVX2 1
__attribute__((flatten, target("avx2,fma"))) static void lncc_stream_avx2(const lncc_ctx *c, lncc_part *pt,
									      int tid, int nth)
{
	lncc_stream_body(c, pt, tid, nth);
}

/* The same with AVX-512's 32 registers and EVEX encodings (the AVX2 code's
 * operations, 256-bit or wider, no contraction): fewer spills in the
 * transposed scoring, 6-10 % on Zen 4 (docs/perf.md, thirteenth session). */
__attribute__((flatten, target("avx2,fma,avx512f,avx512vl,avx512dq,avx512bw"))) static void
lncc_stream_avx512(const lncc_ctx *c, lncc_part *pt, int tid, int nth)
{
	lncc_stream_body(c, pt, tid, nth);
}
#endif

static void lncc_stream(const lncc_ctx *c, lncc_part *pt, int tid, int nth)
{
#ifdef LNCC_AVX2
	if (c->avx2 == 2) {
		lncc_stream_avx512(c, pt, tid, nth);
		return;
	}
	if (c->avx2) {
		lncc_stream_avx2(c, pt, tid, nth);
		return;
	}
#endif
	lncc_stream_base(c, pt, tid, nth);
}

/* Rows of the fused stream's coefficient rings: the 2 ry + 1 rows of a
 * window, the row leaving it and a group of 4 being written (rounded up to
 * whole groups), or the whole plane. */
static int64_t ring_rows(const lncc_ctx *c)
{
	int64_t R = (2 * c->ry + 5 + 3) / 4 * 4;
	return R < c->ny ? R : c->ny;
}

/* Doubles of scratch for one part with nth threads, with the coefficient
 * ring of kring planes (fused, exact) or Z_lag (kring = 0). */
static size_t part_doubles(const lncc_ctx *c, int nth, int64_t kring)
{
	size_t np = (size_t)c->np, nx = (size_t)c->nx, nc = (size_t)c->ncoef;
	int fused = nth == 1 && c->d3;
	size_t xcd = fused ? (size_t)ring_rows(c) * nx : np;
	size_t lag = kring ? ((size_t)kring * nc * np + 1) / 2 : NQ * np;
	return NQ * np + (c->exact ? lag + 2 * nc * np + 2 * nc * xcd : 0) + (size_t)nth * rows_doubles(c) +
	       (fused && c->exact ? 2 * nc * nx : 0) + (size_t)c->ny;
}

/* Carve a part's buffers from d (zeroed); returns the end. */
static double *part_carve(const lncc_ctx *c, lncc_part *pt, double *d)
{
	size_t np = (size_t)c->np, nx = (size_t)c->nx, nc = (size_t)c->ncoef;
	int fused = pt->nth == 1 && c->d3;
	pt->fused = fused;
	pt->ring = fused ? ring_rows(c) : c->ny;
	size_t xcd = (size_t)pt->ring * nx;
	pt->tl = d, d += NQ * np;
	if (c->exact && pt->kring) {
		pt->kr = (float *)d, d += ((size_t)pt->kring * nc * np + 1) / 2;
	} else if (c->exact) {
		pt->tg = d, d += NQ * np;
	}
	if (c->exact) {
		pt->xc = d, d += nc * xcd;
		pt->gsum = d, d += nc * np;
		pt->xc2 = d, d += nc * xcd;
		pt->g2 = d, d += nc * np;
	}
	if (fused && c->exact)
		pt->rg = d, d += 2 * nc * nx;
	pt->rows = d, d += (size_t)pt->nth * rows_doubles(c);
	for (int i = 0; i < pt->nth; i++)
		rows_at(c, pt->rows + (size_t)i * rows_doubles(c)).key[0] = -1.0; /* no counts yet */
	pt->lrow = d, d += c->ny;
	return d;
}

/* Output planes [o0, o1) and the planes they need (see lncc_part), by the
 * global rule (ffdp_lncc_ranges); the caller checked the box holds them. */
static void part_range(const lncc_ctx *c, lncc_part *pt, int64_t o0, int64_t o1)
{
	int64_t rng[4];
	ffdp_lncc_ranges(c->rz, c->blk, c->exact, c->zfull, o0 + c->zoff, o1 + c->zoff, rng);
	pt->o0 = o0, pt->o1 = o1;
	pt->s0 = rng[0] - c->zoff, pt->s1 = rng[1] - c->zoff;
	pt->v0 = rng[2] - c->zoff, pt->v1 = rng[3] - c->zoff;
}

/* Bytes all parts' scratch may take: one float volume, or 1 MiB. */
static double scratch_room(const lncc_ctx *c)
{
	return fmax(4.0 * (double)(c->np * c->nz), 1048576.0);
}

/* One part per thread when their scratch together fits in one float
 * volume (or in 1 MiB: small volumes) and each gets at least 8r planes (2r
 * if planes are under 1024 voxels a thread): up to an anchor block and 3r
 * planes a part are recomputed, but there is no barrier, and a barrier per
 * plane costs a time slice whenever the machine is oversubscribed.
 * Otherwise one team over whole planes. */
static int choose_parts(const lncc_ctx *c, int nt)
{
	int64_t len = (c->o1 - c->o0) / (nt > 0 ? nt : 1), need = c->np < 1024 * (int64_t)nt ? 2 * c->rz : 8 * c->rz;
	double bytes = (double)nt * (double)part_doubles(c, 1, 0) * sizeof(double);
	if (nt <= 1 || len < 4 || len < need || bytes > scratch_room(c))
		return 1;
	return nt < MAX_PARTS ? nt : MAX_PARTS;
}

/* The coefficient ring (2 rz + 1 planes of coefficients) replaces Z_lag,
 * its update and its rescoring in fused parts when all parts' scratch
 * still fits in the room choose_parts allows; the same bits either way. */
static int64_t ring_planes(const lncc_ctx *c, int nparts, int nth)
{
	int64_t K = 2 * c->rz + 1;
	double bytes = (double)nparts * (double)part_doubles(c, nth, K) * sizeof(double);
	if (nth != 1 || !c->d3 || !c->exact || bytes > scratch_room(c))
		return 0;
	return K;
}

static int64_t clip_radius(int64_t r, int64_t n)
{
	return r < n - 1 ? r : n - 1;
}

/* Columns per y-pass item: up to STRIP, narrower (multiples of 8) so that
 * each thread of a team gets about two strips. */
static int64_t strip_width(int64_t nx, int nt)
{
	int64_t w = (nx + 2 * nt - 1) / (2 * nt);
	w = (w + 7) / 8 * 8;
	return w > STRIP ? STRIP : w;
}

/* Window sums, scoring and gradients of all parts; the loss sum (parts in
 * order, rows in order: the same bits for a given number of parts). */
/* Steps (box planes) a part with outputs [o0, o1) streams. */
static int64_t part_steps(const lncc_ctx *c, int64_t o0, int64_t o1)
{
	int64_t rng[4];
	ffdp_lncc_ranges(c->rz, c->blk, c->exact, c->zfull, o0 + c->zoff, o1 + c->zoff, rng);
	return (c->exact ? o1 + c->rz : o1) - (rng[2] - c->zoff - c->rz);
}

/* Parts of at most m steps each, each as long as it can be, from o0 on:
 * how many it takes (more than most: stops), boundaries into b (b[0] = o0). */
static int pack_parts(const lncc_ctx *c, int64_t m, int most, int64_t *b)
{
	int64_t o = c->o0;
	int n = 0;

	b[0] = o;
	while (o < c->o1) {
		int64_t e = o + 1;
		if (n == most || part_steps(c, o, e) > m)
			return most + 1;
		while (e < c->o1 && part_steps(c, o, e + 1) <= m)
			e++;
		b[++n] = e;
		o = e;
	}
	return n;
}

/* Boundaries of at most nparts parts with the fewest steps in the longest:
 * a part starts from the anchor below its first output, so equal output
 * ranges can differ by an anchor block in their work (182 planes, k=5: 95
 * and 126 steps; split at 96: 100 and 94).  Returns the number of parts. */
static int split_parts(const lncc_ctx *c, int nparts, int64_t *b)
{
	int64_t lo = 1, hi = part_steps(c, c->o0, c->o1);
	while (lo < hi) {
		int64_t m = lo + (hi - lo) / 2;
		if (pack_parts(c, m, nparts, b) <= nparts)
			hi = m;
		else
			lo = m + 1;
	}
	return pack_parts(c, lo, nparts, b);
}

static ffdp_status lncc_run(const lncc_ctx *c, int nt, double *sum, ffdp_error *err)
{
	int64_t b[MAX_PARTS + 1] = {c->o0, c->o1};
	int nparts = choose_parts(c, nt), nth = nparts > 1 ? 1 : nt;
	nparts = nparts > 1 ? split_parts(c, nparts, b) : 1;
	int64_t K = ring_planes(c, nparts, nth);
	lncc_part parts[MAX_PARTS] = {{0}};

	size_t n = (size_t)(c->nx + c->ny + c->zfull + c->nz) + (size_t)nparts * part_doubles(c, nth, K);
	double *block = ffdp_alloc(n * sizeof(double), err), *d = block;

	if (!block)
		return FFDP_ERR_NOMEM;
	lncc_ctx cc = *c;
	cc.icx = d, d += c->nx;
	cc.icy = d, d += c->ny;
	ffdp_cpu_box_inv_counts(cc.icx, c->nx, c->rx);
	ffdp_cpu_box_inv_counts(cc.icy, c->ny, c->ry);
	/* window counts along z from the global position */
	ffdp_cpu_box_inv_counts(d, c->zfull, c->rz);
	cc.icz = d + c->zoff, d += c->zfull;
	cc.zs = d, d += c->nz;
	for (int i = 0; i < nparts; i++) {
		parts[i].nth = nth, parts[i].kring = K;
		part_range(&cc, &parts[i], b[i], b[i + 1]);
		d = part_carve(&cc, &parts[i], d);
	}
	/* The team may be smaller than asked (nested regions): use its size. */
#pragma omp parallel num_threads(nt)
	{
		int tid = omp_get_thread_num(), got = omp_get_num_threads();
		if (nth > 1)
			lncc_stream(&cc, &parts[0], tid, got);
		else
			for (int i = tid; i < nparts; i += got)
				lncc_stream(&cc, &parts[i], 0, 1);
	}
	/* planes in order (ops.h: reproducible sums) */
	*sum = 0.0;
	for (int64_t t = c->o0; t < c->o1; t++)
		*sum += cc.zs[t];
	if (c->zsum_out && c->d3)
		for (int64_t t = c->o0; t < c->o1; t++)
			c->zsum_out[t] = -cc.zs[t];
	else if (c->zsum_out)
		c->zsum_out[0] = -*sum;
	ffdp_free(block);
	return FFDP_OK;
}

/* The shift rule (ops.h) over a whole volume x of size n. */
static float shift_of(const float *x, const int64_t n[3])
{
	double s = 0.0;
	for (int64_t z = 0; z < n[2]; z++)
		s += ffdp_lncc_shift_part(x + z * n[0] * n[1], n, z);
	return (float)(s / (double)ffdp_lncc_shift_count(n));
}

/* The context of one call: geometry (2-D as rows), radii, inputs, shifts. */
static void lncc_setup(lncc_ctx *c, const ffdp_loss_args *a, const ffdp_lncc_opts *o, double denom)
{
	int64_t r = (o->k - 1) / 2;

	c->nx = a->f.n[0], c->ny = a->f.n[1], c->nz = a->f.n[2];
	c->d3 = c->nz > 1 || o->z_full > 0;
	if (!c->d3) {
		/* A 2-D image is the same memory as nx x 1 x ny: stream its rows, so
		 * scratch is a few rows, not a few images. */
		c->nz = c->ny, c->ny = 1;
	}
	c->np = c->nx * c->ny;
	c->zfull = o->z_full > 0 ? o->z_full : c->nz;
	c->zoff = o->z_full > 0 ? o->z_lo : 0;
	c->o0 = o->z_full > 0 ? o->o_z0 : 0;
	c->o1 = o->z_full > 0 ? o->o_z1 : c->nz;
	c->rx = clip_radius(r, c->nx), c->ry = clip_radius(r, c->ny), c->rz = clip_radius(r, c->zfull);
	c->blk = ffdp_lncc_anchor_block(o->k);
	c->ya = y_anchor_spacing(c->ry);
	c->f = a->f.p, c->m = a->m.p, c->w = a->mask;
	c->gm = a->gm, c->gf = a->gf;
	c->cf = o->shifts_given ? o->cf : shift_of(a->f.p, a->f.n);
	c->cm = o->shifts_given ? o->cm : shift_of(a->m.p, a->m.n);
	if (!c->gm && c->gf) {
		/* cc is symmetric in f and m: gf alone is gm with the roles swapped. */
		float t = c->cf;
		c->f = a->m.p, c->m = a->f.p;
		c->cf = c->cm, c->cm = t;
		c->gm = a->gf, c->gf = NULL;
	}
	c->ncoef = c->gm ? (c->gf ? 5 : 3) : 0;
	c->exact = c->ncoef && o->exact_grad;
	c->eps = o->eps > 0.0 ? o->eps : 1e-5;
	c->gscale = -a->scale / denom;
	c->zsum_out = a->zsum;
	c->avx2 = ffdp_cpu_use_avx512() ? 2 : ffdp_cpu_use_avx2(); /* 2: the AVX-512 clone */
}

/* A shard's box must hold the planes its outputs need. */
static ffdp_status lncc_check_box(const lncc_ctx *c, const ffdp_lncc_opts *o, ffdp_error *err)
{
	int64_t rng[4];
	if (!o->z_full)
		return FFDP_OK;
	if (c->nz < 1 || o->z_lo < 0 || o->z_lo + c->nz > o->z_full || o->o_z0 < 0 || o->o_z0 > o->o_z1 ||
	    o->o_z1 > c->nz)
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: box [%lld, +%lld) or outputs [%lld, %lld) do not fit %lld planes",
				 (long long)o->z_lo, (long long)c->nz, (long long)o->o_z0, (long long)o->o_z1,
				 (long long)o->z_full);
	ffdp_lncc_ranges(c->rz, c->blk, c->exact, c->zfull, c->o0 + c->zoff, c->o1 + c->zoff, rng);
	if (c->o1 > c->o0 && (rng[2] < c->zoff || rng[3] > c->zoff + c->nz))
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: outputs [%lld, %lld) need planes [%lld, %lld), the box has [%lld, %lld)",
				 (long long)(c->o0 + c->zoff), (long long)(c->o1 + c->zoff), (long long)rng[2],
				 (long long)rng[3], (long long)c->zoff, (long long)(c->zoff + c->nz));
	return FFDP_OK;
}

ffdp_status ffdp_cpu_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err)
{
	lncc_ctx c = {0};
	double denom, sum;
	ffdp_status s;
	(void)be;

	if (o->eps < 0.0 || !isfinite(o->eps))
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: eps %g is not a finite number >= 0", o->eps);
	if ((s = ffdp_cpu_loss_denom(a, "lncc", &denom, err)))
		return s;
	lncc_setup(&c, a, o, denom);
	if ((s = lncc_check_box(&c, o, err)))
		return s;
	if (c.o1 == c.o0) {
		*a->loss = 0.0;
		if (a->sum)
			*a->sum = 0.0;
		return FFDP_OK;
	}

	/* At least 16384 voxels a thread: fewer cost more than they save. */
	int64_t most = c.np * c.nz / 16384;
	int nt = omp_get_max_threads();
	if (nt > most)
		nt = most > 1 ? (int)most : 1;
	c.strip = strip_width(c.nx, choose_parts(&c, nt) > 1 ? 1 : nt);
	if ((s = lncc_run(&c, nt, &sum, err)))
		return s;
	*a->loss = -sum / denom;
	if (a->sum)
		*a->sum = -sum;
	return FFDP_OK;
}
