/* A whole registration under mpirun -np N: a real OASIS pair (subjects 2
 * -> 1, T1 and labels, downsampled by 4 to 64x64x40 so that a run takes a
 * few seconds), moments + affine + a deformable stage (greedy with its
 * inverse, then SyN with the moving images passed around the ring of
 * ranks), affine and deformable stages spread over the ranks, the finish
 * too.  Rank 0 also runs it in one process.  The CPU's plane-ordered sums
 * (and any single rank) give the same bits: T, warps, Dice, loss.  Rank-
 * order sums (GPU ranks; their rules are also run here on the CPU) agree to
 * rounding per op, and the registrations as two runs of different
 * arithmetic: the bars below.  One run of each backend also winsorises the
 * images (each rank counts its planes' histogram; the counts are summed)
 * and weights the loss by a moving mask (the moving labels: 1 inside, 0.25
 * outside; each rank fetches the others' planes of it as of the image). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi/mpi_harness.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"
#include "ffdp/io.h"
#include "ffdp/pyramid.h"
#include "testutil.h"

static int rank, size;

typedef struct subject {
	ffdp_volume t1, lab;
} subject;

/* Subject n's T1 and labels on its grid shrunk by 4 (labels by LABEL sampling). */
static ffdp_status load(ffdp_backend *be, int n, subject *s, ffdp_error *err)
{
	char path[1024];
	ffdp_volume t1 = {0}, lab = {0};
	ffdp_grid g;
	ffdp_mat4 id = ffdp_mat4_identity();
	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "%s/oasis_trt20/subject_%d/t1weighted_brain.nii.gz", FFDP_DATA_DIR, n);
	ffdp_status st = ffdp_image_read(path, FFDP_READ_REQUIRE_3D, &t1, NULL, err);
	snprintf(path, sizeof(path), "%s/oasis_trt20/subject_%d/labels_dkt31_aseg.nii.gz", FFDP_DATA_DIR, n);
	if (!st)
		st = ffdp_image_read(path, FFDP_READ_REQUIRE_3D, &lab, NULL, err);
	if (!st)
		st = ffdp_pyramid_level_grid(&t1.grid, 4.0, 1, &g, err);
	if (!st)
		st = ffdp_pyramid_downsample(be, &t1, &g, &s->t1, err);
	if (!st)
		st = ffdp_warp_volume(be, &lab, &g, &id, NULL, FFDP_INTERP_LABEL, &s->lab, err);
	ffdp_volume_free(&t1);
	ffdp_volume_free(&lab);
	return st;
}

static double field_rel(const ffdp_field *a, const ffdp_field *b, int64_t *differ)
{
	int64_t n = ffdp_grid_voxels(&a->grid);
	double d = 0, m = 0;
	*differ = 0;
	for (int c = 0; c < 3; c++)
		for (int64_t i = 0; i < n; i++) {
			d = fmax(d, fabs((double)a->c[c][i] - b->c[c][i]));
			m = fmax(m, fabs((double)b->c[c][i]));
			*differ += a->c[c][i] != b->c[c][i];
		}
	return d / fmax(m, 1e-30);
}

/* f: the rank's planes of a field on grid g (ffdp_register under MPI);
 * the whole field on rank 0 afterwards, nothing elsewhere. */
static ffdp_status gather_field(ffdp_dist *d, ffdp_field *f, const ffdp_grid *g, ffdp_error *err)
{
	ffdp_field w = {0};
	ffdp_status s = rank == 0 ? ffdp_field_alloc(&w, g, err) : FFDP_OK;
	s = ffdp_dist_agree(d, s, "gather", err);
	for (int c = 0; c < 3 && !s; c++)
		s = ffdp_dist_gather(d, f->c[c], g->n[0] * g->n[1], g->n[2], w.c[c], 0, err);
	ffdp_field_free(f);
	*f = w;
	return s;
}

static double dice_of(ffdp_backend *be, const subject *f, const subject *m, const ffdp_reg_result *r)
{
	ffdp_volume w = {0};
	ffdp_error err;
	if (ffdp_warp_volume(be, &m->lab, &f->lab.grid, &r->T, &r->u, FFDP_INTERP_LABEL, &w, &err))
		return -1;
	double d = tu_mean_dice(&w, &f->lab);
	ffdp_volume_free(&w);
	return d;
}

/* flags: ffdp_dist_use_backend's (0: the CPU's plane-ordered sums, N ranks
 * = one process bit for bit; else rank-order sums, as on GPUs: equal to
 * rounding).  kind: the registration's backend (FFDP_TEST_BACKEND=cuda on
 * the GPU machine). */
static void run(ffdp_dist *d, ffdp_backend *be, const subject *f, const subject *m, ffdp_stage_kind kind,
		unsigned flags, ffdp_backend_kind bk, ffdp_moment_store ms, int winsor)
{
	ffdp_volume mm = {0};
	ffdp_reg_opts o;
	ffdp_reg_result one, many;
	ffdp_error err;
	const char *name = kind == FFDP_STAGE_SYN ? "syn" : "greedy";
	const int bits = (!flags && bk == FFDP_BACKEND_CPU) || size == 1;
	char what[96];

	snprintf(what, sizeof(what), "%s%s%s%s%s", name, bk == FFDP_BACKEND_CUDA ? " on the GPU" : "",
		 flags ? " (rank-order sums, staged)" : "", ms == FFDP_MOMENTS_BF16 ? " (bf16 moments)" : "",
		 winsor ? " (winsorised, moving mask)" : "");
	ffdp_reg_preset(name, &o, &err);
	o.moments = ms;
	o.backend = bk;
	if (bk == FFDP_BACKEND_CUDA && ffdp_cuda_device_count() > 0) /* a GPU per rank where there are */
		o.device = ffdp_dist_local_rank(d) % ffdp_cuda_device_count();
	o.min_level_size = 16;
	if (winsor && !ffdp_volume_alloc(&mm, &m->lab.grid, &err)) {
		o.winsorize[0] = 0.005, o.winsorize[1] = 0.995;
		for (int64_t i = 0; i < ffdp_grid_voxels(&mm.grid); i++)
			mm.data[i] = m->lab.data[i] > 0.5f ? 1.0f : 0.25f;
		o.moving_mask = &mm;
	}
	o.stages[1].nlevels = 2, o.stages[1].shrink[0] = 2, o.stages[1].shrink[1] = 1;
	o.stages[1].iters[0] = 40, o.stages[1].iters[1] = 15;
	o.stages[2].nlevels = 2, o.stages[2].shrink[0] = 2, o.stages[2].shrink[1] = 1;
	o.stages[2].iters[0] = kind == FFDP_STAGE_SYN ? 30 : 40, o.stages[2].iters[1] = 15;
	memset(&one, 0, sizeof(one));
	ffdp_status s1 = FFDP_OK;
	if (rank == 0)
		s1 = ffdp_register(&f->t1, &m->t1, &o, &one, &err);
	CHECK(s1 == FFDP_OK, "rank %d: %s in one process (%s)", rank, what, s1 ? err.msg : "ok");
	o.dist = d;
	o.dist_flags = flags;
	/* SyN samples its moving images around the ring, greedy fetches them */
	ffdp_dist_set_ring(d, kind == FFDP_STAGE_SYN ? 0.0 : 0.5);
	ffdp_status s2 = ffdp_register(&f->t1, &m->t1, &o, &many, &err);
	ffdp_dist_set_ring(d, 0.5);
	if (!s2 && many.has_warp)
		s2 = gather_field(d, &many.u, &f->t1.grid, &err);
	if (!s2 && many.has_inverse)
		s2 = gather_field(d, &many.u_inv, &f->t1.grid, &err);
	const ffdp_stage_report *rep = &many.stages[2];
	CHECK(s2 == FFDP_OK && (size == 1 || rep->fetch_recv > 0),
	      "rank %d: %s over %d ranks: %lld fetches, %llu B received, %llu B sent, %.2f s (%s)", rank, what, size,
	      (long long)rep->fetches, (unsigned long long)rep->fetch_recv, (unsigned long long)rep->fetch_sent,
	      rep->seconds, s2 ? err.msg : "ok");
	if (rank == 0 && !s1 && !s2) {
		int64_t nd = 0, ni = 0;
		double e = field_rel(&many.u, &one.u, &nd);
		double ei = many.has_inverse && one.has_inverse ? field_rel(&many.u_inv, &one.u_inv, &ni) : 1.0;
		double d1 = dice_of(be, f, m, &one), dn = dice_of(be, f, m, &many), dT = 0;
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 4; j++)
				dT = fmax(dT, fabs(many.T.m[4 * i + j] - one.T.m[4 * i + j]));
		if (bits) {
			/* the CPU's rules, or one rank: the same bits */
			CHECK(!memcmp(&many.T, &one.T, sizeof(one.T)) && (size == 1 || many.stages[1].fetches > 0),
			      "%s, %d ranks: the affine stage (distributed, %lld fetches) gives the same T bit for bit", what,
			      size, (long long)many.stages[1].fetches);
			CHECK(e == 0 && ei == 0, "%s, %d ranks: warp rel diff %.2g (%lld values differ), inverse %.2g (%lld differ)",
			      what, size, e, (long long)nd, ei, (long long)ni);
			CHECK(dn > 0 && dn == d1, "%s, %d ranks: mean Dice %.4f, one process %.4f (identical)", what, size, dn,
			      d1);
			CHECK(many.stages[2].final_loss == one.stages[2].final_loss &&
				      many.stages[2].iters[0] == one.stages[2].iters[0],
			      "%s, %d ranks: final loss %.17g (one process %.17g), iterations %d/%d", what, size,
			      many.stages[2].final_loss, one.stages[2].final_loss, many.stages[2].iters[0],
			      one.stages[2].iters[0]);
		} else {
			/* rank-order sums (GPU ranks, or their rules on the CPU): the
			 * ops agree to rounding (bench/gpu/mpi_agree.sh: 1e-14 in T
			 * after an iteration), which Adam's per-voxel normalisation
			 * turns into full steps where the gradient is near 0; the
			 * registrations then agree as two runs of different
			 * arithmetic do (test_gpu_register's bar) */
			double mu = tu_field_mean_diff(&many.u, &one.u), mi = many.has_inverse ? tu_field_mean_diff(&many.u_inv, &one.u_inv) : 0;
			CHECK(dT < 2e-3, "%s, %d ranks: T within 2e-3 of one process (largest difference %.2g)", what, size, dT);
			CHECK(mu < 0.1 && mi < 0.1, "%s, %d ranks: mean |u - u_one| %.4f voxel, inverse %.4f (< 0.1)", what,
			      size, mu, mi);
			CHECK(dn > 0 && fabs(dn - d1) < 2e-3, "%s, %d ranks: mean Dice %.4f, one process %.4f (within 0.002)",
			      what, size, dn, d1);
			CHECK(fabs(many.stages[2].final_loss - one.stages[2].final_loss) < 1e-3 * fabs(one.stages[2].final_loss),
			      "%s, %d ranks: final loss %.8f, one process %.8f (within 0.1%%)", what, size,
			      many.stages[2].final_loss, one.stages[2].final_loss);
		}
	}
	ffdp_reg_result_free(&one);
	ffdp_reg_result_free(&many);
	ffdp_volume_free(&mm);
}

int main(int argc, char **argv)
{
	ffdp_error err;
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		ffdp_dist *d = h.d;
		ffdp_backend *be = h.be;
		rank = h.rank, size = h.size;
		subject f, m;
		ffdp_status s = load(be, 1, &f, &err);
		if (!s)
			s = load(be, 2, &m, &err);
		CHECK(s == FFDP_OK, "rank %d: OASIS subjects 1 and 2 at shrink 4 (%s)", rank, s ? err.msg : "read");
		const char *bn = getenv("FFDP_TEST_BACKEND");
		ffdp_backend_kind bk = bn && !strcmp(bn, "cuda") ? FFDP_BACKEND_CUDA : FFDP_BACKEND_CPU;
		if (!s && bk == FFDP_BACKEND_CPU) {
			run(d, be, &f, &m, FFDP_STAGE_GREEDY, 0, bk, FFDP_MOMENTS_F32, 0);
			run(d, be, &f, &m, FFDP_STAGE_SYN, 0, bk, FFDP_MOMENTS_F32, 0);
			/* stochastic rounding keyed by the global voxel: the same bits */
			run(d, be, &f, &m, FFDP_STAGE_SYN, 0, bk, FFDP_MOMENTS_BF16, 1);
			/* the GPU path's rules (transport, sums, boxes), on the CPU */
			run(d, be, &f, &m, FFDP_STAGE_GREEDY, FFDP_DIST_STAGED | FFDP_DIST_PORTABLE, bk, FFDP_MOMENTS_F32, 0);
		}
		if (!s && bk == FFDP_BACKEND_CUDA) {
			run(d, be, &f, &m, FFDP_STAGE_GREEDY, 0, bk, FFDP_MOMENTS_F32, 0);
			run(d, be, &f, &m, FFDP_STAGE_SYN, 0, bk, FFDP_MOMENTS_F32, 0);
			run(d, be, &f, &m, FFDP_STAGE_GREEDY, 0, bk, FFDP_MOMENTS_BF16, 1);
		}
		ffdp_volume_free(&f.t1), ffdp_volume_free(&f.lab);
		ffdp_volume_free(&m.t1), ffdp_volume_free(&m.lab);
	}
	return mh_finish(&h);
}
