/* The distribution context and the z-slab decomposition (dist.h). */
#include <stdlib.h>

#include "dist_internal.h"

ffdp_status ffdp_dist_create(ffdp_dist **out, ffdp_error *err)
{
	int inited = 0;

	*out = NULL;
	MPI_Initialized(&inited);
	if (!inited)
		return ffdp_fail(err, FFDP_ERR_ARG, "dist: MPI is not initialised (call MPI_Init first)");
	ffdp_dist *d = calloc(1, sizeof(*d));
	if (!d)
		return ffdp_fail(err, FFDP_ERR_NOMEM, "dist: cannot allocate the context");
	/* A private communicator: our tags never meet the caller's messages. */
	if (MPI_Comm_dup(MPI_COMM_WORLD, &d->comm) != MPI_SUCCESS) {
		free(d);
		return ffdp_fail(err, FFDP_ERR_BACKEND, "dist: MPI_Comm_dup failed");
	}
	MPI_Comm_rank(d->comm, &d->rank);
	MPI_Comm_size(d->comm, &d->size);
	d->ring_frac = 0.5;
	d->exact = 1; /* host memory and MPI until ffdp_dist_use_backend */
	*out = d;
	return FFDP_OK;
}

void ffdp_dist_destroy(ffdp_dist *d)
{
	if (!d)
		return;
	ffdp_dist_release(d); /* the backend must still be open */
#ifdef FFDP_HAVE_NCCL
	dist_nccl_free(d);
#endif
	MPI_Comm_free(&d->comm);
	free(d);
}

int ffdp_dist_rank(const ffdp_dist *d)
{
	return d->rank;
}

int ffdp_dist_size(const ffdp_dist *d)
{
	return d->size;
}

ffdp_slab ffdp_slab_of(int64_t nz, int rank, int size)
{
	ffdp_slab s = {nz, 0, 0};
	int64_t q = nz / size, rem = nz % size;

	/* The first rem ranks take q + 1 planes. */
	s.z0 = rank * q + (rank < rem ? rank : rem);
	s.z1 = s.z0 + q + (rank < rem ? 1 : 0);
	return s;
}

ffdp_status ffdp_dist_agree(ffdp_dist *d, ffdp_status s, const char *what, ffdp_error *err)
{
	int bad = s != FFDP_OK, any = 0;

	MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, d->comm);
	if (any && !bad)
		return ffdp_fail(err, FFDP_ERR_PEER, "%s: another rank failed", what);
	return s;
}
