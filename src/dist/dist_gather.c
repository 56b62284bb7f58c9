/* Whole volumes to and from z-slabs (dist.h): one plane is one element of
 * an MPI datatype, so counts stay small whatever the plane size. */
#include <stdlib.h>

#include "dist_internal.h"

typedef int (*move_fn)(ffdp_dist *d, float *whole, float *own, int *cnt, int *dsp, MPI_Datatype t, int root);

static int do_gather(ffdp_dist *d, float *whole, float *own, int *cnt, int *dsp, MPI_Datatype t, int root)
{
	return MPI_Gatherv(own, cnt[d->rank], t, whole, cnt, dsp, t, root, d->comm);
}

static int do_scatter(ffdp_dist *d, float *whole, float *own, int *cnt, int *dsp, MPI_Datatype t, int root)
{
	/* root keeps its planes in whole (own may alias them) */
	void *in = d->rank == root ? MPI_IN_PLACE : (void *)own;
	return MPI_Scatterv(whole, cnt, dsp, t, in, cnt[d->rank], t, root, d->comm);
}

static ffdp_status move(ffdp_dist *d, float *whole, float *own, int64_t plane, int64_t nz, int root, move_fn fn,
			const char *what, ffdp_error *err)
{
	int *cnt = malloc((size_t)d->size * 2 * sizeof(int)), ok = cnt && plane >= 1 && plane <= INT32_MAX;
	MPI_Datatype t;

	MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d->comm);
	if (!ok) {
		free(cnt);
		return ffdp_fail(err, FFDP_ERR_ARG, "%s: no memory or a plane of %lld voxels", what, (long long)plane);
	}
	for (int q = 0; q < d->size; q++) {
		ffdp_slab s = ffdp_slab_of(nz, q, d->size);
		cnt[q] = (int)(s.z1 - s.z0), cnt[d->size + q] = (int)s.z0;
	}
	MPI_Type_contiguous((int)plane, MPI_FLOAT, &t);
	MPI_Type_commit(&t);
	int rc = fn(d, whole, own, cnt, cnt + d->size, t, root);
	MPI_Type_free(&t);
	free(cnt);
	if (rc != MPI_SUCCESS)
		return ffdp_fail(err, FFDP_ERR_BACKEND, "%s: MPI failed (%d)", what, rc);
	return FFDP_OK;
}

ffdp_status ffdp_dist_gather(ffdp_dist *d, const float *own, int64_t plane, int64_t nz, float *whole, int root,
			     ffdp_error *err)
{
	return move(d, whole, (float *)own, plane, nz, root, do_gather, "dist gather", err);
}

ffdp_status ffdp_dist_scatter(ffdp_dist *d, const float *whole, int64_t plane, int64_t nz, float *own, int root,
			      ffdp_error *err)
{
	return move(d, (float *)whole, own, plane, nz, root, do_scatter, "dist scatter", err);
}
