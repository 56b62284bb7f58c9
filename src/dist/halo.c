/* Halo exchange of a haloed z-slab (dist.h).
 *
 * Every rank knows every slab (ffdp_slab_of), so each side computes on its
 * own which contiguous plane ranges it sends and receives: the overlap of
 * its own planes with a peer's halo ranges, and of its halo ranges with a
 * peer's own planes.  All receives and sends are posted non-blocking, then
 * waited on together, so no order of ranks can deadlock, and a halo
 * thicker than the neighbour's slab is simply filled by several ranks.
 */
#include <stdlib.h>

#include "dist_internal.h"

enum { HALO_TAG_BELOW = 1, HALO_TAG_ABOVE = 2 };

/* [*lo, *hi) = [a0, a1) intersected with [b0, b1); returns its length. */
static int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1, int64_t *lo, int64_t *hi)
{
	*lo = a0 > b0 ? a0 : b0;
	*hi = a1 < b1 ? a1 : b1;
	return *hi > *lo ? *hi - *lo : 0;
}

/* Halo planes outside the volume: fill. */
static ffdp_status fill_outside(ffdp_dist *d, ffdp_backend *be, float *buf, int64_t plane, const ffdp_slab *s,
				int64_t h, float fill, ffdp_error *err)
{
	const int64_t base = s->z0 - h;
	/* global planes below 0 and from nz on */
	const int64_t lo[2] = {base, s->z1 > s->nz ? s->z1 : s->nz};
	const int64_t hi[2] = {s->z0 < 0 ? s->z0 : 0, s->z1 + h};
	(void)d;
	for (int k = 0; k < 2; k++) {
		if (hi[k] <= lo[k])
			continue;
		float *p = buf + (lo[k] - base) * plane;
		const int64_t n = (hi[k] - lo[k]) * plane;
		if (be && !ffdp_backend_host_memory(be)) {
			if (fill != 0.0f)
				return ffdp_fail(err, FFDP_ERR_ARG, "halo: device halos are filled with 0 only");
			ffdp_status st = ffdp_buf_zero(be, p, (size_t)n * sizeof(float), err);
			if (st)
				return st;
		} else {
			for (int64_t i = 0; i < n; i++)
				p[i] = fill;
		}
	}
	return FFDP_OK;
}

ffdp_status dist_halo_exchange_be(ffdp_dist *d, ffdp_backend *be, float *buf, int64_t plane, const ffdp_slab *s,
				  int64_t h, float fill, ffdp_error *err)
{
	const int64_t base = s->z0 - h; /* global plane of buffer plane 0 */
	int64_t lo, hi;
	ffdp_status st;

	if (h < 0 || plane < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "halo: bad halo %lld or plane size %lld",
				 (long long)h, (long long)plane);
	if (h == 0)
		return FFDP_OK;
	if ((st = dist_check_backend(d, be, "halo", err)) || (st = fill_outside(d, be, buf, plane, s, h, fill, err)))
		return st;
	dist_xfer x;
	dist_xfer_init(&x, d, be);
	for (int q = 0; q < d->size; q++) {
		if (q == d->rank)
			continue;
		ffdp_slab t = ffdp_slab_of(s->nz, q, d->size);
		/* Receives: q's planes in my halo below / above.  The tag names
		 * the receiver's halo, matching the sender's choice below. */
		if (overlap(t.z0, t.z1, s->z0 - h, s->z0, &lo, &hi))
			dist_xfer_recv(&x, buf + (lo - base) * plane, (hi - lo) * plane, q, HALO_TAG_BELOW);
		if (overlap(t.z0, t.z1, s->z1, s->z1 + h, &lo, &hi))
			dist_xfer_recv(&x, buf + (lo - base) * plane, (hi - lo) * plane, q, HALO_TAG_ABOVE);
		/* Sends: my planes in q's halo below / above. */
		if (overlap(s->z0, s->z1, t.z0 - h, t.z0, &lo, &hi))
			dist_xfer_send(&x, buf + (lo - base) * plane, (hi - lo) * plane, q, HALO_TAG_BELOW);
		if (overlap(s->z0, s->z1, t.z1, t.z1 + h, &lo, &hi))
			dist_xfer_send(&x, buf + (lo - base) * plane, (hi - lo) * plane, q, HALO_TAG_ABOVE);
	}
	return dist_xfer_run(&x, err);
}

ffdp_status ffdp_dist_halo_exchange(ffdp_dist *d, float *buf, int64_t plane, const ffdp_slab *s,
				    int64_t h, float fill, ffdp_error *err)
{
	return dist_halo_exchange_be(d, NULL, buf, plane, s, h, fill, err);
}
