/* Distributed sampling under mpirun -np N: the moving image is spread over
 * the ranks in z-slabs; each rank samples its slab of the output through
 * the planes its points need (ffdp_dist_fetch) and must get the bits of
 * ffdp_op_sample on the whole image, forward (every interpolation and pad)
 * and backward to u.  The fetch traffic must add up over the ranks and
 * stay below the whole image when the points of a slab stay local. */
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

enum { NX = 23, NY = 19, NZ = 17, MX = 21, MY = 17, MZ = 29 };

typedef struct problem {
	float *M, *u[3], *gout;
	int64_t on[3], mn[3];
	double W[12], B[9];
} problem;

/* Oblique W that stretches z (1.5 moving planes per output plane) and a
 * smooth u of +-2 mm: each slab's points stay within a band of planes. */
static problem problem_make(void)
{
	problem P;
	tu_rng r = tu_rng_make(20261124);
	static const double W[12] = {0.9, 0.1, 0.05, 1.0, -0.1, 0.95, 0.1, 0.5, 0.03, -0.08, 1.5, 0.7};
	static const double B[9] = {1.0, 0.0, 0.1, 0.0, 1.1, 0.0, 0.05, 0.0, 0.8};
	int64_t on[3] = {NX, NY, NZ}, mn[3] = {MX, MY, MZ}, no = NX * NY * NZ;

	memcpy(P.on, on, sizeof(on));
	memcpy(P.mn, mn, sizeof(mn));
	memcpy(P.W, W, sizeof(W));
	memcpy(P.B, B, sizeof(B));
	P.M = malloc(sizeof(float) * MX * MY * MZ);
	tu_fill_smooth(&r, P.M, mn, 0.02);
	for (int c = 0; c < 3; c++) {
		P.u[c] = malloc(sizeof(float) * (size_t)no);
		tu_fill_uniform(&r, P.u[c], no, -2.0, 2.0);
		ffdp_img x = {P.u[c], {NX, NY, NZ}};
		ffdp_smooth_opts so = {{1.5, 1.5, 1.5}, 2.0, 1};
		ffdp_error err;
		ffdp_backend *be;
		ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err);
		ffdp_op_smooth(be, x, &so, &err);
		ffdp_backend_close(be);
	}
	P.gout = malloc(sizeof(float) * (size_t)no);
	tu_fill_uniform(&r, P.gout, no, -1.0, 1.0);
	return P;
}

static void problem_free(problem *P)
{
	free(P->M), free(P->gout);
	for (int c = 0; c < 3; c++)
		free(P->u[c]);
}

static ffdp_sample_args whole_args(const problem *P, const ffdp_vec *u, float *out, int in, int pad)
{
	ffdp_sample_args a;
	memset(&a, 0, sizeof(a));
	a.moving = (ffdp_img){P->M, {MX, MY, MZ}};
	memcpy(a.W, P->W, sizeof(a.W));
	memcpy(a.B, P->B, sizeof(a.B));
	a.u = u;
	a.out = (ffdp_img){out, {NX, NY, NZ}};
	a.interp = (ffdp_interp)in;
	a.pad = (ffdp_pad)pad;
	return a;
}

static void test_sample(ffdp_dist *d, ffdp_backend *be, const problem *P, int in, int pad)
{
	const int64_t plane = NX * NY, no = plane * NZ, mplane = MX * MY;
	ffdp_slab s = ffdp_slab_of(NZ, rank, size), ms = ffdp_slab_of(MZ, rank, size);
	int64_t own = s.z1 - s.z0, j0 = s.z0 * plane;
	float *full = malloc(sizeof(float) * (size_t)no), *mine = malloc(sizeof(float) * (size_t)(own * plane + 1));
	float *gfull[3], *gmine[3];
	ffdp_vec u = {{P->u[0], P->u[1], P->u[2]}, {NX, NY, NZ}, 3};
	ffdp_vec uo = {{P->u[0] + j0, P->u[1] + j0, P->u[2] + j0}, {NX, NY, own}, 3};
	ffdp_error err;
	ffdp_status st;

	for (int c = 0; c < 3; c++) {
		gfull[c] = malloc(sizeof(float) * (size_t)no);
		gmine[c] = malloc(sizeof(float) * (size_t)(own * plane + 1));
	}
	ffdp_sample_args a = whole_args(P, &u, full, in, pad);
	st = ffdp_op_sample(be, &a, &err);
	ffdp_sample_args b = a;
	b.u = &uo;
	b.lo[2] = s.z0;
	b.out = (ffdp_img){mine, {NX, NY, own}};
	b.moving = (ffdp_img){NULL, {0, 0, 0}};
	ffdp_dist_image m = {.own = P->M + ms.z0 * mplane, .n = {MX, MY, MZ}};
	ffdp_dist_traffic t = {0, 0, 0, 0};
	if (!st)
		st = ffdp_dist_sample(d, be, &b, &m, &t, &err);
	int diff = !st && own > 0 && memcmp(mine, full + j0, sizeof(float) * (size_t)(own * plane)) != 0;
	CHECK(st == FFDP_OK && !diff, "rank %d: interp %d pad %d: slab [%lld, %lld) has the whole op's bits (%s)",
	      rank, in, pad, (long long)s.z0, (long long)s.z1, st ? err.msg : "sampled");

	/* traffic adds up; a slab needs fewer planes than the whole image */
	uint64_t tot[2], mine_t[2] = {t.sent, t.recv};
	MPI_Allreduce(mine_t, tot, 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
	CHECK(tot[0] == tot[1] && t.fetches == 1, "rank %d: fetch traffic: %llu B sent, %llu B received over all ranks",
	      rank, (unsigned long long)tot[0], (unsigned long long)tot[1]);
	ffdp_dist_mbox box;
	st = ffdp_dist_fetch(d, be, &b, &m, &box, NULL, &err);
	CHECK(st == FFDP_OK && (size == 1 || own == 0 || box.z1 - box.z0 < MZ),
	      "rank %d: box planes [%lld, %lld) of %d", rank, (long long)box.z0, (long long)box.z1, MZ);

	/* the backward to u through the same box */
	if (!st && in == FFDP_INTERP_LINEAR) {
		ffdp_vec gf = {{gfull[0], gfull[1], gfull[2]}, {NX, NY, NZ}, 3};
		ffdp_vec gm = {{gmine[0], gmine[1], gmine[2]}, {NX, NY, own}, 3};
		ffdp_sample_grad_args ga = {&a, {P->gout, {NX, NY, NZ}}, &gf, 0, NULL, NULL, NULL, NULL};
		st = ffdp_op_sample_grad(be, &ga, &err);
		ffdp_dist_mbox_bind(&box, &m, &b);
		ffdp_sample_grad_args gb = {&b, {P->gout + j0, {NX, NY, own}}, &gm, 0, NULL, NULL, NULL, NULL};
		if (!st && own > 0)
			st = ffdp_op_sample_grad(be, &gb, &err);
		int gd = 0;
		for (int c = 0; c < 3 && own > 0; c++)
			gd |= memcmp(gmine[c], gfull[c] + j0, sizeof(float) * (size_t)(own * plane)) != 0;
		CHECK(st == FFDP_OK && !gd, "rank %d: pad %d: gu on the slab through the box has the whole op's bits (%s)",
		      rank, pad, st ? err.msg : "ok");
	}
	ffdp_dist_mbox_free(&box);
	free(full), free(mine);
	for (int c = 0; c < 3; c++)
		free(gfull[c]), free(gmine[c]);
}

/* The ring (forced): moving slabs passed around the ranks, each point
 * sampled through the z gate of the slab its cell starts in; forward and
 * gu must have the whole op's bits, and each rank receives at most one
 * slab (plus a plane) per step. */
static void test_ring(ffdp_dist *d, ffdp_backend *be, const problem *P, int in, int pad)
{
	const int64_t plane = NX * NY, no = plane * NZ, mplane = MX * MY;
	ffdp_slab s = ffdp_slab_of(NZ, rank, size), ms = ffdp_slab_of(MZ, rank, size);
	int64_t own = s.z1 - s.z0, j0 = s.z0 * plane;
	float *full = malloc(sizeof(float) * (size_t)no), *mine = malloc(sizeof(float) * (size_t)(own * plane + 1));
	float *gf[3], *gm[3];
	ffdp_vec u = {{P->u[0], P->u[1], P->u[2]}, {NX, NY, NZ}, 3};
	ffdp_vec uo = {{P->u[0] + j0, P->u[1] + j0, P->u[2] + j0}, {NX, NY, own}, 3};
	ffdp_dist_image m = {.own = P->M + ms.z0 * mplane, .n = {MX, MY, MZ}};
	ffdp_dist_traffic t = {0, 0, 0, 0};
	ffdp_error err;

	for (int c = 0; c < 3; c++) {
		gf[c] = malloc(sizeof(float) * (size_t)no);
		gm[c] = malloc(sizeof(float) * (size_t)(own * plane + 1));
	}
	ffdp_sample_args a = whole_args(P, &u, full, in, pad);
	ffdp_status st = ffdp_op_sample(be, &a, &err);
	ffdp_sample_args b = a;
	b.u = &uo, b.lo[2] = s.z0;
	b.out = (ffdp_img){mine, {NX, NY, own}};
	b.moving = (ffdp_img){NULL, {0, 0, 0}};
	ffdp_dist_set_ring(d, 0.0);
	if (!st)
		st = ffdp_dist_sample(d, be, &b, &m, &t, &err);
	int diff = !st && own > 0 && memcmp(mine, full + j0, sizeof(float) * (size_t)(own * plane)) != 0, gd = 0;
	if (!st && in == FFDP_INTERP_LINEAR) {
		ffdp_vec gfv = {{gf[0], gf[1], gf[2]}, {NX, NY, NZ}, 3}, gmv = {{gm[0], gm[1], gm[2]}, {NX, NY, own}, 3};
		ffdp_sample_grad_args ga = {&a, {P->gout, {NX, NY, NZ}}, &gfv, 0, NULL, NULL, NULL, NULL};
		ffdp_sample_grad_args gb = {&b, {P->gout + j0, {NX, NY, own}}, &gmv, 0, NULL, NULL, NULL, NULL};
		st = ffdp_op_sample_grad(be, &ga, &err);
		if (!st)
			st = ffdp_dist_sample_grad(d, be, &gb, &m, &t, &err);
		for (int c = 0; c < 3 && own > 0 && !st; c++)
			gd |= memcmp(gm[c], gf[c] + j0, sizeof(float) * (size_t)(own * plane)) != 0;
	}
	ffdp_dist_set_ring(d, 0.5);
	uint64_t most = (uint64_t)((MZ / size + 2) * mplane) * sizeof(float) * (uint64_t)(size - 1) * (uint64_t)t.fetches;
	CHECK(st == FFDP_OK && !diff && !gd && t.recv <= most,
	      "rank %d: ring, interp %d pad %d: slab [%lld, %lld) has the whole op's bits%s; %llu B received in %lld "
	      "passes (%s)", rank, in, pad, (long long)s.z0, (long long)s.z1, in == FFDP_INTERP_LINEAR ? " (gu too)" : "",
	      (unsigned long long)t.recv, (long long)t.fetches, st ? err.msg : "ok");
	free(full), free(mine);
	for (int c = 0; c < 3; c++)
		free(gf[c]), free(gm[c]);
}

int main(int argc, char **argv)
{
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		ffdp_dist *d = h.d;
		ffdp_backend *be = h.be;
		rank = h.rank, size = h.size;
		problem P = problem_make();
		for (int in = 0; in < 3; in++)
			for (int pad = 0; pad < 2; pad++)
				test_sample(d, be, &P, in, pad), test_ring(d, be, &P, in, pad);
		problem_free(&P);
	}
	return mh_finish(&h);
}
