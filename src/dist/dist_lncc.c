/* LNCC over z-slabs (dist.h).
 *
 * The CPU op is reproducible per position (ops.h): a box holding the
 * planes ffdp_lncc_planes names for the rank's own planes gives exactly
 * the whole op's gradients and per-plane loss sums there, given the whole
 * volume's shifts.  So each rank: gathers the shift rule's plane parts,
 * exchanges a halo of f, m (and the mask) as wide as the widest rank's
 * needs, runs the op on its box with outputs = its own planes, and adds
 * the gathered plane sums in global order.
 */
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

/* The whole volume's shifts from the rank's plane parts. */
static ffdp_status lncc_shifts(ffdp_dist *d, const ffdp_loss_args *a, const ffdp_slab *s, float *cf, float *cm,
			       ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0, plane = a->f.n[0] * a->f.n[1];
	const int64_t n[3] = {a->f.n[0], a->f.n[1], s->nz};
	double *part = malloc((size_t)(2 * own + 1) * sizeof(double)), tot[2];
	ffdp_status st = part ? FFDP_OK : ffdp_fail(err, FFDP_ERR_NOMEM, "dist lncc: no memory for shifts");

	for (int64_t l = 0; l < own && part; l++) {
		part[2 * l] = ffdp_lncc_shift_part(a->f.p + l * plane, n, s->z0 + l);
		part[2 * l + 1] = ffdp_lncc_shift_part(a->m.p + l * plane, n, s->z0 + l);
	}
	st = ffdp_dist_agree(d, st, "dist lncc", err);
	if (!st)
		st = ffdp_dist_plane_total(d, s, part, 2, tot, err);
	free(part);
	if (st)
		return st;
	*cf = (float)(tot[0] / (double)ffdp_lncc_shift_count(n));
	*cm = (float)(tot[1] / (double)ffdp_lncc_shift_count(n));
	return FFDP_OK;
}

/* buf = src's own planes with a halo of h (dist.h layout), exchanged. */
static ffdp_status haloed(ffdp_dist *d, ffdp_backend *be, const float *src, int64_t plane, const ffdp_slab *s,
			  int64_t h, float **buf, ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0;
	ffdp_status st = FFDP_OK;
	*buf = dist_scratch(d, be, (own + 2 * h) * plane + 1, err, "dist lncc");
	if (!*buf)
		st = FFDP_ERR_NOMEM;
	else if (own > 0)
		st = dist_copy(be, *buf + h * plane, src, own * plane, err);
	st = ffdp_dist_agree(d, st, "dist lncc", err);
	if (!st)
		st = dist_halo_exchange_be(d, be, *buf, plane, s, h, 0.0f, err);
	return st;
}

ffdp_status ffdp_dist_lncc(ffdp_dist *d, ffdp_backend *be, const ffdp_loss_args *a, const ffdp_slab *s,
			   const ffdp_lncc_opts *o, ffdp_error *err)
{
	const int64_t own = s->z1 - s->z0, plane = a->f.n[0] * a->f.n[1];
	const int exact = dist_exact(d, be);
	int64_t lo = s->z0, hi = s->z1, h;
	float *bf = NULL, *bm = NULL, *bw = NULL, *gf = NULL, *gm = NULL;
	double *zs = NULL, local = 0.0, lsum = 0.0, total = 0.0;
	ffdp_lncc_opts ob = *o;
	ffdp_status st;

	if (!(a->denom > 0.0))
		return ffdp_fail(err, FFDP_ERR_ARG, "dist lncc: the global denominator must be given");
	if ((st = dist_check_backend(d, be, "dist lncc", err)))
		return st;
	if (exact) {
		if ((st = lncc_shifts(d, a, s, &ob.cf, &ob.cm, err)))
			return st;
		ob.shifts_given = 1;
	}
	if (own > 0)
		ffdp_lncc_planes(o->k, o->exact_grad && (a->gf || a->gm), s->nz, s->z0, s->z1, &lo, &hi);
	h = (int64_t)ffdp_dist_max(d, (double)(s->z0 - lo > hi - s->z1 ? s->z0 - lo : hi - s->z1));
	st = haloed(d, be, a->f.p, plane, s, h, &bf, err);
	if (!st)
		st = haloed(d, be, a->m.p, plane, s, h, &bm, err);
	if (!st && a->mask)
		st = haloed(d, be, a->mask, plane, s, h, &bw, err);
	if (st)
		goto out;
	/* the box: buffer planes from global lo to hi */
	const int64_t off = (lo - (s->z0 - h)) * plane, nb = hi - lo, oz = s->z0 - lo;
	if ((a->gf && !(gf = dist_scratch(d, be, nb * plane + 1, err, "dist lncc"))) ||
	    (a->gm && !(gm = dist_scratch(d, be, nb * plane + 1, err, "dist lncc"))) ||
	    !(zs = malloc((size_t)(nb + 1) * sizeof(double))))
		st = ffdp_fail(err, FFDP_ERR_NOMEM, "dist lncc: cannot allocate the box's gradients");
	if (!st && own > 0) {
		ffdp_loss_args b = *a;
		b.f = (ffdp_img){bf + off, {a->f.n[0], a->f.n[1], nb}};
		b.m = (ffdp_img){bm + off, {a->f.n[0], a->f.n[1], nb}};
		b.mask = bw ? bw + off : NULL;
		b.gf = gf, b.gm = gm, b.loss = &local, b.sum = &lsum, b.zsum = exact ? zs : NULL;
		ob.z_lo = lo, ob.z_full = s->nz, ob.o_z0 = oz, ob.o_z1 = oz + own;
		st = ffdp_op_lncc(be, &b, &ob, err);
		if (!st && gf)
			st = dist_copy(be, a->gf, gf + oz * plane, own * plane, err);
		if (!st && gm)
			st = dist_copy(be, a->gm, gm + oz * plane, own * plane, err);
	}
	st = ffdp_dist_agree(d, st, "dist lncc", err);
	if (!st)
		st = exact ? ffdp_dist_plane_total(d, s, zs ? zs + oz : NULL, 1, &total, err)
			   : ffdp_dist_rank_total(d, &lsum, 1, &total, err);
	if (!st) {
		*a->loss = total / a->denom;
		if (a->sum)
			*a->sum = total;
	}
out:
	const int64_t nh = (own + 2 * h) * plane + 1, ng = (hi - lo) * plane + 1;
	dist_scratch_put(d, be, bf, nh), dist_scratch_put(d, be, bm, nh), dist_scratch_put(d, be, bw, nh);
	dist_scratch_put(d, be, gf, ng), dist_scratch_put(d, be, gm, ng);
	free(zs);
	return st;
}
