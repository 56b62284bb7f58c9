/* Distributed pyramid levels under mpirun -np N: downsampling (blur +
 * linear border sampling through the moving fetch), field resampling both
 * ways, and the global intensity range, on an oblique anisotropic grid;
 * each rank's planes must have the bits of the single-process functions. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi/mpi_harness.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"
#include "ffdp/pyramid.h"
#include "testutil.h"

static int rank, size;

/* The rank's planes of whole (on g) equal mine? */
static int same_planes(const float *mine, const float *whole, const ffdp_grid *g)
{
	ffdp_slab s = ffdp_slab_of(g->n[2], rank, size);
	int64_t plane = g->n[0] * g->n[1];
	return s.z1 == s.z0 || !memcmp(mine, whole + s.z0 * plane, sizeof(float) * (size_t)((s.z1 - s.z0) * plane));
}

static ffdp_dist_image dist_of(const float *whole, const ffdp_grid *g)
{
	ffdp_slab s = ffdp_slab_of(g->n[2], rank, size);
	ffdp_dist_image im = {.own = whole + s.z0 * g->n[0] * g->n[1], .n = {g->n[0], g->n[1], g->n[2]}};
	return im;
}

static float *own_buf(const ffdp_grid *g)
{
	ffdp_slab s = ffdp_slab_of(g->n[2], rank, size);
	return malloc(sizeof(float) * (size_t)((s.z1 - s.z0) * g->n[0] * g->n[1] + 1));
}

static void test_level(ffdp_dist *d, ffdp_backend *be, const ffdp_volume *v, double shrink)
{
	ffdp_grid lg;
	ffdp_volume ref = {0};
	ffdp_field f = {0}, back = {0};
	ffdp_error err;
	ffdp_dist_traffic t = {0, 0, 0, 0};
	tu_rng r = tu_rng_make(99);

	CHECK_OK(ffdp_pyramid_level_grid(&v->grid, shrink, 8, &lg, &err), &err, "level grid");
	CHECK_OK(ffdp_pyramid_downsample(be, v, &lg, &ref, &err), &err, "reference downsample");
	ffdp_dist_image src = dist_of(v->data, &v->grid);
	float *mine = own_buf(&lg);
	ffdp_status st = ffdp_dist_downsample(d, be, &src, &v->grid, &lg, mine, &t, &err);
	CHECK(st == FFDP_OK && same_planes(mine, ref.data, &lg),
	      "rank %d: shrink %g: level %lldx%lldx%lld planes have the single-process bits (%llu B fetched) %s", rank,
	      shrink, (long long)lg.n[0], (long long)lg.n[1], (long long)lg.n[2], (unsigned long long)t.recv,
	      st ? err.msg : "");
	free(mine);

	/* a field on the level, resampled up to the full grid and down again */
	CHECK_OK(ffdp_field_alloc(&f, &lg, &err), &err, "field");
	for (int c = 0; c < 3; c++) {
		tu_fill_smooth(&r, f.c[c], lg.n, 0.1);
		ffdp_op_affine_scalar(be, (ffdp_img){f.c[c], {lg.n[0], lg.n[1], lg.n[2]}}, 6.0, -3.0, &err);
	}
	CHECK_OK(ffdp_field_resample(be, &f, &v->grid, &back, &err), &err, "reference field resample");
	int ok = 1;
	for (int c = 0; c < 3; c++) {
		ffdp_dist_image fc = dist_of(f.c[c], &lg);
		float *up = own_buf(&v->grid);
		st = ffdp_dist_resample(d, be, &fc, &lg, &v->grid, up, NULL, &err);
		ok &= !st && same_planes(up, back.c[c], &v->grid);
		free(up);
		ffdp_field down = {0};
		ffdp_field_resample(be, &back, &lg, &down, &err);
		ffdp_dist_image bc = dist_of(back.c[c], &v->grid);
		float *dn = own_buf(&lg);
		st = ffdp_dist_resample(d, be, &bc, &v->grid, &lg, dn, NULL, &err);
		ok &= !st && same_planes(dn, down.c[c], &lg);
		free(dn);
		ffdp_field_free(&down);
	}
	CHECK(ok, "rank %d: shrink %g: field resampled up and down has the single-process bits", rank, shrink);
	ffdp_field_free(&f);
	ffdp_field_free(&back);
	ffdp_volume_free(&ref);
}

static void test_minmax(ffdp_dist *d, ffdp_backend *be, const ffdp_volume *v)
{
	double lo, hi, wl, wh;
	ffdp_error err;
	ffdp_slab s = ffdp_slab_of(v->grid.n[2], rank, size);
	int64_t plane = v->grid.n[0] * v->grid.n[1];
	ffdp_op_minmax(be, (ffdp_img){v->data, {v->grid.n[0], v->grid.n[1], v->grid.n[2]}}, &wl, &wh, &err);
	ffdp_img own = {v->data + s.z0 * plane, {v->grid.n[0], v->grid.n[1], s.z1 - s.z0}};
	ffdp_status st = ffdp_dist_minmax(d, be, own, &lo, &hi, &err);
	CHECK(st == FFDP_OK && lo == wl && hi == wh, "rank %d: global range [%g, %g] = whole [%g, %g]", rank, lo, hi,
	      wl, wh);
}

int main(int argc, char **argv)
{
	ffdp_error err;
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		ffdp_dist *d = h.d;
		ffdp_backend *be = h.be;
		rank = h.rank, size = h.size;
		tu_rng r = tu_rng_make(5150);
		ffdp_grid g = tu_random_grid(&r, 37, 29, 41);
		ffdp_volume v = {0};
		CHECK_OK(ffdp_volume_alloc(&v, &g, &err), &err, "volume");
		tu_fill_smooth(&r, v.data, g.n, 0.05);
		test_minmax(d, be, &v);
		test_level(d, be, &v, 2.0);
		test_level(d, be, &v, 3.0);
		ffdp_volume_free(&v);
	}
	return mh_finish(&h);
}
