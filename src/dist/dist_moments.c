/* Intensity moments over z-slabs (dist.h): the op's plane moments in
 * global index coordinates, added in global plane order. */
#include <stdlib.h>

#include "dist_internal.h"

/* Any backend: the op's moments of the rank's planes, in its local z, moved
 * to global z (z = zl + z0) and added in rank order. */
static ffdp_status moments_portable(ffdp_dist *d, ffdp_backend *be, ffdp_img own, const ffdp_slab *s,
				    double out[10], ffdp_error *err)
{
	double m[10] = {0};
	ffdp_status st = dist_check_backend(d, be, "dist moments", err);
	if (!st && s->z1 > s->z0)
		st = ffdp_op_moments(be, own, m, err);
	st = ffdp_dist_agree(d, st, "dist moments", err);
	if (st)
		return st;
	if (s->z0) {
		const double z0 = (double)s->z0;
		m[9] += 2.0 * z0 * m[3] + z0 * z0 * m[0]; /* zz, from the local z sum */
		m[6] += z0 * m[1];                        /* xz */
		m[8] += z0 * m[2];                        /* yz */
		m[3] += z0 * m[0];                        /* z */
	}
	return ffdp_dist_rank_total(d, m, 10, out, err);
}

ffdp_status ffdp_dist_moments(ffdp_dist *d, ffdp_backend *be, ffdp_img own, const ffdp_slab *s, double out[10],
			      ffdp_error *err)
{
	const int64_t n = s->z1 - s->z0;
	if (!dist_exact(d, be))
		return moments_portable(d, be, own, s, out, err);
	double *part = malloc((size_t)(10 * n + 1) * sizeof(double));
	ffdp_status st = part ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "dist moments: no memory");
	if (!st && n > 0)
		st = ffdp_op_moments_planes(be, own, s->z0, part, err);
	st = ffdp_dist_agree(d, st, "dist moments", err);
	if (!st)
		st = ffdp_dist_plane_total(d, s, part, 10, out, err);
	free(part);
	return st;
}
