/* Jacobian determinant det(A + (du/di) G): an affine field in physical
 * space gives det(L) everywhere (central and one-sided differences are
 * exact on it), and random smooth fields match a double-precision reference
 * written here, on oblique anisotropic grids, in 3-D and 2-D. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static ffdp_backend *be;
static ffdp_error err;

static int64_t nvox(const int64_t n[3])
{
	return n[0] * n[1] * n[2];
}

static ffdp_grid make_grid(tu_rng *r, int d3)
{
	ffdp_grid g = tu_random_grid(r, 17, 23, d3 ? 11 : 1);
	if (!d3) {
		double a = 6.283185307179586 * tu_uniform(r), R[9] = {cos(a), -sin(a), 0, sin(a), cos(a), 0, 0, 0, 1};
		memcpy(g.dir, R, sizeof(R));
	}
	return g;
}

static void linear_part(const ffdp_mat4 *m, double L[9])
{
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			L[3 * i + k] = m->m[4 * i + k];
}

/* Near-identity random matrix; 2-D: block diagonal with a 1. */
static void random_matrix(tu_rng *r, int d3, double L[9])
{
	for (int i = 0; i < 9; i++)
		L[i] = (i % 4 == 0) + 0.4 * (tu_uniform(r) - 0.5);
	if (!d3)
		L[2] = L[5] = L[6] = L[7] = 0, L[8] = 1;
}

/* 2-D: junk in the z row and column, which the op must ignore. */
static void junk_z(tu_rng *r, int d3, double M[9])
{
	if (!d3)
		M[2] = M[5] = M[6] = M[7] = M[8] = 5.0 * tu_normal(r);
}

static double det3(const double m[9])
{
	return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
	       m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/* u(x) = (L - A) x + t on the grid's physical points: x -> A x + u(x) = L x + t. */
static void test_affine(tu_rng *r, int d3, int a_is_identity)
{
	ffdp_grid g = make_grid(r, d3);
	int nc = d3 ? 3 : 2;
	int64_t nv = nvox(g.n);
	double L[9], A[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, G[9], t[3];
	random_matrix(r, d3, L);
	if (!a_is_identity)
		random_matrix(r, d3, A);
	for (int k = 0; k < 3; k++)
		t[k] = 10.0 * (tu_uniform(r) - 0.5);
	ffdp_mat4 P = ffdp_grid_phys_to_index(&g);
	linear_part(&P, G);
	ffdp_vec u = {{NULL, NULL, NULL}, {g.n[0], g.n[1], g.n[2]}, nc};
	for (int c = 0; c < nc; c++)
		u.c[c] = calloc((size_t)nv, sizeof(float));
	for (int64_t j = 0; j < nv; j++) {
		double idx[3] = {(double)(j % g.n[0]), (double)((j / g.n[0]) % g.n[1]),
				 (double)(j / (g.n[0] * g.n[1]))}, x[3];
		ffdp_grid_point(&g, idx, x);
		for (int c = 0; c < nc; c++) {
			double v = t[c];
			for (int k = 0; k < 3; k++)
				v += (L[3 * c + k] - A[3 * c + k]) * x[k];
			u.c[c][j] = (float)v;
		}
	}
	junk_z(r, d3, A); /* after building u, which must not see it */
	junk_z(r, d3, G);
	float *out = calloc((size_t)nv, sizeof(float));
	ffdp_img o = {out, {g.n[0], g.n[1], g.n[2]}};
	double want = d3 ? det3(L) : L[0] * L[4] - L[1] * L[3], e = 0;
	CHECK_OK(ffdp_op_jacobian_det(be, &u, A, G, o, &err), &err, "jacobian %dD of an affine field (A %s)",
		 d3 ? 3 : 2, a_is_identity ? "= I" : "random");
	for (int64_t j = 0; j < nv; j++)
		e = fmax(e, fabs(out[j] - want));
	CHECK(e < 2e-5, "  det = det(L) = %.6f at every voxel, faces included (max err %.2e)", want, e);
	for (int c = 0; c < nc; c++)
		free(u.c[c]);
	free(out);
}

/* Reference: central differences in double, one-sided at faces, 0 on axes of size 1. */
static double ref_du(const float *p, const int64_t n[3], const int64_t i[3], int a)
{
	int64_t lo[3] = {i[0], i[1], i[2]}, hi[3] = {i[0], i[1], i[2]};
	if (i[a] > 0)
		lo[a]--;
	if (i[a] < n[a] - 1)
		hi[a]++;
	if (hi[a] == lo[a])
		return 0.0;
	double vh = p[(hi[2] * n[1] + hi[1]) * n[0] + hi[0]], vl = p[(lo[2] * n[1] + lo[1]) * n[0] + lo[0]];
	return (vh - vl) / (double)(hi[a] - lo[a]);
}

/* singular: G's last row the sum of the other two (3-D), which the op must
 * take without inverting G. */
static void test_random(tu_rng *r, int d3, int singular)
{
	ffdp_grid g = make_grid(r, d3);
	int nc = d3 ? 3 : 2;
	int64_t nv = nvox(g.n);
	double A[9], G[9];
	random_matrix(r, d3, A);
	ffdp_mat4 P = ffdp_grid_phys_to_index(&g);
	linear_part(&P, G);
	junk_z(r, d3, A);
	junk_z(r, d3, G);
	for (int k = 0; k < 3 && singular; k++)
		G[6 + k] = G[k] + G[3 + k];
	ffdp_vec u = {{NULL, NULL, NULL}, {g.n[0], g.n[1], g.n[2]}, nc};
	for (int c = 0; c < nc; c++) {
		u.c[c] = calloc((size_t)nv, sizeof(float));
		tu_fill_smooth(r, u.c[c], g.n, 0.01);
		for (int64_t j = 0; j < nv; j++)
			u.c[c][j] *= 3.0f;
	}
	float *out = calloc((size_t)nv, sizeof(float));
	double *ref = malloc((size_t)nv * sizeof(double)), lo = 1e30, hi = -1e30;
	ffdp_img o = {out, {g.n[0], g.n[1], g.n[2]}};
	CHECK_OK(ffdp_op_jacobian_det(be, &u, A, G, o, &err), &err, "jacobian %dD of a random smooth field%s",
		 d3 ? 3 : 2, singular ? ", G singular" : "");
	for (int64_t j = 0; j < nv; j++) {
		int64_t i[3] = {j % g.n[0], (j / g.n[0]) % g.n[1], j / (g.n[0] * g.n[1])};
		double J[9] = {0}, M[9];
		for (int c = 0; c < nc; c++)
			for (int a = 0; a < nc; a++)
				J[3 * c + a] = ref_du(u.c[c], g.n, i, a);
		for (int row = 0; row < 3; row++)
			for (int k = 0; k < 3; k++) {
				M[3 * row + k] = A[3 * row + k];
				for (int a = 0; a < 3; a++)
					M[3 * row + k] += J[3 * row + a] * G[3 * a + k];
			}
		ref[j] = d3 ? det3(M) : M[0] * M[4] - M[1] * M[3];
		lo = fmin(lo, ref[j]), hi = fmax(hi, ref[j]);
	}
	double e = tu_rel_err(out, ref, nv, 1e-3);
	CHECK(e < 1e-5 && hi - lo > 0.1, "  vs double reference: max rel err %.2e (det ranges %.3f..%.3f)", e, lo, hi);
	for (int c = 0; c < nc; c++)
		free(u.c[c]);
	free(out);
	free(ref);
}

/* The AVX2 path (3-D, 8 voxels a step between the row's end voxels, the
 * last group overlapping the one before) against the forced scalar path:
 * the same bits, on a rough random field with oblique A and G, rows of 10
 * (one group), 17 and 45 (overlapping last groups), 18 (none), rows too
 * short for a group, and boxes with one plane or one row (a zero
 * difference along that axis). */
static void test_simd_bits(tu_rng *r)
{
	if (!ffdp_cpu_use_avx2()) {
		CHECK(1, "simd: no AVX2+FMA on this CPU, scalar path only");
		return;
	}
	const int64_t sizes[][3] = {{45, 13, 11}, {12, 7, 5}, {11, 9, 1}, {9, 1, 6}, {3, 4, 5},
				    {10, 5, 4},   {17, 6, 3}, {18, 3, 7}, {26, 1, 3}};
	for (int t = 0; t < 9; t++) {
		const int64_t *n = sizes[t];
		int64_t nv = nvox(n);
		double A[9], G[9];
		random_matrix(r, 1, A);
		random_matrix(r, 1, G);
		ffdp_vec u = {{NULL, NULL, NULL}, {n[0], n[1], n[2]}, 3};
		for (int c = 0; c < 3; c++) {
			u.c[c] = malloc((size_t)nv * sizeof(float));
			tu_fill_uniform(r, u.c[c], nv, -2.0, 2.0);
		}
		float *o1 = malloc((size_t)nv * sizeof(float)), *o2 = malloc((size_t)nv * sizeof(float));
		ffdp_img a = {o1, {n[0], n[1], n[2]}}, b = {o2, {n[0], n[1], n[2]}};
		ffdp_status s1 = ffdp_op_jacobian_det(be, &u, A, G, a, &err);
		ffdp_cpu_force_scalar = 1;
		ffdp_status s2 = ffdp_op_jacobian_det(be, &u, A, G, b, &err);
		ffdp_cpu_force_scalar = 0;
		CHECK(!s1 && !s2 && !memcmp(o1, o2, (size_t)nv * sizeof(float)),
		      "simd: jacobian %lldx%lldx%lld: AVX2 = scalar bits", (long long)n[0], (long long)n[1],
		      (long long)n[2]);
		for (int c = 0; c < 3; c++)
			free(u.c[c]);
		free(o1), free(o2);
	}
}

int main(void)
{
	tu_rng r = tu_rng_make(777);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	for (int d3 = 1; d3 >= 0; d3--) {
		test_affine(&r, d3, 1);
		test_affine(&r, d3, 0);
		test_random(&r, d3, 0);
	}
	test_random(&r, 1, 1);
	test_simd_bits(&r);
	ffdp_backend_close(be);
	return check_done();
}
