/* Pyramid: level geometry (extent and box corners kept, min_size, 2-D),
 * downsampling that reproduces a physical linear ramp away from the faces,
 * and field resampling that reproduces an affine displacement in the
 * interior, on oblique anisotropic grids.  The resampling checks need
 * ffdp_op_sample. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "check.h"
#include "ffdp/ffdp.h"
#include "ffdp/pyramid.h"
#include "testutil.h"

static int64_t expect_n(int64_t n, double shrink, int64_t min_size)
{
	if (n == 1)
		return 1;
	int64_t m = (int64_t)floor((double)n / shrink + 0.5);
	int64_t lo = min_size < n ? min_size : n;
	return m > lo ? m : (lo > 1 ? lo : 1);
}

/* Largest distance between the physical corners of the two voxel boxes. */
static double corner_gap(const ffdp_grid *a, const ffdp_grid *b)
{
	double gap = 0;
	for (int k = 0; k < 8; k++) {
		double ia[3], ib[3], pa[3], pb[3];
		for (int d = 0; d < 3; d++) {
			int hi = (k >> d) & 1;
			ia[d] = hi ? (double)a->n[d] - 0.5 : -0.5;
			ib[d] = hi ? (double)b->n[d] - 0.5 : -0.5;
		}
		ffdp_grid_point(a, ia, pa);
		ffdp_grid_point(b, ib, pb);
		for (int d = 0; d < 3; d++)
			gap = fmax(gap, fabs(pa[d] - pb[d]));
	}
	return gap;
}

static void test_level_grid(tu_rng *rng)
{
	ffdp_error err = {0};
	static const struct {
		int64_t n[3];
		double shrink;
		int64_t min_size;
	} cases[] = {
		{{17, 23, 11}, 2.0, 0}, {{17, 23, 11}, 3.0, 4}, {{17, 23, 11}, 1.7, 0},
		{{17, 23, 11}, 4.0, 8}, {{5, 64, 40}, 4.0, 8},  {{31, 19, 1}, 2.0, 0},
		{{31, 19, 1}, 6.0, 4},  {{17, 23, 11}, 1.0, 0},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		ffdp_grid g = tu_random_grid(rng, cases[c].n[0], cases[c].n[1], cases[c].n[2]), l;
		CHECK_OK(ffdp_pyramid_level_grid(&g, cases[c].shrink, cases[c].min_size, &l, &err), &err,
			 "level grid of %lldx%lldx%lld, shrink %.1f, min_size %lld", (long long)g.n[0],
			 (long long)g.n[1], (long long)g.n[2], cases[c].shrink, (long long)cases[c].min_size);
		int sizes = 1;
		double ext = 0, dir = 0;
		for (int a = 0; a < 3; a++) {
			sizes &= l.n[a] == expect_n(g.n[a], cases[c].shrink, cases[c].min_size);
			double e0 = (double)g.n[a] * g.spacing[a];
			ext = fmax(ext, fabs((double)l.n[a] * l.spacing[a] - e0) / e0);
		}
		for (int i = 0; i < 9; i++)
			dir = fmax(dir, fabs(l.dir[i] - g.dir[i]));
		CHECK(sizes, "  sizes %lldx%lldx%lld = round(n / shrink), at least min(min_size, n)",
		      (long long)l.n[0], (long long)l.n[1], (long long)l.n[2]);
		CHECK(ext < 1e-14 && dir == 0.0, "  extent n*spacing kept (rel %.1e), direction unchanged", ext);
		double gap = corner_gap(&g, &l);
		CHECK(gap < 1e-12, "  the 8 outer corners of the voxel boxes coincide (%.1e mm)", gap);
	}
	/* rounding of halves, and min_size against a small axis */
	ffdp_grid g = ffdp_grid_make(17, 23, 11, 1, 1, 1), l;
	ffdp_pyramid_level_grid(&g, 2.0, 0, &l, &err);
	CHECK(l.n[0] == 9 && l.n[1] == 12 && l.n[2] == 6, "17x23x11 / 2 -> %lldx%lldx%lld (halves round up)",
	      (long long)l.n[0], (long long)l.n[1], (long long)l.n[2]);
	ffdp_grid h = ffdp_grid_make(5, 64, 40, 1, 1, 1);
	ffdp_pyramid_level_grid(&h, 4.0, 8, &l, &err);
	CHECK(l.n[0] == 5 && l.n[1] == 16 && l.n[2] == 10, "5x64x40 / 4, min_size 8 -> %lldx%lldx%lld",
	      (long long)l.n[0], (long long)l.n[1], (long long)l.n[2]);
	ffdp_grid f = ffdp_grid_make(31, 19, 1, 0.7, 1.2, 3.0);
	ffdp_pyramid_level_grid(&f, 2.0, 0, &l, &err);
	CHECK(l.n[2] == 1 && l.spacing[2] == 3.0 && l.origin[2] == 0.0,
	      "2-D: nz stays 1 with its spacing and origin");
	CHECK(ffdp_pyramid_level_grid(&g, 0.5, 0, &l, &err) == FFDP_ERR_ARG, "shrink < 1 refused: %s", err.msg);
}

/* f(p) = a.p + b on the source grid; the level must hold a.p' + b at its
 * voxel centres p' wherever blur and interpolation see only inner voxels. */
static void test_downsample_ramp(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz,
				 double shrink)
{
	ffdp_error err = {0};
	ffdp_volume src = {0}, dst = {0};
	ffdp_grid g = tu_random_grid(rng, nx, ny, nz), l;
	if (nz == 1)
		memcpy(g.dir, (double[9]){0.8, -0.6, 0, 0.6, 0.8, 0, 0, 0, 1}, sizeof(g.dir));
	ffdp_volume_alloc(&src, &g, &err);
	double a[3], b = 3.0;
	for (int k = 0; k < 3; k++)
		a[k] = tu_normal(rng);
	for (int64_t z = 0; z < nz; z++)
		for (int64_t y = 0; y < ny; y++)
			for (int64_t x = 0; x < nx; x++) {
				double i[3] = {(double)x, (double)y, (double)z}, p[3];
				ffdp_grid_point(&g, i, p);
				src.data[(z * ny + y) * nx + x] = (float)(a[0] * p[0] + a[1] * p[1] + a[2] * p[2] + b);
			}
	ffdp_pyramid_level_grid(&g, shrink, 4, &l, &err);
	ffdp_status s = ffdp_pyramid_downsample(be, &src, &l, &dst, &err);
	CHECK_OK(s, &err, "downsample %lldx%lldx%lld by %.0f -> %lldx%lldx%lld", (long long)nx, (long long)ny,
		 (long long)nz, shrink, (long long)l.n[0], (long long)l.n[1], (long long)l.n[2]);
	if (s == FFDP_OK) {
		ffdp_mat4 w = ffdp_mat4_mul(ffdp_grid_phys_to_index(&g), ffdp_grid_index_to_phys(&l));
		int64_t r[3];
		for (int k = 0; k < 3; k++)
			r[k] = l.n[k] < g.n[k] ? (int64_t)ceil(2.0 * 0.5 * (double)g.n[k] / (double)l.n[k]) : 0;
		double e = 0, mx = 0;
		int64_t used = 0;
		for (int64_t z = 0; z < l.n[2]; z++)
			for (int64_t y = 0; y < l.n[1]; y++)
				for (int64_t x = 0; x < l.n[0]; x++) {
					double i[3] = {(double)x, (double)y, (double)z}, q[3], p[3];
					ffdp_mat4_apply_point(&w, i, q);
					int inner = 1;
					for (int k = 0; k < ffdp_grid_dim(&g); k++)
						inner &= q[k] >= (double)r[k] && q[k] < (double)(g.n[k] - 1 - r[k]);
					if (!inner)
						continue;
					ffdp_grid_point(&l, i, p);
					double want = a[0] * p[0] + a[1] * p[1] + a[2] * p[2] + b;
					e = fmax(e, fabs(dst.data[(z * l.n[1] + y) * l.n[0] + x] - want));
					mx = fmax(mx, fabs(want));
					used++;
				}
		CHECK(used > 0 && e < 1e-5 * mx, "  the ramp is reproduced at %lld inner coarse voxels (rel err %.2e)",
		      (long long)used, e / fmax(mx, 1e-30));
		CHECK(ffdp_grid_same(&dst.grid, &l, 0.0), "  the result carries the level grid");
	}
	ffdp_volume_free(&src);
	ffdp_volume_free(&dst);
}

/* A constant survives blur (renormalised) and border sampling everywhere. */
static void test_downsample_constant(ffdp_backend *be, tu_rng *rng)
{
	ffdp_error err = {0};
	ffdp_volume src = {0}, dst = {0};
	ffdp_grid g = tu_random_grid(rng, 19, 14, 9), l;
	ffdp_volume_alloc(&src, &g, &err);
	for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
		src.data[i] = 7.5f;
	ffdp_pyramid_level_grid(&g, 3.0, 2, &l, &err);
	alloc_count_reset();
	ffdp_status s = ffdp_pyramid_downsample(be, &src, &l, &dst, &err);
	size_t extra = alloc_count_peak_extra(), limit = (size_t)(ffdp_grid_voxels(&g) + ffdp_grid_voxels(&l)) * 4;
	CHECK_OK(s, &err, "downsample a constant 19x14x9 image by 3");
	CHECK(extra <= limit + 65536, "  peak extra memory %zu B: one blurred copy + the level (%zu B) + scratch",
	      extra, limit);
	double d = 0;
	for (int64_t i = 0; s == FFDP_OK && i < ffdp_grid_voxels(&l); i++)
		d = fmax(d, fabs(dst.data[i] - 7.5));
	CHECK(s == FFDP_OK && d < 7.5e-6, "  stays constant up to the faces (max dev %.1e)", d);
	ffdp_volume_free(&src);
	ffdp_volume_free(&dst);
}

/* u(p) = A p + t on one grid, resampled to the other: exact wherever the
 * target centre lies inside the source's voxel-centre box. */
static void test_field_affine(ffdp_backend *be, tu_rng *rng, int64_t nx, int64_t ny, int64_t nz, int up)
{
	ffdp_error err = {0};
	ffdp_grid fine = tu_random_grid(rng, nx, ny, nz), coarse;
	ffdp_pyramid_level_grid(&fine, 2.0, 4, &coarse, &err);
	const ffdp_grid *gs = up ? &coarse : &fine, *gd = up ? &fine : &coarse;
	ffdp_field src = {0}, dst = {0};
	ffdp_field_alloc(&src, gs, &err);
	double A[9], t[3];
	for (int k = 0; k < 9; k++)
		A[k] = 0.1 * tu_normal(rng);
	for (int k = 0; k < 3; k++)
		t[k] = tu_normal(rng);
	for (int64_t z = 0; z < gs->n[2]; z++)
		for (int64_t y = 0; y < gs->n[1]; y++)
			for (int64_t x = 0; x < gs->n[0]; x++) {
				double i[3] = {(double)x, (double)y, (double)z}, p[3];
				ffdp_grid_point(gs, i, p);
				for (int c = 0; c < src.ncomp; c++)
					src.c[c][(z * gs->n[1] + y) * gs->n[0] + x] =
						(float)(A[3 * c] * p[0] + A[3 * c + 1] * p[1] +
							A[3 * c + 2] * p[2] + t[c]);
			}
	ffdp_status s = ffdp_field_resample(be, &src, gd, &dst, &err);
	CHECK_OK(s, &err, "field resample %s, %lldx%lldx%lld -> %lldx%lldx%lld", up ? "up" : "down",
		 (long long)gs->n[0], (long long)gs->n[1], (long long)gs->n[2], (long long)gd->n[0],
		 (long long)gd->n[1], (long long)gd->n[2]);
	if (s == FFDP_OK) {
		ffdp_mat4 w = ffdp_mat4_mul(ffdp_grid_phys_to_index(gs), ffdp_grid_index_to_phys(gd));
		double e = 0, mx = 0;
		int64_t used = 0;
		for (int64_t z = 0; z < gd->n[2]; z++)
			for (int64_t y = 0; y < gd->n[1]; y++)
				for (int64_t x = 0; x < gd->n[0]; x++) {
					double i[3] = {(double)x, (double)y, (double)z}, q[3], p[3];
					ffdp_mat4_apply_point(&w, i, q);
					int inner = 1;
					for (int k = 0; k < ffdp_grid_dim(gs); k++)
						inner &= q[k] >= 0.0 && q[k] <= (double)(gs->n[k] - 1);
					if (!inner)
						continue;
					ffdp_grid_point(gd, i, p);
					int64_t j = (z * gd->n[1] + y) * gd->n[0] + x;
					for (int c = 0; c < dst.ncomp; c++) {
						double want = A[3 * c] * p[0] + A[3 * c + 1] * p[1] +
							      A[3 * c + 2] * p[2] + t[c];
						e = fmax(e, fabs(dst.c[c][j] - want));
						mx = fmax(mx, fabs(want));
					}
					used++;
				}
		CHECK(used > 0 && e < 1e-5 * mx && dst.ncomp == src.ncomp,
		      "  affine displacement exact at %lld interior voxels, %d components (rel err %.2e)",
		      (long long)used, dst.ncomp, e / fmax(mx, 1e-30));
	}
	ffdp_field_free(&src);
	ffdp_field_free(&dst);
}

int main(void)
{
	ffdp_error err = {0};
	ffdp_backend *be = NULL;
	tu_rng rng = tu_rng_make(2026);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (!be)
		return check_done();
	test_level_grid(&rng);
	test_downsample_ramp(be, &rng, 33, 29, 21, 2.0);
	test_downsample_ramp(be, &rng, 40, 27, 25, 3.0);
	test_downsample_ramp(be, &rng, 41, 35, 1, 2.0);
	test_downsample_constant(be, &rng);
	test_field_affine(be, &rng, 27, 22, 17, 1);
	test_field_affine(be, &rng, 27, 22, 17, 0);
	test_field_affine(be, &rng, 37, 26, 1, 1);
	test_field_affine(be, &rng, 37, 26, 1, 0);
	ffdp_field src = {0}, dst = {0};
	ffdp_grid g3 = ffdp_grid_make(8, 8, 8, 1, 1, 1), g2 = ffdp_grid_make(8, 8, 1, 1, 1, 1);
	ffdp_field_alloc(&src, &g3, &err);
	CHECK(ffdp_field_resample(be, &src, &g2, &dst, &err) == FFDP_ERR_ARG,
	      "3-D field onto a 2-D grid refused: %s", err.msg);
	ffdp_field_free(&src);
	ffdp_backend_close(be);
	return check_done();
}
