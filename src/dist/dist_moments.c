/* Intensity moments over z-slabs (dist.h): the op's plane moments in
 * global index coordinates, added in global plane order. */
#include <stdlib.h>

#include "dist_internal.h"

ffdp_status ffdp_dist_moments(ffdp_dist *d, ffdp_backend *be, ffdp_img own, const ffdp_slab *s, double out[10],
			      ffdp_error *err)
{
	const int64_t n = s->z1 - s->z0;
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
