/* Halo exchange of a haloed z-slab (dist.h).
 *
 * Every rank knows every slab (ffdp_slab_of), so each side computes on its
 * own which contiguous plane ranges it sends and receives: the overlap of
 * its own planes with a peer's halo ranges, and of its halo ranges with a
 * peer's own planes.  All receives and sends are posted non-blocking, then
 * waited on together, so no order of ranks can deadlock, and a halo
 * thicker than the neighbour's slab is simply filled by several ranks.
 */
#include <limits.h>
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

ffdp_status ffdp_dist_halo_exchange(ffdp_dist *d, float *buf, int64_t plane, const ffdp_slab *s,
				    int64_t h, float fill, ffdp_error *err)
{
	const int64_t base = s->z0 - h; /* global plane of buffer plane 0 */
	const int64_t reach = h < s->nz ? h : s->nz;
	int64_t lo, hi;

	if (h < 0 || plane < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "halo: bad halo %lld or plane size %lld",
				 (long long)h, (long long)plane);
	if (h == 0)
		return FFDP_OK;
	/* Same answer on every rank (h, plane and nz are), so no rank waits alone. */
	if (reach > INT_MAX / plane)
		return ffdp_fail(err, FFDP_ERR_UNSUPPORTED,
				 "halo: %lld planes of %lld voxels exceed one MPI message",
				 (long long)reach, (long long)plane);

	/* Halo planes outside the volume: the caller's value. */
	for (int64_t z = base; z < s->z0; z++)
		if (z < 0)
			for (int64_t i = 0; i < plane; i++)
				buf[(z - base) * plane + i] = fill;
	for (int64_t z = s->z1; z < s->z1 + h; z++)
		if (z >= s->nz)
			for (int64_t i = 0; i < plane; i++)
				buf[(z - base) * plane + i] = fill;

	MPI_Request *req = malloc((size_t)d->size * 4 * sizeof(*req));
	if (!req)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "halo: cannot allocate %d requests", d->size * 4);
	int nreq = 0;
	for (int q = 0; q < d->size; q++) {
		if (q == d->rank)
			continue;
		ffdp_slab t = ffdp_slab_of(s->nz, q, d->size);
		/* Receives: q's planes in my halo below / above.  The tag names
		 * the receiver's halo, matching the sender's choice below. */
		if (overlap(t.z0, t.z1, s->z0 - h, s->z0, &lo, &hi))
			MPI_Irecv(buf + (lo - base) * plane, (int)((hi - lo) * plane), MPI_FLOAT, q,
				  HALO_TAG_BELOW, d->comm, &req[nreq++]);
		if (overlap(t.z0, t.z1, s->z1, s->z1 + h, &lo, &hi))
			MPI_Irecv(buf + (lo - base) * plane, (int)((hi - lo) * plane), MPI_FLOAT, q,
				  HALO_TAG_ABOVE, d->comm, &req[nreq++]);
		/* Sends: my planes in q's halo below / above. */
		if (overlap(s->z0, s->z1, t.z0 - h, t.z0, &lo, &hi))
			MPI_Isend(buf + (lo - base) * plane, (int)((hi - lo) * plane), MPI_FLOAT, q,
				  HALO_TAG_BELOW, d->comm, &req[nreq++]);
		if (overlap(s->z0, s->z1, t.z1, t.z1 + h, &lo, &hi))
			MPI_Isend(buf + (lo - base) * plane, (int)((hi - lo) * plane), MPI_FLOAT, q,
				  HALO_TAG_ABOVE, d->comm, &req[nreq++]);
	}
	int rc = MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
	free(req);
	if (rc != MPI_SUCCESS)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "halo: MPI_Waitall failed (%d)", rc);
	return FFDP_OK;
}
