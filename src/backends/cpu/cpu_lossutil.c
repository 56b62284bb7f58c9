#include "cpu_lossutil.h"

int64_t ffdp_cpu_block_len(int64_t n)
{
	int64_t len = (n + FFDP_CPU_MAX_BLOCKS - 1) / FFDP_CPU_MAX_BLOCKS;
	return len < 65536 ? 65536 : len;
}

double ffdp_cpu_sum_f32(const float *x, int64_t n)
{
	double part[FFDP_CPU_MAX_BLOCKS];
	int64_t len = ffdp_cpu_block_len(n), nb = (n + len - 1) / len;

#pragma omp parallel for schedule(static) if (nb > 1)
	for (int64_t b = 0; b < nb; b++) {
		int64_t hi = (b + 1) * len < n ? (b + 1) * len : n;
		double s = 0.0;
		for (int64_t i = b * len; i < hi; i++)
			s += x[i];
		part[b] = s;
	}
	double s = 0.0;
	for (int64_t b = 0; b < nb; b++)
		s += part[b];
	return s;
}

ffdp_status ffdp_cpu_loss_denom(const ffdp_loss_args *a, const char *what, double *denom, ffdp_error *err)
{
	int64_t n = a->f.n[0] * a->f.n[1] * a->f.n[2];
	if (a->denom > 0.0) {
		*denom = a->denom;
		return FFDP_OK;
	}
	*denom = a->mask ? ffdp_cpu_sum_f32(a->mask, n) : (double)n;
	if (!(*denom > 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: the mask sums to %g and no denominator was given", what,
				 *denom);
	return FFDP_OK;
}

double ffdp_cpu_plane_sums(const double *part, int64_t ny, int64_t nz, double *zsum)
{
	double sum = 0.0;
	for (int64_t z = 0; z < nz; z++) {
		double pz = 0.0;
		for (int64_t y = 0; y < ny; y++)
			pz += part[z * ny + y];
		if (zsum)
			zsum[z] = pz;
		sum += pz;
	}
	return sum;
}
