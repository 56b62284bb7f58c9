/* The distributed greedy step under mpirun -np N: gradient smoothing, Adam
 * moments with the global max norm, the in-place warp step on a haloed box
 * and the smoothing of u, iterated; after each iteration the rank's planes
 * of u must have the bits of the same ops on the whole field, and the max
 * norm must be the whole field's. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi/mpi_harness.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static int rank, size;

enum { NX = 23, NY = 19, NZ = 29, ITERS = 4 };
#define PLANE ((int64_t)NX * NY)
#define NV (PLANE * NZ)

typedef struct fld {
	float *c[3];
} fld;

static fld fld_new(void)
{
	fld f;
	for (int c = 0; c < 3; c++)
		f.c[c] = calloc((size_t)NV, sizeof(float));
	return f;
}

static ffdp_vec whole(const fld *f)
{
	return (ffdp_vec){{f->c[0], f->c[1], f->c[2]}, {NX, NY, NZ}, 3};
}

static ffdp_vec part(const fld *f, const ffdp_slab *s)
{
	int64_t o = s->z0 * PLANE;
	return (ffdp_vec){{f->c[0] + o, f->c[1] + o, f->c[2] + o}, {NX, NY, s->z1 - s->z0}, 3};
}

/* A smooth random gradient for iteration it, the same on every rank. */
static void gradient(fld *g, int it, ffdp_backend *be)
{
	tu_rng r = tu_rng_make(777 + (uint64_t)it);
	int64_t n[3] = {NX, NY, NZ};
	ffdp_error err;
	for (int c = 0; c < 3; c++) {
		tu_fill_smooth(&r, g->c[c], n, 0.3);
		ffdp_op_affine_scalar(be, (ffdp_img){g->c[c], {NX, NY, NZ}}, 1e-3, -0.5e-3, &err);
	}
}

int main(int argc, char **argv)
{
	ffdp_error err;
	static const double C[9] = {1.1, 0.1, 0.0, 0.05, 0.9, 0.1, 0.02, -0.1, 1.3};
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		ffdp_dist *d = h.d;
		ffdp_backend *be = h.be;
		rank = h.rank, size = h.size;
		ffdp_slab s = ffdp_slab_of(NZ, rank, size);
		fld u = fld_new(), m = fld_new(), v = fld_new(), g = fld_new();
		fld ud = fld_new(), md = fld_new(), vd = fld_new(), gd = fld_new();
		ffdp_smooth_opts gs = {{1.5, 1.5, 1.5}, 2.0, 0}, us = {{1.0, 1.0, 1.0}, 2.0, 0};
		for (int it = 1; it <= ITERS; it++) {
			ffdp_adam_opts ao = {it, 0.9, 0.99, 1e-8, FFDP_MOMENTS_F32, 0, NULL, NULL};
			double mw = 0, md_n = 0;
			gradient(&g, it, be);
			memcpy(gd.c[0], g.c[0], sizeof(float) * NV);
			memcpy(gd.c[1], g.c[1], sizeof(float) * NV);
			memcpy(gd.c[2], g.c[2], sizeof(float) * NV);
			/* whole field */
			ffdp_status st = ffdp_op_smooth_vec(be, whole(&g), &gs, &err);
			if (!st)
				st = ffdp_op_adam_moments(be, whole(&g), whole(&m), whole(&v), &ao, &mw, &err);
			ffdp_warp_step_opts wo;
			memset(&wo, 0, sizeof(wo));
			wo.adam = ao, wo.compose = 1, wo.pad = FFDP_PAD_BORDER;
			memcpy(wo.C, C, sizeof(C));
			wo.step = -2.5 / fmax(1.0, mw), wo.max_norm = mw;
			if (!st)
				st = ffdp_op_warp_step(be, whole(&u), whole(&m), whole(&v), &wo, &err);
			if (!st)
				st = ffdp_op_smooth_vec(be, whole(&u), &us, &err);
			CHECK(st == FFDP_OK, "rank %d: whole-field step %d (%s)", rank, it, st ? err.msg : "ok");
			/* slabs */
			st = ffdp_dist_smooth_vec(d, be, part(&gd, &s), &s, &gs, &err);
			if (!st)
				st = ffdp_dist_adam_moments(d, be, part(&gd, &s), part(&md, &s), part(&vd, &s), &s, &ao,
							    &md_n, &err);
			wo.step = -2.5 / fmax(1.0, md_n), wo.max_norm = md_n;
			if (!st)
				st = ffdp_dist_warp_step(d, be, part(&ud, &s), part(&md, &s), part(&vd, &s), &s, &wo, &err);
			if (!st)
				st = ffdp_dist_smooth_vec(d, be, part(&ud, &s), &s, &us, &err);
			int64_t bad = 0, o = s.z0 * PLANE, nb = (s.z1 - s.z0) * PLANE;
			for (int c = 0; c < 3; c++)
				bad += memcmp(ud.c[c] + o, u.c[c] + o, sizeof(float) * (size_t)nb) != 0;
			double reach = 2.5 / fmax(1.0, mw) * mw * sqrt(C[6] * C[6] + C[7] * C[7] + C[8] * C[8]);
			CHECK(st == FFDP_OK && md_n == mw && bad == 0,
			      "rank %d: iteration %d: max norm %.17g (whole %.17g), u on [%lld, %lld) %s, reach %.2f planes (%s)",
			      rank, it, md_n, mw, (long long)s.z0, (long long)s.z1, bad ? "differs" : "has the whole's bits",
			      reach, st ? err.msg : "ok");
		}
		fld *all[8] = {&u, &m, &v, &g, &ud, &md, &vd, &gd};
		for (int k = 0; k < 8; k++)
			for (int c = 0; c < 3; c++)
				free(all[k]->c[c]);
	}
	return mh_finish(&h);
}
