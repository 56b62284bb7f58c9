/* The phantom's deformation psi(y) = y + d(y): a sum of Gaussian bumps of
 * vector weight, small enough in gradient to be a diffeomorphism, and its
 * inverse by Newton's method. */
#include <math.h>
#include <string.h>

#include "synth.h"

/* Beyond 9 sigma a bump is dropped: the jump there (e^-40 of its weight) is
 * below double precision of a coordinate, so Newton cannot stall on it. */
#define PH_CUT 40.0

uint64_t ph_hash(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

double ph_unit(uint64_t key)
{
	return ((double)(ph_hash(key) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

void ph_deform_eval(const ph_deform *d, const double y[3], double out[3], double jac[9])
{
	out[0] = out[1] = out[2] = 0.0;
	if (jac)
		memset(jac, 0, 9 * sizeof(double));
	for (int k = 0; k < PH_NBUMPS; k++) {
		double r[3] = {y[0] - d->c[k][0], y[1] - d->c[k][1], y[2] - d->c[k][2]};
		double t = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]) * d->inv2s2[k];
		if (t > PH_CUT)
			continue;
		double e = exp(-t);
		for (int a = 0; a < 3; a++)
			out[a] += d->w[k][a] * e;
		if (!jac)
			continue;
		/* grad e = -2 e r / (2 sigma^2) */
		double g = -2.0 * d->inv2s2[k] * e;
		for (int a = 0; a < 3; a++)
			for (int b = 0; b < 3; b++)
				jac[3 * a + b] += d->w[k][a] * g * r[b];
	}
}

/* Solve M s = f for a 3x3 M by Cramer's rule; M is near identity here. */
static void solve3(const double m[9], const double f[3], double s[3])
{
	double c0 = m[4] * m[8] - m[5] * m[7];
	double c1 = m[5] * m[6] - m[3] * m[8];
	double c2 = m[3] * m[7] - m[4] * m[6];
	double det = m[0] * c0 + m[1] * c1 + m[2] * c2;
	double inv[9] = {c0, m[2] * m[7] - m[1] * m[8], m[1] * m[5] - m[2] * m[4],
			 c1, m[0] * m[8] - m[2] * m[6], m[2] * m[3] - m[0] * m[5],
			 c2, m[1] * m[6] - m[0] * m[7], m[0] * m[4] - m[1] * m[3]};
	for (int a = 0; a < 3; a++)
		s[a] = (inv[3 * a] * f[0] + inv[3 * a + 1] * f[1] + inv[3 * a + 2] * f[2]) / det;
}

int ph_deform_invert(const ph_deform *d, const double x[3], const double dx[3], const double jx[9], double y[3])
{
	double dv[3], jac[9];
	/* second-order start: psi^-1(x) = x - d + (grad d) d + O(|grad d|^2 |d|, |grad^2 d| |d|^2) */
	for (int a = 0; a < 3; a++)
		y[a] = x[a] - dx[a] + jx[3 * a] * dx[0] + jx[3 * a + 1] * dx[1] + jx[3 * a + 2] * dx[2];
	/* |grad d| < 1 makes y + d(y) = x uniquely solvable; Newton converges
	 * quadratically.  After a step s the error is about
	 * |s|^2 |grad^2 d| / (2 (1 - |grad d|)), < 1e-7 mm for |s| < 1e-3 even for
	 * the narrowest bumps (sigma ~ 1 mm), so such a step ends the iteration
	 * without another evaluation (two evaluations at the default size). */
	for (int it = 0; it < 50; it++) {
		ph_deform_eval(d, y, dv, jac);
		double f[3], s[3], step = 0.0;
		for (int a = 0; a < 3; a++) {
			f[a] = y[a] + dv[a] - x[a];
			jac[4 * a] += 1.0;
		}
		solve3(jac, f, s);
		for (int a = 0; a < 3; a++) {
			y[a] -= s[a];
			step = fmax(step, fabs(s[a]));
		}
		if (step < 1e-3)
			return 0;
	}
	return -1;
}

void ph_deform_bounds(const ph_deform *d, const double half[3], int dim, double *dmax, double *gmax)
{
	double smin = d->sigma[0];
	for (int k = 1; k < PH_NBUMPS; k++)
		smin = fmin(smin, d->sigma[k]);
	/* A quarter sigma apart misses a bump's peak by < 1 %; at most 65 per axis. */
	int64_t m[3] = {1, 1, 1};
	for (int a = 0; a < dim; a++) {
		m[a] = (int64_t)ceil(2.0 * half[a] / (0.25 * smin)) + 1;
		if (m[a] > 65)
			m[a] = 65;
	}
	double dm = 0.0, gm = 0.0;
#pragma omp parallel for collapse(2) reduction(max : dm, gm) schedule(static)
	for (int64_t k = 0; k < m[2]; k++)
		for (int64_t j = 0; j < m[1]; j++)
			for (int64_t i = 0; i < m[0]; i++) {
				int64_t idx[3] = {i, j, k};
				double y[3] = {0, 0, 0}, dv[3], jac[9], g = 0.0;
				for (int a = 0; a < dim; a++)
					y[a] = -half[a] + 2.0 * half[a] * (double)idx[a] / (double)(m[a] - 1);
				ph_deform_eval(d, y, dv, jac);
				for (int a = 0; a < 9; a++)
					g += jac[a] * jac[a];
				dm = fmax(dm, sqrt(dv[0] * dv[0] + dv[1] * dv[1] + dv[2] * dv[2]));
				gm = fmax(gm, sqrt(g));
			}
	*dmax = dm, *gmax = gm;
}

/* Draw centres in the inner 70 % of the brain, unit directions, weights in [0.5, 1]. */
static void draw_bumps(ph_deform *d, const double brain[3], int dim, uint64_t seed)
{
	uint64_t key = ph_hash(seed ^ 0xD1F0A5C3B2E49687ull), n = 0;
#define RND() ph_unit(key + n++)
	for (int k = 0; k < PH_NBUMPS; k++) {
		double p[3], v[3], len2;
		do {
			len2 = 0.0;
			for (int a = 0; a < 3; a++) {
				p[a] = a < dim ? 2.0 * RND() - 1.0 : 0.0;
				len2 += p[a] * p[a];
			}
		} while (len2 > 1.0);
		do {
			len2 = 0.0;
			for (int a = 0; a < 3; a++) {
				v[a] = a < dim ? 2.0 * RND() - 1.0 : 0.0;
				len2 += v[a] * v[a];
			}
		} while (len2 > 1.0 || len2 < 1e-4);
		double mag = (0.5 + 0.5 * RND()) / sqrt(len2);
		/* bump width ~ a fifth of the brain, 14..24 mm at full size */
		d->sigma[k] = brain[0] / 70.0 * (14.0 + 10.0 * RND());
		for (int a = 0; a < 3; a++) {
			d->c[k][a] = 0.7 * brain[a] * p[a];
			d->w[k][a] = mag * v[a];
		}
	}
#undef RND
}

static void set_widths(ph_deform *d)
{
	for (int k = 0; k < PH_NBUMPS; k++)
		d->inv2s2[k] = 1.0 / (2.0 * d->sigma[k] * d->sigma[k]);
}

ffdp_status ph_deform_make(ph_deform *d, const double half[3], const double brain[3], int dim,
			   double amplitude, uint64_t seed, ffdp_error *err)
{
	memset(d, 0, sizeof(*d));
	draw_bumps(d, brain, dim, seed);
	set_widths(d);
	if (amplitude == 0.0) {
		memset(d->w, 0, sizeof(d->w));
		return FFDP_OK;
	}
	/* Scale to the amplitude; where the gradient would then be too steep,
	 * widen every bump (a wider bump of the same height is gentler). */
	for (int it = 0; it < 40; it++) {
		double dmax, gmax;
		ph_deform_bounds(d, half, dim, &dmax, &gmax);
		double scale = dmax > 0.0 ? amplitude / dmax : 0.0;
		if (scale * gmax <= PH_MAX_GRAD && scale > 0.0) {
			for (int k = 0; k < PH_NBUMPS; k++)
				for (int a = 0; a < 3; a++)
					d->w[k][a] *= scale;
			return FFDP_OK;
		}
		for (int k = 0; k < PH_NBUMPS; k++)
			d->sigma[k] *= 1.2;
		set_widths(d);
	}
	return ffdp_fail(err, FFDP_ERR_ARG,
			 "phantom amplitude_mm %g is too large for a smooth invertible deformation of this field of view",
			 amplitude);
}
