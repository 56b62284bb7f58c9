/* Mattes MI over z-slabs (dist.h): per-plane joint histograms from the op,
 * added in global plane order (the single-process op's order), then the
 * op's second half from that joint on every rank. */
#include <math.h>
#include <stdlib.h>

#include "dist_internal.h"

ffdp_status ffdp_dist_mi(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			 const ffdp_mi_opts *o, ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0, bb = (int64_t)o->bins * o->bins;
	double *hz = malloc((size_t)((dist_exact(d, be) ? own : 0) * bb + 1) * sizeof(double)), *h = malloc((size_t)(bb + 1) * sizeof(double));
	double loss = -INFINITY, sum = -INFINITY, l0 = 0.0;
	ffdp_status st = hz && h ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "dist mi: no memory for %lld histograms",
						       (long long)own);
	ffdp_mi_opts oh = *o, og = *o;
	ffdp_loss_args ah = *a, ag = *a;

	const int exact = dist_exact(d, be);
	/* without per-plane histograms: the rank's joint and marginals */
	double *hl = exact ? NULL : calloc((size_t)(bb + 2 * o->bins), sizeof(double));
	if (!st && !exact && !hl)
		st = ffdp_fail(err, FFDP_ERR_NOMEM, "dist mi: no memory for a histogram");
	if (!st)
		st = dist_check_backend(d, be, "dist mi", err);
	if (!st && own > 0) {
		oh.hist = exact ? NULL : hl, oh.hist_in = NULL, oh.hist_z = exact ? hz : NULL;
		ah.gf = ah.gm = NULL, ah.loss = &l0, ah.sum = NULL, ah.zsum = NULL;
		st = ffdp_op_mi(be, &ah, &oh, err);
	}
	st = ffdp_dist_agree(d, st, "dist mi", err);
	if (!st && (int64_t)(int)bb != bb)
		st = ffdp_fail(err, FFDP_ERR_ARG, "dist mi: %d bins", o->bins);
	if (!st)
		st = exact ? ffdp_dist_plane_total(d, s, hz, (int)bb, h, err) : ffdp_dist_rank_total(d, hl, (int)bb, h, err);
	free(hl);
	if (!st && own > 0) {
		og.hist_in = h, og.hist_z = NULL;
		ag.loss = &loss, ag.sum = &sum, ag.zsum = NULL;
		st = ffdp_op_mi(be, &ag, &og, err);
	}
	st = ffdp_dist_agree(d, st, "dist mi", err);
	if (!st) {
		/* every rank with planes has the same value; those without take it */
		*a->loss = ffdp_dist_max(d, loss);
		if (a->sum)
			*a->sum = ffdp_dist_max(d, sum);
	}
	free(hz), free(h);
	return st;
}
