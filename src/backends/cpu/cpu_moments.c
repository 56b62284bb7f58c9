/* Intensity moments: one read of the image (floor 4 B/voxel). */
#include "cpu_ops.h"

ffdp_status ffdp_cpu_moments(ffdp_backend *be, ffdp_img x, double out[10], ffdp_error *err)
{
	(void)be, (void)err;
	double acc[10] = {0};
	const int64_t nx = x.n[0], ny = x.n[1], nz = x.n[2];
#pragma omp parallel
	{
		double loc[10] = {0};
#pragma omp for collapse(2) schedule(static)
		for (int64_t z = 0; z < nz; z++)
			for (int64_t y = 0; y < ny; y++) {
				const float *row = x.p + (z * ny + y) * nx;
				/* per row: sums over x of w, w x, w x^2 */
				double s0 = 0, s1 = 0, s2 = 0;
				for (int64_t i = 0; i < nx; i++) {
					double w = row[i] > 0.0f ? row[i] : 0.0;
					s0 += w, s1 += w * (double)i, s2 += w * (double)i * (double)i;
				}
				double fy = (double)y, fz = (double)z;
				loc[0] += s0;
				loc[1] += s1, loc[2] += s0 * fy, loc[3] += s0 * fz;
				loc[4] += s2, loc[5] += s1 * fy, loc[6] += s1 * fz;
				loc[7] += s0 * fy * fy, loc[8] += s0 * fy * fz, loc[9] += s0 * fz * fz;
			}
#pragma omp critical
		for (int k = 0; k < 10; k++)
			acc[k] += loc[k];
	}
	for (int k = 0; k < 10; k++)
		out[k] = acc[k];
	return FFDP_OK;
}
