/* Parzen windows for Mattes mutual information (cpu_mi.c).
 *
 * A voxel of intensity x sits at bin coordinate s = (x - lo) B / (hi - lo),
 * clamped to [0, B] (ds/dx = 0 where clamped, NaN maps to 0); bin j is
 * centred at j + 0.5.  A kernel gives the voxel a window of W consecutive
 * bins starting at bin j0, with weights w normalised to sum 1 over the bins
 * inside [0, B), and their derivatives dw/ds (quotient rule).  Window bins
 * outside [0, B) get w = dw = 0; j0 may be as low as -PARZEN_PAD and the
 * window may end PARZEN_PAD bins past B - 1, so callers index tables with
 * PARZEN_PAD margin bins on each side and need no bounds checks.
 *
 * Gaussian: k_j = exp(-(s - c_j)^2 / (2 sigma^2)), sigma = 0.5 bin (FireANTs'
 * default width).  The window is the bin b holding s and 3 bins each side:
 * every dropped bin is >= 3.5 bins = 7 sigma away, weight < 2.3e-11 of the
 * nearest bin's (>= 0.61), far below float resolution; value and
 * derivative are both those of the windowed sum, so the gradient is exact
 * for what is reported.  One short exponential per voxel: with
 * t = s - c_b in [-1/2, 1/2], k_{b+i} = exp(-2 t^2) exp(4 t)^i exp(-2 i^2)
 * and the first factor, common to the window, cancels when normalising.
 *
 * Cubic B-spline: k_j = beta3(s - c_j), support |s - c_j| < 2, so 4 bins.
 * The four weights sum to 1 already; normalising only restores the mass
 * that falls outside [0, B) at the range ends.  beta3 is C^2, so the
 * window shift at integer s - 1/2 is smooth.
 *
 * Windows are computed for PARZEN_BATCH voxels at a time, lanes innermost:
 * a single voxel's window is a long dependency chain (polynomial, powers,
 * normalising division), and independent lanes let the core overlap them
 * and the compiler use SIMD.  Each lane's result depends only on its voxel.
 */
#ifndef FFDP_CPU_PARZEN_H
#define FFDP_CPU_PARZEN_H

#include <math.h>

enum {
	PARZEN_PAD = 3,    /* margin bins each side of a padded table */
	PARZEN_GW = 7,     /* Gaussian window */
	PARZEN_BW = 4,     /* cubic B-spline window */
	PARZEN_WMAX = 7,
	PARZEN_BATCH = 16, /* voxels per batch */
};

typedef struct parzen_map {
	double lo, scale; /* s = (x - lo) * scale, scale = B / (hi - lo) */
	double top;       /* B */
	int bins;
} parzen_map;

/* Windows of one batch, lanes innermost. */
typedef struct parzen_batch {
	int j0[PARZEN_BATCH];
	double ds[PARZEN_BATCH]; /* ds/dx */
	double w[PARZEN_WMAX][PARZEN_BATCH];
	double dw[PARZEN_WMAX][PARZEN_BATCH]; /* dw/ds */
} parzen_batch;

static inline parzen_map parzen_map_make(double lo, double hi, int bins)
{
	parzen_map p = {lo, (double)bins / (hi - lo), (double)bins, bins};
	return p;
}

/* Bin coordinates of n <= PARZEN_BATCH voxels (missing lanes at s = 0). */
static inline __attribute__((always_inline)) void parzen_coords(const parzen_map *p, const float *x, int n, double *s, parzen_batch *o)
{
	double xv[PARZEN_BATCH];
	if (n == PARZEN_BATCH) /* (the usual batch: one vectorised loop) */
		for (int v = 0; v < PARZEN_BATCH; v++)
			xv[v] = (double)x[v];
	else
		for (int v = 0; v < PARZEN_BATCH; v++)
			xv[v] = v < n ? (double)x[v] : p->lo;
	for (int v = 0; v < PARZEN_BATCH; v++) {
		double sv = (xv[v] - p->lo) * p->scale;
		o->ds[v] = sv > 0 && sv < p->top ? p->scale : 0;
		sv = sv > 0 ? sv : 0;
		s[v] = sv < p->top ? sv : p->top;
	}
}

/* Zero window bins outside [0, bins): only near the range ends, but a
 * batch has some lane there more often than not (the background's bin),
 * so by selects over all lanes, which vectorise, after one test.  (The
 * derivatives follow from the clipped k: 4 i 0 is 0.) */
static inline __attribute__((always_inline)) void parzen_clip(int W, int bins, const int *j0,
							    double k[][PARZEN_BATCH])
{
	int lo = j0[0], hi = j0[0];
	for (int v = 1; v < PARZEN_BATCH; v++) {
		lo = j0[v] < lo ? j0[v] : lo;
		hi = j0[v] > hi ? j0[v] : hi;
	}
	if (lo >= 0 && hi + W <= bins)
		return;
	/* in doubles, so that the tests and selects share the lanes */
	double jd[PARZEN_BATCH];
	for (int v = 0; v < PARZEN_BATCH; v++)
		jd[v] = (double)j0[v];
	for (int a = 0; a < W; a++)
		for (int v = 0; v < PARZEN_BATCH; v++) {
			/* one compare a select: the form that vectorises */
			const double j = jd[v] + (double)a, nb = (double)bins;
			const double kk = j >= 0.0 ? k[a][v] : 0.0;
			k[a][v] = j < nb ? kk : 0.0;
		}
}

/* w = k / sum k, dw = (dk - w sum dk) / sum k, per lane. */
static inline __attribute__((always_inline)) void parzen_normalise(int W, double k[][PARZEN_BATCH], double dk[][PARZEN_BATCH], int want_dw,
				    parzen_batch *o)
{
	double inv[PARZEN_BATCH], dsum[PARZEN_BATCH];
	for (int v = 0; v < PARZEN_BATCH; v++) {
		double sum = 0;
		for (int a = 0; a < W; a++)
			sum += k[a][v];
		inv[v] = 1 / sum;
	}
	for (int a = 0; a < W; a++)
		for (int v = 0; v < PARZEN_BATCH; v++)
			o->w[a][v] = k[a][v] * inv[v];
	if (!want_dw)
		return;
	for (int v = 0; v < PARZEN_BATCH; v++) {
		double d = 0;
		for (int a = 0; a < W; a++)
			d += dk[a][v];
		dsum[v] = d;
	}
	for (int a = 0; a < W; a++)
		for (int v = 0; v < PARZEN_BATCH; v++)
			o->dw[a][v] = (dk[a][v] - o->w[a][v] * dsum[v]) * inv[v];
}

/* exp(x) and exp(-x) for |x| <= 1/2 from the even and odd parts of the
 * Taylor series to degree 15 (remainder < 2e-18 relative). */
static inline __attribute__((always_inline)) void parzen_exp_pm(double x, double *ep, double *em)
{
	static const double ce[8] = {1.0, 1.0 / 2, 1.0 / 24, 1.0 / 720, 1.0 / 40320, 1.0 / 3628800,
				     1.0 / 479001600, 1.0 / 87178291200.0};
	static const double co[8] = {1.0, 1.0 / 6, 1.0 / 120, 1.0 / 5040, 1.0 / 362880, 1.0 / 39916800,
				     1.0 / 6227020800.0, 1.0 / 1307674368000.0};
	double x2 = x * x, ev = ce[7], od = co[7];
	for (int i = 6; i >= 0; i--) {
		ev = ev * x2 + ce[i];
		od = od * x2 + co[i];
	}
	od *= x;
	*ep = ev + od;
	*em = ev - od;
}

/* Gaussian windows (PARZEN_GW bins) of n <= PARZEN_BATCH voxels.  The
 * common factor exp(-2 t^2) of the window cancels in the normalisation, so
 * k_{b+i} = exp(4 t i - 2 i^2) and dk/ds = 4 i k give the same w, dw. */
static inline __attribute__((always_inline)) void parzen_gauss(const parzen_map *p, const float *x, int n, int want_dw, parzen_batch *o)
{
	/* exp(-2 i^2), i = 0..3 */
	static const double c[4] = {1.0, 0.1353352832366127, 3.3546262790251185e-4, 1.522997974471263e-8};
	double s[PARZEN_BATCH], r[PARZEN_BATCH], q[PARZEN_BATCH];
	double k[PARZEN_GW][PARZEN_BATCH], dk[PARZEN_GW][PARZEN_BATCH];
	parzen_coords(p, x, n, s, o);
	for (int v = 0; v < PARZEN_BATCH; v++) {
		int b = (int)s[v];
		b = b < p->bins - 1 ? b : p->bins - 1;
		o->j0[v] = b - 3;
		double rv, qv; /* t = s - c_b in [-1/2, 1/2] */
		parzen_exp_pm(s[v] - (double)b - 0.5, &rv, &qv);
		rv *= rv, qv *= qv;
		r[v] = rv * rv, q[v] = qv * qv; /* exp(4t), exp(-4t) */
	}
	for (int v = 0; v < PARZEN_BATCH; v++) {
		double up = 1, dn = 1;
		k[3][v] = 1;
		for (int i = 1; i <= 3; i++) {
			up *= r[v], dn *= q[v];
			k[3 + i][v] = up * c[i];
			k[3 - i][v] = dn * c[i];
		}
	}
	parzen_clip(PARZEN_GW, p->bins, o->j0, k);
	for (int a = 0; a < PARZEN_GW; a++)
		for (int v = 0; v < PARZEN_BATCH; v++)
			dk[a][v] = 4 * (double)(a - 3) * k[a][v];
	parzen_normalise(PARZEN_GW, k, dk, want_dw, o);
}

/* Cubic B-spline windows (PARZEN_BW bins) of n <= PARZEN_BATCH voxels.
 * Weights go straight to o; lanes with bins outside [0, bins) (only near
 * the range ends) are clipped and renormalised one by one. */
static inline __attribute__((always_inline)) void parzen_bspline(const parzen_map *p, const float *x, int n, int want_dw, parzen_batch *o)
{
	const double sixth = 1.0 / 6;
	double s[PARZEN_BATCH];
	int any = 0;
	parzen_coords(p, x, n, s, o);
	for (int v = 0; v < PARZEN_BATCH; v++) {
		double u = s[v] + 0.5; /* >= 1/2: truncation is floor */
		int i = (int)u;
		double f = u - (double)i, g = 1 - f, f2 = f * f, f3 = f2 * f;
		o->j0[v] = i - 2;
		any |= (i < 2) | (i + 2 > p->bins);
		/* beta3 at distances f+1, f, 1-f, 2-f from the centres of bins i-2 .. i+1 */
		o->w[0][v] = g * g * g * sixth;
		o->w[1][v] = (3 * f3 - 6 * f2 + 4) * sixth;
		o->w[2][v] = (-3 * f3 + 3 * f2 + 3 * f + 1) * sixth;
		o->w[3][v] = f3 * sixth;
		o->dw[0][v] = -0.5 * g * g;
		o->dw[1][v] = 0.5 * (3 * f2 - 4 * f);
		o->dw[2][v] = 0.5 * (-3 * f2 + 2 * f + 1);
		o->dw[3][v] = 0.5 * f2;
	}
	if (!any)
		return;
	for (int v = 0; v < PARZEN_BATCH; v++) {
		int j0 = o->j0[v];
		if (j0 >= 0 && j0 + PARZEN_BW <= p->bins)
			continue;
		double sum = 0, dsum = 0;
		for (int a = 0; a < PARZEN_BW; a++) {
			if (j0 + a < 0 || j0 + a >= p->bins)
				o->w[a][v] = o->dw[a][v] = 0;
			sum += o->w[a][v], dsum += o->dw[a][v];
		}
		for (int a = 0; a < PARZEN_BW; a++) {
			o->w[a][v] /= sum;
			o->dw[a][v] = (o->dw[a][v] - o->w[a][v] * dsum) / sum;
		}
	}
	(void)want_dw; /* dw costs 8 flops a lane: always written */
}

#endif
