/* Winsorising: the intensities at two quantiles of an image, which the
 * normalisation then maps to 0 and 1 with everything beyond clipped (ANTs'
 * --winsorize-image-intensities [lo,hi]).  A few very bright voxels (vessels,
 * fat, a hot pixel) would otherwise squeeze the tissue into the bottom of
 * [0, 1]: MI's fixed bins then see one or two bins of it.
 *
 * The quantiles come from a histogram of REG_WBINS bins over the image's
 * [min, max], counted on the host from the caller's volume (the rank's
 * planes under MPI, the counts summed over the ranks in rank order: exact,
 * so every rank and one process find the same values), then linear within
 * the bin that holds the wanted rank.  Their resolution is (max - min) /
 * REG_WBINS: 1.5e-5 of the range, below the 16-bit images' step.  NaN
 * voxels are not counted.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "reg_internal.h"
#ifdef FFDP_HAVE_MPI
#include "ffdp/dist.h"
#endif

enum { REG_WBINS = 1 << 16 };

/* Counts of the n values at x into h over [lo, hi] (hi > lo): one
 * histogram a thread, added in thread order (integers: exact). */
static ffdp_status w_count(const float *x, int64_t n, double lo, double hi, double *h, ffdp_error *err)
{
	const double scale = REG_WBINS / (hi - lo);
	const int nt = omp_get_max_threads();
	uint64_t *part = calloc((size_t)nt * REG_WBINS, sizeof(uint64_t));
	if (!part)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "winsorize: cannot allocate %d histograms", nt);
#pragma omp parallel
	{
		uint64_t *c = part + (size_t)omp_get_thread_num() * REG_WBINS;
#pragma omp for schedule(static)
		for (int64_t i = 0; i < n; i++) {
			const double v = ((double)x[i] - lo) * scale;
			if (v == v) /* NaN: not counted */
				c[v < REG_WBINS - 1 ? (int64_t)(v > 0 ? v : 0) : REG_WBINS - 1]++;
		}
	}
	for (int t = 0; t < nt; t++)
		for (int b = 0; b < REG_WBINS; b++)
			h[b] += (double)part[(size_t)t * REG_WBINS + b];
	free(part);
	return FFDP_OK;
}

/* The value of rank k (0-based, k < total) from the counts h over [lo, hi]. */
static double w_rank_value(const double *h, double k, double lo, double hi)
{
	double below = 0.0;
	for (int b = 0; b < REG_WBINS; b++) {
		if (below + h[b] > k) /* rank k lies in bin b: spread evenly across it */
			return lo + (hi - lo) * ((double)b + (k - below + 0.5) / h[b]) / REG_WBINS;
		below += h[b];
	}
	return hi;
}

ffdp_status reg_winsor_range(const reg_pair *p, const float *x, int64_t n, const double q[2], double *lo,
			     double *hi, ffdp_error *err)
{
	if (!(*hi > *lo) || (q[0] <= 0.0 && q[1] >= 1.0))
		return FFDP_OK; /* a constant image, or nothing to clip */
	double *h = calloc(REG_WBINS, sizeof(double));
	if (!h)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "winsorize: cannot allocate the histogram");
	ffdp_status s = w_count(x, n, *lo, *hi, h, err);
#ifdef FFDP_HAVE_MPI
	if (p->dist) {
		double *all = s ? NULL : malloc(REG_WBINS * sizeof(double));
		if (!s && !all)
			s = ffdp_fail(err, FFDP_ERR_NOMEM, "winsorize: cannot allocate the histogram");
		s = ffdp_dist_agree(p->dist, s, "winsorize", err); /* every rank sums, or none */
		if (!s)
			s = ffdp_dist_rank_total(p->dist, h, REG_WBINS, all, err);
		if (!s)
			memcpy(h, all, REG_WBINS * sizeof(double));
		free(all);
	}
#else
	(void)p;
#endif
	double total = 0.0;
	for (int b = 0; b < REG_WBINS && !s; b++)
		total += h[b];
	if (!s && total > 0.0) {
		const double a = *lo, b = *hi;
		const double vlo = q[0] > 0.0 ? w_rank_value(h, floor(q[0] * (total - 1.0)), a, b) : a;
		const double vhi = q[1] < 1.0 ? w_rank_value(h, ceil(q[1] * (total - 1.0)), a, b) : b;
		if (vhi > vlo) /* else most of the image is one value: keep its range */
			*lo = vlo, *hi = vhi;
	}
	free(h);
	return s;
}
