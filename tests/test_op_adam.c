/* Adam moments and the fused warp step against double references: bias
 * correction at t = 1 and 7, max_norm, u += delta, and the in-place
 * composition u <- delta + u o (Id + C delta) against an out-of-place
 * trilinear reference (oblique C, 2-D and 3-D, ZERO and BORDER pads,
 * 1..3 threads), plus the ring's memory bound; the AVX2 composition
 * against the scalar one, bit for bit. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static tfield tf_copy(const tfield *f)
{
	tfield g = tu_field_new(f->n[0], f->n[1], f->n[2]);
	for (int c = 0; c < f->nc; c++)
		memcpy(g.c[c], f->c[c], (size_t)f->nv * sizeof(float));
	return g;
}

static double ref_d(double m, double v, const ffdp_adam_opts *o)
{
	double bc1 = 1.0 - pow(o->beta1, o->t), bc2 = 1.0 - pow(o->beta2, o->t);
	return (m / bc1) / (sqrt(v / bc2) + o->eps);
}

/* ---- adam_moments ---------------------------------------------------------------- */

static void test_moments(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, int t)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	for (int c = 0; c < g.nc; c++) {
		tu_fill_uniform(rng, g.c[c], g.nv, -2.0, 2.0);
		tu_fill_uniform(rng, m.c[c], g.nv, -0.5, 0.5);
		tu_fill_uniform(rng, v.c[c], g.nv, 0.0, 0.8);
	}
	tfield g0 = tf_copy(&g);
	ffdp_adam_opts o = {t, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	double *mr[3], *vr[3], norm = 0;
	for (int c = 0; c < g.nc; c++) {
		mr[c] = malloc((size_t)g.nv * sizeof(double));
		vr[c] = malloc((size_t)g.nv * sizeof(double));
	}
	for (int64_t i = 0; i < g.nv; i++) {
		double s = 0;
		for (int c = 0; c < g.nc; c++) {
			double gi = g.c[c][i];
			mr[c][i] = o.beta1 * m.c[c][i] + (1 - o.beta1) * gi;
			vr[c][i] = o.beta2 * v.c[c][i] + (1 - o.beta2) * gi * gi;
			double d = ref_d(mr[c][i], vr[c][i], &o);
			s += d * d;
		}
		norm = fmax(norm, sqrt(s));
	}
	double max_norm = -1;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &o, &max_norm, &err), &err,
		 "adam_moments %lldx%lldx%lld t = %d", (long long)nx, (long long)ny, (long long)nz, t);
	double em = 0, ev = 0;
	int same_g = 1;
	for (int c = 0; c < g.nc; c++) {
		em = fmax(em, tu_rel_err(m.c[c], mr[c], g.nv, 1e-30));
		ev = fmax(ev, tu_rel_err(v.c[c], vr[c], g.nv, 1e-30));
		same_g &= memcmp(g.c[c], g0.c[c], (size_t)g.nv * sizeof(float)) == 0;
	}
	CHECK(em < 1e-5 && ev < 1e-5, "  m and v match the reference (rel err %.2e, %.2e)", em, ev);
	CHECK(fabs(max_norm - norm) < 1e-5 * norm, "  max_norm %.6f = reference %.6f (bias-corrected, t = %d)",
	      max_norm, norm, t);
	CHECK(same_g, "  g is not modified");
	for (int c = 0; c < g.nc; c++)
		free(mr[c]), free(vr[c]);
	tu_field_free(&g), tu_field_free(&g0), tu_field_free(&m), tu_field_free(&v);
}

static void test_moments_edges(ffdp_backend *be)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(7, 5, 3), m = tu_field_new(7, 5, 3), v = tu_field_new(7, 5, 3);
	for (int c = 0; c < 3; c++)
		for (int64_t i = 0; i < g.nv; i++)
			g.c[c][i] = 0.5f;
	g.c[1][17] = NAN;
	ffdp_adam_opts o = {1, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	double mn = 0;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &o, &mn, &err), &err,
		 "adam_moments with a NaN gradient voxel");
	CHECK(isnan(mn), "  a NaN gradient makes max_norm NaN (not silently dropped)");
	ffdp_adam_opts o0 = {0, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL}, ob = {1, 1.0, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	CHECK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &o0, &mn, &err) == FFDP_ERR_ARG,
	      "t = 0 refused: %s", err.msg);
	CHECK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &ob, &mn, &err) == FFDP_ERR_ARG,
	      "beta1 = 1 refused: %s", err.msg);
	tu_field_free(&g), tu_field_free(&m), tu_field_free(&v);
}

/* The moments of a smoothed gradient (ffdp_adam_opts.smooth): the same
 * bits as smooth_vec and then the moments of the result; a negative sigma
 * refused. */
static void test_moments_smoothed(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	for (int c = 0; c < g.nc; c++) {
		tu_fill_uniform(rng, g.c[c], g.nv, -2.0, 2.0);
		tu_fill_uniform(rng, m.c[c], g.nv, -0.5, 0.5);
		tu_fill_uniform(rng, v.c[c], g.nv, 0.0, 0.8);
	}
	tfield g2 = tf_copy(&g), m2 = tf_copy(&m), v2 = tf_copy(&v);
	ffdp_smooth_opts so = {{1.5, 0.8, 1.2}, 2.0, 0};
	ffdp_adam_opts o = {2, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, &so}, o2 = o;
	o2.smooth = NULL;
	double n1 = -1, n2 = -2;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &o, &n1, &err), &err,
		 "adam_moments of g smoothed, %lldx%lldx%lld", (long long)nx, (long long)ny, (long long)nz);
	CHECK_OK(ffdp_op_smooth_vec(be, tu_field_vec(&g2), &so, &err), &err, "  smooth_vec");
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g2), tu_field_vec(&m2), tu_field_vec(&v2), &o2, &n2, &err),
		 &err, "  then adam_moments");
	int64_t diff = 0;
	for (int c = 0; c < g.nc; c++)
		diff += memcmp(m.c[c], m2.c[c], (size_t)g.nv * sizeof(float)) != 0 ||
			memcmp(v.c[c], v2.c[c], (size_t)g.nv * sizeof(float)) != 0;
	CHECK(diff == 0 && n1 == n2, "  the same m, v and max_norm as the two ops (%lld planes differ, %.17g vs %.17g)",
	      (long long)diff, n1, n2);
	so.sigma[1] = -1.0;
	CHECK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &o, &n1, &err) ==
		      FFDP_ERR_ARG,
	      "  a negative sigma refused: %s", err.msg);
	tu_field_free(&g), tu_field_free(&m), tu_field_free(&v);
	tu_field_free(&g2), tu_field_free(&m2), tu_field_free(&v2);
}

/* ---- warp step ---------------------------------------------------------------------- */

/* Trilinear (bilinear in 2-D) sample of a double volume at continuous index q. */
static double ref_sample(const double *x, const int64_t n[3], const double q[3], ffdp_pad pad)
{
	int dims = n[2] == 1 ? 2 : 3;
	int64_t i0[3] = {0, 0, 0};
	double f[3] = {0, 0, 0};
	double qq[3] = {q[0], q[1], dims == 3 ? q[2] : 0.0};
	for (int a = 0; a < dims; a++) {
		if (pad == FFDP_PAD_BORDER)
			qq[a] = fmin(fmax(qq[a], 0.0), (double)(n[a] - 1));
		i0[a] = (int64_t)floor(qq[a]);
		f[a] = qq[a] - (double)i0[a];
	}
	double acc = 0;
	for (int cz = 0; cz < (dims == 3 ? 2 : 1); cz++)
		for (int cy = 0; cy < 2; cy++)
			for (int cx = 0; cx < 2; cx++) {
				int64_t k[3] = {i0[0] + cx, i0[1] + cy, i0[2] + cz};
				double w = (cx ? f[0] : 1 - f[0]) * (cy ? f[1] : 1 - f[1]) *
					   (dims == 3 ? (cz ? f[2] : 1 - f[2]) : 1.0);
				if (w == 0.0)
					continue;
				int inside = 1;
				for (int a = 0; a < 3; a++) {
					if (pad == FFDP_PAD_BORDER)
						k[a] = k[a] > n[a] - 1 ? n[a] - 1 : k[a];
					inside &= k[a] >= 0 && k[a] < n[a];
				}
				if (inside)
					acc += w * x[(k[2] * n[1] + k[1]) * n[0] + k[0]];
			}
	return acc;
}

/* u_new = delta + u_old(i + C delta), or u + delta, all in double. */
static void ref_warp_step(const tfield *u, const tfield *m, const tfield *v, const ffdp_warp_step_opts *o,
			  double *out[3])
{
	int nc = u->nc;
	double *old[3] = {NULL, NULL, NULL};
	for (int c = 0; c < nc; c++) {
		old[c] = malloc((size_t)u->nv * sizeof(double));
		for (int64_t i = 0; i < u->nv; i++)
			old[c][i] = u->c[c][i];
	}
	for (int64_t z = 0; z < u->n[2]; z++)
		for (int64_t y = 0; y < u->n[1]; y++)
			for (int64_t x = 0; x < u->n[0]; x++) {
				int64_t i = (z * u->n[1] + y) * u->n[0] + x;
				double dl[3] = {0, 0, 0}, q[3] = {(double)x, (double)y, (double)z};
				for (int c = 0; c < nc; c++)
					dl[c] = o->step * ref_d(m->c[c][i], v->c[c][i], &o->adam);
				for (int a = 0; a < nc; a++)
					for (int b = 0; b < nc; b++)
						q[a] += o->C[3 * a + b] * dl[b];
				for (int c = 0; c < nc; c++)
					out[c][i] = dl[c] + (o->compose ? ref_sample(old[c], u->n, q, o->pad)
									: old[c][i]);
			}
	for (int c = 0; c < nc; c++)
		free(old[c]);
}

/* A random state: smooth u of a few mm, moments from one adam_moments call
 * at step t (so max_norm is the op's own). */
static double make_state(ffdp_backend *be, tu_rng *rng, tfield *u, tfield *m, tfield *v, int t)
{
	ffdp_error err = {0};
	tfield g = tu_field_new(u->n[0], u->n[1], u->n[2]);
	for (int c = 0; c < u->nc; c++) {
		tu_fill_smooth(rng, u->c[c], u->n, 0.01);
		for (int64_t i = 0; i < u->nv; i++)
			u->c[c][i] = 6.0f * u->c[c][i] - 3.0f;
		tu_fill_uniform(rng, g.c[c], g.nv, -1.0, 1.0);
		tu_fill_uniform(rng, m->c[c], g.nv, -0.3, 0.3);
		tu_fill_uniform(rng, v->c[c], g.nv, 0.01, 0.2);
	}
	ffdp_adam_opts o = {t, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
	double mn = 0;
	ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(m), tu_field_vec(v), &o, &mn, &err);
	tu_field_free(&g);
	return mn;
}

static double field_err(const tfield *u, double *ref[3])
{
	double e = 0, mx = 0;
	for (int c = 0; c < u->nc; c++)
		mx = fmax(mx, tu_max_abs(ref[c], u->nv));
	for (int c = 0; c < u->nc; c++)
		for (int64_t i = 0; i < u->nv; i++)
			e = fmax(e, fabs(u->c[c][i] - ref[c][i]));
	return e / mx;
}

/* C = phys->index linear part of a random oblique grid (2-D: a rotated,
 * anisotropic 2x2 block); returns the smallest spacing. */
static double random_C(tu_rng *rng, int dims, double C[9])
{
	ffdp_grid gr = tu_random_grid(rng, 4, 4, 4);
	if (dims == 2) {
		double th = 6.283185307179586 * tu_uniform(rng), s0 = gr.spacing[0], s1 = gr.spacing[1];
		double c = cos(th), s = sin(th);
		double M[9] = {c / s0, s / s0, 0, -s / s1, c / s1, 0, 0, 0, 1};
		memcpy(C, M, sizeof(M));
		return fmin(s0, s1);
	}
	ffdp_mat4 p2i = ffdp_grid_phys_to_index(&gr);
	for (int r = 0; r < 3; r++)
		for (int c = 0; c < 3; c++)
			C[3 * r + c] = p2i.m[4 * r + c];
	return fmin(gr.spacing[0], fmin(gr.spacing[1], gr.spacing[2]));
}

static void test_warp_step(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, int compose,
			   ffdp_pad pad, int threads)
{
	ffdp_error err = {0};
	omp_set_num_threads(threads);
	tfield u = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	int t = 7;
	double mn = make_state(be, rng, &u, &m, &v, t);
	ffdp_warp_step_opts o = {{t, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL}, 0, compose, {0}, pad, 0, NULL};
	double hmin = random_C(rng, u.nc, o.C);
	/* largest |delta| = 1.5 of the smallest spacing: up to 1.5 voxels */
	o.step = -1.5 * hmin / mn;
	double *ref[3] = {NULL, NULL, NULL};
	for (int c = 0; c < u.nc; c++)
		ref[c] = malloc((size_t)u.nv * sizeof(double));
	ref_warp_step(&u, &m, &v, &o, ref);
	tfield u2 = tf_copy(&u), u3 = tf_copy(&u), u4 = tf_copy(&u);
	CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u), tu_field_vec(&m), tu_field_vec(&v), &o, &err), &err,
		 "warp_step %lldx%lldx%lld compose %d pad %s, %d thr", (long long)nx, (long long)ny, (long long)nz,
		 compose, pad == FFDP_PAD_ZERO ? "zero" : "border", threads);
	double e = field_err(&u, ref);
	CHECK(e < 1e-5, "  %s matches the double reference (rel err %.2e)",
	      compose ? "in-place u <- delta + u o (Id + C delta)" : "u <- u + delta", e);
	if (compose) {
		o.max_norm = mn;
		ffdp_status s = ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
		int same = s == FFDP_OK;
		for (int c = 0; c < u.nc; c++)
			same &= memcmp(u.c[c], u2.c[c], (size_t)u.nv * sizeof(float)) == 0;
		CHECK(same, "  with the max_norm hint the result is bit-identical");
		o.max_norm = 0;
		ffdp_cpu_force_scalar = 1;
		s = ffdp_op_warp_step(be, tu_field_vec(&u3), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
		ffdp_cpu_force_scalar = 0;
		same = s == FFDP_OK;
		for (int c = 0; c < u.nc; c++)
			same &= memcmp(u.c[c], u3.c[c], (size_t)u.nv * sizeof(float)) == 0;
		CHECK(same, "  the scalar path gives the same bits (AVX2 %s)", ffdp_cpu_use_avx2() ? "on" : "absent");
		omp_set_num_threads(threads % 4 + 1); /* other slabs, other halos */
		s = ffdp_op_warp_step(be, tu_field_vec(&u4), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
		omp_set_num_threads(threads);
		same = s == FFDP_OK;
		for (int c = 0; c < u.nc; c++)
			same &= memcmp(u.c[c], u4.c[c], (size_t)u.nv * sizeof(float)) == 0;
		CHECK(same, "  %d threads give the same bits", threads % 4 + 1);
	}
	/* out of place, on a fresh state: the in-place bits, u kept as it was */
	tfield src = tu_field_new(nx, ny, nz), out = tu_field_new(nx, ny, nz);
	make_state(be, rng, &src, &m, &v, t); /* fresh u, m, v */
	tfield keep = tf_copy(&src), inpl = tf_copy(&src);
	ffdp_vec ov = tu_field_vec(&out);
	o.max_norm = 0, o.out = &ov;
	ffdp_status so = ffdp_op_warp_step(be, tu_field_vec(&src), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
	o.out = NULL;
	ffdp_status si = ffdp_op_warp_step(be, tu_field_vec(&inpl), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
	int same = so == FFDP_OK && si == FFDP_OK, kept = 1;
	for (int c = 0; c < u.nc; c++) {
		same &= memcmp(out.c[c], inpl.c[c], (size_t)u.nv * sizeof(float)) == 0;
		kept &= memcmp(src.c[c], keep.c[c], (size_t)u.nv * sizeof(float)) == 0;
	}
	CHECK(same && kept, "  out of place: the in-place bits (%s), u untouched (%s)", same ? "yes" : "no",
	      kept ? "yes" : "no");
	ffdp_vec alias = tu_field_vec(&src);
	o.out = &alias;
	CHECK(ffdp_op_warp_step(be, tu_field_vec(&src), tu_field_vec(&m), tu_field_vec(&v), &o, &err) == FFDP_ERR_ARG,
	      "  out = u is refused (%s)", err.msg);
	o.out = NULL;
	tu_field_free(&src), tu_field_free(&out), tu_field_free(&keep), tu_field_free(&inpl);
	for (int c = 0; c < u.nc; c++)
		free(ref[c]);
	tu_field_free(&u), tu_field_free(&u2), tu_field_free(&u3), tu_field_free(&u4), tu_field_free(&m);
	tu_field_free(&v);
	omp_set_num_threads(2);
}

/* delta = a uniform shift of -1.7 voxels along the slice axis: every voxel
 * reads two old slices back, the ring's worst case.  A max_norm hint that
 * is too small must then be reported. */
/* Steps under a voxel along every index axis (oblique C): every group of 8
 * takes the AVX2 stencil, the row ends, the first and last rows and slices
 * (the pads' taps) included; rows of 8 and 9 voxels, one-row boxes. */
static void test_warp_step_faces(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, ffdp_pad pad,
				 int threads)
{
	ffdp_error err = {0};
	omp_set_num_threads(threads);
	tfield u = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	double mn = make_state(be, rng, &u, &m, &v, 5);
	ffdp_warp_step_opts o = {{5, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL}, 0, 1, {0}, pad, 0, NULL};
	random_C(rng, 3, o.C);
	double cn = 0; /* |C step d|_inf <= cn |step| max_norm < 0.95 */
	for (int a = 0; a < 3; a++)
		cn = fmax(cn, fabs(o.C[3 * a]) + fabs(o.C[3 * a + 1]) + fabs(o.C[3 * a + 2]));
	o.step = -0.95 / (cn * mn);
	double *ref[3];
	for (int c = 0; c < 3; c++)
		ref[c] = malloc((size_t)u.nv * sizeof(double));
	ref_warp_step(&u, &m, &v, &o, ref);
	tfield u2 = tf_copy(&u);
	CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u), tu_field_vec(&m), tu_field_vec(&v), &o, &err), &err,
		 "warp_step %lldx%lldx%lld, steps under a voxel, pad %s, %d thr", (long long)nx, (long long)ny,
		 (long long)nz, pad == FFDP_PAD_ZERO ? "zero" : "border", threads);
	double e = field_err(&u, ref);
	CHECK(e < 1e-5, "  matches the double reference (rel err %.2e)", e);
	ffdp_cpu_force_scalar = 1;
	ffdp_status s = ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
	ffdp_cpu_force_scalar = 0;
	int same = s == FFDP_OK;
	for (int c = 0; c < 3; c++)
		same &= memcmp(u.c[c], u2.c[c], (size_t)u.nv * sizeof(float)) == 0;
	CHECK(same, "  the scalar path gives the same bits (AVX2 %s)", ffdp_cpu_use_avx2() ? "on" : "absent");
	for (int c = 0; c < 3; c++)
		free(ref[c]);
	tu_field_free(&u), tu_field_free(&u2), tu_field_free(&m), tu_field_free(&v);
}

static void test_backward_shift(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, int bad_hint)
{
	ffdp_error err = {0};
	tfield u = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	int sa = u.nc - 1;
	for (int c = 0; c < u.nc; c++) {
		tu_fill_smooth(rng, u.c[c], u.n, 0.0);
		for (int64_t i = 0; i < u.nv; i++) {
			m.c[c][i] = c == sa ? 0.1f : 0.0f;
			v.c[c][i] = 0.01f;
		}
	}
	ffdp_warp_step_opts o = {{1, 0.9, 0.99, 0.0, FFDP_MOMENTS_F32, 0, NULL, NULL}, 0, 1, {0}, FFDP_PAD_BORDER, 0, NULL};
	double sp[3] = {0.8, 1.1, 1.3};
	for (int a = 0; a < 3; a++)
		o.C[4 * a] = 1.0 / sp[a];
	/* d = (0.1/0.1)/sqrt(0.01/0.01) = 1 along sa; delta = step mm = -1.7 voxels */
	o.step = -1.7 * sp[sa];
	double *ref[3] = {NULL, NULL, NULL};
	for (int c = 0; c < u.nc; c++)
		ref[c] = malloc((size_t)u.nv * sizeof(double));
	ref_warp_step(&u, &m, &v, &o, ref);
	tfield u2 = tf_copy(&u), u3 = tf_copy(&u);
	CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u), tu_field_vec(&m), tu_field_vec(&v), &o, &err), &err,
		 "warp_step, uniform backward shift of 1.7 voxels along %c (%lldx%lldx%lld)", "xyz"[sa],
		 (long long)nx, (long long)ny, (long long)nz);
	double e = field_err(&u, ref);
	CHECK(e < 1e-5, "  matches the reference (rel err %.2e)", e);
	o.max_norm = 1.0; /* the truth */
	ffdp_status st = ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&m), tu_field_vec(&v), &o, &err);
	int same = st == FFDP_OK;
	for (int c = 0; c < u.nc; c++)
		same &= memcmp(u.c[c], u2.c[c], (size_t)u.nv * sizeof(float)) == 0;
	CHECK(same, "  the exact max_norm hint gives the same field");
	if (bad_hint) {
		o.max_norm = 0.5;
		CHECK(ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&m), tu_field_vec(&v), &o, &err) == FFDP_ERR_ARG,
		      "  a max_norm hint below the truth is reported: %s", err.msg);
	}
	for (int c = 0; c < u.nc; c++)
		free(ref[c]);
	tu_field_free(&u), tu_field_free(&u2), tu_field_free(&u3), tu_field_free(&m), tu_field_free(&v);
}

static void test_ring_memory(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	int64_t nx = 136, ny = 121, nz = 136;
	tfield u = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	double mn = make_state(be, rng, &u, &m, &v, 3);
	ffdp_warp_step_opts o = {{3, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL}, 0, 1, {0}, FFDP_PAD_ZERO, 0, NULL};
	double hmin = random_C(rng, 3, o.C);
	o.step = -1.5 * hmin / mn;
	size_t field = (size_t)u.nv * 3 * sizeof(float), plane = (size_t)(nx * ny) * 3 * sizeof(float);
	for (int hint = 0; hint <= 1; hint++) {
		o.max_norm = hint ? mn : 0.0;
		alloc_count_reset();
		CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u), tu_field_vec(&m), tu_field_vec(&v), &o, &err), &err,
			 "warp_step on 136x121x40, max_norm hint %s", hint ? "given" : "absent");
		size_t extra = alloc_count_peak_extra();
		/* reach <= 2: per thread a ring of 3 planes and halos of 2 + 3,
		 * each slot of a component 80 floats longer (cache colouring) */
		const size_t slot = plane + 3 * 80 * sizeof(float);
		CHECK(extra > 0 && extra <= 2 * 8 * slot + 4096 && extra < field / 8,
		      "  old values %zu B = %.1f planes (2 threads, reach <= 2: at most 16) of the 3-component field "
		      "(%zu B)",
		      extra, (double)extra / (double)plane, field);
	}
	tu_field_free(&u), tu_field_free(&m), tu_field_free(&v);
}

/* The step's scalars in backend memory (ffdp_step_state): adam_moments
 * records max |d| as the host argument has it, warp_step scales its step
 * by it exactly as a caller does on the host, a non-finite gradient and a
 * reach beyond the ring become fault bits instead of errors. */
static void test_state(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	const int64_t nx = 17, ny = 23, nz = 11;
	tfield u = tu_field_new(nx, ny, nz), m = tu_field_new(nx, ny, nz), v = tu_field_new(nx, ny, nz);
	tfield g = tu_field_new(nx, ny, nz);
	for (int c = 0; c < 3; c++) {
		tu_fill_smooth(rng, u.c[c], u.n, 0.01);
		tu_fill_uniform(rng, g.c[c], g.nv, -1.0, 1.0);
		tu_fill_uniform(rng, v.c[c], g.nv, 0.01, 0.2);
	}
	tfield m2 = tf_copy(&m), v2 = tf_copy(&v), u2 = tf_copy(&u);
	ffdp_step_state st = {0, 0};
	ffdp_adam_opts o = {4, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL}, os = o;
	os.state = &st;
	double mn = 0;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m), tu_field_vec(&v), &o, &mn, &err) ||
			 ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m2), tu_field_vec(&v2), &os, NULL, &err),
		 &err, "adam_moments with and without a state");
	CHECK(st.max_norm == mn && st.fault == 0, "  the state holds max_norm %.9g (host %.9g), no fault", st.max_norm, mn);
	ffdp_warp_step_opts w = {o, -2.0, 1, {0}, FFDP_PAD_BORDER, 0, NULL};
	double hmin = random_C(rng, 3, w.C);
	w.step = -1.2 * hmin;
	ffdp_warp_step_opts ws = w;
	ws.adam.state = &st;
	w.step = w.step / fmax(1.0, mn), w.max_norm = fmax(1.0, mn);
	CHECK_OK(ffdp_op_warp_step(be, tu_field_vec(&u), tu_field_vec(&m), tu_field_vec(&v), &w, &err) ||
			 ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&m), tu_field_vec(&v), &ws, &err),
		 &err, "warp_step, step scaled on the host and by the state");
	int same = 1;
	for (int c = 0; c < 3; c++)
		same &= memcmp(u.c[c], u2.c[c], (size_t)u.nv * sizeof(float)) == 0;
	CHECK(same && st.fault == 0, "  the same bits, no fault");
	/* m ten times larger (|d| up to several) under a state that says 1:
	 * the ring, sized for |step|, is too short */
	for (int c = 0; c < 3; c++)
		for (int64_t i = 0; i < m.nv; i++)
			m.c[c][i] *= 10.0f;
	ffdp_step_state low = {1.0, 0};
	ws.adam.state = &low;
	ws.step = -3.0 * hmin;
	CHECK(ffdp_op_warp_step(be, tu_field_vec(&u2), tu_field_vec(&m), tu_field_vec(&v), &ws, &err) == FFDP_OK &&
		      low.fault == 2,
	      "  a max_norm below the truth is recorded as fault 2 (%d), not an error", low.fault);
	g.c[2][40] = NAN;
	ffdp_step_state nan = {0, 0};
	os.state = &nan;
	CHECK_OK(ffdp_op_adam_moments(be, tu_field_vec(&g), tu_field_vec(&m2), tu_field_vec(&v2), &os, NULL, &err), &err,
		 "adam_moments, a NaN gradient voxel, with a state");
	CHECK(isnan(nan.max_norm) && nan.fault == 1, "  max_norm NaN and fault 1 (%d)", nan.fault);
	tu_field_free(&u), tu_field_free(&m), tu_field_free(&v), tu_field_free(&g);
	tu_field_free(&m2), tu_field_free(&v2), tu_field_free(&u2);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(77);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (!be)
		return check_done();
	for (int t = 1; t <= 7; t += 6) {
		test_moments(be, &rng, 17, 23, 11, t);
		test_moments(be, &rng, 31, 19, 1, t);
	}
	test_moments_edges(be);
	test_moments_smoothed(be, &rng, 17, 23, 11);
	test_moments_smoothed(be, &rng, 31, 19, 1);
	for (int th = 1; th <= 3; th++)
		for (int pad = 0; pad <= 1; pad++) {
			test_warp_step(be, &rng, 17, 23, 11, 1, (ffdp_pad)pad, th);
			test_warp_step(be, &rng, 31, 19, 1, 1, (ffdp_pad)pad, th);
		}
	test_warp_step(be, &rng, 9, 14, 3, 1, FFDP_PAD_ZERO, 2);
	/* several blocks of several slices each (slices of < 16384 voxels) */
	test_warp_step(be, &rng, 61, 53, 29, 1, FFDP_PAD_BORDER, 2);
	test_warp_step(be, &rng, 301, 203, 1, 1, FFDP_PAD_ZERO, 3);
	test_warp_step(be, &rng, 17, 23, 11, 0, FFDP_PAD_ZERO, 2);
	test_warp_step(be, &rng, 31, 19, 1, 0, FFDP_PAD_BORDER, 2);
	const int64_t fs[5][3] = {{8, 5, 4}, {9, 1, 3}, {17, 6, 2}, {24, 9, 5}, {43, 7, 3}};
	for (int k = 0; k < 5; k++)
		for (int pad = 0; pad <= 1; pad++)
			test_warp_step_faces(be, &rng, fs[k][0], fs[k][1], fs[k][2], (ffdp_pad)pad, 1 + (k & 1));
	test_backward_shift(be, &rng, 13, 11, 9, 0);
	test_backward_shift(be, &rng, 15, 12, 1, 0);
	test_backward_shift(be, &rng, 131, 127, 7, 1);
	test_backward_shift(be, &rng, 16411, 5, 1, 1);
	test_ring_memory(be, &rng);
	test_state(be, &rng);
	ffdp_backend_close(be);
	return check_done();
}
