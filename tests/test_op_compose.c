/* Composition out = d + u(i + C d) against a double-precision reference
 * written here: oblique anisotropic grids, zero and border pad, 3-D and 2-D,
 * a shard of u with a halo (u_lo != 0) against the whole grid, in place
 * (out aliases d), and two semantic checks: d = 0 gives u, and a
 * translation shifts u; the AVX2 stencil path gives the scalar path's bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static ffdp_backend *be;
static ffdp_error err;
static const char *pad_name[] = {"zero", "border"};

static int64_t nvox(const int64_t n[3])
{
	return n[0] * n[1] * n[2];
}

static ffdp_vec vec_alloc(const int64_t n[3])
{
	ffdp_vec v = {{NULL, NULL, NULL}, {n[0], n[1], n[2]}, n[2] == 1 ? 2 : 3};
	for (int c = 0; c < v.ncomp; c++)
		v.c[c] = calloc((size_t)nvox(n), sizeof(float));
	return v;
}

static void vec_free(ffdp_vec *v)
{
	for (int c = 0; c < 3; c++)
		free(v->c[c]), v->c[c] = NULL;
}

/* Smooth random field, each component rescaled to [-amp, amp] mm. */
static void vec_fill(tu_rng *r, ffdp_vec *v, double amp)
{
	int64_t n = nvox(v->n);
	for (int c = 0; c < v->ncomp; c++) {
		float *x = v->c[c], lo = 1e30f, hi = -1e30f;
		tu_fill_smooth(r, x, v->n, 0.0);
		for (int64_t j = 0; j < n; j++)
			lo = fminf(lo, x[j]), hi = fmaxf(hi, x[j]);
		for (int64_t j = 0; j < n; j++)
			x[j] = (float)(amp * (2.0 * (x[j] - lo) / (hi - lo) - 1.0));
	}
}

/* An oblique anisotropic grid; 2-D: rotated in plane. C = its phys->index
 * linear part, with junk in the z row and column in 2-D (must be ignored). */
static void make_C(tu_rng *r, const int64_t n[3], double C[9])
{
	ffdp_grid g = tu_random_grid(r, n[0], n[1], n[2]);
	if (n[2] == 1) {
		double a = 6.283185307179586 * tu_uniform(r), R[9] = {cos(a), -sin(a), 0, sin(a), cos(a), 0, 0, 0, 1};
		memcpy(g.dir, R, sizeof(R));
	}
	ffdp_mat4 P = ffdp_grid_phys_to_index(&g);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			C[3 * i + k] = P.m[4 * i + k];
	if (n[2] == 1)
		C[2] = C[5] = C[6] = C[7] = C[8] = 7.0;
}

/* ---- reference ------------------------------------------------------------------ */

/* Trilinear (bilinear in 2-D) value of plane u (box of size n) at q, box index. */
static double ref_interp(const float *u, const int64_t n[3], const double q[3], ffdp_pad pad)
{
	int na = n[2] == 1 ? 2 : 3;
	double qq[3] = {0, 0, 0}, v = 0;
	for (int a = 0; a < na; a++)
		qq[a] = pad == FFDP_PAD_BORDER ? fmin(fmax(q[a], 0.0), (double)(n[a] - 1)) : q[a];
	for (int k = 0; k < (1 << na); k++) {
		double w = 1;
		int64_t c[3] = {0, 0, 0};
		int inside = 1;
		for (int a = 0; a < na; a++) {
			double b = floor(qq[a]), f = qq[a] - b;
			int bit = (k >> a) & 1;
			c[a] = (int64_t)b + bit;
			w *= bit ? f : 1 - f;
			if (c[a] >= n[a] && pad == FFDP_PAD_BORDER)
				c[a] = n[a] - 1;
			inside &= c[a] >= 0 && c[a] < n[a];
		}
		if (inside)
			v += w * u[(c[2] * n[1] + c[1]) * n[0] + c[0]];
	}
	return v;
}

/* out(j) = d(j) + u(lo + j + C d(j) - u_lo); also the largest |C d| in voxels. */
static void ref_compose(const ffdp_vec *u, const int64_t ulo[3], const ffdp_vec *d, const int64_t lo[3],
			const double C[9], ffdp_pad pad, double *out, double *reach)
{
	int nc = d->ncomp;
	int64_t nd = nvox(d->n);
	*reach = 0;
	for (int64_t j = 0; j < nd; j++) {
		int64_t i[3] = {lo[0] + j % d->n[0], lo[1] + (j / d->n[0]) % d->n[1], lo[2] + j / (d->n[0] * d->n[1])};
		double q[3] = {0, 0, 0};
		for (int k = 0; k < nc; k++) {
			double off = 0;
			for (int c = 0; c < nc; c++)
				off += C[3 * k + c] * d->c[c][j];
			q[k] = (double)(i[k] - ulo[k]) + off;
			*reach = fmax(*reach, fabs(off));
		}
		for (int c = 0; c < nc; c++)
			out[c * nd + j] = d->c[c][j] + ref_interp(u->c[c], u->n, q, pad);
	}
}

static double vec_err(const ffdp_vec *v, const double *ref)
{
	int64_t n = nvox(v->n);
	double e = 0;
	for (int c = 0; c < v->ncomp; c++)
		for (int64_t j = 0; j < n; j++)
			e = fmax(e, fabs(v->c[c][j] - ref[c * n + j]));
	return e / fmax(tu_max_abs(ref, n * v->ncomp), 1e-6);
}

static ffdp_compose_args args(ffdp_vec u, const int64_t ulo[3], ffdp_vec d, const int64_t lo[3],
			      const double C[9], ffdp_pad pad, ffdp_vec out)
{
	ffdp_compose_args a;
	memset(&a, 0, sizeof(a));
	a.u = u, a.d = d, a.out = out, a.pad = pad;
	memcpy(a.u_lo, ulo, sizeof(a.u_lo));
	memcpy(a.lo, lo, sizeof(a.lo));
	memcpy(a.C, C, sizeof(a.C));
	return a;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_reference(tu_rng *r, int d3, ffdp_pad pad)
{
	int64_t n[3] = {17, 23, d3 ? 11 : 1}, z[3] = {0, 0, 0}, nv = nvox(n);
	int nc = d3 ? 3 : 2;
	double C[9], reach;
	make_C(r, n, C);
	ffdp_vec u = vec_alloc(n), d = vec_alloc(n), out = vec_alloc(n);
	vec_fill(r, &u, 3.0);
	vec_fill(r, &d, 1.5);
	double *ref = malloc((size_t)(nc * nv) * sizeof(double));
	ref_compose(&u, z, &d, z, C, pad, ref, &reach);
	ffdp_compose_args a = args(u, z, d, z, C, pad, out);
	CHECK_OK(ffdp_op_compose(be, &a, &err), &err, "compose %dD %s pad (|C d| up to %.2f voxels)", d3 ? 3 : 2,
		 pad_name[pad], reach);
	double e = vec_err(&out, ref);
	CHECK(e < 1e-5 && reach > 1.0, "  vs double reference: max rel err %.2e", e);

	/* in place: out aliases d, same bits as the separate output */
	ffdp_vec dd = vec_alloc(n);
	for (int c = 0; c < nc; c++)
		memcpy(dd.c[c], d.c[c], (size_t)nv * sizeof(float));
	a = args(u, z, dd, z, C, pad, dd);
	ffdp_status s = ffdp_op_compose(be, &a, &err);
	int64_t diff = 0;
	for (int c = 0; c < nc; c++)
		for (int64_t j = 0; j < nv; j++)
			diff += memcmp(&dd.c[c][j], &out.c[c][j], sizeof(float)) != 0;
	CHECK(s == FFDP_OK && diff == 0, "  in place (out aliases d) gives the same bits (%lld differ)",
	      (long long)diff);
	vec_free(&u), vec_free(&d), vec_free(&out), vec_free(&dd);
	free(ref);
}

/* d on a box of the grid, u on that box plus a halo of 4 (clipped at the
 * grid's faces): the same values as composing on the whole grid. */
static void test_shard(tu_rng *r, ffdp_pad pad)
{
	int64_t N[3] = {17, 23, 11}, z[3] = {0, 0, 0}, lo[3] = {6, 7, 5}, n[3] = {8, 10, 4}, h = 4;
	int64_t ulo[3], un[3];
	double C[9], reach;
	make_C(r, N, C);
	ffdp_vec u = vec_alloc(N), d = vec_alloc(N), out = vec_alloc(N);
	vec_fill(r, &u, 3.0);
	vec_fill(r, &d, 1.0);
	ffdp_compose_args a = args(u, z, d, z, C, pad, out);
	ffdp_status s = ffdp_op_compose(be, &a, &err);
	for (int k = 0; k < 3; k++) {
		ulo[k] = lo[k] - h < 0 ? 0 : lo[k] - h;
		un[k] = (lo[k] + n[k] + h > N[k] ? N[k] : lo[k] + n[k] + h) - ulo[k];
	}
	ffdp_vec us = vec_alloc(un), ds = vec_alloc(n), os = vec_alloc(n);
	for (int c = 0; c < 3; c++) {
		for (int64_t j = 0; j < nvox(un); j++) {
			int64_t x = j % un[0], y = (j / un[0]) % un[1], zz = j / (un[0] * un[1]);
			us.c[c][j] = u.c[c][((ulo[2] + zz) * N[1] + ulo[1] + y) * N[0] + ulo[0] + x];
		}
		for (int64_t j = 0; j < nvox(n); j++) {
			int64_t x = j % n[0], y = (j / n[0]) % n[1], zz = j / (n[0] * n[1]);
			ds.c[c][j] = d.c[c][((lo[2] + zz) * N[1] + lo[1] + y) * N[0] + lo[0] + x];
		}
	}
	double *ref = malloc((size_t)(3 * nvox(n)) * sizeof(double));
	ref_compose(&us, ulo, &ds, lo, C, pad, ref, &reach);
	a = args(us, ulo, ds, lo, C, pad, os);
	if (s == FFDP_OK)
		s = ffdp_op_compose(be, &a, &err);
	int64_t diff = 0;
	for (int c = 0; c < 3; c++)
		for (int64_t j = 0; j < nvox(n); j++) {
			int64_t x = j % n[0], y = (j / n[0]) % n[1], zz = j / (n[0] * n[1]);
			float full = out.c[c][((lo[2] + zz) * N[1] + lo[1] + y) * N[0] + lo[0] + x];
			diff += memcmp(&os.c[c][j], &full, sizeof(float)) != 0;
		}
	double e = vec_err(&os, ref);
	CHECK(s == FFDP_OK && diff == 0 && reach < h - 1,
	      "shard %s: box at (6,7,5) with u on a halo box at u_lo (%lld,%lld,%lld) equals the whole-grid "
	      "result bit for bit (%lld differ; reach %.2f < halo - 1)", pad_name[pad], (long long)ulo[0],
	      (long long)ulo[1], (long long)ulo[2], (long long)diff, reach);
	CHECK(e < 1e-5, "  shard vs double reference on the halo box: max rel err %.2e", e);
	vec_free(&u), vec_free(&d), vec_free(&out), vec_free(&us), vec_free(&ds), vec_free(&os);
	free(ref);
}

/* d = 0: out = u exactly. */
static void test_identity(tu_rng *r, int d3)
{
	int64_t n[3] = {17, 23, d3 ? 11 : 1}, z[3] = {0, 0, 0}, nv = nvox(n), bad = 0;
	double C[9];
	make_C(r, n, C);
	ffdp_vec u = vec_alloc(n), d = vec_alloc(n), out = vec_alloc(n);
	vec_fill(r, &u, 3.0);
	ffdp_compose_args a = args(u, z, d, z, C, FFDP_PAD_ZERO, out);
	ffdp_status s = ffdp_op_compose(be, &a, &err);
	for (int c = 0; c < u.ncomp; c++)
		for (int64_t j = 0; j < nv; j++)
			bad += out.c[c][j] != u.c[c][j];
	CHECK(s == FFDP_OK && bad == 0, "compose %dD with d = 0 returns u exactly (%lld differ)", d3 ? 3 : 2,
	      (long long)bad);
	vec_free(&u), vec_free(&d), vec_free(&out);
}

/* d = t, the displacement of a translation by k voxels (t = C^-1 k):
 * out(i) = t + u(i + k), with 0 or the clamped value of u outside. */
static void test_translation(tu_rng *r, int d3, ffdp_pad pad)
{
	int64_t n[3] = {17, 23, d3 ? 11 : 1}, z[3] = {0, 0, 0}, nv = nvox(n), k[3] = {2, -3, d3 ? 1 : 0};
	int nc = d3 ? 3 : 2;
	double C[9], t[3] = {0, 0, 0};
	make_C(r, n, C);
	/* solve C t = k (top-left 2x2 block in 2-D) by Cramer's rule */
	if (d3) {
		double det = C[0] * (C[4] * C[8] - C[5] * C[7]) - C[1] * (C[3] * C[8] - C[5] * C[6]) +
			     C[2] * (C[3] * C[7] - C[4] * C[6]);
		for (int c = 0; c < 3; c++) {
			double M[9];
			memcpy(M, C, sizeof(M));
			for (int row = 0; row < 3; row++)
				M[3 * row + c] = (double)k[row];
			t[c] = (M[0] * (M[4] * M[8] - M[5] * M[7]) - M[1] * (M[3] * M[8] - M[5] * M[6]) +
				M[2] * (M[3] * M[7] - M[4] * M[6])) / det;
		}
	} else {
		double det = C[0] * C[4] - C[1] * C[3];
		t[0] = (k[0] * C[4] - C[1] * k[1]) / det;
		t[1] = (C[0] * k[1] - k[0] * C[3]) / det;
	}
	ffdp_vec u = vec_alloc(n), d = vec_alloc(n), out = vec_alloc(n);
	vec_fill(r, &u, 3.0);
	for (int c = 0; c < nc; c++)
		for (int64_t j = 0; j < nv; j++)
			d.c[c][j] = (float)t[c];
	ffdp_compose_args a = args(u, z, d, z, C, pad, out);
	ffdp_status s = ffdp_op_compose(be, &a, &err);
	double e = 0;
	for (int64_t j = 0; j < nv; j++) {
		int64_t c3[3] = {j % n[0] + k[0], (j / n[0]) % n[1] + k[1], j / (n[0] * n[1]) + k[2]};
		int ins = 1;
		for (int a3 = 0; a3 < 3; a3++) {
			ins &= c3[a3] >= 0 && c3[a3] < n[a3];
			c3[a3] = c3[a3] < 0 ? 0 : c3[a3] >= n[a3] ? n[a3] - 1 : c3[a3];
		}
		for (int c = 0; c < nc; c++) {
			double uu = u.c[c][(c3[2] * n[1] + c3[1]) * n[0] + c3[0]];
			double want = (float)t[c] + (ins || pad == FFDP_PAD_BORDER ? uu : 0.0);
			e = fmax(e, fabs(out.c[c][j] - want));
		}
	}
	CHECK(s == FFDP_OK && e < 1e-5, "compose %dD %s: d = translation by (%lld,%lld,%lld) voxels gives t + "
	      "shifted u (max err %.2e mm)", d3 ? 3 : 2, pad_name[pad], (long long)k[0], (long long)k[1],
	      (long long)k[2], e);

	/* and the other way round: u a constant translation s, border pad: out = d + s everywhere */
	vec_fill(r, &d, 1.0);
	for (int c = 0; c < nc; c++)
		for (int64_t j = 0; j < nv; j++)
			u.c[c][j] = (float)(0.5 + c);
	a = args(u, z, d, z, C, FFDP_PAD_BORDER, out);
	s = ffdp_op_compose(be, &a, &err);
	e = 0;
	for (int c = 0; c < nc; c++)
		for (int64_t j = 0; j < nv; j++)
			e = fmax(e, fabs(out.c[c][j] - (d.c[c][j] + 0.5 + c)));
	CHECK(s == FFDP_OK && e < 1e-5, "  u = constant translation (border pad): out = d + t (max err %.2e mm)", e);
	vec_free(&u), vec_free(&d), vec_free(&out);
}

/* The op into o1 (AVX2 where present) and, the scalar path forced, into o2. */
static ffdp_status run_both(ffdp_compose_args a, ffdp_vec o1, ffdp_vec o2)
{
	a.out = o1;
	ffdp_status s = ffdp_op_compose(be, &a, &err);
	ffdp_cpu_force_scalar = 1;
	a.out = o2;
	s |= ffdp_op_compose(be, &a, &err);
	ffdp_cpu_force_scalar = 0;
	return s;
}

/* How many of the 3 planes of nv voxels differ in any bit. */
static int planes_differ(const ffdp_vec *a, const ffdp_vec *b, int64_t nv)
{
	int diff = 0;
	for (int c = 0; c < 3; c++)
		diff += memcmp(a->c[c], b->c[c], (size_t)nv * sizeof(float)) != 0;
	return diff;
}

/* The AVX2 stencil (points within a voxel of their own) and its fallbacks
 * give the scalar path's bits: d smooth and small, plus per-voxel noise (the
 * floor offsets differ between lanes) and every 37th voxel far away (its
 * group falls back), whole grid and a shard of it. */
static void test_simd_bits(tu_rng *r, ffdp_pad pad)
{
	int64_t n[3] = {45, 19, 13}, z[3] = {0, 0, 0}, nv = nvox(n), lo[3] = {3, 2, 2}, ulo[3] = {1, 0, 0};
	int64_t sn[3] = {33, 12, 8}, un[3] = {39, 16, 12};
	double C[9];
	make_C(r, n, C);
	ffdp_vec u = vec_alloc(n), d = vec_alloc(n), o1 = vec_alloc(n), o2 = vec_alloc(n);
	vec_fill(r, &u, 3.0);
	vec_fill(r, &d, 0.4);
	for (int c = 0; c < 3; c++)
		for (int64_t j = 0; j < nv; j++)
			d.c[c][j] = j % 37 ? d.c[c][j] + (float)(0.3 * (2.0 * tu_uniform(r) - 1.0)) : 4.0f * d.c[c][j];
	ffdp_compose_args a = args(u, z, d, z, C, pad, o1);
	ffdp_status s = run_both(a, o1, o2);
	int64_t diff = planes_differ(&o1, &o2, nv);
	CHECK(s == FFDP_OK && diff == 0, "compose %s pad: AVX2 (%s) and scalar paths give the same bits",
	      pad_name[pad], ffdp_cpu_use_avx2() ? "on" : "absent");
	/* the shard: u on a box at ulo, d on a box at lo, in place */
	ffdp_vec us = vec_alloc(un), ds = vec_alloc(sn);
	for (int c = 0; c < 3; c++) {
		for (int64_t j = 0; j < nvox(un); j++)
			us.c[c][j] = u.c[c][((ulo[2] + j / (un[0] * un[1])) * n[1] + ulo[1] + (j / un[0]) % un[1]) * n[0] +
					    ulo[0] + j % un[0]];
		for (int64_t j = 0; j < nvox(sn); j++)
			ds.c[c][j] = d.c[c][((lo[2] + j / (sn[0] * sn[1])) * n[1] + lo[1] + (j / sn[0]) % sn[1]) * n[0] +
					    lo[0] + j % sn[0]];
	}
	a = args(us, ulo, ds, lo, C, pad, ds);
	s = ffdp_op_compose(be, &a, &err);
	diff = 0;
	for (int c = 0; c < 3; c++)
		for (int64_t j = 0; j < nvox(sn); j++) {
			float full = o2.c[c][((lo[2] + j / (sn[0] * sn[1])) * n[1] + lo[1] + (j / sn[0]) % sn[1]) * n[0] +
					     lo[0] + j % sn[0]];
			diff += memcmp(&ds.c[c][j], &full, sizeof(float)) != 0;
		}
	CHECK(s == FFDP_OK && diff == 0, "  a shard (box at (3,2,2), u at (1,0,0)), in place: the same bits (%lld differ)",
	      (long long)diff);
	vec_free(&u), vec_free(&d), vec_free(&o1), vec_free(&o2), vec_free(&us), vec_free(&ds);
}

/* Points under a voxel from their own along every index axis (oblique C),
 * per-voxel noise: every group takes the stencil, the row ends and u's
 * first and last rows and planes included (the pads' taps per lane); rows
 * of 8 and 9, one-row boxes; AVX2 = scalar bits, in place too. */
static void test_simd_faces(tu_rng *r, ffdp_pad pad)
{
	const int64_t sizes[][3] = {{8, 5, 4}, {9, 1, 3}, {17, 6, 2}, {43, 7, 3}};
	int64_t z[3] = {0, 0, 0};
	for (int t = 0; t < 4; t++) {
		const int64_t *n = sizes[t];
		int64_t nv = nvox(n);
		double C[9], cn = 0;
		make_C(r, n, C);
		for (int a = 0; a < 3; a++)
			cn = fmax(cn, fabs(C[3 * a]) + fabs(C[3 * a + 1]) + fabs(C[3 * a + 2]));
		ffdp_vec u = vec_alloc(n), d = vec_alloc(n), o1 = vec_alloc(n), o2 = vec_alloc(n);
		vec_fill(r, &u, 3.0);
		for (int c = 0; c < 3; c++) /* |d| < 0.95 / cn: |C d|_inf < 0.95 */
			for (int64_t j = 0; j < nv; j++)
				d.c[c][j] = (float)(0.95 / cn * (2.0 * tu_uniform(r) - 1.0));
		ffdp_compose_args a = args(u, z, d, z, C, pad, o1);
		ffdp_status s = run_both(a, o1, o2);
		a.out = d;
		s |= ffdp_op_compose(be, &a, &err);
		int diff = planes_differ(&o1, &o2, nv) + planes_differ(&d, &o2, nv);
		CHECK(s == FFDP_OK && diff == 0, "compose %s pad, %lldx%lldx%lld, points under a voxel away: AVX2, scalar "
		      "and in place give the same bits", pad_name[pad], (long long)n[0], (long long)n[1], (long long)n[2]);
		vec_free(&u), vec_free(&d), vec_free(&o1), vec_free(&o2);
	}
}

/* Rows of 7 (scalar only), 8 (one group, both row ends),
 * 9, 16, 17 and 26 voxels (the last group overlapping); d with one
 * component NaN or huge (beyond int32 in index) at a few voxels and others
 * moved a few voxels: the AVX2 groups (stencil, gathers, padded gathers)
 * give the scalar path's bits, in place too. */
static void test_simd_rows(tu_rng *r, ffdp_pad pad)
{
	const int64_t sizes[][3] = {{7, 5, 4}, {8, 6, 5}, {9, 4, 3}, {16, 5, 6}, {17, 7, 4}, {26, 3, 5}};
	int64_t z[3] = {0, 0, 0};
	for (int t = 0; t < 6; t++) {
		const int64_t *n = sizes[t];
		int64_t nv = nvox(n);
		double C[9];
		make_C(r, n, C);
		ffdp_vec u = vec_alloc(n), d = vec_alloc(n), o1 = vec_alloc(n), o2 = vec_alloc(n);
		vec_fill(r, &u, 3.0);
		vec_fill(r, &d, 0.5);
		for (int c = 0; c < 3; c++)
			for (int64_t j = 0; j < nv; j++) {
				float e = (float)(0.4 * (2.0 * tu_uniform(r) - 1.0));
				float *x = &d.c[c][j];
				*x = (j + 7 * c) % 23 == 5 ? NAN : (j + 5 * c) % 29 == 7 ? 3e9f : *x + e;
				*x = j % 13 == 3 ? 3.0f * *x : *x;
			}
		ffdp_compose_args a = args(u, z, d, z, C, pad, o1);
		ffdp_status s = run_both(a, o1, o2);
		a.out = d; /* in place */
		s |= ffdp_op_compose(be, &a, &err);
		int diff = planes_differ(&o1, &o2, nv) + planes_differ(&d, &o2, nv);
		CHECK(s == FFDP_OK && diff == 0, "compose %s pad, %lldx%lldx%lld with NaN and far d: AVX2, scalar and in "
		      "place give the same bits", pad_name[pad], (long long)n[0], (long long)n[1], (long long)n[2]);
		vec_free(&u), vec_free(&d), vec_free(&o1), vec_free(&o2);
	}
}

/* A box far from the grid's origin (global index ~3e6, where i + C d in
 * double drops bits of a small C d) with small d, some 0: the AVX2 groups
 * give the scalar path's bits. */
static void test_simd_far(tu_rng *r, ffdp_pad pad)
{
	int64_t n[3] = {37, 6, 5}, lo[3] = {3000001, 2000003, 1000002}, nv = nvox(n);
	double C[9];
	make_C(r, n, C);
	ffdp_vec u = vec_alloc(n), d = vec_alloc(n), o1 = vec_alloc(n), o2 = vec_alloc(n);
	vec_fill(r, &u, 3.0);
	for (int c = 0; c < 3; c++)
		for (int64_t j = 0; j < nv; j++)
			d.c[c][j] = j % 5 ? (float)((2.0 * tu_uniform(r) - 1.0) * pow(10.0, -1.0 - 6.0 * tu_uniform(r))) : 0.0f;
	ffdp_compose_args a = args(u, lo, d, lo, C, pad, o1);
	ffdp_status s = run_both(a, o1, o2);
	int diff = planes_differ(&o1, &o2, nv);
	CHECK(s == FFDP_OK && diff == 0, "compose %s pad, box at (%lld,%lld,%lld), |d| 1e-7..0.1: AVX2 and scalar "
	      "give the same bits", pad_name[pad], (long long)lo[0], (long long)lo[1], (long long)lo[2]);
	vec_free(&u), vec_free(&d), vec_free(&o1), vec_free(&o2);
}

int main(void)
{
	tu_rng r = tu_rng_make(4242);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	for (int d3 = 1; d3 >= 0; d3--)
		for (int pad = 0; pad < 2; pad++)
			test_reference(&r, d3, (ffdp_pad)pad);
	test_shard(&r, FFDP_PAD_ZERO);
	test_shard(&r, FFDP_PAD_BORDER);
	test_identity(&r, 1);
	test_identity(&r, 0);
	test_simd_bits(&r, FFDP_PAD_ZERO);
	test_simd_bits(&r, FFDP_PAD_BORDER);
	test_simd_faces(&r, FFDP_PAD_ZERO);
	test_simd_faces(&r, FFDP_PAD_BORDER);
	test_simd_rows(&r, FFDP_PAD_ZERO);
	test_simd_rows(&r, FFDP_PAD_BORDER);
	test_simd_far(&r, FFDP_PAD_ZERO);
	test_simd_far(&r, FFDP_PAD_BORDER);
	for (int d3 = 1; d3 >= 0; d3--)
		for (int pad = 0; pad < 2; pad++)
			test_translation(&r, d3, (ffdp_pad)pad);
	ffdp_backend_close(be);
	return check_done();
}
