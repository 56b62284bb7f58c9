/* Mattes MI on the CPU: values against a plain double reference built from
 * full per-voxel weight vectors over all B bins (exact, untruncated kernels),
 * gradients against central differences of that reference, the histogram
 * hooks of the distributed path, thread-count agreement, the O(B^2) scratch
 * bound and the 128^3 timing. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "ffdp/ops.h"
#include "testutil.h"

typedef struct mi_case {
	int64_t n[3];
	int B;
	ffdp_mi_kernel kernel;
	double flo, fhi, mlo, mhi;
	double denom, scale;
	const float *mask;
} mi_case;

static const char *kname(ffdp_mi_kernel k)
{
	return k == FFDP_MI_GAUSSIAN ? "gauss" : "bspline";
}

static int64_t nvox(const int64_t n[3])
{
	return n[0] * n[1] * n[2];
}

/* ---- double reference ------------------------------------------------------ */

static double beta3(double d)
{
	d = fabs(d);
	if (d < 1)
		return 2.0 / 3.0 - d * d + d * d * d / 2;
	if (d < 2)
		return (2 - d) * (2 - d) * (2 - d) / 6;
	return 0;
}

/* Normalised weights over all B bins: bin centres j + 0.5, s clamped to [0, B],
 * Gaussian sigma = 0.5 bin (no truncation) or cubic B-spline. */
static void ref_weights(ffdp_mi_kernel k, double x, double lo, double hi, int B, double *w)
{
	double s = (x - lo) / (hi - lo) * B, sum = 0;
	s = s < 0 ? 0 : s > B ? B : s;
	for (int j = 0; j < B; j++) {
		double d = s - (j + 0.5);
		w[j] = k == FFDP_MI_GAUSSIAN ? exp(-0.5 * (d / 0.5) * (d / 0.5)) : beta3(d);
		sum += w[j];
	}
	for (int j = 0; j < B; j++)
		w[j] /= sum;
}

static double ref_loss_h(const double *h, int B, double V)
{
	double *pf = calloc(2 * (size_t)B, sizeof(double)), *pm = pf + B, mi = 0;
	for (int j = 0; j < B; j++)
		for (int l = 0; l < B; l++)
			pf[j] += h[j * B + l] / V, pm[l] += h[j * B + l] / V;
	for (int j = 0; j < B; j++)
		for (int l = 0; l < B; l++) {
			double p = h[j * B + l] / V;
			if (p > 0)
				mi += p * log(p / (pf[j] * pm[l]));
		}
	free(pf);
	return -mi;
}

static double ref_V(const mi_case *c)
{
	double V = 0;
	if (c->denom > 0)
		return c->denom;
	for (int64_t i = 0; i < nvox(c->n); i++)
		V += c->mask ? c->mask[i] : 1.0;
	return V;
}

/* Add v * wf(f) (x) wm(m) to h: one voxel's joint contribution. */
static void ref_add(const mi_case *c, double f, double m, double v, double *h)
{
	int B = c->B;
	double *wf = malloc(2 * (size_t)B * sizeof(double)), *wm = wf + B;
	ref_weights(c->kernel, f, c->flo, c->fhi, B, wf);
	ref_weights(c->kernel, m, c->mlo, c->mhi, B, wm);
	for (int j = 0; j < B; j++)
		for (int l = 0; l < B; l++)
			h[j * B + l] += v * wf[j] * wm[l];
	free(wf);
}

/* The full N x B weight arrays, then the joint (unnormalised, into h) and the loss. */
static double ref_loss(const mi_case *c, const double *f, const double *m, double *h)
{
	int64_t n = nvox(c->n);
	int B = c->B;
	double *Wf = malloc((size_t)(2 * n * B) * sizeof(double)), *Wm = Wf + n * B;
	for (int64_t i = 0; i < n; i++) {
		ref_weights(c->kernel, f[i], c->flo, c->fhi, B, Wf + i * B);
		ref_weights(c->kernel, m[i], c->mlo, c->mhi, B, Wm + i * B);
	}
	memset(h, 0, (size_t)B * B * sizeof(double));
	for (int64_t i = 0; i < n; i++) {
		double v = c->mask ? c->mask[i] : 1.0;
		for (int j = 0; j < B; j++)
			for (int l = 0; l < B; l++)
				h[j * B + l] += v * Wf[i * B + j] * Wm[i * B + l];
	}
	free(Wf);
	return ref_loss_h(h, B, ref_V(c));
}

/* Central difference of scale * ref loss wrt voxel i of f (which 0) or m (1);
 * h0 is the reference joint: only voxel i's outer product changes. */
static double ref_fd(const mi_case *c, const double *f, const double *m, const double *h0, int64_t i,
		     int which)
{
	int B = c->B;
	double v = c->mask ? c->mask[i] : 1.0, V = ref_V(c), L[2];
	double step = 1e-3 * (which ? c->mhi - c->mlo : c->fhi - c->flo) / B;
	double *h = malloc((size_t)B * B * sizeof(double));
	for (int sgn = 0; sgn < 2; sgn++) {
		double d = sgn ? -step : step;
		memcpy(h, h0, (size_t)B * B * sizeof(double));
		ref_add(c, f[i], m[i], -v, h);
		ref_add(c, f[i] + (which ? 0 : d), m[i] + (which ? d : 0), v, h);
		L[sgn] = ref_loss_h(h, B, V);
	}
	free(h);
	return c->scale * (L[0] - L[1]) / (2 * step);
}

/* ---- inputs ------------------------------------------------------------------ */

/* f smooth; m a nonlinear function of f plus an independent smooth part and noise. */
static void make_pair(tu_rng *r, const int64_t n[3], float *f, float *m)
{
	int64_t N = nvox(n);
	float *g = malloc((size_t)N * sizeof(float));
	tu_fill_smooth(r, f, n, 0.05);
	tu_fill_smooth(r, g, n, 0.0);
	for (int64_t i = 0; i < N; i++)
		m[i] = (float)(3.0 * f[i] * f[i] - 40.0 * g[i] + 100.0 + 0.5 * tu_normal(r));
	free(g);
}

static void make_mask(tu_rng *r, float *mask, int64_t N)
{
	for (int64_t i = 0; i < N; i++)
		mask[i] = tu_uniform(r) < 0.25 ? 0.0f : (float)(0.2 + 0.8 * tu_uniform(r));
}

/* [min - margin span, max + margin span]; margin < 0 clamps some voxels. */
static void range_of(const float *x, int64_t N, double margin, double *lo, double *hi)
{
	double a = x[0], b = x[0];
	for (int64_t i = 1; i < N; i++)
		a = fmin(a, x[i]), b = fmax(b, x[i]);
	*lo = a - margin * (b - a);
	*hi = b + margin * (b - a);
}

static void to_double(const float *x, double *y, int64_t N)
{
	for (int64_t i = 0; i < N; i++)
		y[i] = x[i];
}

static ffdp_status run_op(ffdp_backend *be, const mi_case *c, float *f, float *m, float *gf, float *gm,
			  double *loss, double *hist, const double *hist_in, ffdp_error *err)
{
	ffdp_loss_args a = {.f = {f, {c->n[0], c->n[1], c->n[2]}},
			    .m = {m, {c->n[0], c->n[1], c->n[2]}},
			    .mask = c->mask,
			    .denom = c->denom,
			    .scale = c->scale,
			    .gf = gf,
			    .gm = gm,
			    .loss = loss};
	ffdp_mi_opts o = {.bins = c->B, .kernel = c->kernel, .f_lo = c->flo, .f_hi = c->fhi,
			  .m_lo = c->mlo, .m_hi = c->mhi, .hist = hist, .hist_in = hist_in};
	return ffdp_op_mi(be, &a, &o, err);
}

static double max_abs_f(const float *x, int64_t N)
{
	double s = 0;
	for (int64_t i = 0; i < N; i++)
		s = fmax(s, fabs(x[i]));
	return s;
}

static double max_diff_f(const float *x, const float *y, int64_t N)
{
	double s = 0;
	for (int64_t i = 0; i < N; i++)
		s = fmax(s, fabs((double)x[i] - y[i]));
	return s;
}

/* ---- value checks ------------------------------------------------------------- */

static const char *variant_name[4] = {"plain", "mask", "mask+denom", "clamped"};

static void check_values(ffdp_backend *be, tu_rng *r, const int64_t n[3], int B, ffdp_mi_kernel k,
			 int variant)
{
	int64_t N = nvox(n);
	float *f = malloc((size_t)N * 3 * sizeof(float)), *m = f + N, *mask = m + N;
	double *fd = malloc((size_t)N * 2 * sizeof(double)), *md = fd + N;
	double *h = malloc((size_t)B * B * sizeof(double)), loss = 0;
	ffdp_error err = {0};
	make_pair(r, n, f, m);
	make_mask(r, mask, N);
	to_double(f, fd, N), to_double(m, md, N);
	double margin = variant == 3 ? -0.1 : 0.02;
	mi_case c = {{n[0], n[1], n[2]}, B, k, 0, 0, 0, 0, 0, 1, variant == 1 || variant == 2 ? mask : NULL};
	range_of(f, N, margin, &c.flo, &c.fhi);
	range_of(m, N, margin, &c.mlo, &c.mhi);
	if (variant == 2)
		c.denom = 1.7 * N;
	double ref = ref_loss(&c, fd, md, h), sum = 0;
	ffdp_loss_args a = {.f = {f, {n[0], n[1], n[2]}}, .m = {m, {n[0], n[1], n[2]}}, .mask = c.mask,
			    .denom = c.denom, .scale = 1, .loss = &loss, .sum = &sum};
	ffdp_mi_opts o = {.bins = B, .kernel = k, .f_lo = c.flo, .f_hi = c.fhi, .m_lo = c.mlo, .m_hi = c.mhi};
	CHECK_OK(ffdp_op_mi(be, &a, &o, &err), &err, "mi runs");
	double V = ref_V(&c), sum_err = fabs(sum - loss * V) / fabs(loss * V);
	double rel = fabs(loss - ref) / fabs(ref);
	CHECK(rel < 1e-5 && ref < -1e-3 && sum_err < 1e-12,
	      "value %s B=%d %lldx%lldx%lld %s: loss %.9f ref %.9f rel %.1e (sum = loss V to %.0e)", kname(k), B,
	      (long long)n[0], (long long)n[1], (long long)n[2], variant_name[variant], loss, ref, rel, sum_err);
	free(f), free(fd), free(h);
}

/* ---- gradient checks ------------------------------------------------------------ */

static void check_grads(ffdp_backend *be, tu_rng *r, const int64_t n[3], int B, ffdp_mi_kernel k,
			int variant)
{
	int64_t N = nvox(n);
	float *f = malloc((size_t)N * 5 * sizeof(float)), *m = f + N, *mask = m + N, *gf = mask + N, *gm = gf + N;
	double *fd = malloc((size_t)N * 2 * sizeof(double)), *md = fd + N;
	double *h = malloc((size_t)B * B * sizeof(double)), loss;
	ffdp_error err = {0};
	make_pair(r, n, f, m);
	make_mask(r, mask, N);
	to_double(f, fd, N), to_double(m, md, N);
	/* variants: 0 mask, scale 0.7; 1 plain; 2 denom, scale -1.3; 3 clamped range, mask */
	mi_case c = {{n[0], n[1], n[2]}, B, k, 0, 0, 0, 0, 0, 1, NULL};
	double margin = variant == 3 ? -0.1 : 0.02;
	range_of(f, N, margin, &c.flo, &c.fhi);
	range_of(m, N, margin, &c.mlo, &c.mhi);
	if (variant == 0 || variant == 3)
		c.mask = mask, c.scale = 0.7;
	if (variant == 2)
		c.denom = 1.3 * N, c.scale = -1.3;
	ref_loss(&c, fd, md, h);
	CHECK_OK(run_op(be, &c, f, m, gf, gm, &loss, NULL, NULL, &err), &err, "mi with gradients runs");
	double ef = 0, em = 0, mf = 0, mm = 0;
	int nclamped = 0, zero_where_off = 1;
	/* 40 random voxels, then up to 10 whose windows are cut by a range end
	 * (where normalising matters for the B-spline too) */
	int nedge = 0;
	int64_t scan = (int64_t)(tu_next(r) % (uint64_t)N);
	for (int t = 0; t < 50; t++) {
		int64_t i = (int64_t)(tu_next(r) % (uint64_t)N);
		if (t >= 40) {
			for (int64_t q = 0; q < N; q++, scan = (scan + 1) % N) {
				double a = (fd[scan] - c.flo) / (c.fhi - c.flo) * B;
				double b = (md[scan] - c.mlo) / (c.mhi - c.mlo) * B;
				if ((a > 0.1 && a < 1.9) || (a > B - 1.9 && a < B - 0.1) || (b > 0.1 && b < 1.9) ||
				    (b > B - 1.9 && b < B - 0.1))
					break;
			}
			i = scan, scan = (scan + 1) % N;
		}
		double sf = (fd[i] - c.flo) / (c.fhi - c.flo) * B, sm = (md[i] - c.mlo) / (c.mhi - c.mlo) * B;
		/* keep clear of the clamp kink by 100 FD steps */
		if (fabs(sf) < 0.1 || fabs(sf - B) < 0.1 || fabs(sm) < 0.1 || fabs(sm - B) < 0.1) {
			if (t < 40)
				t--;
			continue;
		}
		double rf = ref_fd(&c, fd, md, h, i, 0), rm = ref_fd(&c, fd, md, h, i, 1);
		ef = fmax(ef, fabs(gf[i] - rf)), mf = fmax(mf, fabs(rf));
		em = fmax(em, fabs(gm[i] - rm)), mm = fmax(mm, fabs(rm));
		if (sf < 0 || sf > B || sm < 0 || sm > B)
			nclamped++;
		if (sf < 2 || sf > B - 2 || sm < 2 || sm > B - 2)
			nedge++;
	}
	for (int64_t i = 0; i < N; i++) {
		double sf = (fd[i] - c.flo) / (c.fhi - c.flo) * B, sm = (md[i] - c.mlo) / (c.mhi - c.mlo) * B;
		if ((c.mask && mask[i] == 0 && (gf[i] != 0 || gm[i] != 0)) || ((sf <= 0 || sf >= B) && gf[i] != 0) ||
		    ((sm <= 0 || sm >= B) && gm[i] != 0))
			zero_where_off = 0;
	}
	static const char *vn[4] = {"mask scale 0.7", "plain", "denom scale -1.3", "clamped+mask"};
	CHECK(mf > 0 && ef / mf < 1e-3, "grad f %s B=%d %lldx%lldx%lld %s: max|err| %.2e / max|fd| %.2e = %.1e",
	      kname(k), B, (long long)n[0], (long long)n[1], (long long)n[2], vn[variant], ef, mf, ef / mf);
	CHECK(mm > 0 && em / mm < 1e-3, "grad m %s B=%d %lldx%lldx%lld %s: max|err| %.2e / max|fd| %.2e = %.1e",
	      kname(k), B, (long long)n[0], (long long)n[1], (long long)n[2], vn[variant], em, mm, em / mm);
	CHECK(zero_where_off && nedge >= 8,
	      "grad %s %s: exactly 0 at masked-out and clamped voxels; %d samples clamped, %d near a range end",
	      kname(k), vn[variant], nclamped, nedge);
	free(f), free(fd), free(h);
}

/* ---- properties ------------------------------------------------------------------- */

static void check_dependency(ffdp_backend *be, tu_rng *r, ffdp_mi_kernel k)
{
	int64_t n[3] = {48, 40, 32}, N = nvox(n);
	float *f = malloc((size_t)N * 3 * sizeof(float)), *dep = f + N, *ind = dep + N;
	double ld, li;
	ffdp_error err = {0};
	tu_fill_smooth(r, f, n, 0.02);
	for (int64_t i = 0; i < N; i++)
		dep[i] = (float)(f[i] * f[i] + 0.02 * tu_normal(r));
	tu_fill_uniform(r, ind, N, 0, 1);
	mi_case c = {{n[0], n[1], n[2]}, 32, k, 0, 0, 0, 0, 0, 1, NULL};
	range_of(f, N, 0.01, &c.flo, &c.fhi);
	range_of(dep, N, 0.01, &c.mlo, &c.mhi);
	CHECK_OK(run_op(be, &c, f, dep, NULL, NULL, &ld, NULL, NULL, &err), &err, "mi dependent");
	range_of(ind, N, 0.01, &c.mlo, &c.mhi);
	CHECK_OK(run_op(be, &c, f, ind, NULL, NULL, &li, NULL, NULL, &err), &err, "mi independent");
	CHECK(-ld > 0.5 && -ld > 20 * -li, "%s: MI(f, f^2 + noise) = %.4f >> MI(f, independent noise) = %.4f",
	      kname(k), -ld, -li);
	free(f);
}

static void check_invariance(ffdp_backend *be, tu_rng *r, ffdp_mi_kernel k)
{
	int64_t n[3] = {31, 27, 13}, N = nvox(n);
	float *f = malloc((size_t)N * 2 * sizeof(float)), *g = f + N;
	double l0, l1;
	ffdp_error err = {0};
	tu_fill_smooth(r, f, n, 0.05);
	mi_case c = {{n[0], n[1], n[2]}, 32, k, 0, 0, 0, 0, 0, 1, NULL};
	range_of(f, N, 0.03, &c.flo, &c.fhi);
	c.mlo = c.flo, c.mhi = c.fhi;
	CHECK_OK(run_op(be, &c, f, f, NULL, NULL, &l0, NULL, NULL, &err), &err, "mi(f, f)");
	static const double ab[2][2] = {{2.5, -3.0}, {-0.7, 1.0}};
	for (int t = 0; t < 2; t++) {
		double a = ab[t][0], b = ab[t][1];
		for (int64_t i = 0; i < N; i++)
			g[i] = (float)(a * f[i] + b);
		c.mlo = fmin(a * c.flo + b, a * c.fhi + b), c.mhi = fmax(a * c.flo + b, a * c.fhi + b);
		CHECK_OK(run_op(be, &c, f, g, NULL, NULL, &l1, NULL, NULL, &err), &err, "mi(f, a f + b)");
		CHECK(fabs(l1 - l0) < 1e-5 * fabs(l0), "%s: MI(f, %.1f f %+.1f) = %.8f equals MI(f, f) = %.8f",
		      kname(k), a, b, -l1, -l0);
	}
	free(f);
}

/* hist output matches the reference joint; hist_in reproduces loss and
 * gradient; two z-slabs with the global denom and summed hist reproduce the
 * single call (the distributed protocol). */
static void check_hist(ffdp_backend *be, tu_rng *r, ffdp_mi_kernel k)
{
	int64_t n[3] = {19, 21, 14}, N = nvox(n);
	int B = 32, HB = B * B + 2 * B;
	float *f = malloc((size_t)N * 7 * sizeof(float)), *m = f + N, *mask = m + N;
	float *gf = mask + N, *gm = gf + N, *gf2 = gm + N, *gm2 = gf2 + N;
	double *fd = malloc((size_t)N * 2 * sizeof(double)), *md = fd + N;
	double *h = malloc((size_t)(4 * HB) * sizeof(double)), *hist = h + HB, *hs = hist + HB, *hsum = hs + HB;
	double loss, loss2, ls[2];
	ffdp_error err = {0};
	make_pair(r, n, f, m);
	make_mask(r, mask, N);
	to_double(f, fd, N), to_double(m, md, N);
	mi_case c = {{n[0], n[1], n[2]}, B, k, 0, 0, 0, 0, 0, 0.9, mask};
	range_of(f, N, 0.02, &c.flo, &c.fhi);
	range_of(m, N, 0.02, &c.mlo, &c.mhi);
	ref_loss(&c, fd, md, h);
	CHECK_OK(run_op(be, &c, f, m, gf, gm, &loss, hist, NULL, &err), &err, "mi with hist out");
	double e = 0, mh = 0, em = 0, tot = 0;
	for (int j = 0; j < B * B; j++)
		e = fmax(e, fabs(hist[j] - h[j])), mh = fmax(mh, h[j]), tot += hist[j];
	for (int j = 0; j < B; j++) {
		double rs = 0, cs = 0;
		for (int l = 0; l < B; l++)
			rs += hist[j * B + l], cs += hist[l * B + j];
		em = fmax(em, fmax(fabs(hist[B * B + j] - rs), fabs(hist[B * B + B + j] - cs)));
	}
	double V = ref_V(&c);
	CHECK(e / mh < 1e-9, "%s hist: joint matches the reference joint (max err %.1e of %.1f)", kname(k), e, mh);
	CHECK(em < 1e-9 * mh, "%s hist: marginals are the joint's row and column sums (err %.1e)", kname(k), em);
	CHECK(fabs(tot - V) < 1e-9 * V, "%s hist: total mass %.6f = mask sum %.6f", kname(k), tot, V);

	CHECK_OK(run_op(be, &c, f, m, gf2, gm2, &loss2, NULL, hist, &err), &err, "mi with hist_in");
	CHECK(loss2 == loss && max_diff_f(gf, gf2, N) == 0 && max_diff_f(gm, gm2, N) == 0,
	      "%s hist_in: loss %.12f vs %.12f, gradients identical", kname(k), loss2, loss);

	/* two slabs along z, global denom */
	int64_t z0 = n[2] / 2, cut = n[0] * n[1] * z0;
	mi_case s[2] = {c, c};
	s[0].n[2] = z0, s[1].n[2] = n[2] - z0;
	s[1].mask = mask + cut;
	s[0].denom = s[1].denom = V;
	memset(hsum, 0, (size_t)HB * sizeof(double));
	for (int q = 0; q < 2; q++) {
		int64_t off = q ? cut : 0;
		CHECK_OK(run_op(be, &s[q], f + off, m + off, NULL, NULL, &ls[q], hs, NULL, &err), &err, "slab hist");
		for (int j = 0; j < HB; j++)
			hsum[j] += hs[j];
	}
	for (int q = 0; q < 2; q++) {
		int64_t off = q ? cut : 0;
		CHECK_OK(run_op(be, &s[q], f + off, m + off, gf2 + off, gm2 + off, &ls[q], NULL, hsum, &err), &err,
			 "slab gradient from the summed hist");
	}
	double g0 = fmax(max_abs_f(gf, N), max_abs_f(gm, N));
	double dg = fmax(max_diff_f(gf, gf2, N), max_diff_f(gm, gm2, N));
	CHECK(fabs(ls[0] - loss) < 1e-10 * fabs(loss) && ls[0] == ls[1] && dg < 1e-6 * g0,
	      "%s 2 slabs + summed hist: loss %.12f vs %.12f, gradient diff %.1e of %.1e", kname(k), ls[0], loss, dg,
	      g0);
	free(f), free(fd), free(h);
}

static void check_threads(ffdp_backend *be, tu_rng *r, ffdp_mi_kernel k)
{
	int64_t n[3] = {45, 37, 29}, N = nvox(n);
	float *f = malloc((size_t)N * 6 * sizeof(float)), *m = f + N;
	float *g[4] = {m + N, m + 2 * N, m + 3 * N, m + 4 * N};
	double l[2];
	ffdp_error err = {0};
	make_pair(r, n, f, m);
	mi_case c = {{n[0], n[1], n[2]}, 32, k, 0, 0, 0, 0, 0, 1, NULL};
	range_of(f, N, 0.02, &c.flo, &c.fhi);
	range_of(m, N, 0.02, &c.mlo, &c.mhi);
	int saved = omp_get_max_threads();
	for (int t = 0; t < 2; t++) {
		omp_set_num_threads(t + 1);
		CHECK_OK(run_op(be, &c, f, m, g[2 * t], g[2 * t + 1], &l[t], NULL, NULL, &err), &err,
			 "mi on %d thread(s)", t + 1);
	}
	omp_set_num_threads(saved);
	double gmax = fmax(max_abs_f(g[0], N), max_abs_f(g[1], N));
	double dg = fmax(max_diff_f(g[0], g[2], N), max_diff_f(g[1], g[3], N));
	CHECK(fabs(l[0] - l[1]) < 1e-6 * fabs(l[0]) && dg < 1e-6 * gmax,
	      "%s: 1 vs 2 threads: loss %.12f vs %.12f, gradient diff %.1e of %.1e", kname(k), l[0], l[1], dg, gmax);
	free(f);
}

/* The AVX2 build of the loops (where the CPU has it) against the plain
 * x86-64 one: the same bits of loss, histogram and both gradients, with a
 * mask of zeros and fractions and intensities past both range ends. */
static void check_isa(ffdp_backend *be, tu_rng *r, ffdp_mi_kernel k, int B)
{
	int64_t n[3] = {45, 37, 29}, N = nvox(n);
	float *f = malloc((size_t)N * 7 * sizeof(float)), *m = f + N, *mask = m + N;
	float *g[4] = {mask + N, mask + 2 * N, mask + 3 * N, mask + 4 * N};
	double l[2], *h = malloc(2 * ((size_t)B * B + 2 * (size_t)B) * sizeof(double));
	ffdp_error err = {0};
	make_pair(r, n, f, m);
	tu_fill_uniform(r, mask, N, -0.5, 1.0);
	for (int64_t i = 0; i < N; i++)
		mask[i] = mask[i] < 0 ? 0.0f : mask[i];
	mi_case c = {{n[0], n[1], n[2]}, B, k, 0, 0, 0, 0, 0, 1, mask};
	range_of(f, N, 0.05, &c.flo, &c.fhi);
	range_of(m, N, 0.05, &c.mlo, &c.mhi);
	for (int t = 0; t < 2; t++) {
		ffdp_cpu_force_scalar = t;
		CHECK_OK(run_op(be, &c, f, m, g[2 * t], g[2 * t + 1], &l[t], h + t * ((size_t)B * B + 2 * B), NULL,
				&err),
			 &err, "mi, %s loops", t ? "plain" : "AVX2");
		ffdp_cpu_force_scalar = 0;
	}
	size_t hb = ((size_t)B * B + 2 * B) * sizeof(double), gb = (size_t)N * sizeof(float);
	CHECK(memcmp(&l[0], &l[1], sizeof(double)) == 0 && memcmp(h, h + hb / sizeof(double), hb) == 0 &&
		      memcmp(g[0], g[2], gb) == 0 && memcmp(g[1], g[3], gb) == 0,
	      "%s B=%d: AVX2 and plain loops give the same bits (loss %.17g vs %.17g)", kname(k), B, l[0], l[1]);
	free(f), free(h);
}

/* Peak library allocation of fwd+bwd: O(threads B^2), the same for two N. */
static void check_alloc(ffdp_backend *be, tu_rng *r, ffdp_mi_kernel k)
{
	int B = 32, th = omp_get_max_threads();
	size_t peak[2], bound = (size_t)64 * B * B * 8 * th;
	for (int t = 0; t < 2; t++) {
		int64_t n[3] = {64, 64, t ? 24 : 48}, N = nvox(n);
		float *f = malloc((size_t)N * 4 * sizeof(float)), *m = f + N, *gf = m + N, *gm = gf + N;
		double loss;
		ffdp_error err = {0};
		make_pair(r, n, f, m);
		mi_case c = {{n[0], n[1], n[2]}, B, k, 0, 0, 0, 0, 0, 1, NULL};
		range_of(f, N, 0.02, &c.flo, &c.fhi);
		range_of(m, N, 0.02, &c.mlo, &c.mhi);
		alloc_count_reset();
		CHECK_OK(run_op(be, &c, f, m, gf, gm, &loss, NULL, NULL, &err), &err, "mi fwd+bwd");
		peak[t] = alloc_count_peak_extra();
		free(f);
	}
	CHECK(peak[0] < bound && peak[0] == peak[1],
	      "%s: MI fwd+bwd allocates O(B^2): peak %zu B at 64x64x48, %zu B at 64x64x24 (bound %zu, %d threads)",
	      kname(k), peak[0], peak[1], bound, th);
}

static void time_128(ffdp_backend *be, tu_rng *r)
{
	int64_t n[3] = {128, 128, 128}, N = nvox(n);
	float *f = malloc((size_t)N * 4 * sizeof(float)), *m = f + N, *gf = m + N, *gm = gf + N;
	ffdp_error err = {0};
	make_pair(r, n, f, m);
	int saved = omp_get_max_threads();
	omp_set_num_threads(2);
	for (int k = 0; k < 2; k++) {
		mi_case c = {{n[0], n[1], n[2]}, 32, (ffdp_mi_kernel)k, 0, 0, 0, 0, 0, 1, NULL};
		range_of(f, N, 0.02, &c.flo, &c.fhi);
		range_of(m, N, 0.02, &c.mlo, &c.mhi);
		double best = 1e30, loss, lf;
		for (int rep = 0; rep < 3; rep++) {
			double t0 = omp_get_wtime();
			CHECK_OK(run_op(be, &c, f, m, gf, gm, &loss, NULL, NULL, &err), &err, "mi 128^3");
			best = fmin(best, omp_get_wtime() - t0);
		}
		double t0 = omp_get_wtime();
		run_op(be, &c, f, m, NULL, NULL, &lf, NULL, NULL, &err);
		double tf = omp_get_wtime() - t0;
		printf("time %s B=32 128^3 on 2 threads: fwd+bwd %.1f ms (%.1f ns/voxel), fwd only %.1f ms\n",
		       kname((ffdp_mi_kernel)k), best * 1e3, best * 1e9 / N, tf * 1e3);
	}
	omp_set_num_threads(saved);
	free(f);
}

int main(void)
{
	ffdp_backend *be = NULL;
	ffdp_error err = {0};
	tu_rng r = tu_rng_make(20260311);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "cpu backend opens");
	if (!be)
		return check_done();

	static const int64_t g3[3] = {17, 23, 11}, g2[3] = {29, 31, 1};
	static const int bins[4] = {8, 32, 64, 13};
	for (int k = 0; k < 2; k++)
		for (int b = 0; b < 4; b++)
			for (int v = 0; v < 4; v++) {
				check_values(be, &r, g3, bins[b], (ffdp_mi_kernel)k, v);
				check_values(be, &r, g2, bins[b], (ffdp_mi_kernel)k, v);
			}
	for (int k = 0; k < 2; k++) {
		check_grads(be, &r, g3, 32, (ffdp_mi_kernel)k, 0);
		check_grads(be, &r, g2, 13, (ffdp_mi_kernel)k, 1);
		check_grads(be, &r, g3, 8, (ffdp_mi_kernel)k, 2);
		check_grads(be, &r, g3, 32, (ffdp_mi_kernel)k, 3);
		check_dependency(be, &r, (ffdp_mi_kernel)k);
		check_invariance(be, &r, (ffdp_mi_kernel)k);
		check_hist(be, &r, (ffdp_mi_kernel)k);
		check_threads(be, &r, (ffdp_mi_kernel)k);
		check_isa(be, &r, (ffdp_mi_kernel)k, 32);
		check_isa(be, &r, (ffdp_mi_kernel)k, 13);
		check_alloc(be, &r, (ffdp_mi_kernel)k);
	}

	/* an all-zero mask is refused with a message */
	{
		int64_t n[3] = {5, 4, 3}, N = nvox(n);
		float f[60], m[60], mask[60] = {0};
		double loss;
		tu_fill_uniform(&r, f, N, 0, 1), tu_fill_uniform(&r, m, N, 0, 1);
		mi_case c = {{n[0], n[1], n[2]}, 16, FFDP_MI_GAUSSIAN, 0, 1, 0, 1, 0, 1, mask};
		ffdp_status s = run_op(be, &c, f, m, NULL, NULL, &loss, NULL, NULL, &err);
		CHECK(s == FFDP_ERR_DATA, "all-zero mask is refused: %s", err.msg);
	}
	time_128(be, &r);
	ffdp_backend_close(be);
	return check_done();
}
