/* Every op on the CUDA backend against the CPU backend on the same random
 * inputs (odd sizes, 2-D, oblique W / B / C, both pads, shard offsets):
 * values to 1e-5 and gradients to 1e-4 relative (max |a - b| / max |b|),
 * nearest and label samples exactly (up to MAX_TIES voxels where the two
 * backends round a sample point differently); plus a sample forward over
 * more than 2^31 voxels checked at spot voxels against a host double
 * computation.  Needs a GPU: built with CUDA, labelled "gpu". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "gpu_pair.h"
#include "testutil.h"

#define TOL_VAL 1e-5
#define TOL_GRAD 1e-4
/* Nearest / label results may differ where a sample point lies within
 * rounding of a rounding boundary or two labels' weights tie within float
 * precision: allowed on at most this many voxels of a volume. */
#define MAX_TIES 2

typedef gp_env env;

/* An image as host and device copies. */
typedef struct pimg {
	ffdp_img h, d;
	int64_t nv;
} pimg;

static pimg pi_wrap(env *e, float *host, const int64_t n[3])
{
	pimg p;
	p.nv = n[0] * n[1] * n[2];
	p.h.p = host;
	p.d.p = gp_d_dup(e, host, p.nv);
	for (int a = 0; a < 3; a++)
		p.h.n[a] = p.d.n[a] = n[a];
	return p;
}

static pimg pi_uniform(env *e, const int64_t n[3], double lo, double hi)
{
	float *x = gp_h_new(n[0] * n[1] * n[2]);
	tu_fill_uniform(&e->rng, x, n[0] * n[1] * n[2], lo, hi);
	return pi_wrap(e, x, n);
}

static pimg pi_smooth(env *e, const int64_t n[3])
{
	float *x = gp_h_new(n[0] * n[1] * n[2]);
	tu_fill_smooth(&e->rng, x, n, 0.02);
	return pi_wrap(e, x, n);
}

static void pi_free(env *e, pimg *p)
{
	free(p->h.p);
	ffdp_buf_free(e->gpu, p->d.p);
}

static double pi_rel(env *e, const pimg *p)
{
	return gp_rel_dev(e, p->d.p, p->h.p, p->nv);
}

/* ---- random geometry ----------------------------------------------------------- */

static double unif(env *e, double lo, double hi)
{
	return lo + (hi - lo) * tu_uniform(&e->rng);
}

/* W mapping the output box (at global offset lo) over the moving image with
 * an oblique, anisotropic linear part and a shift, so that some sample
 * points fall outside (both pads matter).  In 2-D the z row and column get
 * junk: the contract says they are ignored. */
static void rand_W(env *e, const int64_t on[3], const int64_t lo[3], const int64_t mn[3], double W[12])
{
	double A[9];
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			A[3 * r + c] = ((r == c) + unif(e, -0.12, 0.12)) * (double)mn[r] / (double)on[c];
	for (int r = 0; r < 3; r++) {
		double t = 0.5 * (double)(mn[r] - 1) + unif(e, -0.08, 0.08) * (double)mn[r];
		for (int c = 0; c < 3; c++)
			t -= A[3 * r + c] * ((double)lo[c] + 0.5 * (double)(on[c] - 1));
		for (int c = 0; c < 3; c++)
			W[4 * r + c] = A[3 * r + c];
		W[4 * r + 3] = t;
	}
	if (mn[2] == 1) {
		for (int k = 0; k < 4; k++)
			W[8 + k] = unif(e, -3, 3); /* z row */
		W[2] = unif(e, -3, 3), W[6] = unif(e, -3, 3); /* z column */
	}
}

/* An oblique, anisotropic 3x3 (phys -> index like). */
static void rand_B(env *e, double B[9])
{
	double R[9], s[3];
	tu_random_rotation(&e->rng, R);
	for (int a = 0; a < 3; a++)
		s[a] = 1.0 / unif(e, 0.7, 1.4);
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			B[3 * r + c] = s[r] * R[3 * c + r]; /* diag(s) R^T */
}

static const char *pad_name(ffdp_pad p)
{
	return p == FFDP_PAD_ZERO ? "zero" : "border";
}

static const char *interp_name(ffdp_interp i)
{
	return i == FFDP_INTERP_LINEAR ? "linear" : i == FFDP_INTERP_NEAREST ? "nearest" : "label";
}

/* ---- sampler --------------------------------------------------------------------- */

typedef struct samp_case {
	int64_t on[3], mn[3], lo[3];
	int with_u;
} samp_case;

/* Random W and B for case sc, its lo, interpolation and padding. */
static ffdp_sample_args rand_args(env *e, const samp_case *sc, ffdp_interp interp, ffdp_pad pad)
{
	ffdp_sample_args a = {0};
	rand_W(e, sc->on, sc->lo, sc->mn, a.W);
	rand_B(e, a.B);
	for (int k = 0; k < 3; k++)
		a.lo[k] = sc->lo[k];
	a.interp = interp, a.pad = pad;
	return a;
}

static void test_sample(env *e, const samp_case *sc, ffdp_interp interp, ffdp_pad pad, int accumulate)
{
	pimg M = interp == FFDP_INTERP_LABEL ? pi_uniform(e, sc->mn, 0, 1) : pi_smooth(e, sc->mn);
	if (interp == FFDP_INTERP_LABEL) { /* blocky labels 0..6 so that corners often agree */
		for (int64_t i = 0; i < M.nv; i++) {
			int64_t x = i % sc->mn[0], y = i / sc->mn[0] % sc->mn[1];
			M.h.p[i] = (float)((x / 3 + 2 * (y / 4) + (int64_t)(3 * M.h.p[i] * (i % 5 == 0))) % 7);
		}
		ffdp_buf_upload(e->gpu, M.d.p, M.h.p, (size_t)M.nv * sizeof(float), &e->err);
	}
	pimg out = pi_uniform(e, sc->on, -1, 1);
	gp_vec u = gp_vec_new(e, sc->on, -2.5, 2.5);
	ffdp_sample_args a = rand_args(e, sc, interp, pad);
	a.accumulate = accumulate;
	ffdp_sample_args c = a, g = a;
	c.moving = M.h, c.out = out.h, c.u = sc->with_u ? &u.h : NULL;
	g.moving = M.d, g.out = out.d, g.u = sc->with_u ? &u.d : NULL;
	char what[160];
	snprintf(what, sizeof(what), "sample %s %s%s%s out %lldx%lldx%lld lo (%lld,%lld,%lld) moving %lldx%lldx%lld",
		 interp_name(interp), pad_name(pad), sc->with_u ? " +u" : "", accumulate ? " +=" : "",
		 (long long)sc->on[0], (long long)sc->on[1], (long long)sc->on[2], (long long)sc->lo[0],
		 (long long)sc->lo[1], (long long)sc->lo[2], (long long)sc->mn[0], (long long)sc->mn[1],
		 (long long)sc->mn[2]);
	ffdp_status sc_ = ffdp_op_sample(e->cpu, &c, &e->err);
	CHECK_OK(sc_, &e->err, "%s: CPU", what);
	ffdp_status sg = ffdp_op_sample(e->gpu, &g, &e->err);
	CHECK_OK(sg, &e->err, "%s: CUDA", what);
	if (!sc_ && !sg) {
		if (interp == FFDP_INTERP_LINEAR) {
			double r = pi_rel(e, &out);
			CHECK(r < TOL_VAL, "  values agree (rel %.2e)", r);
		} else {
			int64_t k = gp_mismatches(e, out.d.p, out.h.p, out.nv), nz = 0;
			for (int64_t i = 0; i < out.nv; i++)
				nz += out.h.p[i] != 0.0f;
			CHECK(k <= MAX_TIES && nz > 0, "  %lld of %lld voxels differ (ties allowed: %d; %lld non-zero)",
			      (long long)k, (long long)out.nv, MAX_TIES, (long long)nz);
		}
	}
	pi_free(e, &M), pi_free(e, &out), gp_vec_free(e, &u);
}

static void test_sample_grad(env *e, const samp_case *sc, ffdp_pad pad, int accumulate_gu)
{
	pimg M = pi_smooth(e, sc->mn), gout = pi_uniform(e, sc->on, -1, 1);
	pimg gM = pi_uniform(e, sc->mn, -0.1, 0.1);
	gp_vec u = gp_vec_new(e, sc->on, -2.5, 2.5), gu = gp_vec_new(e, sc->on, -1, 1);
	ffdp_sample_args a = rand_args(e, sc, FFDP_INTERP_LINEAR, pad);
	ffdp_sample_args fc = a, fg = a;
	fc.moving = M.h, fc.out = gout.h, fc.u = sc->with_u ? &u.h : NULL;
	fg.moving = M.d, fg.out = gout.d, fg.u = sc->with_u ? &u.d : NULL;
	double gWc[12], gWg[12];
	for (int k = 0; k < 12; k++)
		gWc[k] = gWg[k] = unif(e, -1, 1);
	ffdp_sample_grad_args c = {&fc, gout.h, sc->with_u ? &gu.h : NULL, accumulate_gu, gWc, &gM.h, NULL, NULL};
	ffdp_sample_grad_args g = {&fg, gout.d, sc->with_u ? &gu.d : NULL, accumulate_gu, gWg, &gM.d, NULL, NULL};
	char what[160];
	snprintf(what, sizeof(what), "sample_grad %s%s%s out %lldx%lldx%lld moving %lldx%lldx%lld", pad_name(pad),
		 sc->with_u ? " gu" : "", accumulate_gu ? "+=" : "", (long long)sc->on[0], (long long)sc->on[1],
		 (long long)sc->on[2], (long long)sc->mn[0], (long long)sc->mn[1], (long long)sc->mn[2]);
	ffdp_status sc_ = ffdp_op_sample_grad(e->cpu, &c, &e->err);
	CHECK_OK(sc_, &e->err, "%s: CPU", what);
	ffdp_status sg = ffdp_op_sample_grad(e->gpu, &g, &e->err);
	CHECK_OK(sg, &e->err, "%s: CUDA", what);
	if (!sc_ && !sg) {
		if (sc->with_u) {
			double r = gp_vec_rel(e, &gu);
			CHECK(r < TOL_GRAD, "  gu agrees (rel %.2e)", r);
		}
		double d = 0, m = 1e-30;
		for (int k = 0; k < 12; k++)
			d = fmax(d, fabs(gWg[k] - gWc[k])), m = fmax(m, fabs(gWc[k]));
		CHECK(d / m < TOL_GRAD, "  gW agrees (rel %.2e)", d / m);
		double r = pi_rel(e, &gM);
		CHECK(r < TOL_GRAD, "  gM agrees (rel %.2e)", r);
	}
	pi_free(e, &M), pi_free(e, &gout), pi_free(e, &gM), gp_vec_free(e, &u), gp_vec_free(e, &gu);
}

/* The registration's backward (gu alone, no gW or gM: the GPU's fast
 * kernel where it applies), optionally with displacements far outside
 * the volume and NaN ones (every 7th voxel some 1e7 voxels out, every
 * 11th NaN): forward and backward agree with the CPU. */
static void test_sample_gu(env *e, const samp_case *sc, ffdp_pad pad, int far)
{
	pimg M = pi_smooth(e, sc->mn), out = pi_uniform(e, sc->on, -1, 1), gout = pi_uniform(e, sc->on, -1, 1);
	gp_vec u = gp_vec_new(e, sc->on, -2.5, 2.5), gu = gp_vec_new(e, sc->on, -1, 1);
	const int nc = u.h.ncomp;
	if (far) {
		for (int c = 0; c < nc; c++) {
			for (int64_t i = 0; i < u.nv; i++)
				if (i % 7 == c)
					u.h.c[c][i] = (float)((i % 2 ? 1e7 : -1e7) * (1 + c));
				else if (i % 11 == c)
					u.h.c[c][i] = NAN;
			ffdp_buf_upload(e->gpu, u.d.c[c], u.h.c[c], (size_t)u.nv * sizeof(float), &e->err);
		}
	}
	ffdp_sample_args a = rand_args(e, sc, FFDP_INTERP_LINEAR, pad);
	ffdp_sample_args c = a, g = a;
	c.moving = M.h, c.out = out.h, c.u = &u.h;
	g.moving = M.d, g.out = out.d, g.u = &u.d;
	const char *what = far ? "far and NaN displacements" : "gu alone";
	ffdp_status s1 = ffdp_op_sample(e->cpu, &c, &e->err), s2 = ffdp_op_sample(e->gpu, &g, &e->err);
	double r = !s1 && !s2 ? pi_rel(e, &out) : 1.0;
	CHECK(r < TOL_VAL, "sample %s, %s, out %lldx%lldx%lld: values agree (rel %.2e)", pad_name(pad), what,
	      (long long)sc->on[0], (long long)sc->on[1], (long long)sc->on[2], r);
	ffdp_sample_grad_args gc = {&c, gout.h, &gu.h, 0, NULL, NULL, NULL, NULL};
	ffdp_sample_grad_args gg = {&g, gout.d, &gu.d, 0, NULL, NULL, NULL, NULL};
	s1 = ffdp_op_sample_grad(e->cpu, &gc, &e->err), s2 = ffdp_op_sample_grad(e->gpu, &gg, &e->err);
	r = !s1 && !s2 ? gp_vec_rel(e, &gu) : 1.0;
	CHECK(r < TOL_GRAD, "  gu agrees (rel %.2e)", r);
	pi_free(e, &M), pi_free(e, &out), pi_free(e, &gout), gp_vec_free(e, &u), gp_vec_free(e, &gu);
}

/* The affine stage's backward (gW alone: the GPU's fast kernel where it
 * applies), with or without u: gW agrees with the CPU's.  gout in [glo, 1):
 * a large box takes positive values, since over 10^8 voxels of random sign
 * the sums cancel to ~1e-4 of their terms, where points within float
 * rounding of a knot (whose gradient jumps) decide the last digits.  Through
 * a z gate gW is refused on both backends (a partial sum). */
static void test_sample_gw(env *e, const samp_case *sc, ffdp_pad pad, double glo)
{
	pimg M = pi_smooth(e, sc->mn), gout = pi_uniform(e, sc->on, glo, 1);
	gp_vec u = gp_vec_new(e, sc->on, -2.5, 2.5);
	ffdp_sample_args a = rand_args(e, sc, FFDP_INTERP_LINEAR, pad);
	ffdp_sample_args c = a, g = a;
	c.moving = M.h, c.out = gout.h, c.u = sc->with_u ? &u.h : NULL;
	g.moving = M.d, g.out = gout.d, g.u = sc->with_u ? &u.d : NULL;
	double gWc[12], gWg[12];
	for (int k = 0; k < 12; k++)
		gWc[k] = gWg[k] = unif(e, -1, 1);
	ffdp_sample_grad_args gc = {&c, gout.h, NULL, 0, gWc, NULL, NULL, NULL};
	ffdp_sample_grad_args gg = {&g, gout.d, NULL, 0, gWg, NULL, NULL, NULL};
	ffdp_status s1 = ffdp_op_sample_grad(e->cpu, &gc, &e->err), s2 = ffdp_op_sample_grad(e->gpu, &gg, &e->err);
	double d = 0, m = 1e-30;
	for (int k = 0; k < 12; k++)
		d = fmax(d, fabs(gWg[k] - gWc[k])), m = fmax(m, fabs(gWc[k]));
	CHECK(!s1 && !s2 && d / m < TOL_GRAD,
	      "sample_grad gW alone %s%s out %lldx%lldx%lld lo (%lld,%lld,%lld): agrees with the CPU (rel %.2e)",
	      pad_name(pad), sc->with_u ? " +u" : "", (long long)sc->on[0], (long long)sc->on[1], (long long)sc->on[2],
	      (long long)sc->lo[0], (long long)sc->lo[1], (long long)sc->lo[2], d / m);
	if (sc->on[2] > 3 && sc->mn[2] > 3) {
		c.gate[0] = g.gate[0] = sc->mn[2] / 3, c.gate[1] = g.gate[1] = 2 * sc->mn[2] / 3;
		s1 = ffdp_op_sample_grad(e->cpu, &gc, &e->err), s2 = ffdp_op_sample_grad(e->gpu, &gg, &e->err);
		CHECK(s1 == FFDP_ERR_ARG && s2 == FFDP_ERR_ARG, "  through a z gate: refused on both (%d, %d)", (int)s1,
		      (int)s2);
	}
	pi_free(e, &M), pi_free(e, &gout), gp_vec_free(e, &u);
}

/* The z gate (a ring of moving slabs): gated voxels sampled, the others
 * left as they were, on both backends; and the points' z range. */
static void test_sample_gated(env *e, const samp_case *sc, ffdp_interp interp, ffdp_pad pad)
{
	pimg M = pi_smooth(e, sc->mn), out = pi_uniform(e, sc->on, -1, 1), gout = pi_uniform(e, sc->on, -1, 1);
	gp_vec u = gp_vec_new(e, sc->on, -2.5, 2.5), gu = gp_vec_new(e, sc->on, -1, 1);
	ffdp_sample_args a = rand_args(e, sc, interp, pad);
	a.gate[0] = sc->mn[2] / 3, a.gate[1] = 2 * sc->mn[2] / 3;
	ffdp_sample_args c = a, g = a;
	c.moving = M.h, c.out = out.h, c.u = &u.h;
	g.moving = M.d, g.out = out.d, g.u = &u.d;
	ffdp_status s1 = ffdp_op_sample(e->cpu, &c, &e->err), s2 = ffdp_op_sample(e->gpu, &g, &e->err);
	CHECK(!s1 && !s2, "sample %s %s through the z gate [%lld, %lld): CPU and CUDA run (%s)", interp_name(interp),
	      pad_name(pad), (long long)a.gate[0], (long long)a.gate[1], s1 || s2 ? e->err.msg : "ok");
	if (!s1 && !s2) {
		int64_t k = gp_mismatches(e, out.d.p, out.h.p, out.nv);
		double r = pi_rel(e, &out);
		CHECK(interp == FFDP_INTERP_LINEAR ? r < TOL_VAL : k <= MAX_TIES, "  values agree (rel %.2e, %lld differ)",
		      r, (long long)k);
	}
	if (interp == FFDP_INTERP_LINEAR) {
		ffdp_sample_grad_args gc = {&c, gout.h, &gu.h, 0, NULL, NULL, NULL, NULL};
		ffdp_sample_grad_args gg = {&g, gout.d, &gu.d, 0, NULL, NULL, NULL, NULL};
		s1 = ffdp_op_sample_grad(e->cpu, &gc, &e->err), s2 = ffdp_op_sample_grad(e->gpu, &gg, &e->err);
		double r = !s1 && !s2 ? gp_vec_rel(e, &gu) : 1.0;
		CHECK(r < TOL_GRAD, "  gu through the gate agrees (rel %.2e)", r);
		double l1, h1, l2, h2;
		int n1, n2;
		s1 = ffdp_op_sample_zrange(e->cpu, &c, &l1, &h1, &n1, &e->err);
		s2 = ffdp_op_sample_zrange(e->gpu, &g, &l2, &h2, &n2, &e->err);
		CHECK(!s1 && !s2 && l1 == l2 && h1 == h2 && n1 == n2 && l1 <= h1,
		      "  the points' z range: CPU [%.17g, %.17g], CUDA [%.17g, %.17g] (the same bits)", l1, h1, l2, h2);
	}
	pi_free(e, &M), pi_free(e, &out), pi_free(e, &gout), gp_vec_free(e, &u), gp_vec_free(e, &gu);
}

/* A ring slab: the moving image passed as its z planes [zs, ze) of the
 * whole volume (m_lo, m_full) with the gate [zs, ze - 1): forward and gu
 * agree with the CPU's on the same slab. */
static void test_sample_slab(env *e, const samp_case *sc, ffdp_pad pad)
{
	pimg M = pi_smooth(e, sc->mn), out = pi_uniform(e, sc->on, -1, 1), gout = pi_uniform(e, sc->on, -1, 1);
	gp_vec u = gp_vec_new(e, sc->on, -2.5, 2.5), gu = gp_vec_new(e, sc->on, -1, 1);
	const int64_t zs = sc->mn[2] / 4, ze = 3 * sc->mn[2] / 4 + 1, plane = sc->mn[0] * sc->mn[1];
	ffdp_sample_args a = rand_args(e, sc, FFDP_INTERP_LINEAR, pad);
	a.gate[0] = zs, a.gate[1] = ze - 1;
	for (int k = 0; k < 3; k++)
		a.m_full[k] = sc->mn[k], a.m_lo[k] = k == 2 ? zs : 0;
	ffdp_sample_args c = a, g = a;
	c.moving = M.h, g.moving = M.d;
	c.moving.p += zs * plane, g.moving.p += zs * plane;
	c.moving.n[2] = g.moving.n[2] = ze - zs;
	c.out = out.h, c.u = &u.h;
	g.out = out.d, g.u = &u.d;
	ffdp_status s1 = ffdp_op_sample(e->cpu, &c, &e->err), s2 = ffdp_op_sample(e->gpu, &g, &e->err);
	double r = !s1 && !s2 ? pi_rel(e, &out) : 1.0;
	CHECK(r < TOL_VAL, "sample %s from the moving slab [%lld, %lld): values agree (rel %.2e)", pad_name(pad),
	      (long long)zs, (long long)ze, r);
	ffdp_sample_grad_args gc = {&c, gout.h, &gu.h, 0, NULL, NULL, NULL, NULL};
	ffdp_sample_grad_args gg = {&g, gout.d, &gu.d, 0, NULL, NULL, NULL, NULL};
	s1 = ffdp_op_sample_grad(e->cpu, &gc, &e->err), s2 = ffdp_op_sample_grad(e->gpu, &gg, &e->err);
	r = !s1 && !s2 ? gp_vec_rel(e, &gu) : 1.0;
	CHECK(r < TOL_GRAD, "  gu from the slab agrees (rel %.2e)", r);
	pi_free(e, &M), pi_free(e, &out), pi_free(e, &gout), gp_vec_free(e, &u), gp_vec_free(e, &gu);
}

static void test_sampler(env *e)
{
	const samp_case cs[] = {
		{{37, 29, 23}, {31, 35, 27}, {0, 0, 0}, 1},
		{{37, 29, 23}, {41, 26, 30}, {5, 3, 7}, 0},  /* a shard: global offsets */
		{{53, 47, 1}, {45, 51, 1}, {0, 0, 0}, 1},    /* 2-D */
		{{33, 1, 17}, {29, 13, 19}, {2, 4, 1}, 1},   /* a one-voxel axis in the output */
	};
	const ffdp_interp ip[] = {FFDP_INTERP_LINEAR, FFDP_INTERP_NEAREST, FFDP_INTERP_LABEL};
	/* 2^27 voxels: the gW kernel's capped grid strides over z */
	const samp_case wide = {{1024, 1024, 128}, {97, 83, 41}, {3, 0, 2}, 0};
	test_sample_gw(e, &wide, FFDP_PAD_BORDER, 0);
	test_sample_gw(e, &wide, FFDP_PAD_ZERO, 0);
	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++)
		for (int p = 0; p < 2; p++) {
			for (int k = 0; k < 3; k++)
				test_sample(e, &cs[i], ip[k], (ffdp_pad)p, 0);
			test_sample(e, &cs[i], FFDP_INTERP_LINEAR, (ffdp_pad)p, 1);
			test_sample_grad(e, &cs[i], (ffdp_pad)p, 0);
			test_sample_grad(e, &cs[i], (ffdp_pad)p, 1);
			if (cs[i].with_u) {
				test_sample_gu(e, &cs[i], (ffdp_pad)p, 0);
				test_sample_gu(e, &cs[i], (ffdp_pad)p, 1);
			}
			test_sample_gw(e, &cs[i], (ffdp_pad)p, -1);
			if (cs[i].mn[2] > 3) {
				test_sample_slab(e, &cs[i], (ffdp_pad)p);
				test_sample_gated(e, &cs[i], FFDP_INTERP_LINEAR, (ffdp_pad)p);
				test_sample_gated(e, &cs[i], FFDP_INTERP_NEAREST, (ffdp_pad)p);
			}
		}
}

/* ---- composition and Jacobian -------------------------------------------------- */

static void test_compose_case(env *e, const int64_t dn[3], const int64_t lo[3], const int64_t un[3],
			      const int64_t ulo[3], ffdp_pad pad, int alias)
{
	gp_vec u = gp_vec_new(e, un, -2, 2), d = gp_vec_new(e, dn, -3, 3), out = gp_vec_new(e, dn, 0, 0);
	ffdp_compose_args a = {0};
	rand_B(e, a.C);
	for (int k = 0; k < 3; k++)
		a.lo[k] = lo[k], a.u_lo[k] = ulo[k];
	a.pad = pad;
	ffdp_compose_args c = a, g = a;
	c.u = u.h, c.d = d.h, c.out = alias ? d.h : out.h;
	g.u = u.d, g.d = d.d, g.out = alias ? d.d : out.d;
	char what[160];
	snprintf(what, sizeof(what), "compose %s%s d %lldx%lldx%lld at (%lld,%lld,%lld), u %lldx%lldx%lld at (%lld,%lld,%lld)",
		 pad_name(pad), alias ? " out = d" : "", (long long)dn[0], (long long)dn[1], (long long)dn[2],
		 (long long)lo[0], (long long)lo[1], (long long)lo[2], (long long)un[0], (long long)un[1],
		 (long long)un[2], (long long)ulo[0], (long long)ulo[1], (long long)ulo[2]);
	ffdp_status sc = ffdp_op_compose(e->cpu, &c, &e->err);
	CHECK_OK(sc, &e->err, "%s: CPU", what);
	ffdp_status sg = ffdp_op_compose(e->gpu, &g, &e->err);
	CHECK_OK(sg, &e->err, "%s: CUDA", what);
	if (!sc && !sg) {
		double r = gp_vec_rel(e, alias ? &d : &out);
		CHECK(r < TOL_VAL, "  out agrees (rel %.2e)", r);
	}
	gp_vec_free(e, &u), gp_vec_free(e, &d), gp_vec_free(e, &out);
}

static void test_compose(env *e)
{
	const int64_t dn[3] = {37, 29, 23}, lo[3] = {3, 2, 4}, un[3] = {43, 33, 31}, ulo[3] = {0, -1, 1};
	const int64_t dn2[3] = {61, 47, 1}, lo2[3] = {0, 0, 0}, ulo2[3] = {0, 0, 0};
	for (int p = 0; p < 2; p++)
		for (int alias = 0; alias < 2; alias++) {
			test_compose_case(e, dn, lo, un, ulo, (ffdp_pad)p, alias);
			test_compose_case(e, dn2, lo2, dn2, ulo2, (ffdp_pad)p, alias);
		}
}

/* Field inverse step: values and the residual, a shard of w with a halo. */
static void test_invert(env *e)
{
	/* one step on rough fields; then several on mild ones (rough ones
	 * would amplify the backends' float rounding), and a tolerance */
	const int64_t vn[][3] = {{37, 29, 23}, {61, 47, 1}, {37, 29, 23}};
	const int64_t wn[][3] = {{37, 29, 27}, {61, 47, 1}, {37, 29, 33}};
	const int64_t wlo[][3] = {{0, 0, -2}, {0, 0, 0}, {0, 0, -5}};
	for (int i = 0; i < 3; i++) {
		const double amp = i < 2 ? 2.0 : 0.15;
		gp_vec w = gp_vec_new(e, wn[i], -amp, amp), v = gp_vec_new(e, vn[i], -amp, amp);
		gp_vec out = gp_vec_new(e, vn[i], 0, 0);
		ffdp_invert_args a;
		memset(&a, 0, sizeof(a));
		a.iters = i < 2 ? 1 : 5;
		rand_B(e, a.C);
		for (int k = 0; k < 3; k++)
			a.w_lo[k] = wlo[i][k];
		ffdp_invert_args c = a, g = a;
		c.w = w.h, c.v = v.h, c.out = out.h;
		g.w = w.d, g.v = v.d, g.out = out.d;
		double rc = -1, rg = -2;
		CHECK_OK(ffdp_op_invert_step(e->cpu, &c, &rc, &e->err), &e->err, "invert %lldx%lldx%lld, %d step(s): CPU",
			 (long long)vn[i][0], (long long)vn[i][1], (long long)vn[i][2], a.iters);
		CHECK_OK(ffdp_op_invert_step(e->gpu, &g, &rg, &e->err), &e->err, "invert: CUDA");
		double r = gp_vec_rel(e, &out);
		CHECK(r < TOL_VAL, "  out agrees (rel %.2e)", r);
		/* once converged the residual is w's float rounding: absolute */
		CHECK(fabs(rc - rg) <= TOL_VAL * rc + 1e-6 * amp, "  residual agrees (%.3g, %.3g)", rc, rg);
		if (a.iters > 1) {
			c.iters = g.iters = 30, c.tol = g.tol = 1e-3;
			CHECK_OK(ffdp_op_invert_step(e->cpu, &c, &rc, &e->err), &e->err, "  tolerance: CPU");
			CHECK_OK(ffdp_op_invert_step(e->gpu, &g, &rg, &e->err), &e->err, "  tolerance: CUDA");
			CHECK(rc <= 1e-3 && rg <= 1e-3, "  tolerance 1e-3 met by every voxel (%.3g, %.3g)", rc, rg);
		}
		gp_vec_free(e, &w), gp_vec_free(e, &v), gp_vec_free(e, &out);
	}
}

static void test_jacobian(env *e)
{
	const int64_t ns[][3] = {{37, 29, 23}, {53, 41, 1}, {2, 31, 5}};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		gp_vec u = gp_vec_new(e, ns[i], -1.5, 1.5);
		pimg out = pi_uniform(e, ns[i], 0, 0);
		double A[9], G[9];
		rand_B(e, A), rand_B(e, G);
		ffdp_status sc = ffdp_op_jacobian_det(e->cpu, &u.h, A, G, out.h, &e->err);
		CHECK_OK(sc, &e->err, "jacobian_det %lldx%lldx%lld: CPU", (long long)ns[i][0], (long long)ns[i][1],
			 (long long)ns[i][2]);
		ffdp_status sg = ffdp_op_jacobian_det(e->gpu, &u.d, A, G, out.d, &e->err);
		CHECK_OK(sg, &e->err, "jacobian_det: CUDA");
		if (!sc && !sg) {
			double r = pi_rel(e, &out);
			CHECK(r < TOL_VAL, "  det agrees (rel %.2e)", r);
		}
		gp_vec_free(e, &u), pi_free(e, &out);
	}
}

/* ---- reductions and losses --------------------------------------------------------- */

static void test_moments(env *e)
{
	const int64_t ns[][3] = {{37, 29, 23}, {64, 48, 1}, {130, 97, 61}};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		pimg x = pi_uniform(e, ns[i], -0.5, 1.0);
		x.h.p[3] = NAN; /* counts as weight 0 */
		ffdp_buf_upload(e->gpu, x.d.p, x.h.p, sizeof(float) * 4, &e->err);
		double c[10], g[10];
		ffdp_status sc = ffdp_op_moments(e->cpu, x.h, c, &e->err);
		CHECK_OK(sc, &e->err, "moments %lldx%lldx%lld: CPU", (long long)ns[i][0], (long long)ns[i][1],
			 (long long)ns[i][2]);
		ffdp_status sg = ffdp_op_moments(e->gpu, x.d, g, &e->err);
		CHECK_OK(sg, &e->err, "moments: CUDA");
		double r = 0;
		for (int k = 0; k < 10; k++)
			r = fmax(r, fabs(g[k] - c[k]) / fmax(fabs(c[k]), 1e-30));
		if (!sc && !sg)
			CHECK(r < 1e-9, "  10 sums agree (rel %.2e)", r);
		pi_free(e, &x);
	}
}

/* Loss and sum to 1e-9 (both accumulate in double), gradients to 1e-4. */
static void check_loss(env *e, const char *what, ffdp_status sc, ffdp_status sg, double lc, double lg, double sumc,
		       double sumg, const pimg *gf, const pimg *gm)
{
	CHECK_OK(sc, &e->err, "%s: CPU", what);
	CHECK_OK(sg, &e->err, "%s: CUDA", what);
	if (sc || sg)
		return;
	double rl = fabs(lg - lc) / fmax(fabs(lc), 1e-30), rs = fabs(sumg - sumc) / fmax(fabs(sumc), 1e-30);
	CHECK(rl < TOL_VAL && rs < TOL_VAL, "  loss %.9g vs %.9g, sum %.9g vs %.9g", lg, lc, sumg, sumc);
	if (gf) {
		double r = pi_rel(e, gf);
		CHECK(r < TOL_GRAD, "  gf agrees (rel %.2e)", r);
	}
	if (gm) {
		double r = pi_rel(e, gm);
		CHECK(r < TOL_GRAD, "  gm agrees (rel %.2e)", r);
	}
}

typedef enum loss_kind { L_MSE, L_LNCC, L_MI } loss_kind;

typedef struct loss_case {
	int64_t n[3];
	int mask, want_gf, want_gm;
	double denom, scale;
} loss_case;

static ffdp_status run_loss(env *e, ffdp_backend *be, loss_kind k, const ffdp_loss_args *a, const void *opts)
{
	switch (k) {
	case L_MSE:
		return ffdp_op_mse(be, a, &e->err);
	case L_LNCC:
		return ffdp_op_lncc(be, a, opts, &e->err);
	case L_MI:
		return ffdp_op_mi(be, a, opts, &e->err);
	}
	return FFDP_ERR_ARG;
}

static void test_loss(env *e, loss_kind k, const loss_case *lc, const void *opts, const char *name)
{
	pimg f = pi_smooth(e, lc->n), m = pi_smooth(e, lc->n);
	pimg w = pi_uniform(e, lc->n, 0, 1), gf = pi_uniform(e, lc->n, 0, 0), gm = pi_uniform(e, lc->n, 0, 0);
	ffdp_loss_args c = {f.h, m.h, lc->mask ? w.h.p : NULL, lc->denom, lc->scale, lc->want_gf ? gf.h.p : NULL,
			    lc->want_gm ? gm.h.p : NULL, NULL, NULL, NULL, NULL, NULL};
	ffdp_loss_args g = {f.d, m.d, lc->mask ? w.d.p : NULL, lc->denom, lc->scale, lc->want_gf ? gf.d.p : NULL,
			    lc->want_gm ? gm.d.p : NULL, NULL, NULL, NULL, NULL, NULL};
	double lcpu = 0, lgpu = 0, scpu = 0, sgpu = 0;
	c.loss = &lcpu, c.sum = &scpu, g.loss = &lgpu, g.sum = &sgpu;
	char what[200];
	snprintf(what, sizeof(what), "%s %lldx%lldx%lld%s denom %g scale %g%s%s", name, (long long)lc->n[0],
		 (long long)lc->n[1], (long long)lc->n[2], lc->mask ? " mask" : "", lc->denom, lc->scale,
		 lc->want_gf ? " gf" : "", lc->want_gm ? " gm" : "");
	ffdp_status sc = run_loss(e, e->cpu, k, &c, opts);
	ffdp_status sg = run_loss(e, e->gpu, k, &g, opts);
	check_loss(e, what, sc, sg, lcpu, lgpu, scpu, sgpu, lc->want_gf ? &gf : NULL, lc->want_gm ? &gm : NULL);
	pi_free(e, &f), pi_free(e, &m), pi_free(e, &w), pi_free(e, &gf), pi_free(e, &gm);
}

static void test_losses(env *e)
{
	const loss_case cs[] = {
		{{37, 29, 23}, 0, 1, 1, 0, 1},
		{{37, 29, 23}, 1, 0, 1, 0, 0.37},
		{{37, 29, 23}, 1, 1, 0, 5000, -2},
		{{61, 53, 1}, 0, 0, 1, 0, 1},
		{{150, 131, 97}, 0, 1, 1, 0, 1}, /* many blocks */
	};
	const size_t nc = sizeof(cs) / sizeof(cs[0]);
	for (size_t i = 0; i < nc; i++)
		test_loss(e, L_MSE, &cs[i], NULL, "mse");
	const ffdp_lncc_opts lo[] = {{.k = 5, .exact_grad = 1}, {.k = 3, .exact_grad = 0}, {.k = 9, .exact_grad = 1, .eps = 1e-3}};
	for (size_t j = 0; j < sizeof(lo) / sizeof(lo[0]); j++)
		for (size_t i = 0; i < nc; i++) {
			char name[64];
			snprintf(name, sizeof(name), "lncc k %d %s", lo[j].k, lo[j].exact_grad ? "exact" : "ants");
			test_loss(e, L_LNCC, &cs[i], &lo[j], name);
		}
	ffdp_mi_opts mo[] = {{.bins = 32, .kernel = FFDP_MI_GAUSSIAN, .f_lo = -0.1, .f_hi = 1.2, .m_lo = -0.1, .m_hi = 1.2},
			     {.bins = 16, .kernel = FFDP_MI_BSPLINE3, .f_lo = 0.0, .f_hi = 1.0, .m_lo = -0.2, .m_hi = 1.1}};
	for (size_t j = 0; j < sizeof(mo) / sizeof(mo[0]); j++)
		for (size_t i = 0; i < nc; i++) {
			char name[64];
			snprintf(name, sizeof(name), "mi %d bins %s", mo[j].bins,
				 mo[j].kernel == FFDP_MI_GAUSSIAN ? "gaussian" : "bspline3");
			test_loss(e, L_MI, &cs[i], &mo[j], name);
		}
}

/* ---- smoothing ------------------------------------------------------------------- */

static void test_smooth_case(env *e, const int64_t n[3], double sx, double sy, double sz, double trunc, int renorm)
{
	pimg x = pi_smooth(e, n);
	for (int64_t i = 0; i < x.nv; i += 7) /* some sharp detail */
		x.h.p[i] += 0.5f;
	ffdp_buf_upload(e->gpu, x.d.p, x.h.p, (size_t)x.nv * sizeof(float), &e->err);
	ffdp_smooth_opts o = {{sx, sy, sz}, trunc, renorm};
	ffdp_status sc = ffdp_op_smooth(e->cpu, x.h, &o, &e->err);
	CHECK_OK(sc, &e->err, "smooth %lldx%lldx%lld sigma (%g, %g, %g) truncate %g %s: CPU", (long long)n[0],
		 (long long)n[1], (long long)n[2], sx, sy, sz, trunc, renorm ? "renormalised" : "zero outside");
	ffdp_status sg = ffdp_op_smooth(e->gpu, x.d, &o, &e->err);
	CHECK_OK(sg, &e->err, "smooth: CUDA");
	if (!sc && !sg) {
		double r = pi_rel(e, &x);
		CHECK(r < TOL_VAL, "  in-place result agrees (rel %.2e)", r);
	}
	pi_free(e, &x);
}

/* Out of place on the GPU (one fused pass where every axis has the same
 * radius up to 3, else a copy smoothed in place): the GPU's in-place bits,
 * the CPU's values, x untouched. */
static void test_smooth_to_case(env *e, const int64_t n[3], double sx, double sy, double sz)
{
	pimg x = pi_smooth(e, n), out = pi_uniform(e, n, 0, 1);
	for (int64_t i = 0; i < x.nv; i += 5)
		x.h.p[i] -= 0.5f;
	ffdp_buf_upload(e->gpu, x.d.p, x.h.p, (size_t)x.nv * sizeof(float), &e->err);
	ffdp_smooth_opts o = {{sx, sy, sz}, 2.0, 0};
	ffdp_status sg = ffdp_op_smooth_to(e->gpu, x.d, out.d, &o, &e->err);
	CHECK_OK(sg, &e->err, "smooth_to %lldx%lldx%lld sigma (%g, %g, %g): CUDA", (long long)n[0], (long long)n[1],
		 (long long)n[2], sx, sy, sz);
	int64_t moved = sg ? 1 : gp_bit_diffs(e, x.d.p, x.h.p, x.nv);
	ffdp_status sc = ffdp_op_smooth(e->cpu, x.h, &o, &e->err);
	sg = sg ? sg : ffdp_op_smooth(e->gpu, x.d, &o, &e->err); /* in place now */
	if (!sc && !sg) {
		float *inplace = gp_d_get(e, x.d.p, x.nv);
		const int64_t diff = gp_bit_diffs(e, out.d.p, inplace, x.nv);
		const double r = gp_rel_dev(e, out.d.p, x.h.p, x.nv);
		CHECK(diff == 0 && moved == 0 && r < TOL_VAL,
		      "  the in-place bits (%lld differ), x untouched (%lld moved), the CPU's values (rel %.2e)",
		      (long long)diff, (long long)moved, r);
		free(inplace);
	}
	pi_free(e, &x), pi_free(e, &out);
}

/* smooth_vec_to (the CUDA backend's three components in one pass where
 * the fused march applies, else per component): every component the
 * GPU's in-place bits and the CPU's values, x untouched; an out plane
 * overlapping another component of x refused. */
static void test_smooth_vec_to_case(env *e, const int64_t n[3], double sx, double sy, double sz)
{
	gp_vec x = gp_vec_new(e, n, -1, 1), out = gp_vec_new(e, n, 0, 0), ref = gp_vec_new(e, n, 0, 0);
	const size_t bytes = (size_t)x.nv * sizeof(float);
	for (int c = 0; c < x.h.ncomp; c++)
		ffdp_buf_copy(e->gpu, ref.d.c[c], x.d.c[c], bytes, &e->err);
	ffdp_smooth_opts o = {{sx, sy, sz}, 2.0, 0};
	ffdp_status sg = ffdp_op_smooth_vec_to(e->gpu, x.d, out.d, &o, &e->err);
	CHECK_OK(sg, &e->err, "smooth_vec_to %lldx%lldx%lld sigma (%g, %g, %g): CUDA", (long long)n[0],
		 (long long)n[1], (long long)n[2], sx, sy, sz);
	const int64_t moved = sg ? 1 : gp_vec_bit_diffs(e, &x);
	ffdp_status si = ffdp_op_smooth_vec(e->gpu, ref.d, &o, &e->err); /* in place on the copy */
	ffdp_status sc = ffdp_op_smooth_vec(e->cpu, x.h, &o, &e->err);
	if (!sg && !si && !sc) {
		int64_t diff = 0;
		double r = 0;
		for (int c = 0; c < x.h.ncomp; c++) {
			float *h = gp_d_get(e, ref.d.c[c], x.nv);
			diff += gp_bit_diffs(e, out.d.c[c], h, x.nv);
			r = fmax(r, gp_rel_dev(e, out.d.c[c], x.h.c[c], x.nv));
			free(h);
		}
		CHECK(diff == 0 && moved == 0 && r < TOL_VAL,
		      "  every component: the in-place bits (%lld differ), x untouched (%lld moved), the CPU's values (rel %.2e)",
		      (long long)diff, (long long)moved, r);
	}
	ffdp_vec bad = out.d;
	bad.c[1] = x.d.c[0]; /* out's second plane is x's first */
	CHECK(ffdp_op_smooth_vec_to(e->gpu, x.d, bad, &o, &e->err) == FFDP_ERR_ARG, "  overlap refused (%s)", e->err.msg);
	gp_vec_free(e, &x), gp_vec_free(e, &out), gp_vec_free(e, &ref);
}

static void test_smooth(env *e)
{
	const int64_t g1[3] = {37, 29, 23}, g2[3] = {70, 37, 45}, g3[3] = {53, 47, 1}, g4[3] = {2, 9, 70};
	test_smooth_to_case(e, g1, 0.5, 0.5, 0.5); /* radius 1, fused */
	test_smooth_to_case(e, g2, 1.0, 1.0, 1.0); /* radius 2: several tiles and z chunks */
	test_smooth_to_case(e, g1, 1.5, 1.5, 1.5); /* radius 3 */
	test_smooth_to_case(e, g1, 2.5, 2.5, 2.5); /* radius 5: a copy, in place */
	test_smooth_to_case(e, g2, 0.5, 1.0, 0.5); /* radii differ: in place */
	test_smooth_to_case(e, g3, 1.0, 1.0, 1.0); /* 2-D */
	test_smooth_to_case(e, g4, 0.5, 0.5, 0.5); /* a 2-voxel axis */
	test_smooth_vec_to_case(e, g1, 0.5, 0.5, 0.5); /* fused, three components */
	test_smooth_vec_to_case(e, g2, 1.5, 1.5, 1.5); /* several tiles and z chunks */
	test_smooth_vec_to_case(e, g2, 0.5, 1.0, 0.5); /* per component */
	test_smooth_vec_to_case(e, g3, 1.0, 1.0, 1.0); /* 2-D */
	const int64_t a[3] = {37, 29, 23}, b[3] = {300, 40, 90}, c[3] = {53, 47, 1}, d[3] = {8, 4, 2000};
	const int64_t f[3] = {33, 5, 7}; /* lines shorter than the marching kernel's window and prefetch */
	for (int renorm = 0; renorm < 2; renorm++) {
		test_smooth_case(e, a, 1.3, 0.7, 2.1, 0, renorm);
		test_smooth_case(e, a, 2.5, 0, 1.0, 3, renorm);
		test_smooth_case(e, a, 25, 25, 25, 2, renorm); /* radius clipped to n - 1 */
		test_smooth_case(e, b, 3, 2, 4, 0, renorm);    /* several chunks per line */
		test_smooth_case(e, b, 40, 1, 0, 2, renorm);   /* wide x kernel */
		test_smooth_case(e, c, 1.5, 1.5, 1.5, 0, renorm); /* 2-D: z skipped */
		test_smooth_case(e, d, 0.5, 0, 500, 2, renorm);   /* radius 1000: fewer lines per block */
		test_smooth_case(e, f, 1.0, 2.0, 3.0, 0, renorm);
	}
	/* smooth_vec: every component */
	gp_vec v = gp_vec_new(e, a, -1, 1);
	ffdp_smooth_opts o = {{1.1, 1.7, 0.9}, 0, 0};
	ffdp_status sc = ffdp_op_smooth_vec(e->cpu, v.h, &o, &e->err);
	CHECK_OK(sc, &e->err, "smooth_vec 37x29x23: CPU");
	ffdp_status sg = ffdp_op_smooth_vec(e->gpu, v.d, &o, &e->err);
	CHECK_OK(sg, &e->err, "smooth_vec: CUDA");
	if (!sc && !sg) {
		double r = gp_vec_rel(e, &v);
		CHECK(r < TOL_VAL, "  all components agree (rel %.2e)", r);
	}
	gp_vec_free(e, &v);
}

/* ---- optimiser ------------------------------------------------------------------- */

static void test_adam_moments(env *e, const int64_t n[3], int t, int with_nan)
{
	gp_vec g = gp_vec_new(e, n, -2, 2), m = gp_vec_new(e, n, -0.5, 0.5), v = gp_vec_new(e, n, 0, 0.8);
	if (with_nan) {
		g.h.c[1][17] = NAN;
		ffdp_buf_upload(e->gpu, g.d.c[1], g.h.c[1], (size_t)g.nv * sizeof(float), &e->err);
	}
	ffdp_adam_opts o = {t, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	double nc = -1, ng = -1;
	ffdp_status sc = ffdp_op_adam_moments(e->cpu, g.h, m.h, v.h, &o, &nc, &e->err);
	CHECK_OK(sc, &e->err, "adam_moments %lldx%lldx%lld t = %d%s: CPU", (long long)n[0], (long long)n[1],
		 (long long)n[2], t, with_nan ? " (a NaN gradient)" : "");
	ffdp_status sg = ffdp_op_adam_moments(e->gpu, g.d, m.d, v.d, &o, &ng, &e->err);
	CHECK_OK(sg, &e->err, "adam_moments: CUDA");
	if (sc || sg)
		goto out;
	if (with_nan) {
		CHECK(isnan(nc) && isnan(ng), "  max_norm is NaN on both (%g, %g)", nc, ng);
	} else {
		/* both backends take the moments and d in the same float operations */
		int64_t dm = gp_vec_bit_diffs(e, &m), dv = gp_vec_bit_diffs(e, &v);
		CHECK(dm == 0 && dv == 0, "  m and v: the CPU's bits (%lld, %lld differ)", (long long)dm, (long long)dv);
		CHECK(ng == nc, "  max_norm: the CPU's (%.17g vs %.17g)", ng, nc);
		CHECK(gp_vec_rel(e, &g) == 0, "  g is not modified");
	}
	/* without max_norm */
	CHECK_OK(ffdp_op_adam_moments(e->gpu, g.d, m.d, v.d, &o, NULL, &e->err), &e->err, "  max_norm NULL: CUDA");
out:
	gp_vec_free(e, &g), gp_vec_free(e, &m), gp_vec_free(e, &v);
}

/* Device planes of x's device copy, bit for bit, against device planes y. */
static int64_t vec_dev_bit_diffs(env *e, const ffdp_vec *x, const ffdp_vec *y, int64_t nv)
{
	int64_t diff = 0;
	for (int c = 0; c < x->ncomp; c++) {
		float *h = gp_d_get(e, y->c[c], nv);
		diff += gp_bit_diffs(e, x->c[c], h, nv);
		free(h);
	}
	return diff;
}

/* adam_moments of a smoothed gradient (ffdp_adam_opts.smooth): on the GPU
 * the fused pass where it applies (3-D, equal radii <= 3) and in-place
 * smoothing first elsewhere, against the GPU's own two ops (smooth_vec,
 * then the moments): m and v (or the bf16 words) and max_norm bit for bit;
 * against the CPU (whose fallback is the same two ops) to TOL_VAL. */
static void test_adam_smooth(env *e, const int64_t n[3], const double sig[3], ffdp_moment_store store)
{
	const int bf16 = store == FFDP_MOMENTS_BF16;
	gp_vec g = gp_vec_new(e, n, -2, 2), m = gp_vec_new(e, n, bf16 ? 0 : -0.5, bf16 ? 0 : 0.5),
	       v = gp_vec_new(e, n, 0, 0.8);
	gp_vec g2 = gp_vec_new(e, n, 0, 0), m2 = gp_vec_new(e, n, 0, 0), v2 = gp_vec_new(e, n, 0, 0);
	const size_t bytes = (size_t)g.nv * sizeof(float);
	for (int c = 0; c < g.h.ncomp; c++) {
		ffdp_buf_copy(e->gpu, g2.d.c[c], g.d.c[c], bytes, &e->err);
		ffdp_buf_copy(e->gpu, m2.d.c[c], m.d.c[c], bytes, &e->err);
		ffdp_buf_copy(e->gpu, v2.d.c[c], v.d.c[c], bytes, &e->err);
	}
	ffdp_smooth_opts so = {{sig[0], sig[1], sig[2]}, 2.0, 0};
	ffdp_adam_opts o = {3, 0.9, 0.99, 1e-8, store, 0, NULL, &so}, o2 = o;
	o2.smooth = NULL;
	double nf = -1, n2 = -2, nc = -3;
	ffdp_status sf = ffdp_op_adam_moments(e->gpu, g.d, m.d, v.d, &o, &nf, &e->err);
	CHECK_OK(sf, &e->err, "adam_moments of g smoothed (%.2g, %.2g, %.2g) %lldx%lldx%lld%s: CUDA", sig[0], sig[1],
		 sig[2], (long long)n[0], (long long)n[1], (long long)n[2], bf16 ? " bf16" : "");
	ffdp_status s2 = ffdp_op_smooth_vec(e->gpu, g2.d, &so, &e->err);
	if (!s2)
		s2 = ffdp_op_adam_moments(e->gpu, g2.d, m2.d, v2.d, &o2, &n2, &e->err);
	CHECK_OK(s2, &e->err, "  CUDA, smooth_vec then adam_moments");
	ffdp_status sc = ffdp_op_adam_moments(e->cpu, g.h, m.h, v.h, &o, &nc, &e->err);
	CHECK_OK(sc, &e->err, "  CPU");
	if (!sf && !s2) {
		int64_t dm = vec_dev_bit_diffs(e, &m.d, &m2.d, m.nv), dv = bf16 ? 0 : vec_dev_bit_diffs(e, &v.d, &v2.d, v.nv);
		CHECK(dm == 0 && dv == 0 && nf == n2,
		      "  = the two ops bit for bit (%lld m, %lld v differ; max_norm %.17g vs %.17g)", (long long)dm,
		      (long long)dv, nf, n2);
	}
	if (!sf && !sc && !bf16) {
		double rm = gp_vec_rel(e, &m), rv = gp_vec_rel(e, &v);
		CHECK(rm < TOL_VAL && rv < TOL_VAL && fabs(nf - nc) <= TOL_VAL * nc,
		      "  = the CPU (m rel %.2e, v rel %.2e, max_norm %.9g vs %.9g)", rm, rv, nf, nc);
	}
	gp_vec_free(e, &g), gp_vec_free(e, &m), gp_vec_free(e, &v);
	gp_vec_free(e, &g2), gp_vec_free(e, &m2), gp_vec_free(e, &v2);
}

/* m, v such that the step's delta reaches a few voxels (so the in-place
 * composition needs a ring several slices deep). */
static void test_warp_step(env *e, const int64_t n[3], int compose, ffdp_pad pad, double step)
{
	gp_vec u = gp_vec_new(e, n, -1.5, 1.5), m = gp_vec_new(e, n, -1, 1), v = gp_vec_new(e, n, 0.5, 1);
	ffdp_warp_step_opts o;
	memset(&o, 0, sizeof(o)); /* any further field (a max_norm hint) is 0: measure */
	o.adam.t = 3, o.adam.beta1 = 0.9, o.adam.beta2 = 0.99, o.adam.eps = 1e-8;
	o.step = step, o.compose = compose, o.pad = pad;
	rand_B(e, o.C);
	gp_vec u0 = gp_vec_new(e, n, 0, 0), out = gp_vec_new(e, n, 0, 0); /* u0: u before the step */
	for (int c = 0; c < u.h.ncomp; c++) {
		memcpy(u0.h.c[c], u.h.c[c], (size_t)u.nv * sizeof(float));
		ffdp_buf_upload(e->gpu, u0.d.c[c], u.h.c[c], (size_t)u.nv * sizeof(float), &e->err);
	}
	ffdp_status sc = ffdp_op_warp_step(e->cpu, u.h, m.h, v.h, &o, &e->err);
	CHECK_OK(sc, &e->err, "warp_step %lldx%lldx%lld %s %s step %g: CPU", (long long)n[0], (long long)n[1],
		 (long long)n[2], compose ? "compose" : "add", pad_name(pad), step);
	ffdp_status sg = ffdp_op_warp_step(e->gpu, u.d, m.d, v.d, &o, &e->err);
	CHECK_OK(sg, &e->err, "warp_step: CUDA");
	if (!sc && !sg) {
		double r = gp_vec_rel(e, &u);
		CHECK(r < TOL_VAL, "  u agrees (rel %.2e)", r);
	}
	/* out of place on the GPU (no ring): the in-place step's bits, u untouched */
	o.out = &out.d;
	ffdp_status so = ffdp_op_warp_step(e->gpu, u0.d, m.d, v.d, &o, &e->err);
	CHECK_OK(so, &e->err, "  CUDA out of place");
	if (!so && !sg) {
		int64_t diff = 0, moved = 0;
		for (int c = 0; c < u.h.ncomp; c++) {
			float *got = gp_d_get(e, u.d.c[c], u.nv);
			diff += gp_bit_diffs(e, out.d.c[c], got, u.nv);
			moved += gp_bit_diffs(e, u0.d.c[c], u0.h.c[c], u.nv);
			free(got);
		}
		CHECK(diff == 0 && moved == 0, "  out of place = in place bit for bit (%lld differ), u untouched (%lld moved)",
		      (long long)diff, (long long)moved);
	}
	gp_vec_free(e, &u), gp_vec_free(e, &m), gp_vec_free(e, &v), gp_vec_free(e, &u0), gp_vec_free(e, &out);
}

static void test_optimiser(env *e)
{
	const int64_t a[3] = {37, 29, 23}, b[3] = {61, 53, 1}, c[3] = {96, 80, 300}, d[3] = {2048, 1500, 1};
	test_adam_moments(e, a, 1, 0);
	test_adam_moments(e, a, 7, 0);
	test_adam_moments(e, b, 2, 0);
	test_adam_moments(e, c, 4, 0);
	test_adam_moments(e, a, 1, 1);
	const int64_t z3[3] = {33, 17, 70}; /* three z chunks of the fused pass */
	const double s15[3] = {1.5, 1.5, 1.5}, s05[3] = {0.5, 0.5, 0.5}, s1[3] = {1.0, 1.0, 1.0},
		     s_uneq[3] = {1.5, 1.0, 1.5};
	test_adam_smooth(e, a, s15, FFDP_MOMENTS_F32);
	test_adam_smooth(e, a, s05, FFDP_MOMENTS_BF16);
	test_adam_smooth(e, z3, s1, FFDP_MOMENTS_F32);
	test_adam_smooth(e, z3, s15, FFDP_MOMENTS_BF16);
	test_adam_smooth(e, a, s_uneq, FFDP_MOMENTS_F32); /* unequal radii: smoothed in place first */
	test_adam_smooth(e, b, s15, FFDP_MOMENTS_F32);    /* 2-D: the same */
	for (int p = 0; p < 2; p++) {
		test_warp_step(e, a, 0, (ffdp_pad)p, -0.8);
		test_warp_step(e, a, 1, (ffdp_pad)p, -0.8);
		test_warp_step(e, a, 1, (ffdp_pad)p, 3.0);
		test_warp_step(e, b, 1, (ffdp_pad)p, 2.0);
		/* several slabs of ~2^20 voxels with a ring that wraps */
		test_warp_step(e, c, 1, (ffdp_pad)p, -2.5);
		test_warp_step(e, d, 1, (ffdp_pad)p, 2.5);
	}
}

/* ---- more than 2^31 voxels ----------------------------------------------------------- */

static float big_value(int64_t x, int64_t y, int64_t z)
{
	return (float)((x * 7 + y * 13 + z * 29) % 101) * (1.0f / 101.0f);
}

/* Trilinear with zero padding, in double, from the host copy. */
static double big_ref(const float *M, const int64_t n[3], const double p[3])
{
	double fl[3], f[3], s = 0;
	for (int a = 0; a < 3; a++)
		fl[a] = floor(p[a]), f[a] = p[a] - fl[a];
	for (int c = 0; c < 8; c++) {
		int64_t ix = (int64_t)fl[0] + (c & 1), iy = (int64_t)fl[1] + (c >> 1 & 1), iz = (int64_t)fl[2] + (c >> 2);
		if (ix < 0 || iy < 0 || iz < 0 || ix >= n[0] || iy >= n[1] || iz >= n[2])
			continue;
		double w = (c & 1 ? f[0] : 1 - f[0]) * (c & 2 ? f[1] : 1 - f[1]) * (c & 4 ? f[2] : 1 - f[2]);
		s += w * M[(iz * n[1] + iy) * n[0] + ix];
	}
	return s;
}

static void test_big(env *e)
{
	const int64_t n[3] = {1400, 1400, 1100}, nv = n[0] * n[1] * n[2];
	const size_t bytes = (size_t)nv * sizeof(float);
	printf("large: %lld voxels (%.1f GB per volume)\n", (long long)nv, (double)bytes / 1e9);
	float *hM = malloc(bytes);
	float *dM = ffdp_buf_alloc(e->gpu, bytes, &e->err), *dO = dM ? ffdp_buf_alloc(e->gpu, bytes, &e->err) : NULL;
	CHECK(hM && dM && dO, "large: host and device volumes allocated (%s)", hM && dM && dO ? "ok" : e->err.msg);
	if (!hM || !dM || !dO)
		goto out;
#pragma omp parallel for schedule(static)
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++)
				hM[(z * n[1] + y) * n[0] + x] = big_value(x, y, z);
	CHECK_OK(ffdp_buf_upload(e->gpu, dM, hM, bytes, &e->err), &e->err, "large: upload");
	ffdp_sample_args a = {0};
	const double W[12] = {0.97, 0.02, -0.01, 5.3, -0.015, 1.01, 0.02, -3.7, 0.01, -0.02, 0.99, 4.1};
	memcpy(a.W, W, sizeof(W));
	a.moving = (ffdp_img){dM, {n[0], n[1], n[2]}};
	a.out = (ffdp_img){dO, {n[0], n[1], n[2]}};
	a.interp = FFDP_INTERP_LINEAR, a.pad = FFDP_PAD_ZERO;
	CHECK_OK(ffdp_op_sample(e->gpu, &a, &e->err), &e->err, "large: sample forward, u = NULL");
	double worst = 0;
	int checked = 0, high = 0;
	for (int k = 0; k < 400; k++) {
		int64_t i = k == 0 ? nv - 1 : (int64_t)(tu_uniform(&e->rng) * (double)nv);
		if (k < 200) /* half of them beyond index 2^31 */
			i = ((int64_t)1 << 31) + (int64_t)(tu_uniform(&e->rng) * (double)(nv - ((int64_t)1 << 31)));
		int64_t x = i % n[0], y = i / n[0] % n[1], z = i / (n[0] * n[1]);
		double p[3];
		for (int r = 0; r < 3; r++)
			p[r] = W[4 * r] * x + W[4 * r + 1] * y + W[4 * r + 2] * z + W[4 * r + 3];
		float got = 0;
		if (ffdp_buf_download(e->gpu, &got, dO + i, sizeof(float), &e->err))
			break;
		worst = fmax(worst, fabs(got - big_ref(hM, n, p)));
		checked++;
		high += i >= ((int64_t)1 << 31);
	}
	CHECK(checked == 400 && worst < 1e-5, "large: %d spot voxels (%d beyond 2^31) match a double reference (max err %.2e)",
	      checked, high, worst);
out:
	free(hM);
	ffdp_buf_free(e->gpu, dM);
	ffdp_buf_free(e->gpu, dO);
}

int main(int argc, char **argv)
{
	env e = {NULL, NULL, tu_rng_make(20261124), {0}};
	int big = !(argc > 1 && strcmp(argv[1], "--no-large") == 0);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &e.cpu, &e.err), &e.err, "CPU backend");
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &e.gpu, &e.err), &e.err, "CUDA backend");
	if (!e.cpu || !e.gpu)
		return check_done();
	test_sampler(&e);
	test_compose(&e);
	test_invert(&e);
	test_jacobian(&e);
	test_moments(&e);
	test_losses(&e);
	test_smooth(&e);
	test_optimiser(&e);
	if (big)
		test_big(&e);
	ffdp_backend_close(e.gpu);
	ffdp_backend_close(e.cpu);
	return check_done();
}
