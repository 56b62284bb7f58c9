/* Intensity moments: one read of the image (floor 4 B/voxel).  Each z
 * plane's sums are formed in row order and the planes added in plane
 * order, so the result is the same bits for any thread count (ops.h,
 * reproducible sums). */
#include <stdlib.h>

#include "cpu_ops.h"

/* Box plane z's ten sums, rows in order; z_lo: the box's global plane. */
static void plane_moments(ffdp_img x, int64_t z, int64_t z_lo, double loc[10])
{
	const int64_t nx = x.n[0], ny = x.n[1];
	double fz = (double)(z_lo + z);
	for (int k = 0; k < 10; k++)
		loc[k] = 0.0;
	for (int64_t y = 0; y < ny; y++) {
		const float *row = x.p + (z * ny + y) * nx;
		/* per row: sums over x of w, w x, w x^2 */
		double s0 = 0, s1 = 0, s2 = 0;
		for (int64_t i = 0; i < nx; i++) {
			double w = row[i] > 0.0f ? row[i] : 0.0;
			s0 += w, s1 += w * (double)i, s2 += w * (double)i * (double)i;
		}
		double fy = (double)y;
		loc[0] += s0;
		loc[1] += s1, loc[2] += s0 * fy, loc[3] += s0 * fz;
		loc[4] += s2, loc[5] += s1 * fy, loc[6] += s1 * fz;
		loc[7] += s0 * fy * fy, loc[8] += s0 * fy * fz, loc[9] += s0 * fz * fz;
	}
}

ffdp_status ffdp_cpu_moments_planes(ffdp_backend *be, ffdp_img x, int64_t z_lo, double *out_z, ffdp_error *err)
{
	(void)be, (void)err;
#pragma omp parallel for schedule(static)
	for (int64_t z = 0; z < x.n[2]; z++)
		plane_moments(x, z, z_lo, out_z + 10 * z);
	return FFDP_OK;
}

ffdp_status ffdp_cpu_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err)
{
	const int64_t nz = x.n[2];
	double *part = malloc((size_t)(10 * nz) * sizeof(double));
	if (!part)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "moments: no memory for %lld plane sums", (long long)nz);
	ffdp_cpu_moments_planes(be, x, 0, part, err);
	for (int k = 0; k < 10; k++)
		out[k] = 0.0;
	for (int64_t z = 0; z < nz; z++)
		for (int k = 0; k < 10; k++)
			out[k] += part[10 * z + k];
	free(part);
	return FFDP_OK;
}
