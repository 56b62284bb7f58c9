/* Distributed smoothing and halo exchange under mpirun -np N: every rank
 * builds the same volume, smooths the whole of it with ffdp_op_smooth as
 * the reference and its own slab with ffdp_dist_smooth, and compares its
 * planes.  Odd sizes, so slabs differ in thickness; with 4 ranks the z
 * radius (5) exceeds a slab (4 planes), so halos span several ranks. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpi/mpi_harness.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static int rank;

/* Halo planes hold their global index (own planes set by each rank),
 * or fill outside the volume. */
static void test_halo(ffdp_dist *d, int64_t nz, int64_t h)
{
	const int64_t plane = 6;
	ffdp_slab s = ffdp_slab_of(nz, rank, ffdp_dist_size(d));
	int64_t own = s.z1 - s.z0, nb = own + 2 * h, bad = 0;
	float *buf = malloc((size_t)(nb * plane + 1) * sizeof(float));
	ffdp_error err;

	for (int64_t i = 0; i < nb * plane; i++)
		buf[i] = -7.0f;
	for (int64_t l = 0; l < own; l++)
		for (int64_t i = 0; i < plane; i++)
			buf[(l + h) * plane + i] = (float)(s.z0 + l) * 100.0f + (float)i;
	CHECK_OK(ffdp_dist_halo_exchange(d, buf, plane, &s, h, -1.0f, &err), &err,
		 "rank %d: halo exchange nz %lld h %lld", rank, (long long)nz, (long long)h);
	for (int64_t b = 0; b < nb; b++) {
		int64_t z = s.z0 - h + b;
		for (int64_t i = 0; i < plane; i++) {
			float want = z < 0 || z >= nz ? -1.0f : (float)z * 100.0f + (float)i;
			bad += buf[b * plane + i] != want;
		}
	}
	CHECK(bad == 0, "rank %d: planes [%lld, %lld) h %lld: every halo plane right (%lld wrong)", rank,
	      (long long)s.z0, (long long)s.z1, (long long)h, (long long)bad);
	free(buf);
}

static void test_smooth(ffdp_dist *d, ffdp_backend *be, const double sigma[3], int renorm)
{
	const int64_t n[3] = {23, 19, 17}, plane = n[0] * n[1], nv = plane * n[2];
	ffdp_slab s = ffdp_slab_of(n[2], rank, ffdp_dist_size(d));
	const int64_t own = s.z1 - s.z0;
	ffdp_smooth_opts o = {{sigma[0], sigma[1], sigma[2]}, 0.0, renorm};
	float *whole = malloc((size_t)nv * sizeof(float));
	float *mine = malloc((size_t)(own * plane + 1) * sizeof(float));
	tu_rng rng = tu_rng_make(20240611);
	ffdp_error err;

	tu_fill_smooth(&rng, whole, n, 0.05);
	memcpy(mine, whole + s.z0 * plane, (size_t)(own * plane) * sizeof(float));
	ffdp_img ref = {whole, {n[0], n[1], n[2]}};
	CHECK_OK(ffdp_op_smooth(be, ref, &o, &err), &err, "rank %d: reference smoothing", rank);
	ffdp_img slab = {mine, {n[0], n[1], own}};
	CHECK_OK(ffdp_dist_smooth(d, be, slab, &s, &o, &err), &err,
		 "rank %d: dist smooth sigma (%g, %g, %g) renormalize %d", rank, sigma[0], sigma[1],
		 sigma[2], renorm);
	double scale = 0.0, diff = 0.0;
	for (int64_t i = 0; i < nv; i++)
		scale = fmax(scale, fabs(whole[i]));
	for (int64_t i = 0; i < own * plane; i++)
		diff = fmax(diff, fabs((double)mine[i] - whole[s.z0 * plane + i]));
	double rel = diff / fmax(scale, 1e-30);
	CHECK(rel < 1e-6, "rank %d: planes [%lld, %lld) sigma (%g, %g, %g) renormalize %d: rel err %.3g",
	      rank, (long long)s.z0, (long long)s.z1, sigma[0], sigma[1], sigma[2], renorm, rel);
	free(whole);
	free(mine);
}

int main(int argc, char **argv)
{
	static const double sigmas[][3] = {{1.3, 0.7, 2.1}, {2.1, 1.3, 0.7}, {0.0, 0.0, 1.0}, {1.0, 1.0, 0.0}};
	mpi_harness h;

	if (mh_start(&h, &argc, &argv)) {
		ffdp_dist *d = h.d;
		ffdp_backend *be = h.be;
		rank = h.rank;
		test_halo(d, 17, 1);
		test_halo(d, 17, 7);
		test_halo(d, 3, 2);
		for (size_t i = 0; i < sizeof(sigmas) / sizeof(sigmas[0]); i++)
			for (int renorm = 0; renorm <= 1; renorm++)
				test_smooth(d, be, sigmas[i], renorm);
	}
	return mh_finish(&h);
}
