/* Core: transform algebra and grid geometry against hand-derived values. */
#include <math.h>
#include <stdlib.h>

#include "alloc_count.h"
#include "check.h"
#include "testutil.h"
#include "ffdp/ffdp.h"

static double urand(unsigned *s)
{
	*s = *s * 1664525u + 1013904223u;
	return (double)(*s >> 8) / 16777216.0;
}

int main(void)
{
	unsigned seed = 12345;
	ffdp_error err = {0};

	/* inverse(A) * A = I for random affines */
	double worst = 0;
	for (int t = 0; t < 100; t++) {
		ffdp_mat4 a = ffdp_mat4_identity(), ai, p;
		for (int i = 0; i < 12; i++)
			a.m[i] = (urand(&seed) - 0.5) * 4 + (i % 5 == 0 ? 3 : 0);
		if (ffdp_mat4_inverse(a, &ai, &err) != FFDP_OK)
			continue;
		p = ffdp_mat4_mul(ai, a);
		ffdp_mat4 id = ffdp_mat4_identity();
		worst = fmax(worst, ffdp_mat4_max_abs_diff(&p, &id));
	}
	CHECK(worst < 1e-9, "mat4 inverse: max |inv(A)A - I| = %.2e over 100 random affines", worst);

	ffdp_mat4 sing = ffdp_mat4_identity(), out;
	sing.m[10] = 0;
	CHECK(ffdp_mat4_inverse(sing, &out, &err) == FFDP_ERR_ARG, "mat4 inverse refuses a singular matrix: %s",
	      err.msg);

	/* grid: oblique, anisotropic; phys_to_index inverts index_to_phys */
	ffdp_grid g = ffdp_grid_make(17, 23, 11, 0.7, 1.3, 2.1);
	tu_rng rng = tu_rng_make(7);
	tu_random_rotation(&rng, g.dir);
	g.origin[0] = -12.5, g.origin[1] = 33.0, g.origin[2] = 7.25;
	CHECK_OK(ffdp_grid_check(&g, &err), &err, "oblique anisotropic grid passes the check");
	ffdp_mat4 i2p = ffdp_grid_index_to_phys(&g), p2i = ffdp_grid_phys_to_index(&g);
	ffdp_mat4 prod = ffdp_mat4_mul(p2i, i2p), id = ffdp_mat4_identity();
	double d = ffdp_mat4_max_abs_diff(&prod, &id);
	CHECK(d < 1e-12, "grid phys_to_index * index_to_phys = I (max diff %.2e)", d);

	/* p = origin + D diag(s) i, checked directly */
	double idx[3] = {3, 5, 7}, p[3];
	ffdp_grid_point(&g, idx, p);
	double e = 0;
	for (int r = 0; r < 3; r++) {
		double ref = g.origin[r];
		for (int c = 0; c < 3; c++)
			ref += g.dir[3 * r + c] * g.spacing[c] * idx[c];
		e = fmax(e, fabs(ref - p[r]));
	}
	CHECK(e < 1e-12, "index (3,5,7) maps to origin + D diag(s) i (err %.2e mm)", e);
	CHECK(fabs(fabs(ffdp_mat4_det3(&i2p)) - 0.7 * 1.3 * 2.1) < 1e-12, "|det index_to_phys| = voxel volume");

	/* orientation codes: identity is LPS in the "towards" convention */
	ffdp_grid a = ffdp_grid_make(4, 4, 4, 1, 1, 1);
	char code[4];
	ffdp_grid_orientation(&a, code);
	CHECK(code[0] == 'L' && code[1] == 'P' && code[2] == 'S', "identity direction is LPS (got %s)", code);
	a.dir[0] = -1, a.dir[4] = -1; /* NIfTI identity affine = RAS */
	ffdp_grid_orientation(&a, code);
	CHECK(code[0] == 'R' && code[1] == 'A' && code[2] == 'S', "flipped x,y is RAS (got %s)", code);

	/* bad grids */
	ffdp_grid b = ffdp_grid_make(4, 4, 4, 1, 0, 1);
	CHECK(ffdp_grid_check(&b, &err) == FFDP_ERR_ARG, "zero spacing is refused: %s", err.msg);
	b = ffdp_grid_make(4, 4, 4, 1, 1, 1);
	b.dir[1] = 0.5;
	CHECK(ffdp_grid_check(&b, &err) == FFDP_ERR_ARG, "non-orthonormal direction is refused: %s", err.msg);

	/* volumes and fields */
	ffdp_volume v = {0};
	size_t live0 = alloc_count_live();
	alloc_count_reset();
	CHECK_OK(ffdp_volume_alloc(&v, &g, &err), &err, "volume alloc 17x23x11");
	size_t want = (size_t)ffdp_grid_voxels(&g) * sizeof(float);
	CHECK(alloc_count_peak_extra() >= want && alloc_count_peak_extra() < want + 128,
	      "allocation counter sees the volume: %zu bytes for %zu", alloc_count_peak_extra(), want);
	int zero = 1;
	for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
		zero &= v.data[i] == 0.0f;
	CHECK(zero && ((uintptr_t)v.data % 64) == 0, "volume is zeroed and 64-byte aligned");
	ffdp_volume_free(&v);
	CHECK(alloc_count_live() == live0, "freeing the volume returns the live count to %zu", live0);
	ffdp_field u2 = {0};
	ffdp_grid g2 = ffdp_grid_make(9, 7, 1, 1, 1, 1);
	CHECK_OK(ffdp_field_alloc(&u2, &g2, &err), &err, "2-D field alloc");
	CHECK(u2.ncomp == 2 && u2.c[2] == NULL && u2.c[0] && u2.c[1], "2-D field has two components");
	ffdp_field_free(&u2);

	/* backends */
	ffdp_backend *be = NULL;
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "CPU backend opens");
	ffdp_backend_close(be);
	ffdp_status cs = ffdp_backend_open(FFDP_BACKEND_CUDA, 0, &be, &err);
	CHECK(cs == FFDP_OK || cs == FFDP_ERR_UNSUPPORTED || cs == FFDP_ERR_BACKEND,
	      "CUDA backend opens or says why not: %s", cs == FFDP_OK ? "opened" : err.msg);
	if (cs == FFDP_OK)
		ffdp_backend_close(be);
	return check_done();
}
