/* Field inverse step (ops.h, "field inverse") against a double-precision
 * reference written here: oblique anisotropic grids, odd sizes, 3-D and
 * 2-D, a shard of w with a halo against the whole grid; then convergence:
 * a warp that expands locally by a factor ~3 (|grad w| ~ 2) is inverted by
 * iterated steps to a residual far below a voxel, where the plain fixed
 * point w_inv <- -w(z + w_inv) does not converge. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static ffdp_backend *be;
static ffdp_error err;

/* A random oblique grid's phys->index linear part (2-D: in-plane rotation,
 * junk in the unused z row and column, which must be ignored). */
static void make_C(tu_rng *r, const int64_t n[3], double C[9])
{
	ffdp_grid g = tu_random_grid(r, n[0], n[1], n[2]);
	ffdp_mat4 P = ffdp_grid_phys_to_index(&g);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			C[3 * i + k] = P.m[4 * i + k];
	if (n[2] == 1) {
		double a = 6.283185307179586 * tu_uniform(r), s0 = 0.7 + tu_uniform(r), s1 = 0.7 + tu_uniform(r);
		double R[9] = {cos(a) / s0, sin(a) / s0, 7, -sin(a) / s1, cos(a) / s1, 7, 7, 7, 7};
		memcpy(C, R, sizeof(R));
	}
}

/* Smooth random field, each component scaled to [-amp, amp] mm. */
static void fill(tu_rng *r, tfield *f, double amp)
{
	for (int c = 0; c < f->nc; c++) {
		float *x = f->c[c], lo = 1e30f, hi = -1e30f;
		tu_fill_smooth(r, x, f->n, 0.0);
		for (int64_t j = 0; j < f->nv; j++)
			lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
		for (int64_t j = 0; j < f->nv; j++)
			x[j] = (float)(amp * (2.0 * (x[j] - lo) / (hi - lo) - 1.0));
	}
}

/* ---- reference ------------------------------------------------------------ */

/* Border-clamped trilinear value and index gradient of plane u (box of size
 * n at global off) at global continuous index q; at a knot the right cell. */
static double ref_interp(const float *u, const int64_t n[3], const int64_t off[3], int na, const double q[3],
			 double g[3])
{
	double t[3] = {0, 0, 0}, f[3] = {0, 0, 0}, in[3] = {1, 1, 1};
	int64_t i0[3] = {0, 0, 0}, i1[3] = {0, 0, 0};
	for (int a = 0; a < na; a++) {
		double lo = 0.0, hi = (double)(n[a] - 1), p = q[a] - (double)off[a];
		in[a] = p >= lo && p <= hi;
		p = fmin(fmax(p, lo), hi);
		i0[a] = (int64_t)floor(p);
		i1[a] = i0[a] + (i0[a] < n[a] - 1);
		f[a] = p - floor(p);
		t[a] = p;
	}
	(void)t;
	double v = 0;
	g[0] = g[1] = g[2] = 0;
	for (int k = 0; k < (1 << na); k++) {
		double w = 1, dw[3] = {1, 1, 1};
		int64_t c[3] = {0, 0, 0};
		for (int a = 0; a < na; a++) {
			int hi = (k >> a) & 1;
			c[a] = hi ? i1[a] : i0[a];
			double wa = hi ? f[a] : 1 - f[a], da = (hi ? 1.0 : -1.0) * in[a];
			for (int b = 0; b < na; b++)
				dw[b] *= b == a ? da : wa;
			w *= wa;
		}
		double val = u[(c[2] * n[1] + c[1]) * n[0] + c[0]];
		v += w * val;
		for (int b = 0; b < na; b++)
			g[b] += dw[b] * val;
	}
	return v;
}

/* Solve J x = r (na x na) by Gaussian elimination with partial pivoting;
 * returns the determinant. */
static double ref_solve(double J[3][3], const double r[3], int na, double x[3])
{
	double A[3][4], det = 1;
	for (int i = 0; i < na; i++) {
		for (int j = 0; j < na; j++)
			A[i][j] = J[i][j];
		A[i][na] = r[i];
	}
	for (int c = 0; c < na; c++) {
		int p = c;
		for (int i = c + 1; i < na; i++)
			if (fabs(A[i][c]) > fabs(A[p][c]))
				p = i;
		if (p != c) {
			for (int j = 0; j <= na; j++) {
				double t = A[c][j];
				A[c][j] = A[p][j], A[p][j] = t;
			}
			det = -det;
		}
		det *= A[c][c];
		if (A[c][c] == 0)
			return 0;
		for (int i = c + 1; i < na; i++) {
			double m = A[i][c] / A[c][c];
			for (int j = c; j <= na; j++)
				A[i][j] -= m * A[c][j];
		}
	}
	for (int i = na - 1; i >= 0; i--) {
		double s = A[i][na];
		for (int j = i + 1; j < na; j++)
			s -= A[i][j] * x[j];
		x[i] = s / A[i][i];
	}
	return det;
}

/* One step from x at the voxel of global index q0; returns |r|_inf. */
static double ref_step_at(const tfield *w, const int64_t wlo[3], int na, const double q0[3], const double C[9],
			  double x[3])
{
	double q[3] = {q0[0], q0[1], q0[2]};
	for (int a = 0; a < na; a++)
		for (int b = 0; b < na; b++)
			q[a] += C[3 * a + b] * x[b];
	double r[3] = {0, 0, 0}, J[3][3], d[3] = {0, 0, 0}, worst = 0;
	for (int c = 0; c < na; c++) {
		double g[3];
		r[c] = x[c] + ref_interp(w->c[c], w->n, wlo, na, q, g);
		worst = fmax(worst, fabs(r[c]));
		for (int b = 0; b < na; b++) {
			J[c][b] = c == b;
			for (int k = 0; k < na; k++)
				J[c][b] += g[k] * C[3 * k + b];
		}
	}
	double det = ref_solve(J, r, na, d);
	if (!(det > 1e-6))
		memcpy(d, r, sizeof(d));
	double s = 0;
	for (int a = 0; a < na; a++) {
		double t = 0;
		for (int b = 0; b < na; b++)
			t += C[3 * a + b] * d[b];
		s = fmax(s, fabs(t));
	}
	for (int a = 0; a < na; a++)
		x[a] -= s > 1 ? d[a] / s : d[a];
	return worst;
}

/* iters steps at voxel j of v's box (global index lo + j), the iterate
 * kept in double; returns the last step's |r|_inf. */
static double ref_step(const tfield *w, const int64_t wlo[3], const tfield *v, const int64_t lo[3],
		       const double C[9], int64_t j, int iters, double out[3])
{
	const int64_t x = j % v->n[0], y = j / v->n[0] % v->n[1], z = j / (v->n[0] * v->n[1]);
	const double q0[3] = {(double)(lo[0] + x), (double)(lo[1] + y), (double)(lo[2] + z)};
	double worst = 0;
	out[0] = out[1] = out[2] = 0;
	for (int a = 0; a < v->nc; a++)
		out[a] = v->c[a][j];
	for (int k = 0; k < iters; k++)
		worst = ref_step_at(w, wlo, v->nc, q0, C, out);
	return worst;
}

/* ---- tests ------------------------------------------------------------------- */

/* iters steps (no tolerance) against the reference; then a shard of w
 * with a halo of iters + 1 planes against the whole grid. */
static void test_step(tu_rng *r, const int64_t n[3], double amp, int iters)
{
	double C[9];
	make_C(r, n, C);
	tfield w = tu_field_new(n[0], n[1], n[2]), v = tu_field_new(n[0], n[1], n[2]);
	tfield o = tu_field_new(n[0], n[1], n[2]);
	fill(r, &w, amp);
	fill(r, &v, amp);
	ffdp_invert_args a;
	memset(&a, 0, sizeof(a));
	a.w = tu_field_vec(&w), a.v = tu_field_vec(&v), a.out = tu_field_vec(&o);
	a.iters = iters;
	memcpy(a.C, C, sizeof(C));
	double resid = -1;
	CHECK_OK(ffdp_op_invert_step(be, &a, &resid, &err), &err, "%lldx%lldx%lld, %d step(s): invert runs",
		 (long long)n[0], (long long)n[1], (long long)n[2], iters);
	double worst = 0, bad = 0, scale = 0;
	for (int64_t j = 0; j < v.nv; j++) {
		double ref[3];
		worst = fmax(worst, ref_step(&w, a.w_lo, &v, a.lo, C, j, iters, ref));
		for (int c = 0; c < v.nc; c++)
			bad = fmax(bad, fabs(o.c[c][j] - ref[c])), scale = fmax(scale, fabs(ref[c]));
	}
	CHECK(bad <= 1e-5 * scale, "%lldx%lldx%lld, |w| <= %.1f mm, %d step(s): matches the double reference (max err "
	      "%.2e, scale %.2f)", (long long)n[0], (long long)n[1], (long long)n[2], amp, iters, bad, scale);
	/* once converged the residual is w's float rounding: absolute */
	CHECK(fabs(resid - worst) <= 1e-5 * worst + 1e-6 * amp, "residual %.3g matches the reference's %.3g", resid,
	      worst);

	/* a shard: planes [z0, z1) of v, w on [z0 - h, z1 + h), must give the same bits */
	if (n[2] > 6) {
		int64_t z0 = 2, z1 = n[2] - 3, h = iters + 1, plane = n[0] * n[1];
		ffdp_invert_args s = a;
		tfield o2 = tu_field_new(n[0], n[1], n[2]);
		s.lo[2] = z0, s.w_lo[2] = z0 - h;
		s.v.n[2] = s.out.n[2] = z1 - z0, s.w.n[2] = z1 - z0 + 2 * h;
		if (s.w_lo[2] < 0) /* the volume's own face: the shard's too */
			s.w.n[2] += s.w_lo[2], s.w_lo[2] = 0;
		if (s.w_lo[2] + s.w.n[2] > n[2])
			s.w.n[2] = n[2] - s.w_lo[2];
		for (int c = 0; c < v.nc; c++) {
			s.v.c[c] = v.c[c] + z0 * plane, s.out.c[c] = o2.c[c] + z0 * plane;
			s.w.c[c] = w.c[c] + s.w_lo[2] * plane;
		}
		double r2;
		CHECK_OK(ffdp_op_invert_step(be, &s, &r2, &err), &err, "shard step runs");
		/* only voxels whose points stay inside the halo are defined
		 * alike: each step moves a point by at most one voxel */
		int64_t same = 1, tested = 0;
		for (int64_t z = z0; z < z1; z++)
			for (int64_t i = 0; i < plane; i++) {
				int64_t j = z * plane + i;
				double q = (double)z;
				for (int b = 0; b < v.nc; b++)
					q += C[6 + b] * v.c[b][j];
				if ((s.w_lo[2] > 0 && q < (double)(s.w_lo[2] + iters)) ||
				    (s.w_lo[2] + s.w.n[2] < n[2] && q > (double)(s.w_lo[2] + s.w.n[2] - 1 - iters)))
					continue;
				tested++;
				for (int c = 0; c < v.nc; c++)
					same &= o2.c[c][j] == o.c[c][j];
			}
		CHECK(same && tested > plane, "shard with halo %lld gives the whole grid's bits (%lld voxels)",
		      (long long)h, (long long)tested);
		tu_field_free(&o2);
	}
	tu_field_free(&w), tu_field_free(&v), tu_field_free(&o);
}

/* A tolerance stops each voxel where it is met: one call of many steps
 * leaves every voxel's residual within it (checked by a plain one-step
 * call on the result). */
static void test_tolerance(tu_rng *r, const int64_t n[3])
{
	double C[9];
	make_C(r, n, C);
	tfield w = tu_field_new(n[0], n[1], n[2]), v = tu_field_new(n[0], n[1], n[2]);
	tfield o = tu_field_new(n[0], n[1], n[2]), o2 = tu_field_new(n[0], n[1], n[2]);
	fill(r, &w, 1.5);
	for (int c = 0; c < w.nc; c++)
		for (int64_t j = 0; j < w.nv; j++)
			v.c[c][j] = -w.c[c][j];
	const double tol = 1e-3;
	ffdp_invert_args a;
	memset(&a, 0, sizeof(a));
	a.w = tu_field_vec(&w), a.v = tu_field_vec(&v), a.out = tu_field_vec(&o);
	a.iters = 30, a.tol = tol;
	memcpy(a.C, C, sizeof(C));
	double r0 = -1, r1 = -1, r2 = -1;
	CHECK_OK(ffdp_op_invert_step(be, &a, &r1, &err), &err, "tolerance: 30 steps run");
	ffdp_invert_args b = a;
	b.iters = 1, b.tol = 0, b.v = a.out, b.out = tu_field_vec(&o2);
	CHECK_OK(ffdp_op_invert_step(be, &b, &r2, &err), &err, "tolerance: the check runs");
	b.v = a.v;
	CHECK_OK(ffdp_op_invert_step(be, &b, &r0, &err), &err, "tolerance: the start's residual");
	/* the result's residual is the stopped iterate's, rounded to float */
	CHECK(r1 <= tol && r2 <= tol + 1e-5 && r0 > 10 * tol, "%s: every voxel within %.0e mm (%.2e, then %.2e; "
	      "start %.3f)", n[2] == 1 ? "2-D" : "3-D", tol, r1, r2, r0);
	tu_field_free(&w), tu_field_free(&v), tu_field_free(&o), tu_field_free(&o2);
}

/* w(x) = a (x - c) exp(-|x - c|^2 / (2 s^2)) in index units, per axis
 * scaled by the spacing: a diffeomorphism for a > -1 that expands by 1 + a
 * at c.  Returns max |r| after `iters` Newton steps, and after as many
 * plain fixed-point steps. */
static void test_converge(const int64_t n[3], double amp)
{
	const double sp[3] = {1.2, 0.9, 1.5}, s = 4.0;
	double C[9] = {1 / sp[0], 0, 0, 0, 1 / sp[1], 0, 0, 0, 1 / sp[2]};
	if (n[2] == 1)
		C[8] = 7.0;
	tfield w = tu_field_new(n[0], n[1], n[2]), v = tu_field_new(n[0], n[1], n[2]), t = tu_field_new(n[0], n[1], n[2]);
	double c[3] = {(n[0] - 1) / 2.0 + 0.3, (n[1] - 1) / 2.0 - 0.2, (n[2] - 1) / 2.0 + 0.1};
	for (int64_t j = 0; j < w.nv; j++) {
		double x[3] = {(double)(j % n[0]), (double)(j / n[0] % n[1]), (double)(j / (n[0] * n[1]))}, d2 = 0;
		for (int a = 0; a < w.nc; a++)
			d2 += (x[a] - c[a]) * (x[a] - c[a]);
		for (int a = 0; a < w.nc; a++)
			w.c[a][j] = (float)(amp * (x[a] - c[a]) * exp(-d2 / (2 * s * s)) * sp[a]);
	}
	double res_newton = 0, res_fixed = 0;
	for (int method = 0; method < 2; method++) {
		for (int a = 0; a < w.nc; a++)
			for (int64_t j = 0; j < w.nv; j++)
				v.c[a][j] = -w.c[a][j];
		double resid = INFINITY;
		for (int it = 0; it < 40; it++) {
			ffdp_invert_args a;
			memset(&a, 0, sizeof(a));
			a.w = tu_field_vec(&w), a.v = tu_field_vec(&v), a.out = tu_field_vec(&t);
			memcpy(a.C, C, sizeof(C));
			if (ffdp_op_invert_step(be, &a, &resid, &err))
				break;
			if (method == 1) { /* the plain fixed point: out = -w(p) = v - r */
				ffdp_sample_args sa;
				memset(&sa, 0, sizeof(sa));
				ffdp_vec vv = tu_field_vec(&v);
				sa.W[0] = sa.W[5] = sa.W[10] = 1;
				memcpy(sa.B, C, sizeof(C));
				sa.u = &vv;
				sa.pad = FFDP_PAD_BORDER;
				for (int k = 0; k < w.nc; k++) {
					sa.moving = (ffdp_img){w.c[k], {n[0], n[1], n[2]}};
					sa.out = (ffdp_img){t.c[k], {n[0], n[1], n[2]}};
					ffdp_op_sample(be, &sa, &err);
					for (int64_t j = 0; j < w.nv; j++)
						t.c[k][j] = -t.c[k][j];
				}
			}
			tfield sw = v;
			v = t, t = sw;
		}
		*(method ? &res_fixed : &res_newton) = resid;
	}
	CHECK(res_newton < 1e-4, "%s, expansion %.1fx at the centre: Newton residual %.2e mm < 1e-4 after 40 steps",
	      n[2] == 1 ? "2-D" : "3-D", 1 + amp, res_newton);
	CHECK(res_fixed > 1e-2, "the plain fixed point does not converge there (residual %.3f mm)", res_fixed);
	tu_field_free(&w), tu_field_free(&v), tu_field_free(&t);
}

/* The AVX2 path (3-D, groups of 8 voxels whose cells lie inside w's box)
 * against the forced scalar path: the same bits and residual, on rough
 * random fields (folded voxels where det J <= 1e-6, capped steps), then a
 * NaN in w, a row length that leaves a tail, and a shard of w at an offset;
 * with an oblique C and with a diagonal one (the AVX2 path's short forms,
 * and an infinite x that sends its group back to the full ones). */
static void test_simd_bits(tu_rng *r)
{
	if (!ffdp_cpu_use_avx2()) {
		CHECK(1, "simd: no AVX2+FMA on this CPU, scalar path only");
		return;
	}
	const int64_t n[3] = {45, 21, 19};
	double C[9], Cd[9] = {1 / 1.1, 0, 0, 0, -1 / 0.9, 0, 0, 0, 1 / 1.3};
	make_C(r, n, C);
	tfield w = tu_field_new(n[0], n[1], n[2]), v = tu_field_new(n[0], n[1], n[2]);
	tfield o1 = tu_field_new(n[0], n[1], n[2]), o2 = tu_field_new(n[0], n[1], n[2]);
	for (int c = 0; c < 3; c++) {
		tu_fill_uniform(r, w.c[c], w.nv, -1.5, 1.5);
		tu_fill_uniform(r, v.c[c], v.nv, -2.0, 2.0);
	}
	/* one step; then several with a tolerance that stops lanes of a
	 * group at different steps */
	for (int run = 0; run < 8; run++) {
		const int shard = run & 1, many = run >> 1 & 1, diag = run >> 2;
		float *nan_at = &w.c[1][(9 * n[1] + 10) * n[0] + 20], keep = *nan_at;
		float *inf_at = &v.c[2][(12 * n[1] + 7) * n[0] + 19], keepv = *inf_at;
		if (shard)
			*nan_at = NAN;
		if (diag && shard)
			*inf_at = -INFINITY;
		ffdp_invert_args a;
		memset(&a, 0, sizeof(a));
		a.w = tu_field_vec(&w), a.v = tu_field_vec(&v), a.out = tu_field_vec(&o1);
		a.iters = many ? 6 : 1, a.tol = many ? 0.3 : 0.0;
		memcpy(a.C, diag ? Cd : C, sizeof(C));
		if (shard) { /* w's box at global z 3, v's at 5 (w planes 0..1 unused) */
			int64_t plane = n[0] * n[1];
			a.w_lo[2] = 3, a.lo[2] = 5;
			a.v.n[2] = a.out.n[2] = n[2] - 2;
			for (int c = 0; c < 3; c++)
				a.v.c[c] += 2 * plane, a.out.c[c] += 2 * plane;
		}
		double r1 = -1, r2 = -2;
		ffdp_status s1 = ffdp_op_invert_step(be, &a, &r1, &err);
		ffdp_cpu_force_scalar = 1;
		for (int c = 0; c < 3; c++)
			a.out.c[c] = o2.c[c] + (a.out.c[c] - o1.c[c]);
		ffdp_status s2 = ffdp_op_invert_step(be, &a, &r2, &err);
		ffdp_cpu_force_scalar = 0;
		int same = !s1 && !s2 && (r1 == r2 || (isnan(r1) && isnan(r2)));
		for (int c = 0; c < 3; c++)
			same &= !memcmp(o1.c[c], o2.c[c], (size_t)w.nv * sizeof(float));
		CHECK(same, "simd: invert, %s C, %d step(s)%s: AVX2 = scalar bits (residual %g, %g)",
		      diag ? "diagonal" : "oblique", a.iters,
		      shard ? diag ? ", shard of w with a NaN, an inf in x" : ", shard of w with a NaN" : "", r1, r2);
		*nan_at = keep, *inf_at = keepv;
	}
	tu_field_free(&w), tu_field_free(&v), tu_field_free(&o1), tu_field_free(&o2);
}

int main(void)
{
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "CPU backend");
	tu_rng r = tu_rng_make(20261124);
	const int64_t sizes[][3] = {{17, 23, 11}, {9, 13, 19}, {21, 18, 1}};
	for (int k = 0; k < 3; k++) {
		test_step(&r, sizes[k], 0.8, 1);
		test_step(&r, sizes[k], 4.0, 1); /* large: many points clamp at the border and steps get capped */
		test_step(&r, sizes[k], 0.8, 4);
		test_step(&r, sizes[k], 4.0, 3);
		test_tolerance(&r, sizes[k]);
	}
	const int64_t big[3] = {31, 29, 27}, flat[3] = {41, 37, 1};
	test_converge(big, 2.0);
	test_converge(flat, 2.0);
	test_simd_bits(&r);
	ffdp_backend_close(be);
	return check_done();
}
