/* ffdp_op_moments on the CPU: the ten intensity moments against a plain
 * double reference (odd sizes, negative voxels clipped to 0, 2-D), and the
 * same bits for 1 and 2 threads (planes added in order). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ffdp/ffdp.h"
#include "testutil.h"

static void reference(const float *x, const int64_t n[3], double out[10])
{
	memset(out, 0, 10 * sizeof(double));
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t i = 0; i < n[0]; i++) {
				double w = fmax(x[(z * n[1] + y) * n[0] + i], 0.0), c[3] = {(double)i, (double)y, (double)z};
				out[0] += w;
				for (int a = 0; a < 3; a++)
					out[1 + a] += w * c[a];
				int k = 4;
				for (int a = 0; a < 3; a++)
					for (int b = a; b < 3; b++)
						out[k++] += w * c[a] * c[b];
			}
}

static void check_size(ffdp_backend *be, tu_rng *r, int64_t nx, int64_t ny, int64_t nz)
{
	int64_t n[3] = {nx, ny, nz}, nv = nx * ny * nz;
	float *x = malloc((size_t)nv * sizeof(float));
	double got[2][10], want[10], e = 0;
	ffdp_error err = {0};
	tu_fill_uniform(r, x, nv, -0.3, 1.0);
	reference(x, n, want);
	int keep = omp_get_max_threads();
	for (int t = 0; t < 2; t++) {
		omp_set_num_threads(t + 1);
		CHECK_OK(ffdp_op_moments(be, (ffdp_img){x, {nx, ny, nz}}, got[t], &err), &err, "moments");
	}
	omp_set_num_threads(keep);
	for (int k = 0; k < 10; k++)
		e = fmax(e, fabs(got[0][k] - want[k]) / fmax(fabs(want[k]), 1e-30));
	CHECK(e < 1e-12 && !memcmp(got[0], got[1], sizeof(got[0])),
	      "%lldx%lldx%lld: moments within %.1e of the reference, 1 and 2 threads the same bits", (long long)nx,
	      (long long)ny, (long long)nz, e);
	free(x);
}

int main(void)
{
	ffdp_backend *be = NULL;
	ffdp_error err = {0};
	tu_rng r = tu_rng_make(4242);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &be, &err), &err, "open the CPU backend");
	if (be) {
		check_size(be, &r, 17, 23, 11);
		check_size(be, &r, 40, 31, 1);
		check_size(be, &r, 9, 7, 64);
	}
	ffdp_backend_close(be);
	return check_done();
}
