/* Mean squared error over z-slabs (dist.h): per voxel it needs nothing but
 * its own voxel, so only the sum is distributed (ffdp_dist_plane_total). */
#include <stdlib.h>

#include "dist_internal.h"

ffdp_status ffdp_dist_mse(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			  ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0;
	ffdp_loss_args b = *a;
	double local = 0.0, total = 0.0;
	ffdp_status st = FFDP_OK;

	if (!(a->denom > 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "dist mse: the global denominator must be given");
	const int exact = dist_exact(d, be);
	double lsum = 0.0;
	b.loss = &local;
	b.sum = &lsum;
	b.zsum = exact ? malloc((size_t)(own + 1) * sizeof(double)) : NULL;
	if (exact && !b.zsum)
		st = ffdp_fail(err, FFDP_ERR_NOMEM, "dist mse: cannot allocate %lld plane sums", (long long)own);
	if (!st)
		st = dist_check_backend(d, be, "dist mse", err);
	if (!st && own > 0)
		st = ffdp_op_mse(be, &b, err);
	st = ffdp_dist_agree(d, st, "dist mse", err);
	if (!st)
		st = exact ? ffdp_dist_plane_total(d, s, b.zsum, 1, &total, err) : ffdp_dist_rank_total(d, &lsum, 1, &total, err);
	free(b.zsum);
	if (st)
		return st;
	*a->loss = total / a->denom;
	if (a->sum)
		*a->sum = total;
	return FFDP_OK;
}
