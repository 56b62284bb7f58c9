/* LNCC and MI on the CUDA backend against the CPU backend and against
 * brute-force references written from the definitions (direct window sums,
 * adjoint by scatter; dense Parzen windows over all bins).  Also: repeated
 * calls give the same bits, and the extra device memory (peak of the
 * stream-ordered pool, and no leak) stays within the contract: LNCC at most
 * one volume, MI independent of N.  Pending losses (ffdp_scalar) read as
 * the synchronous ones.  Needs a GPU (label "gpu"). */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static ffdp_backend *cpu, *gpu;

/* ---- device helpers ------------------------------------------------------ */

static void dev_put(float *d, const float *x, int64_t n)
{
	ffdp_error err;
	if (ffdp_buf_upload(gpu, d, x, (size_t)n * sizeof(float), &err)) {
		printf("device buffer: %s\n", err.msg);
		exit(1);
	}
}

static float *dev_copy(const float *x, int64_t n)
{
	ffdp_error err;
	float *d = ffdp_buf_alloc(gpu, (size_t)n * sizeof(float), &err);
	if (!d) {
		printf("device buffer: %s\n", err.msg);
		exit(1);
	}
	dev_put(d, x, n);
	return d;
}

static void dev_fetch(float *h, const float *d, int64_t n)
{
	ffdp_error err;
	if (ffdp_buf_download(gpu, h, d, (size_t)n * sizeof(float), &err)) {
		printf("download: %s\n", err.msg);
		exit(1);
	}
}

/* Peak of the default stream-ordered pool over one call (reset before). */
static cudaMemPool_t pool;

static void mem_reset(size_t *free0)
{
	unsigned long long zero = 0;
	size_t total;
	cudaDeviceSynchronize();
	cudaMemPoolTrimTo(pool, 0);
	cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero);
	cudaMemGetInfo(free0, &total);
}

/* Peak scratch of the call; *leak = device memory not given back. */
static double mem_peak(size_t free0, double *leak)
{
	unsigned long long high = 0;
	size_t free1, total;
	cudaDeviceSynchronize();
	cudaMemPoolTrimTo(pool, 0);
	cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high);
	cudaMemGetInfo(&free1, &total);
	*leak = free1 < free0 ? (double)(free0 - free1) : 0.0;
	return (double)high;
}

/* max |a - b| / max |b| */
static double rel_ff(const float *a, const float *b, int64_t n)
{
	double d = 0, m = 0;
	for (int64_t i = 0; i < n; i++) {
		d = fmax(d, fabs((double)a[i] - (double)b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return d / fmax(m, 1e-30);
}

/* ---- inputs -------------------------------------------------------------- */

typedef struct inputs {
	int64_t n[3], nvox;
	float *f, *m, *w;       /* host */
	float *df, *dm, *dw;    /* device */
} inputs;

/* f, m smooth and correlated (m = 0.6 m' + 0.4 f), mask in [0, 1]; off and
 * amp scale the intensities (precision with ~1000). */
static inputs make_inputs(int64_t nx, int64_t ny, int64_t nz, double off, double amp, uint64_t seed)
{
	inputs in;
	tu_rng r = tu_rng_make(seed);
	in.n[0] = nx, in.n[1] = ny, in.n[2] = nz;
	in.nvox = nx * ny * nz;
	in.f = malloc((size_t)in.nvox * sizeof(float));
	in.m = malloc((size_t)in.nvox * sizeof(float));
	in.w = malloc((size_t)in.nvox * sizeof(float));
	tu_fill_smooth(&r, in.f, in.n, 0.02);
	tu_fill_smooth(&r, in.m, in.n, 0.02);
	for (int64_t i = 0; i < in.nvox; i++) {
		in.m[i] = 0.6f * in.m[i] + 0.4f * in.f[i];
		in.f[i] = (float)(off + amp * in.f[i]);
		in.m[i] = (float)(off + amp * in.m[i]);
		in.w[i] = (float)tu_uniform(&r);
	}
	in.df = dev_copy(in.f, in.nvox);
	in.dm = dev_copy(in.m, in.nvox);
	in.dw = dev_copy(in.w, in.nvox);
	return in;
}

/* Background: f is 0 outside an ellipsoid and on planes [zlo, zhi), m 0
 * outside another (shifted) ellipsoid, as skull-stripped brains; the
 * fixed-window kernels skip windows where f is 0 (cuda_lncc_fixed.cuh).
 * Intensities of order 1, as the registration's normalised images: with
 * ~100 next to the zeros, the running sums' residue over 1/eps breaks the
 * 1e-4 bound in the flat windows of every kernel (docs/perf.md). */
static void zero_background(inputs *in, int64_t zlo, int64_t zhi)
{
	const int64_t nx = in->n[0], ny = in->n[1], nz = in->n[2];
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				const int64_t i = (z * ny + y) * nx + x;
				const double u = (x - 0.45 * nx) / (0.3 * nx), v = (y - 0.5 * ny) / (0.35 * ny),
					     w = (z - 0.5 * nz) / (0.4 * nz), u2 = (x - 0.55 * nx) / (0.3 * nx);
				if (u * u + v * v + w * w > 1.0 || (z >= zlo && z < zhi))
					in->f[i] = 0.0f;
				if (u2 * u2 + v * v + w * w > 1.0)
					in->m[i] = 0.0f;
			}
	dev_put(in->df, in->f, in->nvox);
	dev_put(in->dm, in->m, in->nvox);
}

/* ANTs' gradient on planes whose windows see no f: exactly 0 (the running
 * sums' residue of the planes before would not be). */
static void lncc_flat_case(const inputs *in, int k, int64_t zlo, int64_t zhi)
{
	const int64_t n = in->nvox, np = in->n[0] * in->n[1], r = (k - 1) / 2;
	const size_t bytes = (size_t)n * sizeof(float);
	ffdp_error err;
	ffdp_lncc_opts o = {.k = k, .exact_grad = 0, .eps = 0.0};
	float *dgm = ffdp_buf_alloc(gpu, bytes, &err), *gm = malloc(bytes);
	double loss = 0;
	ffdp_loss_args a = {{in->df, {in->n[0], in->n[1], in->n[2]}}, {in->dm, {in->n[0], in->n[1], in->n[2]}},
			    NULL, 0, 1.0, NULL, dgm, &loss, NULL, NULL, NULL, NULL};
	CHECK_OK(ffdp_op_lncc(gpu, &a, &o, &err), &err, "flat planes k=%d: runs", k);
	dev_fetch(gm, dgm, n);
	int64_t bad = 0, cnt = 0;
	for (int64_t i = (zlo + r) * np; i < (zhi - r) * np; i++, cnt++)
		bad += gm[i] != 0.0f;
	CHECK(cnt > 0 && bad == 0, "flat planes k=%d: ANTs gm exactly 0 on %lld voxels whose windows see no f (%lld not)",
	      k, (long long)cnt, (long long)bad);
	ffdp_buf_free(gpu, dgm);
	free(gm);
}

static void free_inputs(inputs *in)
{
	ffdp_buf_free(gpu, in->df), ffdp_buf_free(gpu, in->dm), ffdp_buf_free(gpu, in->dw);
	free(in->f), free(in->m), free(in->w);
}

/* ---- LNCC reference ---------------------------------------------------------- */

/* Sum of w cc, and the gradients times gs = -scale/denom (exact: scatter of
 * the coefficients over each window; approximate: the centre only). */
static double lncc_ref(const inputs *in, const float *w, int k, int exact, double gs, double *gm, double *gf)
{
	const int64_t nx = in->n[0], ny = in->n[1], nz = in->n[2], n = in->nvox, r = (k - 1) / 2;
	const float *f = in->f, *m = in->m;
	double *co = calloc((size_t)n * 5, sizeof(double)), lsum = 0;
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				double s[5] = {0}, c = 0;
				for (int64_t zz = z - r; zz <= z + r; zz++)
					for (int64_t yy = y - r; yy <= y + r; yy++)
						for (int64_t xx = x - r; xx <= x + r; xx++) {
							if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx)
								continue;
							int64_t j = (zz * ny + yy) * nx + xx;
							double a = f[j], b = m[j];
							s[0] += a, s[1] += b, s[2] += a * a, s[3] += b * b, s[4] += a * b, c++;
						}
				double mf = s[0] / c, mm = s[1] / c, cov = s[4] - s[0] * s[1] / c;
				double vf = fmax(s[2] - s[0] * s[0] / c, 0), vm = fmax(s[3] - s[1] * s[1] / c, 0);
				double D = vf * vm + 1e-5, cc = cov * cov / D;
				int64_t i = (z * ny + y) * nx + x;
				double wv = w ? w[i] : 1.0, *o = co + 5 * i;
				lsum += wv * cc;
				o[0] = wv * 2 * cov / D;
				o[1] = wv * 2 * cc * vf / D;
				o[2] = wv * 2 * (cc * vf * mm - cov * mf) / D;
				o[3] = wv * 2 * cc * vm / D;
				o[4] = wv * 2 * (cc * vm * mf - cov * mm) / D;
			}
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				int64_t i = (z * ny + y) * nx + x, rr = exact ? r : 0;
				double A[5] = {0};
				for (int64_t zz = z - rr; zz <= z + rr; zz++)
					for (int64_t yy = y - rr; yy <= y + rr; yy++)
						for (int64_t xx = x - rr; xx <= x + rr; xx++) {
							if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx)
								continue;
							const double *o = co + 5 * ((zz * ny + yy) * nx + xx);
							for (int q = 0; q < 5; q++)
								A[q] += o[q];
						}
				gm[i] = gs * (f[i] * A[0] - m[i] * A[1] + A[2]);
				gf[i] = gs * (m[i] * A[0] - f[i] * A[3] + A[4]);
			}
	free(co);
	return lsum;
}

/* One LNCC configuration: which = 1 gm, 2 gf, 3 both. */
static void lncc_case(const inputs *in, int k, int exact, int masked, double denom, int which)
{
	const int64_t n = in->nvox;
	const size_t bytes = (size_t)n * sizeof(float);
	ffdp_error err;
	ffdp_lncc_opts o = {.k = k, .exact_grad = exact, .eps = 0.0};
	float *dgm = ffdp_buf_alloc(gpu, bytes, &err), *dgf = ffdp_buf_alloc(gpu, bytes, &err);
	float *gm = malloc(bytes), *gf = malloc(bytes), *gm2 = malloc(bytes), *gf2 = malloc(bytes);
	float *cgm = malloc(bytes), *cgf = malloc(bytes);
	double *rgm = malloc((size_t)n * sizeof(double)), *rgf = malloc((size_t)n * sizeof(double));
	double loss = 0, sum = 0, loss2 = 0, closs = 0, dn = denom;
	char what[160];
	snprintf(what, sizeof(what), "lncc %ldx%ldx%ld k=%d %s%s%s%s", (long)in->n[0], (long)in->n[1], (long)in->n[2],
		 k, exact ? "exact" : "approx", masked ? " mask" : "", denom > 0 ? " denom" : "",
		 which == 3 ? " gm+gf" : which == 2 ? " gf" : " gm");

	ffdp_loss_args a = {{in->df, {in->n[0], in->n[1], in->n[2]}}, {in->dm, {in->n[0], in->n[1], in->n[2]}},
			    masked ? in->dw : NULL, denom, 1.3, (which & 2) ? dgf : NULL, (which & 1) ? dgm : NULL,
			    &loss, &sum, NULL, NULL, NULL};
	size_t free0;
	double leak;
	/* a first call may load the kernel's code (driver memory, once) */
	CHECK_OK(ffdp_op_lncc(gpu, &a, &o, &err), &err, "%s: runs", what);
	mem_reset(&free0);
	CHECK_OK(ffdp_op_lncc(gpu, &a, &o, &err), &err, "%s: runs again", what);
	double peak = mem_peak(free0, &leak);
	/* (64 KiB: allocation granularity, for the tiny images) */
	CHECK(peak <= fmax((double)bytes, 65536.0) && leak < (2 << 20),
	      "%s: peak extra %.0f B <= one volume (%zu B), leak %.0f B", what, peak, bytes, leak);
	dev_fetch(gm, dgm, n), dev_fetch(gf, dgf, n);

	/* the same bits again */
	a.loss = &loss2, a.sum = NULL;
	ffdp_op_lncc(gpu, &a, &o, &err);
	dev_fetch(gm2, dgm, n), dev_fetch(gf2, dgf, n);
	CHECK(loss2 == loss && !memcmp(gm, gm2, bytes) && !memcmp(gf, gf2, bytes), "%s: deterministic", what);

	/* brute force */
	if (!(dn > 0)) {
		dn = 0;
		for (int64_t i = 0; i < n && masked; i++)
			dn += in->w[i];
		dn = masked ? dn : (double)n;
	}
	double rs = lncc_ref(in, masked ? in->w : NULL, k, exact, -1.3 / dn, rgm, rgf);
	double el = fabs(loss + rs / dn) / fabs(rs / dn);
	double egm = (which & 1) ? tu_rel_err(gm, rgm, n, 1e-30) : 0, egf = (which & 2) ? tu_rel_err(gf, rgf, n, 1e-30) : 0;
	CHECK(el < 1e-5 && egm < 1e-4 && egf < 1e-4 && fabs(sum + rs) <= 1e-5 * fabs(rs),
	      "%s: vs reference loss %.1e, gm %.1e, gf %.1e", what, el, egm, egf);

	/* CPU backend (same inputs on the host) */
	ffdp_loss_args c = {{in->f, {in->n[0], in->n[1], in->n[2]}}, {in->m, {in->n[0], in->n[1], in->n[2]}},
			    masked ? in->w : NULL, denom, 1.3, (which & 2) ? cgf : NULL, (which & 1) ? cgm : NULL,
			    &closs, NULL, NULL, NULL, NULL};
	ffdp_status s = ffdp_op_lncc(cpu, &c, &o, &err);
	if (s == FFDP_ERR_UNSUPPORTED) {
		printf("     (cpu lncc not built: %s)\n", err.msg);
	} else {
		double cl = fabs(loss - closs) / fabs(closs);
		double cm = (which & 1) ? rel_ff(gm, cgm, n) : 0, cf = (which & 2) ? rel_ff(gf, cgf, n) : 0;
		CHECK(s == FFDP_OK && cl < 1e-5 && cm < 1e-4 && cf < 1e-4, "%s: vs cpu loss %.1e, gm %.1e, gf %.1e", what,
		      cl, cm, cf);
	}
	ffdp_buf_free(gpu, dgm), ffdp_buf_free(gpu, dgf);
	free(gm), free(gf), free(gm2), free(gf2), free(cgm), free(cgf), free(rgm), free(rgf);
}

/* Coefficients of very different size side by side: the right half of
 * the image has 1000 times the contrast (coefficients ~1e-6 of the
 * left's).  The gradient of the right half, k voxels past the seam, must
 * keep its own relative precision: box sums that carried a rounding
 * residual of the left's coefficients across the seam would not. */
static void lncc_seam_case(int k)
{
	inputs in = make_inputs(80, 24, 20, 0.0, 1.0, 16);
	const int64_t n = in.nvox, nx = in.n[0], bytes = n * (int64_t)sizeof(float);
	ffdp_error err;
	for (int64_t i = 0; i < n; i++)
		if (i % nx >= nx / 2)
			in.f[i] = 0.5f + 1e3f * (in.f[i] - 0.5f), in.m[i] = 0.5f + 1e3f * (in.m[i] - 0.5f);
	CHECK_OK(ffdp_buf_upload(gpu, in.df, in.f, (size_t)bytes, &err), &err, "seam: upload f");
	CHECK_OK(ffdp_buf_upload(gpu, in.dm, in.m, (size_t)bytes, &err), &err, "seam: upload m");
	ffdp_lncc_opts o = {.k = k, .exact_grad = 1, .eps = 0.0};
	float *dgm = ffdp_buf_alloc(gpu, (size_t)bytes, &err), *gm = malloc((size_t)bytes);
	double *rgm = malloc((size_t)n * sizeof(double)), *rgf = malloc((size_t)n * sizeof(double)), loss = 0;
	ffdp_loss_args a = {{in.df, {in.n[0], in.n[1], in.n[2]}}, {in.dm, {in.n[0], in.n[1], in.n[2]}}, NULL, 0.0, 1.0,
			    NULL, dgm, &loss, NULL, NULL, NULL, NULL};
	CHECK_OK(ffdp_op_lncc(gpu, &a, &o, &err), &err, "seam k=%d: runs", k);
	dev_fetch(gm, dgm, n);
	lncc_ref(&in, NULL, k, 1, -1.0 / (double)n, rgm, rgf);
	double d = 0, m = 0, mall = 0;
	for (int64_t i = 0; i < n; i++) {
		mall = fmax(mall, fabs(rgm[i]));
		if (i % nx >= nx / 2 + k)
			d = fmax(d, fabs(gm[i] - rgm[i])), m = fmax(m, fabs(rgm[i]));
	}
	CHECK(d <= 1e-4 * m && mall > 100 * m, "seam k=%d: right half gm error %.1e of its max (whole image max %.0fx)",
	      k, d / m, mall / m);
	ffdp_buf_free(gpu, dgm);
	free(gm), free(rgm), free(rgf);
	free_inputs(&in);
}

/* Shards (z_lo, z_full, o_z0, o_z1; the distributed path): three boxes
 * holding their planes and the halo the windows need (2r each side for
 * the exact gradient, r for ANTs') give the whole volume's gradient on
 * their own planes and its loss sum, to rounding. */
static void lncc_shard_case(const inputs *in, int k, int exact)
{
	const int64_t nz = in->n[2], np = in->n[0] * in->n[1], n = in->nvox;
	const int64_t cut[4] = {0, nz / 3, nz / 3 + 5, nz};
	ffdp_error err;
	ffdp_lncc_opts o = {.k = k, .exact_grad = exact, .eps = 0.0};
	float *dg = ffdp_buf_alloc(gpu, (size_t)n * sizeof(float), &err), *dbox = ffdp_buf_alloc(gpu, (size_t)n * sizeof(float), &err);
	float *g = malloc((size_t)n * sizeof(float)), *gb = malloc((size_t)n * sizeof(float));
	double loss = 0, sum = 0, bsum = 0, d = 0, m = 0;
	ffdp_loss_args a = {{in->df, {in->n[0], in->n[1], nz}}, {in->dm, {in->n[0], in->n[1], nz}}, NULL, (double)n, 1.0,
			    NULL, dg, &loss, &sum, NULL, NULL, NULL};
	CHECK_OK(ffdp_op_lncc(gpu, &a, &o, &err), &err, "shards k=%d %s: whole volume runs", k, exact ? "exact" : "approx");
	dev_fetch(g, dg, n);
	for (int i = 0; i < 3; i++) {
		const int64_t h = (exact ? 2 : 1) * (k / 2);
		const int64_t lo = cut[i] - h > 0 ? cut[i] - h : 0, hi = cut[i + 1] + h < nz ? cut[i + 1] + h : nz;
		double s = 0;
		ffdp_lncc_opts ob = o;
		ob.z_lo = lo, ob.z_full = nz, ob.o_z0 = cut[i] - lo, ob.o_z1 = cut[i + 1] - lo;
		ffdp_loss_args b = {{in->df + lo * np, {in->n[0], in->n[1], hi - lo}}, {in->dm + lo * np, {in->n[0], in->n[1], hi - lo}},
				    NULL, (double)n, 1.0, NULL, dbox, &loss, &s, NULL, NULL, NULL};
		CHECK_OK(ffdp_op_lncc(gpu, &b, &ob, &err), &err, "shards k=%d: box [%ld, %ld) runs", k, (long)lo, (long)hi);
		dev_fetch(gb, dbox, (hi - lo) * np);
		bsum += s;
		for (int64_t v = cut[i] * np; v < cut[i + 1] * np; v++)
			d = fmax(d, fabs((double)gb[v - lo * np] - g[v])), m = fmax(m, fabs((double)g[v]));
	}
	CHECK(d <= 1e-5 * m && fabs(bsum - sum) <= 1e-9 * fabs(sum),
	      "shards k=%d %s: gm %.1e of its max, loss sum %.1e relative", k, exact ? "exact" : "approx", d / m,
	      fabs(bsum - sum) / fabs(sum));
	ffdp_buf_free(gpu, dg), ffdp_buf_free(gpu, dbox);
	free(g), free(gb);
}

/* ---- MI reference -------------------------------------------------------------- */

/* Dense normalised window of x over all B bins, derivative wrt s, ds/dx. */
static double win_ref(double x, double lo, double hi, int B, int ker, double *w, double *dw)
{
	double s = (x - lo) * ((double)B / (hi - lo)), ds, S = 0, dS = 0;
	ds = s > 0 && s < B ? (double)B / (hi - lo) : 0;
	s = s > 0 ? s : 0;
	s = s < B ? s : B;
	int b = (int)s < B - 1 ? (int)s : B - 1;
	for (int j = 0; j < B; j++) {
		double d = s - (j + 0.5), ad = fabs(d), sg = d < 0 ? -1 : 1;
		w[j] = dw[j] = 0;
		if (ker == FFDP_MI_GAUSSIAN) {
			if (abs(j - b) <= 3)
				w[j] = exp(-2 * d * d), dw[j] = -4 * d * w[j]; /* sigma = 1/2 bin */
		} else if (ad < 1) {
			w[j] = (4 - 6 * ad * ad + 3 * ad * ad * ad) / 6, dw[j] = sg * (-2 * ad + 1.5 * ad * ad);
		} else if (ad < 2) {
			w[j] = (2 - ad) * (2 - ad) * (2 - ad) / 6, dw[j] = -sg * 0.5 * (2 - ad) * (2 - ad);
		}
		S += w[j], dS += dw[j];
	}
	for (int j = 0; j < B; j++) {
		w[j] /= S;
		dw[j] = (dw[j] - w[j] * dS) / S;
	}
	return ds;
}

/* MI, and gradients times -scale/V; h gets the joint histogram. */
static double mi_ref(const inputs *in, const float *vw, const ffdp_mi_opts *o, double denom, double scale, double *h,
		     double *gm, double *gf)
{
	const int B = o->bins;
	const int64_t n = in->nvox;
	double *wf = malloc(sizeof(double) * 4 * B), *dwf = wf + B, *wm = dwf + B, *dwm = wm + B;
	double *hf = calloc(2 * (size_t)B, sizeof(double)), *hm = hf + B, *G = calloc((size_t)B * B, sizeof(double));
	double V = 0, mi = 0;
	memset(h, 0, sizeof(double) * B * B);
	for (int64_t i = 0; i < n; i++) {
		double v = vw ? vw[i] : 1.0;
		win_ref(in->f[i], o->f_lo, o->f_hi, B, o->kernel, wf, dwf);
		win_ref(in->m[i], o->m_lo, o->m_hi, B, o->kernel, wm, dwm);
		for (int j = 0; j < B; j++)
			for (int l = 0; l < B; l++)
				h[j * B + l] += v * wf[j] * wm[l];
	}
	for (int j = 0; j < B; j++)
		for (int l = 0; l < B; l++)
			hf[j] += h[j * B + l], hm[l] += h[j * B + l], V += h[j * B + l];
	V = denom > 0 ? denom : V;
	for (int j = 0; j < B * B; j++)
		if (h[j] > 0)
			G[j] = log(h[j] * V / (hf[j / B] * hm[j % B])), mi += h[j] * G[j];
	for (int64_t i = 0; i < n; i++) {
		double v = vw ? vw[i] : 1.0, sf = 0, sm = 0;
		double dsf = win_ref(in->f[i], o->f_lo, o->f_hi, B, o->kernel, wf, dwf);
		double dsm = win_ref(in->m[i], o->m_lo, o->m_hi, B, o->kernel, wm, dwm);
		for (int j = 0; j < B; j++)
			for (int l = 0; l < B; l++)
				sf += dwf[j] * wm[l] * G[j * B + l], sm += wf[j] * dwm[l] * G[j * B + l];
		gf[i] = -scale / V * v * dsf * sf;
		gm[i] = -scale / V * v * dsm * sm;
	}
	free(wf), free(hf), free(G);
	return mi / V;
}

static void mi_case(const inputs *in, int B, ffdp_mi_kernel ker, int masked, double denom)
{
	const int64_t n = in->nvox;
	const size_t bytes = (size_t)n * sizeof(float), nh = (size_t)B * B + 2 * (size_t)B;
	ffdp_error err;
	float *dgm = ffdp_buf_alloc(gpu, bytes, &err), *dgf = ffdp_buf_alloc(gpu, bytes, &err);
	float *gm = malloc(bytes), *gf = malloc(bytes), *gm2 = malloc(bytes), *gf2 = malloc(bytes);
	float *cgm = malloc(bytes), *cgf = malloc(bytes);
	double *rgm = malloc((size_t)n * sizeof(double)), *rgf = malloc((size_t)n * sizeof(double));
	double *hist = malloc(nh * sizeof(double)), *hist2 = malloc(nh * sizeof(double)), *rh = malloc(nh * sizeof(double));
	double loss = 0, sum = 0, loss2 = 0, closs = 0, lo = 1e30, hi = -1e30, mlo = 1e30, mhi = -1e30;
	char what[160];
	snprintf(what, sizeof(what), "mi %ldx%ldx%ld B=%d %s%s%s", (long)in->n[0], (long)in->n[1], (long)in->n[2], B,
		 ker == FFDP_MI_GAUSSIAN ? "gauss" : "bspline", masked ? " mask" : "", denom > 0 ? " denom" : "");
	for (int64_t i = 0; i < n; i++) {
		lo = fmin(lo, in->f[i]), hi = fmax(hi, in->f[i]);
		mlo = fmin(mlo, in->m[i]), mhi = fmax(mhi, in->m[i]);
	}
	/* f's range a little narrow, so that some voxels clamp */
	ffdp_mi_opts o = {B, ker, lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), mlo, mhi, hist, NULL, NULL, 0};
	ffdp_loss_args a = {{in->df, {in->n[0], in->n[1], in->n[2]}}, {in->dm, {in->n[0], in->n[1], in->n[2]}},
			    masked ? in->dw : NULL, denom, 0.7, dgf, dgm, &loss, &sum, NULL, NULL, NULL};
	size_t free0;
	double leak;
	mem_reset(&free0);
	CHECK_OK(ffdp_op_mi(gpu, &a, &o, &err), &err, "%s: runs", what);
	double peak = mem_peak(free0, &leak);
	double tab = (double)(B + 6) * (B + 6) * 8;
	CHECK(peak <= 3 * tab + 65536 && leak < (2 << 20),
	      "%s: peak extra %.0f B (counters, histogram, G: 3 tables of %.0f B, any N), leak %.0f B", what, peak, tab,
	      leak);
	dev_fetch(gm, dgm, n), dev_fetch(gf, dgf, n);

	/* hist_in: the second half of a distributed call gives the same bits */
	ffdp_mi_opts o2 = o;
	o2.hist = hist2, o2.hist_in = hist;
	a.loss = &loss2, a.sum = NULL;
	CHECK_OK(ffdp_op_mi(gpu, &a, &o2, &err), &err, "%s: hist_in runs", what);
	dev_fetch(gm2, dgm, n), dev_fetch(gf2, dgf, n);
	CHECK(loss2 == loss && !memcmp(gm, gm2, bytes) && !memcmp(gf, gf2, bytes) &&
	      !memcmp(hist, hist2, nh * sizeof(double)), "%s: hist_in reproduces loss, gradients, histograms", what);
	o2.hist_in = NULL;
	ffdp_op_mi(gpu, &a, &o2, &err);
	CHECK(loss2 == loss && !memcmp(hist, hist2, nh * sizeof(double)), "%s: deterministic", what);

	double mi = mi_ref(in, masked ? in->w : NULL, &o, denom, 0.7, rh, rgm, rgf), V = 0, eh = 0;
	for (int j = 0; j < B * B; j++)
		V += rh[j];
	for (int j = 0; j < B * B; j++)
		eh = fmax(eh, fabs(hist[j] - rh[j]) / V);
	double el = fabs(loss + mi) / fabs(mi), egm = tu_rel_err(gm, rgm, n, 1e-30), egf = tu_rel_err(gf, rgf, n, 1e-30);
	CHECK(el < 1e-5 && egm < 1e-4 && egf < 1e-4 && eh < 1e-6 && fabs(sum - loss * (denom > 0 ? denom : V)) <= 1e-5 * fabs(sum),
	      "%s: vs reference loss %.1e, gm %.1e, gf %.1e, joint %.1e (MI %.3f)", what, el, egm, egf, eh, mi);

	ffdp_loss_args c = {{in->f, {in->n[0], in->n[1], in->n[2]}}, {in->m, {in->n[0], in->n[1], in->n[2]}},
			    masked ? in->w : NULL, denom, 0.7, cgf, cgm, &closs, NULL, NULL, NULL, NULL};
	o2.hist = NULL;
	ffdp_status s = ffdp_op_mi(cpu, &c, &o2, &err);
	if (s == FFDP_ERR_UNSUPPORTED) {
		printf("     (cpu mi not built: %s)\n", err.msg);
	} else {
		double cl = fabs(loss - closs) / fabs(closs), cm = rel_ff(gm, cgm, n), cf = rel_ff(gf, cgf, n);
		CHECK(s == FFDP_OK && cl < 1e-5 && cm < 1e-4 && cf < 1e-4, "%s: vs cpu loss %.1e, gm %.1e, gf %.1e", what, cl,
		      cm, cf);
	}
	ffdp_buf_free(gpu, dgm), ffdp_buf_free(gpu, dgf);
	free(gm), free(gf), free(gm2), free(gf2), free(cgm), free(cgf), free(rgm), free(rgf);
	free(hist), free(hist2), free(rh);
}

/* MI's data errors, found by the table on the device: a mask without a
 * positive weight, and one whose negative weight leaves a bin negative.
 * The same status and words as the CPU's host table. */
static void mi_error_case(const inputs *in)
{
	const int64_t n = in->nvox;
	float *w = calloc((size_t)n, sizeof(float));
	ffdp_error err, cerr;
	float *dw = dev_copy(w, n);
	for (int neg = 0; neg < 2; neg++) {
		if (neg) {
			w[n / 2] = -1.0f;
			dev_put(dw, w, n);
		}
		double loss = 0, closs = 0;
		ffdp_mi_opts o = {32, FFDP_MI_GAUSSIAN, -0.5, 4.0, -0.5, 4.0, NULL, NULL, NULL, 0};
		ffdp_loss_args a = {{in->df, {in->n[0], in->n[1], in->n[2]}}, {in->dm, {in->n[0], in->n[1], in->n[2]}},
				    dw, 0, 1.0, NULL, NULL, &loss, NULL, NULL, NULL, NULL};
		ffdp_loss_args c = {{in->f, {in->n[0], in->n[1], in->n[2]}}, {in->m, {in->n[0], in->n[1], in->n[2]}},
				    w, 0, 1.0, NULL, NULL, &closs, NULL, NULL, NULL, NULL};
		memset(&err, 0, sizeof(err)), memset(&cerr, 0, sizeof(cerr));
		ffdp_status s = ffdp_op_mi(gpu, &a, &o, &err), cs = ffdp_op_mi(cpu, &c, &o, &cerr);
		/* (the first negative bin may differ: the GPU's fixed-point
		 * histogram rounds products below 2^-30 to 0) */
		const char *want = neg ? "is negative (negative mask weights?)" : "no voxel has positive weight";
		CHECK(s == FFDP_ERR_DATA && cs == FFDP_ERR_DATA && strstr(err.msg, want) && strstr(cerr.msg, want),
		      "mi %s: refused as the cpu: \"%s\" (cpu: \"%s\")", neg ? "negative mask weight" : "all-zero mask",
		      err.msg, cerr.msg);
	}
	ffdp_buf_free(gpu, dw);
	free(w);
}

/* ---- pending losses (ops.h ffdp_scalar) ------------------------------------ */

/* One loss of metric op (0 LNCC k=5 exact, 1 MSE, 2 MI 32 bins) on the
 * device, synchronous (x NULL) or pending into x; gm (device) optional. */
static ffdp_status loss_call(int op, const inputs *in, const float *dm, int masked, float *gm, double *loss,
			     ffdp_scalar *x, ffdp_error *err)
{
	/* a pending MI is told the mask's maximum (the registration's
	 * promise): its quantum, so its bits, are those of the maximum it
	 * would have read */
	double wmax = 0;
	for (int64_t i = 0; masked && x && i < in->nvox; i++)
		wmax = fmax(wmax, in->w[i]);
	ffdp_loss_args a;
	memset(&a, 0, sizeof(a));
	a.f = (ffdp_img){in->df, {in->n[0], in->n[1], in->n[2]}};
	a.m = (ffdp_img){(float *)dm, {in->n[0], in->n[1], in->n[2]}};
	a.mask = masked ? in->dw : NULL, a.scale = 1.7, a.gm = gm;
	a.loss = x ? NULL : loss, a.later = x;
	ffdp_lncc_opts lo = {.k = 5, .exact_grad = 1};
	ffdp_mi_opts mo = {32, FFDP_MI_GAUSSIAN, -0.5, 4.0, -0.5, 4.0, NULL, NULL, NULL, wmax};
	return op == 0 ? ffdp_op_lncc(gpu, &a, &lo, err) : op == 1 ? ffdp_op_mse(gpu, &a, err) : ffdp_op_mi(gpu, &a, &mo, err);
}

/* A pending loss reads as the synchronous call's bits, with the same
 * gradient, also when later calls reuse the scratch it was reduced in;
 * LNCC, MSE and MI (masked: told the mask's maximum) are pending (no wait
 * in the call); masked MI not told it is ready (it reads the maximum and
 * the table's status). */
static void pending_case(const inputs *in, const inputs *other)
{
	static const char *name[3] = {"lncc", "mse", "mi"};
	ffdp_error err;
	float *dg = ffdp_buf_alloc(gpu, (size_t)in->nvox * sizeof(float), &err);
	float *g0 = malloc((size_t)in->nvox * sizeof(float)), *g1 = malloc((size_t)in->nvox * sizeof(float));
	for (int op = 0; op < 3; op++)
		for (int masked = 0; masked < 2; masked++) {
			double sync = 0, mid = 0, got = NAN;
			ffdp_scalar x;
			memset(&x, 0, sizeof(x));
			CHECK_OK(loss_call(op, in, in->dm, masked, dg, &sync, NULL, &err), &err, "pending %s: sync runs", name[op]);
			dev_fetch(g0, dg, in->nvox);
			CHECK_OK(loss_call(op, in, in->dm, masked, dg, NULL, &x, &err), &err, "pending %s: pending runs", name[op]);
			CHECK(!x.ready, "pending %s%s: %s after the call", name[op], masked ? " masked" : "",
			      x.ready ? "ready" : "pending");
			/* another call (other images: another sum) before the read */
			CHECK_OK(loss_call(op, in, other->dm, masked, NULL, &mid, NULL, &err), &err, "pending %s: a call between",
				 name[op]);
			CHECK_OK(ffdp_scalar_get(gpu, &x, &got, &err), &err, "pending %s: read", name[op]);
			dev_fetch(g1, dg, in->nvox);
			CHECK(got == sync && mid != sync && !memcmp(g0, g1, (size_t)in->nvox * sizeof(float)),
			      "pending %s%s: %.17g = the synchronous %.17g (the call between: %.17g), same gradient bits",
			      name[op], masked ? " masked" : "", got, sync, mid);
		}
	/* masked MI without the mask's maximum: read, so ready */
	{
		ffdp_scalar x;
		memset(&x, 0, sizeof(x));
		ffdp_loss_args a;
		memset(&a, 0, sizeof(a));
		a.f = (ffdp_img){in->df, {in->n[0], in->n[1], in->n[2]}};
		a.m = (ffdp_img){in->dm, {in->n[0], in->n[1], in->n[2]}};
		a.mask = in->dw, a.scale = 1.0, a.later = &x;
		ffdp_mi_opts mo = {32, FFDP_MI_GAUSSIAN, -0.5, 4.0, -0.5, 4.0, NULL, NULL, NULL, 0};
		CHECK(ffdp_op_mi(gpu, &a, &mo, &err) == FFDP_OK && x.ready, "pending mi masked, maximum not given: ready");
	}
	/* the ring: FFDP_SCALAR_RING + 1 pending, the oldest overwritten */
	ffdp_scalar xs[FFDP_SCALAR_RING + 1];
	double want = 0, got = 0;
	int ok = 1, same = 1;
	CHECK_OK(loss_call(0, in, in->dm, 0, NULL, &want, NULL, &err), &err, "ring: sync runs");
	for (int i = 0; i <= FFDP_SCALAR_RING; i++)
		ok &= !loss_call(0, in, in->dm, 0, NULL, NULL, &xs[i], &err);
	for (int i = FFDP_SCALAR_RING; i >= 1; i--) {
		ok &= !ffdp_scalar_get(gpu, &xs[i], &got, &err);
		same &= got == want;
	}
	CHECK(ok && same, "ring: the last %d pending losses read as the synchronous one", FFDP_SCALAR_RING);
	CHECK(ffdp_scalar_get(gpu, &xs[0], &got, &err) == FFDP_ERR_ARG, "ring: the overwritten one is refused: %s",
	      err.msg);
	ffdp_buf_free(gpu, dg);
	free(g0), free(g1);
}

int main(void)
{
	ffdp_error err;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &cpu, &err), &err, "cpu backend opens");
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &gpu, &err), &err, "cuda backend opens");
	if (!cpu || !gpu)
		return check_done();
	cudaDeviceGetDefaultMemPool(&pool, 0);

	inputs a = make_inputs(37, 29, 23, 0.0, 1.0, 11);
	inputs b = make_inputs(61, 47, 1, 0.0, 1.0, 12);       /* 2-D */
	inputs c = make_inputs(33, 20, 70, 1000.0, 100.0, 13); /* intensities ~1000, many z chunks */
	inputs d = make_inputs(5, 7, 3, 0.0, 1.0, 14);         /* window larger than the image */
	inputs e = make_inputs(70, 37, 45, 500.0, 40.0, 15);   /* several tiles and chunks, offset */
	inputs g = make_inputs(75, 38, 56, 0.0, 1.0, 16);      /* zero background (skipped windows) */
	zero_background(&g, 30, 44);

	static const int ks[] = {3, 5, 9};
	for (int i = 0; i < 3; i++) {
		lncc_case(&a, ks[i], 1, 0, 0, 1);
		lncc_case(&a, ks[i], 0, 0, 0, 1);
		lncc_case(&a, ks[i], 1, 1, 0, 3);
		lncc_case(&a, ks[i], 0, 1, 5000.0, 3);
		lncc_case(&b, ks[i], 1, i == 1, 0, 3);
		lncc_case(&b, ks[i], 0, 0, 0, 3);
	}
	lncc_case(&a, 7, 1, 0, 0, 2);  /* gf alone */
	lncc_case(&a, 7, 0, 0, 0, 0);  /* loss only */
	lncc_case(&c, 7, 1, 1, 0, 3);
	lncc_case(&c, 3, 0, 0, 0, 1);
	lncc_case(&d, 9, 1, 0, 0, 3);
	lncc_case(&a, 15, 1, 0, 0, 1); /* a large window still fits */
	lncc_case(&c, 7, 1, 0, 0, 1);
	lncc_case(&c, 5, 1, 1, 0, 3);
	lncc_case(&e, 7, 1, 0, 0, 1);
	lncc_case(&e, 3, 1, 1, 0, 3);
	lncc_case(&e, 9, 0, 0, 0, 3);
	lncc_case(&g, 5, 0, 0, 0, 1); /* the 728 pair's greedy loss */
	lncc_case(&g, 3, 0, 1, 0, 3);
	lncc_case(&g, 5, 1, 0, 0, 1);
	lncc_case(&g, 7, 1, 1, 0, 3);
	lncc_case(&g, 9, 0, 0, 0, 1);
	for (int kk = 3; kk <= 9; kk += 2)
		lncc_flat_case(&g, kk, 30, 44);
	lncc_seam_case(3);
	lncc_shard_case(&e, 5, 1);
	lncc_shard_case(&e, 7, 1);
	lncc_shard_case(&e, 3, 0);
	lncc_shard_case(&c, 15, 1);
	lncc_seam_case(7);

	static const int bins[] = {16, 32};
	for (int i = 0; i < 2; i++)
		for (int ker = 0; ker < 2; ker++) {
			mi_case(&a, bins[i], (ffdp_mi_kernel)ker, 0, 0);
			mi_case(&a, bins[i], (ffdp_mi_kernel)ker, 1, 0);
			mi_case(&b, bins[i], (ffdp_mi_kernel)ker, ker, 3000.0);
		}
	mi_case(&c, 32, FFDP_MI_GAUSSIAN, 1, 0);
	mi_case(&d, 200, FFDP_MI_GAUSSIAN, 0, 0); /* table in global memory */
	mi_error_case(&a);
	inputs a2 = make_inputs(37, 29, 23, 0.0, 1.0, 21); /* a's size, another moving image */
	pending_case(&a, &a2);
	free_inputs(&a2);

	free_inputs(&a), free_inputs(&b), free_inputs(&c), free_inputs(&d), free_inputs(&e), free_inputs(&g);
	ffdp_backend_close(gpu);
	ffdp_backend_close(cpu);
	return check_done();
}
