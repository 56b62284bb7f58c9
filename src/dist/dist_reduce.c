/* Reproducible reductions over z-slabs (dist.h): per-plane partials
 * gathered to every rank and added in global plane order. */
#include <stdlib.h>

#include "dist_internal.h"

ffdp_status ffdp_dist_plane_total(ffdp_dist *d, const ffdp_slab *s, const double *zsum, int k, double *total,
				  ffdp_error *err)
{
	const int64_t nz = s->nz;
	int *cnt = malloc((size_t)d->size * 2 * sizeof(int));
	double *all = malloc((size_t)(nz * k + 1) * sizeof(double));
	int ok = cnt && all && nz * k <= INT32_MAX, any = 0;

	/* every rank must join the gather or none */
	MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
	if (!ok) {
		free(cnt), free(all);
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist reduce: cannot gather %lld plane sums", (long long)(nz * k));
	}
	for (int q = 0; q < d->size; q++) {
		ffdp_slab o = ffdp_slab_of(nz, q, d->size);
		cnt[q] = (int)((o.z1 - o.z0) * k);
		cnt[d->size + q] = (int)(o.z0 * k);
	}
	any = MPI_Allgatherv(zsum, (int)((s->z1 - s->z0) * k), MPI_DOUBLE, all, cnt, cnt + d->size, MPI_DOUBLE,
			     d->comm);
	for (int j = 0; j < k; j++) {
		double t = 0.0;
		for (int64_t z = 0; z < nz; z++)
			t += all[z * k + j];
		total[j] = t;
	}
	free(cnt), free(all);
	if (any != MPI_SUCCESS)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "dist reduce: MPI_Allgatherv failed (%d)", any);
	return FFDP_OK;
}

double ffdp_dist_max(ffdp_dist *d, double x)
{
	double m;
	MPI_Allreduce(&x, &m, 1, MPI_DOUBLE, MPI_MAX, d->comm);
	return m;
}
