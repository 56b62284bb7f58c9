/* Distributed losses under mpirun -np N: every rank builds the same pair,
 * computes the single-process op on the whole of it, and the distributed
 * loss on its z-slab; the loss (a sum of per-plane sums in plane order) and
 * the rank's gradient planes must have the same bits. */
#include <math.h>
#include <stdio.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi/mpi_harness.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static int rank, size;

enum { NX = 23, NY = 19, NZ = 71 }; /* anchors at 32 and 64 */
#define NV ((int64_t)NX * NY * NZ)
#define PLANE ((int64_t)NX * NY)

typedef struct pair {
	float *f, *m, *w;
} pair;

static pair pair_make(void)
{
	pair p;
	tu_rng r = tu_rng_make(424242);
	int64_t n[3] = {NX, NY, NZ};
	p.f = malloc(sizeof(float) * NV), p.m = malloc(sizeof(float) * NV), p.w = malloc(sizeof(float) * NV);
	tu_fill_smooth(&r, p.f, n, 0.05);
	tu_fill_smooth(&r, p.m, n, 0.05);
	tu_fill_uniform(&r, p.w, NV, 0.0, 1.0);
	return p;
}

typedef ffdp_status (*whole_fn)(ffdp_backend *, const ffdp_loss_args *, ffdp_error *);
typedef ffdp_status (*dist_fn)(ffdp_dist *, ffdp_backend *, const ffdp_loss_args *, const ffdp_slab *,
			       ffdp_error *);

static void compare(ffdp_dist *d, ffdp_backend *be, const pair *p, const char *name, whole_fn whole,
		    dist_fn dist, int masked)
{
	ffdp_slab s = ffdp_slab_of(NZ, rank, size);
	int64_t own = s.z1 - s.z0, j0 = s.z0 * PLANE;
	float *gf = calloc((size_t)NV, sizeof(float)), *gm = calloc((size_t)NV, sizeof(float));
	float *hf = calloc((size_t)(own * PLANE + 1), sizeof(float)), *hm = calloc((size_t)(own * PLANE + 1), sizeof(float));
	double lw = 0, sw = 0, ld = 0, sd = 0, denom = masked ? 777.25 : (double)NV;
	ffdp_error err;
	ffdp_loss_args a = {{p->f, {NX, NY, NZ}}, {p->m, {NX, NY, NZ}}, masked ? p->w : NULL, denom, 1.7, gf, gm,
			    &lw, &sw, NULL, NULL, NULL};
	ffdp_status st = whole(be, &a, &err);
	ffdp_loss_args b = {{p->f + j0, {NX, NY, own}}, {p->m + j0, {NX, NY, own}}, masked ? p->w + j0 : NULL, denom,
			    1.7, hf, hm, &ld, &sd, NULL, NULL, NULL};
	if (!st)
		st = dist(d, be, &b, &s, &err);
	int gd = own > 0 && (memcmp(hf, gf + j0, sizeof(float) * (size_t)(own * PLANE)) ||
			     memcmp(hm, gm + j0, sizeof(float) * (size_t)(own * PLANE)));
	CHECK(st == FFDP_OK && ld == lw && sd == sw && !gd,
	      "rank %d: %s%s: loss %.17g vs whole %.17g, gradients on [%lld, %lld) %s (%s)", rank, name,
	      masked ? " masked" : "", ld, lw, (long long)s.z0, (long long)s.z1, gd ? "differ" : "equal",
	      st ? err.msg : "ok");
	free(gf), free(gm), free(hf), free(hm);
}

/* LNCC through the same signature: the window and gradient kind here. */
static ffdp_lncc_opts lncc_o;

static ffdp_status whole_lncc(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	return ffdp_op_lncc(be, a, &lncc_o, err);
}

static ffdp_status dist_lncc(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			     ffdp_error *err)
{
	return ffdp_dist_lncc(d, be, a, s, &lncc_o, err);
}

static ffdp_mi_opts mi_o;

static ffdp_status whole_mi(ffdp_backend *be, const ffdp_loss_args *a, ffdp_error *err)
{
	return ffdp_op_mi(be, a, &mi_o, err);
}

static ffdp_status dist_mi(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			   ffdp_error *err)
{
	return ffdp_dist_mi(d, be, a, s, &mi_o, err);
}

int main(int argc, char **argv)
{
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		ffdp_dist *d = h.d;
		ffdp_backend *be = h.be;
		rank = h.rank, size = h.size;
		pair p = pair_make();
		static const int lk[][2] = {{5, 1}, {9, 1}, {9, 0}, {3, 1}};
		char name[64];
		for (int masked = 0; masked < 2; masked++) {
			compare(d, be, &p, "mse", ffdp_op_mse, ffdp_dist_mse, masked);
			for (size_t i = 0; i < sizeof(lk) / sizeof(lk[0]); i++) {
				memset(&lncc_o, 0, sizeof(lncc_o));
				lncc_o.k = lk[i][0], lncc_o.exact_grad = lk[i][1];
				snprintf(name, sizeof(name), "lncc k=%d %s", lk[i][0], lk[i][1] ? "exact" : "ANTs");
				compare(d, be, &p, name, whole_lncc, dist_lncc, masked);
			}
			for (int k = 0; k < 2; k++) {
				memset(&mi_o, 0, sizeof(mi_o));
				mi_o.bins = 24, mi_o.kernel = (ffdp_mi_kernel)k;
				mi_o.f_lo = -0.1, mi_o.f_hi = 1.2, mi_o.m_lo = -0.2, mi_o.m_hi = 1.1;
				compare(d, be, &p, k ? "mi bspline" : "mi gauss", whole_mi, dist_mi, masked);
			}
		}
		free(p.f), free(p.m), free(p.w);
	}
	return mh_finish(&h);
}
