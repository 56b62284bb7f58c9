/* Moving-image access for the sampler over z-slabs (dist.h).
 *
 * Each rank bounds the z of its sample points (computed as the sampler
 * does, in double from the global index), widens the range by one plane
 * each side, and every rank learns every range (allgather of two
 * integers).  Then, as for halos, each side works out on its own which of
 * its planes another rank wants and which it receives, and all transfers
 * are posted non-blocking and waited on together.  Only the z range is cut:
 * planes are contiguous and the slabs are along z.
 *
 * The sampler then reads a box of the whole image (m_lo, m_full): its bits
 * are the whole image's (ops.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist_internal.h"

enum { FETCH_TAG = 11 };

/* z of voxel j's sample point, the sampler's expression (cpu_sample.c). */
static double point_z(const ffdp_sample_args *a, int64_t x, int64_t y, int64_t z, int64_t j)
{
	const double *W = a->W, *B = a->B;
	double base = W[9] * (double)(a->lo[1] + y) + W[10] * (double)(a->lo[2] + z) + W[11];
	double p = base + W[8] * (double)(a->lo[0] + x);
	if (a->u) {
		const ffdp_vec *u = a->u;
		double u2 = u->ncomp == 3 ? u->c[2][j] : 0.0;
		p += B[6] * u->c[0][j] + B[7] * u->c[1][j] + B[8] * u2;
	}
	return p;
}

/* [*z0, *z1): the planes of an nz-plane image that a's points read, with
 * a plane of margin; empty when the box has no voxel.  NaN points read
 * plane 0 (the sampler clamps them to the low end). */
static void needed_planes(const ffdp_sample_args *a, int64_t nz, int64_t *z0, int64_t *z1)
{
	const int64_t *n = a->out.n;
	double lo = INFINITY, hi = -INFINITY;
	int nan = 0;

	if (n[0] * n[1] * n[2] == 0) {
		*z0 = *z1 = 0;
		return;
	}
#pragma omp parallel for collapse(2) reduction(min : lo) reduction(max : hi) reduction(| : nan)
	for (int64_t z = 0; z < n[2]; z++)
		for (int64_t y = 0; y < n[1]; y++)
			for (int64_t x = 0; x < n[0]; x++) {
				double p = point_z(a, x, y, z, (z * n[1] + y) * n[0] + x);
				nan |= p != p;
				lo = p < lo ? p : lo;
				hi = p > hi ? p : hi;
			}
	/* clamp first: floor of a huge double is no integer */
	lo = fmin(fmax(lo, -4.0), (double)nz + 4.0);
	hi = fmin(fmax(hi, -4.0), (double)nz + 4.0);
	int64_t a0 = (int64_t)floor(lo) - 1, a1 = (int64_t)floor(hi) + 3;
	if (nan || a0 < 0)
		a0 = 0;
	if (a1 > nz)
		a1 = nz;
	if (a1 <= a0) /* every point beyond the last plane: it is read clamped */
		a0 = nz - 1 < a0 ? nz - 1 : a0, a1 = a0 + 1;
	*z0 = a0, *z1 = a1;
}

static int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1, int64_t *lo, int64_t *hi)
{
	*lo = a0 > b0 ? a0 : b0;
	*hi = a1 < b1 ? a1 : b1;
	return *hi > *lo ? *hi - *lo : 0;
}

/* Post the transfers of the planes between this rank and every other:
 * my planes in their ranges out, their planes in my range in; my own
 * planes in my range are copied. */
static ffdp_status fetch_exchange(ffdp_dist *d, const ffdp_dist_image *m, const int64_t *rng,
				  ffdp_dist_mbox *box, MPI_Datatype plane_t, ffdp_dist_traffic *t, ffdp_error *err)
{
	const int64_t plane = m->n[0] * m->n[1];
	ffdp_slab me = ffdp_slab_of(m->n[2], d->rank, d->size);
	MPI_Request *req = malloc((size_t)d->size * 2 * sizeof(*req));
	int nreq = 0;
	int64_t lo, hi;
	uint64_t sent = 0, recv = 0;

	if (!req)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist fetch: cannot allocate %d requests", 2 * d->size);
	for (int q = 0; q < d->size; q++) {
		ffdp_slab o = ffdp_slab_of(m->n[2], q, d->size);
		if (q == d->rank) {
			if (overlap(me.z0, me.z1, box->z0, box->z1, &lo, &hi))
				memcpy(box->p + (lo - box->z0) * plane, m->own + (lo - me.z0) * plane,
				       (size_t)((hi - lo) * plane) * sizeof(float));
			continue;
		}
		if (overlap(o.z0, o.z1, box->z0, box->z1, &lo, &hi)) {
			MPI_Irecv(box->p + (lo - box->z0) * plane, (int)(hi - lo), plane_t, q, FETCH_TAG, d->comm,
				  &req[nreq++]);
			recv += (uint64_t)((hi - lo) * plane) * sizeof(float);
		}
		if (overlap(me.z0, me.z1, rng[2 * q], rng[2 * q + 1], &lo, &hi)) {
			MPI_Isend(m->own + (lo - me.z0) * plane, (int)(hi - lo), plane_t, q, FETCH_TAG, d->comm,
				  &req[nreq++]);
			sent += (uint64_t)((hi - lo) * plane) * sizeof(float);
		}
	}
	int rc = MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
	free(req);
	if (rc != MPI_SUCCESS)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "dist fetch: MPI_Waitall failed (%d)", rc);
	if (t)
		t->sent += sent, t->recv += recv, t->fetches++;
	return FFDP_OK;
}

ffdp_status ffdp_dist_fetch(ffdp_dist *d, const ffdp_sample_args *a, const ffdp_dist_image *m,
			    ffdp_dist_mbox *box, ffdp_dist_traffic *t, ffdp_error *err)
{
	const int64_t plane = m->n[0] * m->n[1];
	ffdp_status s = FFDP_OK;
	int64_t mine[2], *rng = NULL;
	MPI_Datatype plane_t;

	memset(box, 0, sizeof(*box));
	if (plane < 1 || plane > INT32_MAX || m->n[2] < 1)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist fetch: bad image size %lld x %lld x %lld",
				 (long long)m->n[0], (long long)m->n[1], (long long)m->n[2]);
	needed_planes(a, m->n[2], &mine[0], &mine[1]);
	box->z0 = mine[0], box->z1 = mine[1];
	rng = malloc((size_t)d->size * 2 * sizeof(int64_t));
	if (!rng)
		s = ffdp_fail(err, FFDP_ERR_NOMEM, "dist fetch: cannot allocate %d ranges", d->size);
	if (!s && box->z1 > box->z0 && !(box->p = malloc((size_t)((box->z1 - box->z0) * plane) * sizeof(float))))
		s = ffdp_fail(err, FFDP_ERR_NOMEM, "dist fetch: cannot allocate %lld planes",
			      (long long)(box->z1 - box->z0));
	if ((s = ffdp_dist_agree(d, s, "dist fetch", err)))
		goto out;
	MPI_Allgather(mine, 2, MPI_INT64_T, rng, 2, MPI_INT64_T, d->comm);
	MPI_Type_contiguous((int)plane, MPI_FLOAT, &plane_t);
	MPI_Type_commit(&plane_t);
	s = fetch_exchange(d, m, rng, box, plane_t, t, err);
	MPI_Type_free(&plane_t);
out:
	free(rng);
	if (s)
		ffdp_dist_mbox_free(box);
	return s;
}

void ffdp_dist_mbox_free(ffdp_dist_mbox *box)
{
	free(box->p);
	memset(box, 0, sizeof(*box));
}

void ffdp_dist_mbox_bind(const ffdp_dist_mbox *box, const ffdp_dist_image *m, ffdp_sample_args *a)
{
	a->moving = (ffdp_img){box->p, {m->n[0], m->n[1], box->z1 - box->z0}};
	a->m_lo[0] = a->m_lo[1] = 0;
	a->m_lo[2] = box->z0;
	memcpy(a->m_full, m->n, sizeof(a->m_full));
}

ffdp_status ffdp_dist_sample(ffdp_dist *d, ffdp_backend *be, const ffdp_sample_args *a,
			     const ffdp_dist_image *m, ffdp_dist_traffic *t, ffdp_error *err)
{
	ffdp_dist_mbox box;
	ffdp_sample_args b = *a;
	ffdp_status s = ffdp_dist_fetch(d, a, m, &box, t, err);
	if (s)
		return s;
	ffdp_dist_mbox_bind(&box, m, &b);
	if (a->out.n[0] * a->out.n[1] * a->out.n[2] > 0)
		s = ffdp_op_sample(be, &b, err);
	ffdp_dist_mbox_free(&box);
	return s;
}
