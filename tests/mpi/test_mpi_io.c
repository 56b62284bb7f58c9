/* One file from every rank's planes under mpirun -np N: each rank builds the
 * same volume, writes its slab with ffdp_dist_image_write /
 * ffdp_dist_field_write / the streaming ffdp_dist_writer, and rank 0
 * checks that the file decompresses to the bytes of the single-process
 * ffdp_image_write / ffdp_field_write.  Odd sizes, an oblique grid, nz <
 * ranks, every storage type, .nii and .nii.gz.  A failure on one rank
 * (a missing directory, a rank that gives too few planes) is an error on
 * every rank and leaves no temporary. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static int rank, size;
static char g_dir[1024];

static const char *P(char *buf, const char *name)
{
	return tu_path(buf, 1200, g_dir, name);
}

/* Rank 0 compares; every rank learns the verdict. */
static void compare(const char *ref, const char *dist, const char *what)
{
	MPI_Barrier(MPI_COMM_WORLD);
	int same = rank == 0 ? tu_same_file_bytes(ref, dist, 1) : 0;
	MPI_Bcast(&same, 1, MPI_INT, 0, MPI_COMM_WORLD);
	if (rank == 0)
		CHECK(same, "%d ranks: %s decompresses to the single-process file's bytes", size, what);
}

static void test_image(int64_t nx, int64_t ny, int64_t nz, ffdp_write_type type, const char *ext, int stream)
{
	char ref[1200], out[1200], name[96];
	ffdp_error err = {0};
	ffdp_volume v = {0};
	tu_rng r = tu_rng_make(1000 + (uint64_t)(nx * 7 + nz) + (uint64_t)type);
	ffdp_grid g = tu_random_grid(&r, nx, ny, nz);
	ffdp_volume_alloc(&v, &g, &err);
	tu_fill_uniform(&r, v.data, ffdp_grid_voxels(&g), -20, 900);
	if (type == FFDP_WRITE_LABEL16)
		for (int64_t i = 0; i < ffdp_grid_voxels(&g); i++)
			v.data[i] = (float)(int)v.data[i];
	snprintf(name, sizeof(name), "img%lldx%lldx%lld_t%d%s%s", (long long)nx, (long long)ny, (long long)nz,
		 (int)type, stream ? "_stream" : "", ext);
	if (rank == 0) {
		char rn[128];
		snprintf(rn, sizeof(rn), "ref_%s", name);
		CHECK_OK(ffdp_image_write(P(ref, rn), &v, type, &err), &err, "reference %s", rn);
	}
	ffdp_slab s = ffdp_slab_of(nz, rank, size);
	int64_t plane = nx * ny;
	ffdp_dist *d = NULL;
	ffdp_dist_create(&d, &err);
	ffdp_status st;
	if (!stream) {
		st = ffdp_dist_image_write(d, P(out, name), &g, v.data + s.z0 * plane, &s, type, &err);
	} else {
		ffdp_dist_writer *w = NULL;
		st = ffdp_dist_writer_open(d, P(out, name), &g, 1, FFDP_WRITE_FLOAT32, NULL, &s, &w, &err);
		for (int64_t z = s.z0; st == FFDP_OK && z < s.z1; z++) {
			const float *p[1] = {v.data + z * plane};
			ffdp_dist_writer_append(w, p, 1, &err);
		}
		if (st == FFDP_OK)
			st = ffdp_dist_writer_commit(w, &err);
	}
	CHECK(st == FFDP_OK, "rank %d: wrote planes [%lld, %lld) of %s%s%s", rank, (long long)s.z0, (long long)s.z1,
	      name, st ? ": " : "", st ? err.msg : "");
	compare(ref, out, name);
	ffdp_dist_destroy(d);
	ffdp_volume_free(&v);
}

static void test_field(int64_t nz, const char *ext)
{
	char ref[1200], out[1200], name[64];
	ffdp_error err = {0};
	ffdp_field u = {0};
	tu_rng r = tu_rng_make(77 + (uint64_t)nz);
	ffdp_grid g = tu_random_grid(&r, 15, 12, nz);
	ffdp_field_alloc(&u, &g, &err);
	for (int c = 0; c < u.ncomp; c++)
		tu_fill_uniform(&r, u.c[c], ffdp_grid_voxels(&g), -5, 5);
	snprintf(name, sizeof(name), "field_nz%lld%s", (long long)nz, ext);
	if (rank == 0) {
		char rn[96];
		snprintf(rn, sizeof(rn), "ref_%s", name);
		CHECK_OK(ffdp_field_write(P(ref, rn), &u, &err), &err, "reference %s", rn);
	}
	ffdp_slab s = ffdp_slab_of(nz, rank, size);
	int64_t plane = g.n[0] * g.n[1];
	float *c[3] = {u.c[0] + s.z0 * plane, u.c[1] + s.z0 * plane, u.ncomp > 2 ? u.c[2] + s.z0 * plane : NULL};
	ffdp_dist *d = NULL;
	ffdp_dist_create(&d, &err);
	CHECK_OK(ffdp_dist_field_write(d, P(out, name), &g, c, &s, &err), &err, "rank %d: wrote its planes of %s",
		 rank, name);
	compare(ref, out, name);
	ffdp_dist_destroy(d);
	ffdp_field_free(&u);
}

/* Every rank must fail, with the failing rank's message, and nothing stays. */
static void test_failures(void)
{
	char out[1200];
	ffdp_error err = {0};
	ffdp_dist *d = NULL;
	ffdp_dist_create(&d, &err);
	tu_rng r = tu_rng_make(5);
	ffdp_grid g = tu_random_grid(&r, 10, 9, 7);
	ffdp_slab s = ffdp_slab_of(7, rank, size);
	float *planes = calloc((size_t)(10 * 9 * 7), sizeof(float));

	ffdp_status st = ffdp_dist_image_write(d, P(out, "nodir/x.nii.gz"), &g, planes, &s, FFDP_WRITE_FLOAT32, &err);
	CHECK(st != FFDP_OK && strstr(err.msg, "nodir"), "rank %d: missing directory is an error here too: %s", rank,
	      err.msg);

	/* The last rank gives one plane too few (with 1 rank: rank 0 itself). */
	int liar = size - 1;
	for (int gz = 0; gz < 2; gz++) {
		ffdp_dist_writer *w = NULL;
		P(out, gz ? "short.nii.gz" : "short.nii");
		st = ffdp_dist_writer_open(d, out, &g, 1, FFDP_WRITE_FLOAT32, NULL, &s, &w, &err);
		CHECK(st == FFDP_OK, "rank %d: open %s", rank, out);
		if (st)
			continue;
		const float *p[1] = {planes};
		int64_t give = s.z1 - s.z0 - (rank == liar ? 1 : 0);
		ffdp_dist_writer_append(w, p, give, &err);
		st = ffdp_dist_writer_commit(w, &err);
		char want[64];
		snprintf(want, sizeof(want), "were given%s", size > 1 ? " (rank" : "");
		CHECK(st != FFDP_OK && strstr(err.msg, want), "rank %d: rank %d's short slab fails here too: %s", rank,
		      liar, err.msg);
		MPI_Barrier(MPI_COMM_WORLD);
		CHECK(access(out, F_OK) != 0, "rank %d: no %s", rank, strrchr(out, '/') + 1);
	}
	MPI_Barrier(MPI_COMM_WORLD);
	int left = tu_count_temporaries(g_dir);
	CHECK(left == 0, "rank %d: no temporaries or part files left (%d)", rank, left);
	free(planes);
	ffdp_dist_destroy(d);
}

int main(int argc, char **argv)
{
	int nfail = 0;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	snprintf(g_dir, sizeof(g_dir), "%s/np%d", FFDP_TEST_TMP, size);
	if (rank == 0)
		tu_mkdirs(g_dir);
	MPI_Barrier(MPI_COMM_WORLD);

	test_image(23, 19, 17, FFDP_WRITE_FLOAT32, ".nii.gz", 0);
	test_image(23, 19, 17, FFDP_WRITE_FLOAT32, ".nii", 0);
	test_image(21, 13, 11, FFDP_WRITE_INT16, ".nii.gz", 0);
	test_image(21, 13, 11, FFDP_WRITE_UINT8, ".nii", 0);
	test_image(17, 9, 3, FFDP_WRITE_LABEL16, ".nii.gz", 0); /* nz 3: with 4 ranks one owns nothing */
	test_image(301, 257, 19, FFDP_WRITE_FLOAT32, ".nii.gz", 1); /* 5.9 MB: several members */
	test_image(19, 11, 13, FFDP_WRITE_FLOAT32, ".nii", 1);
	test_field(9, ".nii.gz");
	test_field(9, ".nii");
	test_field(1, ".nii.gz"); /* 2-D: two components */
	test_failures();

	MPI_Allreduce(&check_nfail, &nfail, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0)
		printf("%d ranks: %d failed checks over all ranks\n", size, nfail);
	int rc = check_done();
	MPI_Finalize();
	return nfail ? 1 : rc;
}
