/* Local normalised cross-correlation on the CPU, streaming z-planes.
 *
 * Math.  W(x) is the k^3 box centred at x clipped to the image (k^2 in 2-D:
 * a radius is clipped to n - 1 on each axis), n(x) its voxel count, and
 * Sf, Sm, Sff, Smm, Sfm the window sums of f, m, f^2, m^2, f m:
 *     cov = Sfm - Sf Sm/n,  vf = Sff - Sf^2/n,  vm = Smm - Sm^2/n,
 *     D = vf vm + eps,  cc = (cov^2 + eps) / D,
 *     L = -(1/denom) sum_x w(x) cc(x).
 * eps is in both terms, so a window where either image is flat has cc = 1.
 * The mask w weights the loss only; window statistics use every voxel.
 * With a = 2 cov/D, b = 2 cc vf/D, b' = 2 cc vm/D, for y in W(x):
 *     dcc(x)/dm(y) = a f(y) - b m(y) + c,    c  = (b Sm - a Sf)/n
 *     dcc(x)/df(y) = a m(y) - b' f(y) + c',  c' = (b' Sf - a Sm)/n
 * y is in W(x) iff x is in W(y), so the adjoint of the clipped box sum is the
 * same box sum:  dL/dm(y) = -(1/denom) [f(y) A(y) - m(y) B(y) + C(y)] with
 * A, B, C the box sums of w a, w b, w c (and likewise for f).  ANTs'
 * approximation (exact_grad = 0) keeps only the window x = y.
 *
 * Precision: products are formed in double from f - cf and m - cm, cf and cm
 * a sampled mean of each image, and all sums are double, so Sff - Sf^2/n does
 * not cancel away the variance of intensities ~1000.  vf, vm are clamped at 0
 * against rounding.  cc and its gradient are shift invariant.
 *
 * Streaming.  The window sum along z is a running sum:
 *     S(z) = S(z-1) + B(z+r) - B(z-r-1),   B(p) = 2-D box sums of plane p,
 * and B(z+r) - B(z-r-1) is one 2-D box sum of the product differences.  The
 * "lead" stream holds S(t) for the plane t being scored; its coefficient
 * plane is box-summed in x, y and added to a running z sum G that yields the
 * gradient of plane t - r.  G must drop the coefficients of plane t - 2r - 1:
 * instead of keeping a ring of k coefficient planes, a "lag" stream replays
 * the same increments 2r + 1 planes behind (bit-identical sums, so the
 * coefficients it recomputes cancel exactly what was added).  Scratch is
 * independent of k and of the volume: 5 + 5 + ncoef + 5 plane-sized double
 * buffers (ncoef = 3 for one gradient, 5 for both), one row per thread.
 *
 * Threads split each plane (rows for the x pass, column strips for the y
 * pass), not z: no halo is recomputed, 2-D images parallelise, scratch does
 * not grow with the thread count, and every sum is formed in a fixed order,
 * so results are the same bits for any number of threads.
 *
 * Floor: read f and m once (8 B/voxel), the mask once (4 B), write the
 * gradients (4 B each).  We read each input plane four times (lead and lag
 * streams, add and drop); the re-reads lie within the last ~3r planes, which
 * stay in cache for moderate planes.  Work per voxel does not depend on k.
 */
#include <math.h>
#include <omp.h>

#include "cpu_boxsum.h"
#include "cpu_lossutil.h"
#include "ffdp/volume.h"

enum { NQ = 5 };

typedef struct lncc_ctx {
	int64_t nx, ny, nz, np; /* np = nx * ny */
	int64_t rx, ry, rz;
	const float *f, *m, *w;
	float cf, cm; /* shifts for precision */
	float *gm, *gf;
	double eps, gscale; /* gscale = -scale / denom */
	int ncoef;          /* 0: loss only, 3: gm, 5: gm and gf */
	int exact;
	double *cx, *cy, *cz;     /* window counts per axis */
	double *lead, *lag, *gsum; /* NQ, NQ, ncoef planes */
	double *xb;               /* x-pass output, NQ planes */
	double *rows;             /* NQ rows per thread */
	double *lrow;             /* loss per row, summed over planes */
} lncc_ctx;

/* Mean of at most 4096 evenly strided voxels: a cheap, deterministic shift. */
static float sample_mean(const float *x, int64_t n)
{
	int64_t step = n > 4096 ? n / 4096 : 1;
	double s = 0.0;
	int64_t cnt = 0;
	for (int64_t i = 0; i < n; i += step, cnt++)
		s += x[i];
	return (float)(s / (double)cnt);
}

/* Row y of the product differences of planes pa (added) and pb (dropped),
 * each ignored when outside the volume, box-summed along x into xb. */
static void stats_row(const lncc_ctx *c, int64_t pa, int64_t pb, int64_t y, double *row)
{
	int64_t nx = c->nx;
	double *q0 = row, *q1 = row + nx, *q2 = row + 2 * nx, *q3 = row + 3 * nx, *q4 = row + 4 * nx;

	for (int64_t x = 0; x < nx; x++)
		q0[x] = q1[x] = q2[x] = q3[x] = q4[x] = 0.0;
	for (int side = 0; side < 2; side++) {
		int64_t p = side ? pb : pa;
		double sg = side ? -1.0 : 1.0;
		if (p < 0 || p >= c->nz)
			continue;
		const float *f = c->f + p * c->np + y * nx, *m = c->m + p * c->np + y * nx;
		for (int64_t x = 0; x < nx; x++) {
			double a = (double)f[x] - c->cf, b = (double)m[x] - c->cm;
			q0[x] += sg * a;
			q1[x] += sg * b;
			q2[x] += sg * (a * a);
			q3[x] += sg * (b * b);
			q4[x] += sg * (a * b);
		}
	}
	for (int q = 0; q < NQ; q++)
		ffdp_cpu_box_row(row + q * nx, c->xb + q * c->np + y * nx, nx, c->rx);
}

/* dst[q] += y-box of xb[q] for q < nq, split over (quantity, column strip). */
static void cols_add(const lncc_ctx *c, double *dst, int nq)
{
	int64_t nstrip = (c->nx + FFDP_CPU_BOX_CHUNK - 1) / FFDP_CPU_BOX_CHUNK;
#pragma omp for schedule(static)
	for (int64_t it = 0; it < nq * nstrip; it++) {
		int64_t q = it / nstrip, x0 = (it % nstrip) * FFDP_CPU_BOX_CHUNK;
		int64_t x1 = x0 + FFDP_CPU_BOX_CHUNK < c->nx ? x0 + FFDP_CPU_BOX_CHUNK : c->nx;
		ffdp_cpu_box_cols_add(c->xb + q * c->np, dst + q * c->np, c->nx, c->ny, c->ry, x0, x1);
	}
}

/* S(s) = S(s-1) + 2-D box of (products of plane s+r - those of plane s-r-1). */
static void stats_step(const lncc_ctx *c, int64_t s, double *dst, double *row)
{
#pragma omp for schedule(static)
	for (int64_t y = 0; y < c->ny; y++)
		stats_row(c, s + c->rz, s - c->rz - 1, y, row);
	cols_add(c, dst, NQ);
}

/* cc from the window sums at one voxel (s[q * np]); when nc > 0 also the
 * gradient coefficients times w: k = (w a, w b, w c[, w b', w c']). */
static inline double voxel_cc(const double *s, int64_t np, double n, double eps, double w, int nc, double *k)
{
	double sf = s[0], sm = s[np], inv = 1.0 / n;
	double cov = s[4 * np] - sf * sm * inv;
	double vf = fmax(s[2 * np] - sf * sf * inv, 0.0), vm = fmax(s[3 * np] - sm * sm * inv, 0.0);
	double rd = 1.0 / (vf * vm + eps);
	double cc = (cov * cov + eps) * rd;
	if (nc) {
		double a = 2.0 * cov * rd, b = 2.0 * cc * vf * rd;
		k[0] = w * a;
		k[1] = w * b;
		k[2] = w * (b * sm - a * sf) * inv;
		if (nc == 5) {
			double b2 = 2.0 * cc * vm * rd;
			k[3] = w * b2;
			k[4] = w * (b2 * sf - a * sm) * inv;
		}
	}
	return cc;
}

static inline float weight(const lncc_ctx *c, int64_t i)
{
	return c->w ? c->w[i] : 1.0f;
}

/* Gradient of one voxel from its coefficient sums k (stride ks). */
static inline void write_grad(const lncc_ctx *c, int64_t i, const double *k, int64_t ks)
{
	double f = (double)c->f[i] - c->cf, m = (double)c->m[i] - c->cm;
	c->gm[i] = (float)(c->gscale * (f * k[0] - m * k[ks] + k[2 * ks]));
	if (c->ncoef == 5)
		c->gf[i] = (float)(c->gscale * (m * k[0] - f * k[3 * ks] + k[4 * ks]));
}

/* Row y of plane t: its loss, and either ANTs' gradient (written here) or,
 * for the exact gradient, the x-boxed coefficient difference
 * k(t) - k(t - 2r - 1) into xb. */
static void coef_row(lncc_ctx *c, int64_t t, int64_t y, double *row)
{
	int64_t nx = c->nx, np = c->np, p = t - 2 * c->rz - 1;
	int nc = c->ncoef;
	double k[NQ], loss = 0.0;

	if (c->exact && nc)
		for (int64_t x = 0; x < nc * nx; x++)
			row[x] = 0.0;
	if (t < c->nz) {
		double cyz = c->cy[y] * c->cz[t];
		for (int64_t x = 0; x < nx; x++) {
			int64_t j = y * nx + x, i = t * np + j;
			double w = weight(c, i);
			loss += w * voxel_cc(c->lead + j, np, c->cx[x] * cyz, c->eps, w, nc, k);
			if (!nc)
				continue;
			if (!c->exact) {
				write_grad(c, i, k, 1);
				continue;
			}
			for (int q = 0; q < nc; q++)
				row[q * nx + x] = k[q];
		}
		c->lrow[y] += loss;
	}
	if (!c->exact || !nc)
		return;
	if (p >= 0) {
		double cyz = c->cy[y] * c->cz[p];
		for (int64_t x = 0; x < nx; x++) {
			int64_t j = y * nx + x;
			voxel_cc(c->lag + j, np, c->cx[x] * cyz, c->eps, weight(c, p * np + j), nc, k);
			for (int q = 0; q < nc; q++)
				row[q * nx + x] -= k[q];
		}
	}
	for (int q = 0; q < nc; q++)
		ffdp_cpu_box_row(row + q * nx, c->xb + q * np + y * nx, nx, c->rx);
}

/* All planes: run by every thread of the team in lockstep. */
static void lncc_stream(lncc_ctx *c, double *row)
{
	int64_t rz = c->rz, nz = c->nz, tend = c->exact && c->ncoef ? nz + rz : nz;
	int exact = c->exact && c->ncoef;

	for (int64_t t = -rz; t < tend; t++) {
		int64_t p = t - 2 * rz - 1;
		if (t < nz)
			stats_step(c, t, c->lead, row);
		if (exact && p >= -rz)
			stats_step(c, p, c->lag, row);
		if (t < 0)
			continue;
#pragma omp for schedule(static)
		for (int64_t y = 0; y < c->ny; y++)
			coef_row(c, t, y, row);
		if (!exact)
			continue;
		cols_add(c, c->gsum, c->ncoef);
		if (t - rz < 0)
			continue;
#pragma omp for schedule(static)
		for (int64_t y = 0; y < c->ny; y++)
			for (int64_t x = 0; x < c->nx; x++)
				write_grad(c, (t - rz) * c->np + y * c->nx + x, c->gsum + y * c->nx + x, c->np);
	}
}

/* Carve the scratch out of one allocation (zeroed by ffdp_alloc). */
static ffdp_status lncc_scratch(lncc_ctx *c, int nthreads, double **block, ffdp_error *err)
{
	int exact = c->exact && c->ncoef;
	size_t np = (size_t)c->np, nx = (size_t)c->nx;
	size_t n = (size_t)(c->nx + c->ny + c->nz) + NQ * np * 2 + (exact ? (NQ + (size_t)c->ncoef) * np : 0) +
		   (size_t)nthreads * NQ * nx + (size_t)c->ny;
	double *d = ffdp_alloc(n * sizeof(double), err);
	if (!d)
		return FFDP_ERR_NOMEM;
	*block = d;
	c->cx = d, d += c->nx;
	c->cy = d, d += c->ny;
	c->cz = d, d += c->nz;
	c->lead = d, d += NQ * np;
	c->xb = d, d += NQ * np;
	if (exact) {
		c->lag = d, d += NQ * np;
		c->gsum = d, d += (size_t)c->ncoef * np;
	}
	c->rows = d, d += (size_t)nthreads * NQ * nx;
	c->lrow = d;
	ffdp_cpu_box_counts(c->cx, c->nx, c->rx);
	ffdp_cpu_box_counts(c->cy, c->ny, c->ry);
	ffdp_cpu_box_counts(c->cz, c->nz, c->rz);
	return FFDP_OK;
}

static int64_t clip_radius(int64_t r, int64_t n)
{
	return r < n - 1 ? r : n - 1;
}

ffdp_status ffdp_cpu_lncc(ffdp_backend *be, const ffdp_loss_args *a, const ffdp_lncc_opts *o, ffdp_error *err)
{
	lncc_ctx c = {0};
	double denom, *block = NULL;
	int64_t r = (o->k - 1) / 2, nvox;
	ffdp_status s;
	(void)be;

	if (o->eps < 0.0 || !isfinite(o->eps))
		return ffdp_fail(err, FFDP_ERR_ARG, "lncc: eps %g is not a finite number >= 0", o->eps);
	if ((s = ffdp_cpu_loss_denom(a, "lncc", &denom, err)))
		return s;
	c.nx = a->f.n[0], c.ny = a->f.n[1], c.nz = a->f.n[2];
	c.np = c.nx * c.ny;
	nvox = c.np * c.nz;
	c.rx = clip_radius(r, c.nx), c.ry = clip_radius(r, c.ny), c.rz = clip_radius(r, c.nz);
	c.f = a->f.p, c.m = a->m.p, c.w = a->mask;
	c.gm = a->gm, c.gf = a->gf;
	if (!c.gm && c.gf) {
		/* cc is symmetric in f and m: gf alone is gm with the roles swapped. */
		c.f = a->m.p, c.m = a->f.p;
		c.gm = a->gf, c.gf = NULL;
	}
	c.ncoef = c.gm ? (c.gf ? 5 : 3) : 0;
	c.exact = o->exact_grad != 0;
	c.eps = o->eps > 0.0 ? o->eps : 1e-5;
	c.gscale = -a->scale / denom;
	c.cf = sample_mean(c.f, nvox), c.cm = sample_mean(c.m, nvox);

	/* Small volumes: a team costs more than it saves. */
	int nt = nvox >= 32768 ? omp_get_max_threads() : 1;
	if ((s = lncc_scratch(&c, nt, &block, err)))
		return s;
#pragma omp parallel num_threads(nt)
	lncc_stream(&c, c.rows + (size_t)omp_get_thread_num() * NQ * (size_t)c.nx);

	double sum = 0.0;
	for (int64_t y = 0; y < c.ny; y++)
		sum += c.lrow[y];
	ffdp_free(block);
	*a->loss = -sum / denom;
	if (a->sum)
		*a->sum = -sum;
	return FFDP_OK;
}
