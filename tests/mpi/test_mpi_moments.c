/* Distributed intensity moments under mpirun -np N: the ranks' plane
 * moments (global index coordinates) added in global plane order give
 * ffdp_op_moments of the whole volume bit for bit; odd sizes, negative
 * voxels (clipped to 0), more ranks than planes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi/mpi_harness.h"
#include "testutil.h"

static void check_volume(const mpi_harness *h, int64_t nx, int64_t ny, int64_t nz)
{
	int64_t n[3] = {nx, ny, nz}, plane = nx * ny;
	float *x = malloc(sizeof(float) * (size_t)(plane * nz));
	tu_rng r = tu_rng_make(77);
	double whole[10], mine[10];
	ffdp_error err;
	ffdp_slab s = ffdp_slab_of(nz, h->rank, h->size);

	tu_fill_uniform(&r, x, plane * nz, -0.2, 1.0);
	ffdp_status st = ffdp_op_moments(h->be, (ffdp_img){x, {nx, ny, nz}}, whole, &err);
	ffdp_img own = {x + s.z0 * plane, {nx, ny, s.z1 - s.z0}};
	if (!st)
		st = ffdp_dist_moments(h->d, h->be, own, &s, mine, &err);
	CHECK(st == FFDP_OK && !memcmp(whole, mine, sizeof(whole)),
	      "rank %d: %lldx%lldx%lld: moments from planes [%lld, %lld) have the whole op's bits (%s)", h->rank,
	      (long long)n[0], (long long)n[1], (long long)n[2], (long long)s.z0, (long long)s.z1,
	      st ? err.msg : "ok");
	free(x);
}

int main(int argc, char **argv)
{
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		check_volume(&h, 23, 19, 17);
		check_volume(&h, 9, 7, 3);
	}
	return mh_finish(&h);
}
