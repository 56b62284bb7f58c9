/* The z extent of the sampler's points (ops.h, ffdp_op_sample_zrange): what
 * a shard must fetch of a distributed moving image.  The point is formed
 * as the sampler forms it (cpu_sample.c): row base, plus x, plus B u. */
#include <math.h>

#include "cpu_ops.h"

static double point_z(const ffdp_sample_args *a, int64_t x, int64_t y, int64_t z, int64_t j)
{
	const double *W = a->W, *B = a->B;
	double base = W[9] * (double)(a->lo[1] + y) + W[10] * (double)(a->lo[2] + z) + W[11];
	double p = base + W[8] * (double)(a->lo[0] + x);
	if (a->u) {
		const ffdp_vec *u = a->u;
		double u2 = u->ncomp == 3 ? u->c[2][j] : 0.0;
		p += B[6] * u->c[0][j] + B[7] * u->c[1][j] + B[8] * u2;
	}
	return p;
}

ffdp_status ffdp_cpu_sample_zrange(ffdp_backend *be, const ffdp_sample_args *a, double *lo, double *hi, int *nan,
				   ffdp_error *err)
{
	const int64_t *n = a->out.n;
	double l = INFINITY, h = -INFINITY;
	int bad = 0;
	(void)be, (void)err;
#pragma omp parallel for collapse(2) reduction(min : l) reduction(max : h) reduction(| : bad)
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++) {
				double p = point_z(a, x, y, z, (z * n[1] + y) * n[0] + x);
				bad |= p != p;
				l = p < l ? p : l;
				h = p > h ? p : h;
			}
	*lo = l, *hi = h, *nan = bad;
	return FFDP_OK;
}
