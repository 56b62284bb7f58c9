/* The set-up every MPI test shares: MPI, a dist context, the CPU backend,
 * and an exit status that counts the failed checks of every rank.  Header
 * only: it reads the including test's check.h counters. */
#ifndef FFDP_MPI_HARNESS_H
#define FFDP_MPI_HARNESS_H

#include <mpi.h>
#include <stdio.h>

#include "check.h"
#include "ffdp/dist.h"
#include "ffdp/ffdp.h"

typedef struct mpi_harness {
	ffdp_dist *d;
	ffdp_backend *be;
	int rank, size;
} mpi_harness;

/* MPI_Init, the context and the backend; 1 when both exist. */
static inline int mh_start(mpi_harness *h, int *argc, char ***argv)
{
	ffdp_error err;
	h->d = NULL, h->be = NULL;
	MPI_Init(argc, argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &h->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &h->size);
	CHECK_OK(ffdp_dist_create(&h->d, &err), &err, "rank %d: dist context", h->rank);
	CHECK_OK(ffdp_backend_open(FFDP_BACKEND_CPU, 0, &h->be, &err), &err, "rank %d: cpu backend", h->rank);
	if (h->d)
		CHECK(ffdp_dist_rank(h->d) == h->rank && ffdp_dist_size(h->d) == h->size, "rank %d of %d", h->rank,
		      h->size);
	return h->d && h->be;
}

/* Tear down, print the total on rank 0, MPI_Finalize; the exit status. */
static inline int mh_finish(mpi_harness *h)
{
	int nfail = 0;
	ffdp_backend_close(h->be);
	ffdp_dist_destroy(h->d);
	MPI_Allreduce(&check_nfail, &nfail, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (h->rank == 0)
		printf("%d ranks: %d failed checks over all ranks\n", h->size, nfail);
	int rc = check_done();
	MPI_Finalize();
	return nfail ? 1 : rc;
}

#endif
